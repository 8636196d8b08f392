"""Reproduction recipes say what they reproduce, and their configs do what they say.

A reproduction recipe carries a ``reference:`` block (the paper or config file, the reported
number, and the ``protocol`` that decides it) and a ``deviations:`` list. Every protocol
field is compared with the recipe's resolved config through an explicit mapping
(:data:`FIELDS`: protocol field -> how seglit's config realises it; defaults are the
classes' own). A difference that ``deviations`` does not list fails, and so does a listed
deviation that is not a difference. ``protocol`` values are in seglit's vocabulary (null is
"none": no crop, no aux loss, no CRF, ...); ``unreported`` marks a setting the source does
not state (the recipe's choice is then not checked, and cannot be a deviation).

``evaluations`` are further numbers of the same trained network under other evaluation
settings (e.g. DeepLab v3 at output stride 8): each gives the config ``override`` a user
applies and the protocol fields that change; both are checked the same way.

Structure is read from the network as built (dilations, strides, pools, dropout layers,
the resize geometry) and the learning rates and weight decays from the optimizer's
parameter groups as :class:`~seglit.module.SegmentationModule` builds them, not from the
config's keys. Every mapped field is computed for every recipe, ``unreported`` ones too
(their reason is in ``reference.unreported``); the fields seglit has no knob for are in
:data:`FIXED` with the reason, and the value is what seglit always does.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from seglit.cli import validate_config
from seglit.recipe import get_dotted, load_recipe, set_dotted

RECIPES = sorted(Path(__file__).parents[1].glob("recipes/*.yaml"))
UNREPORTED = "unreported"
REQUIRED_REFERENCE_KEYS = {"source", "metric", "split", "value", "protocol"}
REQUIRED_FIELDS = {
    "model",
    "train_split",
    "val_split",
    "crop",
    "batch",
    "lr",
    "weight_decay",
    "lr_schedule",
    "iterations",
    "output_stride",
    "aux_weight",
    "eval_mode",
    "eval_scales",
    "eval_flip",
    "crf",
}
NUM_CLASSES = {"VOC": 21, "Cityscapes": 19, "Synthetic": 5}


# ------------------------------------------------------------------ the resolved config


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _defaults(cls: Any) -> dict[str, Any]:
    """Keyword defaults of ``cls.__init__`` and of the bases it forwards ``**kwargs`` to."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__ if inspect.isclass(cls) else [cls]):
        init = getattr(klass, "__init__", None)
        if init is None or init is object.__init__:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if p.default is not inspect.Parameter.empty:
                out[name] = p.default
    return out


class Resolved:
    """The recipe config with every default the classes would apply filled in."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def get(self, key: str) -> Any:
        return get_dotted(self.config, key)

    def _section(self, key: str) -> dict[str, Any]:
        node = self.get(key) or {}
        cls = _import(node["class_path"])
        return {**_defaults(cls), **(node.get("init_args") or {})}

    @functools.cached_property
    def net_cls(self) -> type[nn.Module]:
        return _import(self.get("model.net.class_path"))

    @functools.cached_property
    def net_args(self) -> dict[str, Any]:
        return self._section("model.net")

    @functools.cached_property
    def data_cls_name(self) -> str:
        return self.get("data.class_path").rsplit(".", 1)[-1]

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        return self._section("data")

    @functools.cached_property
    def module(self) -> dict[str, Any]:
        from seglit.module import SegmentationModule

        return {**_defaults(SegmentationModule), **(self.get("model") or {})}

    @functools.cached_property
    def inference(self) -> dict[str, Any]:
        from seglit.inference import InferenceConfig

        defaults = {
            f.name: getattr(InferenceConfig(), f.name) for f in dataclass_fields(InferenceConfig)
        }
        return {**defaults, **(self.get("model.inference") or {})}

    @functools.cached_property
    def optimizer(self) -> dict[str, Any]:
        return self._section("model.optimizer")

    @functools.cached_property
    def scheduler(self) -> tuple[str, dict[str, Any]]:
        node = self.get("model.lr_scheduler")
        return node["class_path"].rsplit(".", 1)[-1], self._section("model.lr_scheduler")

    @functools.cached_property
    def trainer(self) -> dict[str, Any]:
        import lightning

        return {**_defaults(lightning.Trainer), **(self.get("trainer") or {})}

    @functools.cached_property
    def dataset(self) -> str:
        name = self.data_cls_name
        return next(k for k in NUM_CLASSES if k in name)

    @functools.cached_property
    def net(self) -> nn.Module:
        """The recipe's network, built on the meta device (shapes only; no weights read)."""
        args = {k: v for k, v in (self.get("model.net.init_args") or {}).items()}
        if "pretrained" in args:
            args["pretrained"] = False
        with torch.device("meta"):
            return self.net_cls(NUM_CLASSES[self.dataset], **args)

    @functools.cached_property
    def param_groups(self) -> dict[str, tuple[float, float]]:
        """Parameter name -> (lr, weight decay) in the optimizer that
        :meth:`SegmentationModule.build_optimizer` builds for the recipe's network (built at
        a tiny width on the CPU: the same layers and names, so the same groups)."""
        from seglit.module import SegmentationModule

        args = {k: v for k, v in (self.get("model.net.init_args") or {}).items()}
        params = inspect.signature(self.net_cls).parameters
        tiny = {"pretrained": False, "backbone_width": 4, "base_width": 4, "aspp_channels": None}
        args.update({k: v for k, v in tiny.items() if k in params})
        net = self.net_cls(NUM_CLASSES[self.dataset], **args)
        opt_cls = _import(self.get("model.optimizer.class_path"))
        opt_args = dict(self.get("model.optimizer.init_args") or {})
        keys = ("head_lr_mult", "head_lr_scope", "bias_lr_mult", "bias_weight_decay")
        module = SegmentationModule(
            net,
            NUM_CLASSES[self.dataset],
            optimizer=lambda p: opt_cls(p, **opt_args),
            **{k: self.module[k] for k in keys},
        )
        optimizer = module.build_optimizer()
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        return {
            name: (group_of[id(p)]["lr"], group_of[id(p)]["weight_decay"])
            for name, p in net.named_parameters()
            if id(p) in group_of
        }

    @functools.cached_property
    def net_param_names(self) -> dict[str, set[str]]:
        """Names of the backbone's and the classifier's parameters (``classifier_modules``)."""
        net = self.net
        names = {n for n, _ in net.named_parameters()}
        backbone = getattr(net, "backbone", None)
        inside = {f"backbone.{n}" for n, _ in backbone.named_parameters()} if backbone else set()
        ids = {id(p) for m in getattr(net, "classifier_modules", list)() for p in m.parameters()}
        classifier = {n for n, p in net.named_parameters() if id(p) in ids}
        return {"all": names, "backbone": inside, "classifier": classifier}


# ------------------------------------------------------------------ protocol field -> config


def _bn_layers(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def _rates(net: nn.Module) -> list[int] | None:
    """Atrous rates of the network's context module (ASPP, v2 branches, v1's fc6)."""
    from seglit.models import DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus

    if isinstance(net, DeepLabV3):
        convs = net.classifier[0].convs
    elif isinstance(net, DeepLabV3Plus):
        convs = net.aspp.convs
    elif isinstance(net, DeepLabV2):
        return [
            branch[0].dilation[0] if isinstance(branch, nn.Sequential) else branch.dilation[0]
            for branch in net.aspp
        ]
    elif isinstance(net, DeepLabV1):
        return [net.classifier[0].dilation[0]]
    else:
        return None
    rates = []
    for branch in convs:
        first = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
        if first.kernel_size[0] == 3:
            rates.append(first.dilation[0])
    return rates


def _aspp_channels(net: nn.Module) -> int | None:
    aspp = getattr(net, "aspp", None)
    if aspp is None and hasattr(net, "classifier") and isinstance(net.classifier, nn.Sequential):
        aspp = net.classifier[0]
    return aspp.project[0].out_channels if hasattr(aspp, "project") else None


def _head_layout(r: Resolved) -> Any:
    args = r.net_args
    for key in ("decoder_layout", "head"):
        if key in args:
            return args[key]
    return None


def _backbone_impl(r: Resolved) -> str | None:
    name = r.net_args.get("backbone", "vgg16" if "fc6_dilation" in r.net_args else None)
    if name is None:
        return None
    if name.startswith("resnet"):
        return "torchvision ResNet (v1.5)"
    if name == "vgg16":
        return "torchvision VGG16"
    return "aligned Xception-65 (timm layout)"


def _pretrained(r: Resolved) -> str | None:
    if not r.net_args.get("pretrained"):
        return None
    name = r.net_args.get("backbone", "vgg16")
    return f"ImageNet (torchvision {name} IMAGENET1K_V1)"


def _schedule(r: Resolved) -> str:
    name, args = r.scheduler
    if name == "PolyLR":
        return "poly"
    if name == "StepLR":
        return "step"
    if name == "ConstantLR" and (args.get("factor") == 1.0 or args.get("total_iters") == 0):
        return "fixed"
    return name


def _sched_arg(kind: str, key: str) -> Callable[[Resolved], Any]:
    def get(r: Resolved) -> Any:
        name, args = r.scheduler
        return args.get(key) if name == kind else None

    return get


def _devices(r: Resolved) -> int:
    devices = r.trainer.get("devices")
    if isinstance(devices, list):
        return len(devices)
    assert isinstance(devices, int), f"trainer.devices={devices!r}: the batch needs a number"
    return devices * int(r.trainer.get("num_nodes") or 1)


def _bn_batch(r: Resolved) -> int | None:
    if not _bn_layers(r.net):
        return None
    per_device = r.data["batch_size"]
    return per_device * _devices(r) if r.trainer.get("sync_batchnorm") else per_device


def _bn_momentum(r: Resolved) -> float | None:
    momenta = {m.momentum for m in _bn_layers(r.net)}
    assert len(momenta) <= 1, momenta
    return momenta.pop() if momenta else None


def _has_aux(r: Resolved) -> bool:
    return bool(r.net_args.get("aux")) or bool(r.net_args.get("msc_scales"))


def _crop(r: Resolved) -> list[int]:
    crop = r.data["crop_size"]
    return [crop, crop] if isinstance(crop, int) else list(crop)


def _color(r: Resolved) -> str | None:
    jitter, hue = r.data.get("color_jitter", 0.0), r.data.get("hue_jitter", 0.0)
    return f"ColorJitter({jitter}, hue={hue})" if jitter or hue else None


def _precision(r: Resolved) -> str:
    value = str(r.trainer.get("precision"))
    return {"32": "fp32", "32-true": "fp32", "64-true": "fp64"}.get(value, value)


def _weights(r: Resolved) -> dict[str, tuple[float, float]]:
    return {n: v for n, v in r.param_groups.items() if not n.endswith("bias")}


def _base_lr(r: Resolved) -> float:
    """The lr of the parameters no multiplier applies to (the backbone's weights, or all)."""
    weights = _weights(r)
    backbone = [v for n, v in weights.items() if n in r.net_param_names["backbone"]]
    return min(lr for lr, _ in (backbone or weights.values()))


def _head_lr_mult(r: Resolved) -> float:
    return max(lr for lr, _ in _weights(r).values()) / _base_lr(r)


def _head_lr_scope(r: Resolved) -> str | None:
    """Which weights train faster than the base: ``classifier`` (the net's final classifier
    only), ``head`` (everything outside the backbone), or None (none)."""
    base = _base_lr(r)
    faster = {n for n, (lr, _) in _weights(r).items() if lr > base * (1 + 1e-9)}
    names = r.net_param_names
    if not faster:
        return None
    if faster == {n for n in names["classifier"] if not n.endswith("bias")}:
        return "classifier"
    if faster == {n for n in names["all"] - names["backbone"] if not n.endswith("bias")}:
        return "head"
    return f"{len(faster)} weights"


def _bias_lr_mult(r: Resolved) -> float:
    groups = r.param_groups
    ratios = {
        round(groups[n][0] / groups[n[: -len("bias")] + "weight"][0], 9)
        for n in groups
        if n.endswith("bias") and n[: -len("bias")] + "weight" in groups
    }
    assert len(ratios) <= 1, ratios
    return ratios.pop() if ratios else 1.0


def _bias_weight_decay(r: Resolved) -> bool:
    return any(wd > 0 for n, (_, wd) in r.param_groups.items() if n.endswith("bias"))


def _weight_decay(r: Resolved) -> float:
    decays = {wd for _, wd in _weights(r).values()}
    assert len(decays) == 1, decays
    return decays.pop()


def _dropout_kind(r: Resolved) -> str | None:
    """The dropout after DeepLab's / FCN's fc6 and fc7, as built."""
    net = r.net
    part = net.backbone if getattr(net.backbone, "has_fc", False) else net
    kinds = {
        "channel" if isinstance(m, nn.Dropout2d) else "element"
        for name, m in part.named_modules()
        if isinstance(m, (nn.Dropout, nn.Dropout2d))
        and m.p == 0.5
        and ("fc_act" in name or "classifier" in name or "aspp" in name)
    }
    assert len(kinds) <= 1, kinds
    return kinds.pop() if kinds else None


def _multi_grid(r: Resolved) -> list[int] | None:
    """Unit rates of the last stage relative to its base rate, read from the 3x3 convs."""
    layer4 = getattr(r.net.backbone, "layer4", None)
    if layer4 is None or r.net_args.get("multi_grid") is None:
        return None
    rates = [b.conv2.dilation[0] for b in layer4]
    return [d // rates[0] for d in rates]


def _image_pooling(r: Resolved) -> bool | None:
    from seglit.models.heads import ASPP, ASPPPooling

    aspps = [m for m in r.net.modules() if isinstance(m, ASPP)]
    if not aspps:
        return None
    return any(isinstance(m, ASPPPooling) for m in aspps[0].convs)


def _separable(r: Resolved) -> bool | None:
    from seglit.models.blocks import SeparableConv2d
    from seglit.models.heads import ASPP

    aspps = [m for m in r.net.modules() if isinstance(m, ASPP)]
    if not aspps:
        return None
    return any(isinstance(m, SeparableConv2d) for m in aspps[0].convs)


def _fusion(r: Resolved) -> str | None:
    """The skip fusion as built: FCN's ``Fuse`` modules, U-Net's and v3+'s ``fusion``."""
    if "fusion" not in r.net_args:
        return None
    fuse = getattr(r.net, "fuse_pool4", None)
    return fuse.mode if fuse is not None else r.net.fusion


def _upsample(r: Resolved) -> str | None:
    """The decoder's upsampling as built (the final one, or U-Net's first)."""
    if "upsample" not in r.net_args:
        return None
    up = getattr(r.net, "up_final", None) or r.net.ups[0]
    if hasattr(up, "bn"):  # U-Net's UpsampleNorm: an Upsample, or resize + 1x1 conv
        return up.up.mode if up.up is not None else "bilinear"
    return up.mode


def _learn_upsampling(r: Resolved) -> bool | None:
    if "learn_upsampling" not in r.net_args:
        return None

    def learns(names: tuple[str, ...]) -> bool:
        ups = [getattr(r.net, n) for n in names if hasattr(r.net, n)]
        return any(p.requires_grad for up in ups for p in up.parameters())

    final, skips = learns(("up_final",)), learns(("up_pool4", "up_pool3"))
    return "skips" if skips and not final else final


def _align_corners(r: Resolved) -> bool | None:
    up = getattr(r.net, "up_final", None)
    return getattr(up, "align_corners", None) if "align_corners" in r.net_args else None


def _pool5a(r: Resolved) -> bool | None:
    pool = getattr(r.net, "pool5a", None)
    if pool is None:
        return None if "pool5a" not in r.net_args else False
    return (pool.kernel_size, pool.stride, pool.padding, pool.count_include_pad) == (3, 1, 1, True)


def _unet_dropout(r: Resolved) -> float | None:
    drop = getattr(r.net, "dropout", None)
    return drop.p if isinstance(drop, nn.Dropout) else None


def _loss_reduction(r: Resolved) -> str:
    """Probe SegmentationModule.loss: the mean over labelled pixels, or over all pixels."""
    from seglit.module import SegmentationModule

    module = SegmentationModule(nn.Identity(), 2, loss_average=r.module["loss_average"])
    logits = torch.zeros(1, 2, 2, 2)  # log(2) at every pixel
    masks = torch.tensor([[[0, 1], [255, 255]]])
    loss = float(module.loss(logits, masks)) / math.log(2)
    return {1.0: "mean", 0.5: "mean_all"}[round(loss, 6)]


def _loss_resolution(r: Resolved) -> str:
    """Probe SegmentationModule.loss with coarse logits: upsampled to the label ("label")."""
    from seglit.module import SegmentationModule

    module = SegmentationModule(nn.Identity(), 2)
    logits = torch.tensor([[[[0.0, 4.0]], [[0.0, 0.0]]]])  # 1x2 map, two classes
    masks = torch.zeros(1, 2, 4, dtype=torch.long)
    up = torch.nn.functional.interpolate(logits, size=(2, 4), mode="bilinear")
    expected = torch.nn.functional.cross_entropy(up, masks)
    return "label" if torch.isclose(module.loss(logits, masks), expected) else "output"


def _crf(r: Resolved) -> dict[str, float] | None:
    inf = r.inference
    if not inf["crf"]:
        return None
    keys = ("iterations", "bilateral_weight", "bilateral_sxy", "bilateral_srgb")
    keys += ("gaussian_weight", "gaussian_sxy")
    return {k: inf[f"crf_{k}"] for k in keys}


FIELDS: dict[str, Callable[[Resolved], Any]] = {
    # the network (built on the meta device where the structure decides)
    "model": lambda r: r.net_cls.__name__,
    "backbone": lambda r: r.net_args.get(
        "backbone", "vgg16" if "fc6_dilation" in r.net_args else None
    ),
    "backbone_impl": _backbone_impl,
    "pretrained": _pretrained,
    "input_padding": lambda r: getattr(r.net, "input_padding", 0),
    "output_stride": lambda r: r.net.output_stride,
    "atrous_rates": lambda r: _rates(r.net),
    "multi_grid": _multi_grid,
    "image_pooling": _image_pooling,
    "separable": _separable,
    "aspp_channels": lambda r: _aspp_channels(r.net),
    "low_level_channels": lambda r: (
        r.net.low_level[0].out_channels if hasattr(r.net, "low_level") else None
    ),
    "head_layout": _head_layout,
    "fusion": _fusion,
    "upsample": _upsample,
    "upsample_norm": lambda r: r.net_args.get("upsample_norm"),
    "learn_upsampling": _learn_upsampling,
    "skip_scale": lambda r: getattr(r.net, "skip_scale", None),
    "fc_dropout": _dropout_kind,
    "pool5a": _pool5a,
    "contracting_dropout": _unet_dropout,
    "align_corners": _align_corners,
    "msc_scales": lambda r: (
        None
        if r.net.msc_scales is None
        else list(r.net.msc_scales)
        if hasattr(r.net, "msc_scales")
        else None
    ),
    "base_width": lambda r: r.net.encoder[0][0].out_channels if hasattr(r.net, "encoder") else None,
    "depth": lambda r: len(r.net.encoder) if hasattr(r.net, "encoder") else None,
    "batch_norm": lambda r: (
        any(isinstance(m, nn.BatchNorm2d) for m in r.net.encoder.modules())
        if hasattr(r.net, "encoder")
        else None
    ),
    # data
    "dataset": lambda r: r.dataset,
    "train_split": lambda r: r.data["train_split"],
    "train_labels": lambda r: FIXED["train_labels"][0],
    "val_split": lambda r: r.data["val_split"],
    "crop": _crop,
    "scale_range": lambda r: list(r.data["scale_range"]),
    "cat_max_ratio": lambda r: r.data.get("cat_max_ratio", FIXED["cat_max_ratio"][0]),
    "hflip": lambda r: r.data["hflip"],
    "color_jitter": _color,
    # optimisation
    "batch": lambda r: r.data["batch_size"] * _devices(r),
    "bn_batch": _bn_batch,
    "bn_momentum": _bn_momentum,
    "optimizer": lambda r: r.get("model.optimizer.class_path").rsplit(".", 1)[-1],
    "lr": _base_lr,
    "momentum": lambda r: r.optimizer["momentum"],
    "weight_decay": _weight_decay,
    "bias_lr_mult": _bias_lr_mult,
    "bias_weight_decay": _bias_weight_decay,
    "head_lr_mult": _head_lr_mult,
    "head_lr_scope": _head_lr_scope,
    "lr_schedule": _schedule,
    "poly_power": _sched_arg("PolyLR", "power"),
    "min_lr": _sched_arg("PolyLR", "min_lr"),
    "step_size": _sched_arg("StepLR", "step_size"),
    "step_gamma": _sched_arg("StepLR", "gamma"),
    "iterations": lambda r: r.trainer["max_steps"],
    "loss_reduction": _loss_reduction,
    "loss_resolution": _loss_resolution,
    "aux_weight": lambda r: r.module["aux_weight"] if _has_aux(r) else None,
    "precision": _precision,
    # evaluation
    "eval_mode": lambda r: r.inference["mode"],
    "eval_scales": lambda r: list(r.inference["scales"]),
    "eval_flip": lambda r: r.inference["flip"],
    "eval_align_corners": lambda r: r.inference["align_corners"],
    "crf": _crf,
}

FIXED: dict[str, tuple[Any, str]] = {
    "train_labels": (
        "VOC2012 SegmentationClass, else SBD",
        "seglit's VOC reader has no option: a VOC2012 mask when one exists for an id, the "
        "SBD .mat otherwise",
    ),
    "cat_max_ratio": (
        None,
        "seglit's random crop has no category-ratio retry (no data.init_args.cat_max_ratio)",
    ),
}
"""Fields without a seglit knob: (what seglit always does, why it cannot be set)."""


def same(reference: Any, ours: Any) -> bool:
    """Equal after normalising tuples to lists and numbers to floats (relative 1e-9)."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        return set(reference) == set(ours) and all(
            reference[k] == UNREPORTED or same(reference[k], ours[k]) for k in reference
        )
    if isinstance(reference, (list, tuple)) and isinstance(ours, (list, tuple)):
        return len(reference) == len(ours) and all(map(same, reference, ours))
    numbers = (int, float)
    if isinstance(reference, bool) or isinstance(ours, bool):
        return reference is ours
    if isinstance(reference, numbers) and isinstance(ours, numbers):
        return math.isclose(reference, ours, rel_tol=1e-9, abs_tol=0.0)
    return reference == ours


def differences(protocol: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Protocol field -> (reference value, seglit's value) for every field that differs."""
    resolved = Resolved(config)
    out = {}
    for field, expected in protocol.items():
        assert field in FIELDS, f"protocol field {field!r} has no mapping to a config key"
        ours = FIELDS[field](resolved)  # computed for unreported fields too
        if expected != UNREPORTED and not same(expected, ours):
            out[field] = (expected, ours)
    return out


def apply_override(config: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for key, value in override.items():
        set_dotted(config, key, copy.deepcopy(value))
    return config


# ------------------------------------------------------------------ which recipes claim what


def header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


CLAIM = re.compile(r"(Target|Reproduction)\b.*?\b\d{2}\.\d{1,2}\b|\b\d{2}\.\d{1,2} mIoU", re.S)
REFERENCE_RECIPES = [p for p in RECIPES if "reference" in (yaml.safe_load(p.read_text()) or {})]


def test_the_reproduction_recipes_are_found() -> None:
    names = {p.stem for p in REFERENCE_RECIPES}
    assert names >= {
        "fcn8s_voc",
        "deeplabv1_voc",
        "deeplabv2_voc",
        "deeplabv3_voc",
        "deeplabv3plus_cityscapes",
        "unet_cityscapes",
    }


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_claiming_a_number_has_a_reference_block(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    if CLAIM.search(header(path)):
        assert "reference" in raw, f"{path.name} claims a published number but has no reference:"
    if "reference" in raw:
        ref = raw["reference"]
        assert REQUIRED_REFERENCE_KEYS <= set(ref), REQUIRED_REFERENCE_KEYS - set(ref)
        assert REQUIRED_FIELDS <= set(ref["protocol"]), REQUIRED_FIELDS - set(ref["protocol"])
        assert str(ref["value"]) in header(path), "the header should state the reference value"
        for deviation in raw.get("deviations") or []:
            assert {"field", "reason"} <= set(deviation), deviation


@pytest.mark.parametrize("path", REFERENCE_RECIPES, ids=lambda p: p.stem)
def test_the_config_follows_the_protocol_except_the_listed_deviations(path: Path) -> None:
    recipe = load_recipe(path)
    reference = recipe.reference
    protocol = reference["protocol"]
    found = {f: d for f, d in differences(protocol, recipe.config).items()}
    for evaluation in reference.get("evaluations") or []:
        config = apply_override(recipe.config, evaluation["override"])
        diff = differences({**protocol, **evaluation["protocol"]}, config)
        for field, values in diff.items():
            found.setdefault(field, values)
    listed = [d["field"] for d in recipe.deviations]
    assert len(listed) == len(set(listed)), f"a field is listed twice: {listed}"
    unlisted = {f: v for f, v in found.items() if f not in listed}
    assert not unlisted, (
        f"{path.name}: differences (reference, seglit) not in deviations: {unlisted}"
    )
    for field in listed:
        assert field in protocol, f"{path.name}: deviation {field!r} is not a protocol field"
        assert protocol[field] != UNREPORTED, f"{path.name}: {field!r} is unreported"
        assert field in found, f"{path.name}: deviation {field!r} is not actually a difference"


@pytest.mark.parametrize("path", REFERENCE_RECIPES, ids=lambda p: p.stem)
def test_fields_that_cannot_be_compared_say_why(path: Path) -> None:
    """An ``unreported`` value has its reason in ``reference.unreported``; a field without a
    seglit knob (:data:`FIXED`) is compared with what seglit always does."""
    recipe = load_recipe(path)
    protocol = recipe.reference["protocol"]
    reasons = recipe.reference.get("unreported") or {}
    unreported = {f for f, v in protocol.items() if v == UNREPORTED}
    assert set(reasons) == unreported, (path.name, set(reasons) ^ unreported)
    assert all(isinstance(r, str) and len(r) > 20 for r in reasons.values()), reasons
    resolved = Resolved(recipe.config)
    for field, (value, reason) in FIXED.items():
        assert reason and FIELDS[field](resolved) == value, field


@pytest.mark.parametrize("path", REFERENCE_RECIPES, ids=lambda p: p.stem)
def test_each_evaluation_changes_protocol_fields_through_valid_keys(path: Path) -> None:
    """An evaluation changes protocol fields (else it is the base number), and its override
    is a valid config for ``seglit validate`` (unknown keys fail)."""
    recipe = load_recipe(path)
    for evaluation in recipe.reference.get("evaluations") or []:
        assert evaluation["protocol"] and evaluation["override"], evaluation
        for field, value in evaluation["protocol"].items():
            assert not same(recipe.reference["protocol"][field], value), field
        validate_config(apply_override(recipe.config, evaluation["override"]), "validate")


@pytest.mark.parametrize("smoke", [False, True], ids=["base", "smoke"])
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_configs_validate(path: Path, smoke: bool) -> None:
    for variant in load_recipe(path, smoke=smoke).variants():
        validate_config(variant.config, source=f"{path.name} ({variant.name})")


def test_the_mapping_detects_a_difference() -> None:
    """The check can fail: change config values and exactly their fields show up."""
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "deeplabv3_voc.yaml")
    protocol = recipe.reference["protocol"]
    assert set(differences(protocol, recipe.config)) == {d["field"] for d in recipe.deviations}
    config = apply_override(
        recipe.config,
        {
            "model.net.init_args.atrous_rates": [12, 24, 36],
            "data.init_args.batch_size": 8,
            "model.inference.flip": True,
        },
    )
    diff = differences(protocol, config)
    assert set(diff) - {d["field"] for d in recipe.deviations} == {
        "atrous_rates",
        "batch",
        "bn_batch",
        "eval_flip",
    }
    assert diff["atrous_rates"] == ([6, 12, 18], [12, 24, 36])
    # output stride 8 with the default rates: both fields move
    diff = differences(
        protocol, apply_override(recipe.config, {"model.net.init_args.output_stride": 8})
    )
    assert diff["output_stride"] == (16, 8) and diff["atrous_rates"] == ([6, 12, 18], [12, 24, 36])


@pytest.mark.parametrize(
    ("recipe", "override", "field", "values"),
    [
        ("deeplabv1_voc", {"model.head_lr_scope": "head"}, "head_lr_scope", ("classifier", "head")),
        ("deeplabv2_voc", {"model.head_lr_scope": "head"}, "head_lr_scope", ("classifier", "head")),
        ("deeplabv1_voc", {"model.head_lr_mult": 1.0}, "head_lr_mult", (10.0, 1.0)),
        ("deeplabv1_voc", {"model.net.init_args.pool5a": False}, "pool5a", (True, False)),
        (
            "deeplabv1_voc",
            {"model.net.init_args.align_corners": False},
            "align_corners",
            (True, False),
        ),
        ("deeplabv1_voc", {"model.bias_weight_decay": True}, "bias_weight_decay", (False, True)),
        ("deeplabv1_voc", {"model.bias_lr_mult": 1.0}, "bias_lr_mult", (2.0, 1.0)),
        (
            "deeplabv1_voc",
            {"model.net.init_args.fc_dropout": "channel"},
            "fc_dropout",
            ("element", "channel"),
        ),
        (
            "deeplabv3_voc",
            {"model.inference.align_corners": False},
            "eval_align_corners",
            (True, False),
        ),
        (
            "deeplabv3_voc",
            {"model.net.init_args.multi_grid": [1, 2, 2]},
            "multi_grid",
            ([1, 2, 4], [1, 2, 2]),
        ),
        (
            "deeplabv3_voc",
            {"model.net.init_args.image_pooling": False},
            "image_pooling",
            (True, False),
        ),
        (
            "deeplabv3plus_cityscapes",
            {"model.loss_average": "labelled"},
            "loss_reduction",
            ("mean_all", "mean"),
        ),
        (
            "unet_cityscapes",
            {"model.loss_average": "labelled"},
            "loss_reduction",
            ("mean_all", "mean"),
        ),
        (
            "unet_cityscapes",
            {"model.net.init_args.dropout": 0.5},
            "contracting_dropout",
            (None, 0.5),
        ),
        ("unet_cityscapes", {"model.net.init_args.depth": 4}, "depth", (5, 4)),
        ("fcn8s_voc", {"model.net.init_args.input_padding": 0}, "input_padding", (100, 0)),
        (
            "fcn8s_voc",
            {"model.net.init_args.learn_upsampling": True},
            "learn_upsampling",
            (False, True),
        ),
    ],
)
def test_the_built_network_and_optimizer_decide_the_fields(
    recipe: str, override: dict[str, Any], field: str, values: tuple[Any, Any]
) -> None:
    """Each structural or optimisation field follows the network and the optimizer as
    built: changing the knob moves exactly that field (and is caught as a difference)."""
    loaded = load_recipe(Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml")
    protocol = loaded.reference["protocol"]
    assert field in protocol, f"{recipe}: protocol has no {field!r}"
    before = differences(protocol, loaded.config)
    after = differences(protocol, apply_override(loaded.config, override))
    assert field not in before and after[field] == values, (before, after)


# ------------------------------------------------------------------ DeepLab v3 at OS 8


def build_net(config: dict[str, Any], num_classes: int = 21, **tiny: Any) -> nn.Module:
    """``model.net`` of a config as the Lightning CLI builds it (jsonargparse, class_path and
    init_args), on the meta device unless ``tiny`` scales it down; weights never read."""
    from jsonargparse import ArgumentParser

    net = copy.deepcopy(config["model"]["net"])
    net["init_args"] = {**net["init_args"], "num_classes": num_classes, "pretrained": False}
    net["init_args"].update(tiny)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--net", type=nn.Module)
    parsed = parser.parse_object({"net": net})
    if tiny:
        return parser.instantiate_classes(parsed).net
    with torch.device("meta"):
        return parser.instantiate_classes(parsed).net


def _units(layer: nn.Sequential) -> list[tuple[int, int]]:
    """(stride, dilation) of each bottleneck's 3x3 conv."""
    return [(b.conv2.stride[0], b.conv2.dilation[0]) for b in layer]


def test_deeplabv3_os8_evaluation_is_the_papers_os8_network() -> None:
    path = Path(__file__).parents[1] / "recipes" / "deeplabv3_voc.yaml"
    recipe = load_recipe(path)
    (os8,) = [
        e
        for e in recipe.reference["evaluations"]
        if e["protocol"].get("output_stride") == 8 and "eval_scales" not in e["protocol"]
    ]
    assert os8["value"] == 78.51
    assert os8["override"] == {"model.net.init_args.output_stride": 8}
    # the documented command line is exactly this override
    assert "--model.net.init_args.output_stride=8" in header(path)
    train = build_net(recipe.config)
    evaluate = build_net(apply_override(recipe.config, os8["override"]))

    # OS 16 (training): layer3 strides once, layer4 dilated by 2 with multi-grid (1, 2, 4)
    assert train.output_stride == 16
    assert _units(train.backbone.layer3) == [(2, 1)] + [(1, 1)] * 22
    assert _units(train.backbone.layer4) == [(1, 2), (1, 4), (1, 8)]
    assert _rates(train) == [6, 12, 18]
    # OS 8 (evaluation): layer3 dilated by 2 (its first unit keeps rate 1 and no stride),
    # layer4 by 4 with the multi-grid kept: (4, 8, 16); ASPP rates doubled
    assert evaluate.output_stride == 8
    assert _units(evaluate.backbone.layer3) == [(1, 1)] + [(1, 2)] * 22
    assert _units(evaluate.backbone.layer4) == [(1, 4), (1, 8), (1, 16)]
    assert _rates(evaluate) == [12, 24, 36]
    assert train.backbone.layer3[0].downsample[0].stride == (2, 2)
    assert evaluate.backbone.layer3[0].downsample[0].stride == (1, 1)
    # the paper's head on both: 1x1 projection, then the 1x1 classifier
    for net in (train, evaluate):
        head = net.classifier
        assert head[0].project[0].kernel_size == (1, 1) and len(head) == 2
    # the OS-16 checkpoint loads strictly into the OS-8 network
    evaluate.load_state_dict(train.state_dict(), strict=True)
    # with real tensors too (a tiny width, same structure)
    tiny = {"backbone": "resnet18", "backbone_width": 4}
    small_train = build_net(recipe.config, **tiny)
    small_eval = build_net(apply_override(recipe.config, os8["override"]), **tiny)
    small_eval.load_state_dict(small_train.state_dict(), strict=True)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        assert small_eval.eval()(x).shape == small_train.eval()(x).shape == (1, 21, 65, 65)
    # pinning the rates on purpose keeps them at OS 8 (not the paper's OS-8 network)
    pinned = apply_override(recipe.config, {"model.net.init_args.atrous_rates": [6, 12, 18]})
    assert _rates(build_net(apply_override(pinned, os8["override"]))) == [6, 12, 18]
