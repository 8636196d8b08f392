"""Registry, paper parameter counts, bad input, pretrained weights, model card."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from seglit.models import (
    DeepLabV1,
    DeepLabV3,
    DeepLabV3Plus,
    FCN8s,
    UNet,
    build_model,
    count_gflops,
    describe_model,
    list_models,
)
from seglit.models.__main__ import main
from seglit.models.card import receptive_field


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------- paper configurations


@pytest.mark.parametrize(
    ("build", "expected", "tol"),
    [
        (lambda: FCN8s(21, backbone="vgg16"), 134.5e6, 0.5e6),  # Long et al.: 134M
        (lambda: DeepLabV1(21), 20.5e6, 0.1e6),  # Chen et al.: LargeFOV 20.5M
        (lambda: UNet(2, base_width=64, depth=5, batch_norm=False), 31.03e6, 0.05e6),  # ~31M
    ],
    ids=["fcn8s-vgg16", "deeplabv1-largefov", "unet-64-depth5"],
)
def test_paper_parameter_counts(build, expected: float, tol: float) -> None:
    with torch.device("meta"):  # count only: no memory, no init time
        model = build()
    assert abs(_params(model) - expected) < tol


# ------------------------------------------------------------------------------ bad input


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="deeplabv3plus.*fcn8s.*unet"):
        build_model("segformer9000", 3)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("unet", {"fusion": "add"}, "fusion='add'.*'sum', 'concat'"),
        ("unet", {"upsample": "pixelshuffle"}, "upsample.*'bilinear_conv'"),
        ("fcn8s", {"backbone": "resnet152"}, "backbone.*'vgg16'.*'resnet101'"),
        ("deeplabv3", {"output_stride": 4}, "output_stride=4.*8, 16, 32"),
        ("deeplabv3", {"backbone": "vgg16"}, "backbone='vgg16'"),
        ("deeplabv3", {"atrous_rates": (6, -1)}, "atrous_rates"),
        ("fcn32s", {"head": "deep"}, "head.*'score', 'fcn'"),
        ("deeplabv3plus", {"decoder_layout": "tf"}, "decoder_layout.*'paper', 'smp', 'mmseg'"),
        ("deeplabv3", {"head": "tf"}, "head.*'paper', 'torchvision', 'mmseg'"),
        ("fcn32s", {"skip_scale": True}, "skip_scale=True.*no skips"),
        ("fcn8s", {"learn_upsampling": False, "upsample": "nearest_conv"}, "learn_upsampling"),
        ("fcn8s", {"fc_dropout": "spatial"}, "fc_dropout.*'element', 'channel'"),
        ("deeplabv2", {"msc_scales": (1.0, 0.0)}, "msc_scales"),
        ("deeplabv2", {"msc_scales": (1.0, 0.5), "aux": True}, "msc_scales.*aux"),
        ("unet", {"upsample_norm": True, "batch_norm": False}, "upsample_norm"),
        ("hypercolumn", {"stages": ("stride32",)}, "stages.*'stride4'.*'out'"),
        ("hypercolumn", {"classifier": "svm"}, "classifier.*'linear', 'mlp'"),
        ("deeplabv3", {"backbone": "xception65", "pretrained": True}, "pretrained.*xception65"),
        ("fcn32s", {"fusion": "concat"}, "fusion='concat'.*no skips"),
        ("fcn8s", {"skips": 1}, "unknown argument.*skips"),
        ("smp", {"arch": "NotAnArch"}, "arch.*'unet'"),
        ("smp", {"encoder": "resnet9000"}, "encoder.*'resnet18'"),
        ("deeplabv3", {"pretrained": True, "backbone_width": 8}, "pretrained=True.*backbone_width"),
        ("unet_resnet", {"backbone": "vgg16"}, "backbone='vgg16'.*'resnet18'"),
        ("unet_resnet", {"upsample": "nearest_conv"}, "upsample.*'nearest', 'bilinear'"),
        ("unet_resnet", {"decoder_channels": (64, 32, 16)}, "decoder_channels.*5 positive"),
        ("unet_resnet", {"decoder_channels": (64, 32, 16, 0, 8)}, "decoder_channels"),
        ("deeplabv3", {"backbone_stages": 0}, "backbone_stages=0.*1, 2, 3 or 4"),
        ("deeplabv3", {"backbone_stages": 1}, "backbone_stages=1.*output_stride=16"),
        ("deeplabv3", {"backbone_stages": 3, "output_stride": 32}, "output_stride in \\[8, 16\\]"),
        ("deeplabv3", {"backbone_stages": 1, "output_stride": 4}, "multi_grid.*backbone_stages=1"),
        (
            "deeplabv3",
            {"backbone_stages": 2, "output_stride": 8, "multi_grid": None, "aux": True},
            "aux=True.*backbone_stages=2",
        ),
        (
            "deeplabv3plus",
            {"backbone": "xception65", "backbone_stages": 1, "output_stride": 4},
            "backbone_stages=1.*xception65",
        ),
    ],
)
def test_bad_knob_lists_valid_values(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(name, 3, **kwargs)


def test_unet_too_small_input() -> None:
    with pytest.raises(ValueError, match="too small.*>= 16"):
        UNet(2, base_width=2, depth=5)(torch.randn(1, 3, 8, 40))


# ----------------------------------------------------------------------- pretrained weights


@pytest.fixture
def empty_hub(tmp_path, monkeypatch: pytest.MonkeyPatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


def test_pretrained_offline_error_says_how_to_get_weights(empty_hub) -> None:
    with pytest.raises(
        RuntimeError, match=r"(?s)resnet18-f37072fd\.pth.*not in the torch hub cache"
    ):
        build_model("deeplabv3", 3, backbone="resnet18", pretrained=True)
    with pytest.raises(RuntimeError, match=r"(?s)vgg16-397923af\.pth.*weights='IMAGENET1K_V1'"):
        build_model("fcn32s", 3, backbone="vgg16", pretrained=True)


def test_pretrained_loads_from_hub_cache(empty_hub) -> None:
    import torchvision

    ckpt = empty_hub / "checkpoints"
    ckpt.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, ckpt / "resnet18-f37072fd.pth")
    model = build_model("fcn8s", 3, backbone="resnet18", pretrained=True)
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"]
    )


# ---------------------------------------------------------------------- YAML / LightningCLI


def test_class_path_with_init_args_validates() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--net", type=torch.nn.Module)
    cfg = yaml.safe_load(
        """
        net:
          class_path: seglit.models.DeepLabV3Plus
          init_args: {num_classes: 3, backbone: resnet18, backbone_width: 4,
                      atrous_rates: [1, 2, 3], fusion: sum}
        """
    )
    net = parser.instantiate(parser.parse_object(cfg)).net
    assert isinstance(net, torch.nn.Module) and net.fusion == "sum"
    cfg["net"]["init_args"]["fusion"] = "add"
    with pytest.raises(Exception, match="fusion"):
        parser.parse_object(cfg)


# ----------------------------------------------------------------------------- model card


def test_list_models_names_every_family() -> None:
    # a superset: a new model file registers itself without a test edit
    assert set(list_models()) >= {
        "fcn32s",
        "fcn16s",
        "fcn8s",
        "unet",
        "unet_resnet",
        "deeplabv1",
        "deeplabv2",
        "deeplabv3",
        "deeplabv3plus",
        "hypercolumn",
        "smp",
    }


def test_describe_model_keys_and_values() -> None:
    model = UNet(2, base_width=4, depth=3).train()
    card = describe_model(model, (32, 32))
    assert set(card) == {"params", "gflops", "output_stride", "receptive_field"}
    assert card["params"] == _params(model) and isinstance(card["params"], int)
    assert isinstance(card["gflops"], float) and card["gflops"] > 0
    assert card["output_stride"] == 4
    # encoder 2 convs @1 + pool + 2 @2 + pool + 2 @4, decoder 2 @2 + 2 @1
    assert card["receptive_field"] == 1 + 4 + 1 + 8 + 2 + 16 + 8 + 4
    assert model.training  # restored


def test_count_gflops_counts_a_multiply_add_as_two() -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_gflops(conv, (8, 8)) == pytest.approx(2 * 3 * 4 * 9 * 8 * 8 / 1e9)


def test_receptive_field_of_known_stacks() -> None:
    conv = torch.nn.Conv2d
    assert (
        receptive_field(torch.nn.Sequential(conv(3, 4, 3, padding=1), conv(4, 4, 3, padding=1)))
        == 5
    )
    strided = torch.nn.Sequential(conv(3, 4, 3, 2, 1), conv(4, 4, 3, padding=2, dilation=2))
    assert receptive_field(strided) == 1 + 2 + 2 * 2 * 2
    v3 = DeepLabV3(3, backbone="resnet18", backbone_width=4)
    assert describe_model(v3, (64, 64))["receptive_field"] is None  # image pooling: global
    assert describe_model(v3, (64, 64))["output_stride"] == 16


def shallow_knobs(rates: tuple[int, ...]) -> dict:
    """The field-of-view smoke's DeepLab v3 knobs (stem + layer1, no image pooling)."""
    return dict(
        backbone="resnet18",
        backbone_width=8,
        backbone_stages=1,
        output_stride=4,
        multi_grid=None,
        atrous_rates=rates,
        image_pooling=False,
    )


@pytest.mark.parametrize("rates", [(3, 6, 9), (6, 12, 18), (12, 24, 36)])
@pytest.mark.parametrize("model", [DeepLabV3, DeepLabV3Plus])
def test_shallow_backbone_receptive_field_is_the_rates(model, rates) -> None:
    """Stem + layer1 reach 43 px at stride 4; a 3x3 branch at rate r adds 2 * r * 4 px and
    the final bilinear upsampling one stride (4 px): the rates, not the image, decide."""
    net = model(5, **shallow_knobs(rates))
    card = describe_model(net, (128, 128))
    assert card["output_stride"] == 4
    if model is DeepLabV3:  # v3+ also upsamples in its decoder; its 3x3 convs add more
        assert card["receptive_field"] == 43 + 8 * max(rates) + 4
    else:
        assert card["receptive_field"] > 43 + 8 * max(rates)
    assert not hasattr(net.backbone, "layer2")
    assert net.eval()(torch.zeros(1, 3, 61, 70)).shape == (1, 5, 61, 70)


def test_far_cue_distance_lies_between_the_rates_reaches() -> None:
    """The synthetic lab's far_cue band (docs/datasets.md) is out of reach of rates (3, 6, 9)
    for every pixel of a box and within reach of (6, 12, 18) for all of them."""
    from seglit.data.synthetic_lab import _FAR_BOX_WIDTH, FAR_CUE_DISTANCE

    def reach(rates: tuple[int, ...]) -> int:  # px either side of a pixel
        net = DeepLabV3(5, **shallow_knobs(rates))
        return receptive_field(net, (128, 128)) // 2

    assert reach((3, 6, 9)) < FAR_CUE_DISTANCE
    assert FAR_CUE_DISTANCE + _FAR_BOX_WIDTH[1] <= reach((6, 12, 18))


def test_cli_list_and_describe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    listing = capsys.readouterr().out
    for name in list_models():
        assert name in listing
    assert "atrous_rates" in listing and "fusion" in listing
    argv = [
        "describe",
        "fcn8s",
        "--backbone_width",
        "4",
        "--fusion",
        "concat",
        "--input-size",
        "64",
        "48",
        "--json",
    ]
    assert main(argv) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["model"] == "fcn8s" and card["fusion"] == "concat"
    assert card["output_stride"] == 32 and card["params"] > 0
    assert main(["describe", "fcn8s", "--fusion", "add"]) == 2
    assert "'sum', 'concat'" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["--num-classes", "--num_classes"])
def test_cli_describe_accepts_both_spellings_of_num_classes(
    spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["describe", "unet", "--base_width", "4", "--depth", "3", spelling, "7"]
    assert main([*argv, "--input_size", "32", "32", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["input_size"] == [32, 32]
    # 7 classes, not the default 21: the head's parameter count differs
    assert card["params"] == sum(
        p.numel() for p in build_model("unet", 7, base_width=4, depth=3).parameters()
    )


def test_cli_describe_says_global_and_is_quiet_in_a_pipe(capsys):
    assert main(["describe", "deeplabv3", "--backbone", "resnet18", "--backbone_width", "4"]) == 0
    assert "receptive_field: global" in capsys.readouterr().out
    import subprocess
    import sys

    pipe = subprocess.run(
        f"{sys.executable} -m seglit.models | head -1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert pipe.stdout.strip() and "Error" not in pipe.stderr and "Traceback" not in pipe.stderr
