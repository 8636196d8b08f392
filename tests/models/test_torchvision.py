"""from_torchvision: seglit reproduces torchvision's segmentation models, weights included."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.segmentation as tvseg

from seglit.models import DeepLabV3, FCN32s, from_torchvision


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics so that eval mode actually exercises them."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.mark.parametrize(
    ("factory", "aux", "cls"),
    [(tvseg.fcn_resnet50, False, FCN32s), (tvseg.deeplabv3_resnet50, True, DeepLabV3)],
)
def test_from_torchvision_matches(factory, aux: bool, cls: type) -> None:
    torch.manual_seed(0)
    tv = factory(weights=None, weights_backbone=None, num_classes=4, aux_loss=aux).eval()
    _randomise_batchnorm(tv)
    model = from_torchvision(tv)
    assert isinstance(model, cls) and not model.training
    assert (model.aux_classifier is not None) == aux
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        ref = tv(x)
        out = model(x)
    assert out.shape == ref["out"].shape == (1, 4, 65, 65)
    rel = (out - ref["out"]).abs().max() / ref["out"].abs().max()
    assert rel < 1e-4
    if aux:
        model.train()
        tv.train()
        x2 = torch.randn(2, 3, 33, 35)  # batch 2: image-pooling BN needs > 1 value in training
        torch.manual_seed(1)
        a = tv(x2)["aux"]
        torch.manual_seed(1)
        b = model(x2)["aux"]
        torch.testing.assert_close(a, b)


def test_from_torchvision_rejects_other_models() -> None:
    with pytest.raises(ValueError, match="fcn_resnet50"):
        from_torchvision(torch.nn.Conv2d(3, 3, 1))
    # a torchvision DeepLabV3, but on a MobileNetV3 body
    mobilenet = tvseg.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3
    )
    with pytest.raises(ValueError, match="unsupported torchvision backbone.*deeplabv3_resnet50"):
        from_torchvision(mobilenet)


class _OpRecorder(torch.overrides.TorchFunctionMode):
    """Records the name of every torch function a forward calls, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_backbone_runs_torchvisions_ops_in_torchvisions_order(name: str) -> None:
    """Same op order, so autograd runs backward in the same order: the same memory peak."""
    import torchvision.models as tvm

    from seglit.models.backbones import ResNetBackbone

    ours = ResNetBackbone(name, output_stride=32)
    tv = getattr(tvm, name)(weights=None)
    x = torch.randn(2, 3, 64, 64)
    with _OpRecorder() as seglit_ops:
        ours(x)
    with _OpRecorder() as tv_ops:
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
            y = layer(y)
    assert seglit_ops.names == tv_ops.names
