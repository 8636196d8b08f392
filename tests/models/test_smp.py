"""SMPModel: every smp architecture runs on any input size (the model contract)."""

from __future__ import annotations

import pytest
import torch

from seglit.models import SMPModel
from seglit.models.smp import smp_architectures

NEEDS_A_VIT = {"dpt"}  # smp's DPT takes only timm ViT encoders ("tu-vit_..."), at a fixed size


@pytest.mark.parametrize("arch", sorted(set(smp_architectures()) - NEEDS_A_VIT))
def test_every_smp_architecture_maps_any_size_to_itself(arch: str) -> None:
    """Padded to the encoder's stride, and PAN to its 128 px minimum; cropped back."""
    torch.manual_seed(0)
    model = SMPModel(3, arch=arch, encoder="resnet18").eval()
    with torch.no_grad():
        for size in [(33, 47), (17, 129)]:
            assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


def test_pan_is_padded_to_eight_strides_at_any_output_stride() -> None:
    model = SMPModel(3, arch="PAN", encoder="resnet18", smp_kwargs={"encoder_output_stride": 32})
    assert model.min_side == 256
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)
