"""Fetch what the variants need before any of them starts: pretrained weights, datasets.

The runner (local or SLURM) asks :func:`needed_weights` which weight files the variants
to train need, then either lists the missing ones (``--dry-run``: one problem line each)
or fetches them once, under a file lock in the cache folder (:func:`fetch_weights`), so 21
array tasks never race for the same download. Each library's own download API does the
work, and checks what it downloaded:

* torchvision's ImageNet weights (``pretrained: true`` on a seglit backbone):
  ``torch.hub.load_state_dict_from_url(..., check_hash=True)``, as
  ``weights.get_state_dict()`` does, into ``$TORCH_HOME/hub/checkpoints``;
* smp encoder weights (``encoder_weights: imagenet``) and timm's (``tu-`` encoders with
  weights): the Hugging Face Hub cache, through ``huggingface_hub.hf_hub_download``.

Without network each failure is one line that names the file, where it belongs and how to
get it there, raised before anything trains or is submitted. A dataset whose root is
missing is prepared by ``python -m seglit.data prepare NAME --root ROOT --download`` when
the user passed ``--download`` (:func:`download_data`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglit.recipe import get_dotted
from seglit.text import plural

WEIGHTS_LOCK = "seglit-fetch.lock"
"""The lock file (in the cache folder) held while weights are fetched."""


class FetchError(RuntimeError):
    """A download failed: one line naming the file, the reason and the way out."""


@dataclass
class WeightsNeed:
    """One weights file that some variants need.

    Attributes:
        kind: ``torchvision``, ``smp`` or ``timm``.
        name: The model or encoder name (``resnet50``, ``tu-mobilenetv3_small_050``).
        url: Where it is downloaded from (a URL, or ``hf://repo_id`` for the HF Hub).
        path: Where it lives once cached (``None`` while an HF Hub file is not cached).
        variants: The variants that need it.
        fetch: Downloads it (checksummed by the library) into its cache; may return the
            cached file's path.
    """

    kind: str
    name: str
    url: str
    path: Path | None
    variants: list[str] = field(default_factory=list)
    fetch: Callable[[], Any] | None = None

    @property
    def cached(self) -> bool:
        """Whether the file is already in its cache."""
        return self.path is not None and self.path.is_file()

    def describe(self) -> str:
        """``torchvision ImageNet weights resnet50-0676ba61.pth (for 3 variants)``."""
        what = {"torchvision": "torchvision's ImageNet weights", "smp": "smp encoder weights"}
        label = what.get(self.kind, f"{self.kind} weights")
        file = self.path.name if self.path is not None else self.url
        return f"{label} {file} (for {plural(len(self.variants), 'variant')})"

    def problem(self) -> str:
        """The one-line ``--dry-run`` problem of a missing file."""
        where = f" in {self.path.parent}" if self.path is not None else ""
        return (
            f"weights: {self.describe()} not cached{where}; the run fetches it from {self.url} "
            f"before training (offline: fetch it on a machine with internet, see docs/cluster.md)"
        )


def torchvision_need(backbone: str) -> WeightsNeed | None:
    """The torchvision ImageNet weights of a seglit backbone (``None`` when it has none)."""
    import torch
    import torchvision.models as tvm

    from seglit.models.backbones import TORCHVISION_WEIGHTS

    if backbone not in TORCHVISION_WEIGHTS:
        return None
    weights = getattr(tvm, TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename

    def fetch() -> None:
        weights.get_state_dict(progress=False, check_hash=True)  # the hash in the file name

    return WeightsNeed("torchvision", backbone, weights.url, path, fetch=fetch)


def _hf_need(kind: str, name: str, repo_id: str, revision: str | None) -> WeightsNeed:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "model.safetensors", revision=revision)
    path = Path(cached) if isinstance(cached, str) else None

    def fetch() -> str:
        if kind == "smp":
            hf_hub_download(repo_id, filename="config.json", revision=revision)
        return hf_hub_download(repo_id, filename="model.safetensors", revision=revision)

    return WeightsNeed(kind, name, f"hf://{repo_id}", path, fetch=fetch)


def smp_need(encoder: str, weights: Any) -> WeightsNeed | None:
    """The weights of an smp encoder (``tu-`` encoders: timm's), or ``None`` if unknown."""
    if weights is None or weights is False:
        return None
    if encoder.startswith("tu-"):
        try:
            import timm

            cfg = timm.models.get_pretrained_cfg(encoder[3:])
        except Exception:  # an unknown name: the build check names it
            return None
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        return _hf_need("timm", encoder, repo, None) if repo else None
    try:
        from segmentation_models_pytorch.encoders import encoders

        settings = encoders[encoder]["pretrained_settings"][weights]
    except (KeyError, ImportError):
        return None
    return _hf_need("smp", encoder, settings["repo_id"], settings.get("revision"))


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every ``(dotted path, init_args)`` of a ``class_path``/``init_args`` block in a config
    tree (inside a list the path is ``""``: only the first use needs it)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str) and isinstance(node.get("init_args"), dict):
            found.append((path, node["init_args"]))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}" if path else "")
    elif isinstance(node, list):
        for value in node:
            found += _walk(value, "")
    return found


def config_weights(resolved: dict[str, Any]) -> list[WeightsNeed]:
    """The weights one resolved config's model loads at construction.

    A seglit model with ``pretrained: true`` loads its ``backbone``'s torchvision weights
    (DeepLab v1 has no ``backbone`` argument: VGG16); an smp model loads its encoder's
    ``encoder_weights``.
    """
    needs = []
    for _path, init in _walk(resolved.get("model", {})):
        if init.get("pretrained") is True:
            backbone = init.get("backbone", "vgg16")
            need = torchvision_need(backbone) if isinstance(backbone, str) else None
        elif "encoder_weights" in init and isinstance(init.get("encoder"), str):
            need = smp_need(init["encoder"], init["encoder_weights"])
        else:
            need = None
        if need is not None:
            needs.append(need)
    return needs


def without_weights(config: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of ``config`` whose models load no pretrained weights: built before the fetch,
    it names a model that cannot be built, without downloading anything.

    The weights are found in ``resolved`` (a class's default included, as
    :func:`config_weights` finds them) and switched off in the copy (``pretrained: false``,
    ``encoder_weights: null``).

    Returns:
        The copy, or ``None`` when a block that loads weights cannot be located in
        ``config`` (e.g. a class given by name only): that variant is built after the fetch.
    """
    copy = deepcopy(config)
    for path, init in _walk(resolved.get("model", {}), "model"):
        off = {}
        if init.get("pretrained") is True:
            off["pretrained"] = False
        if init.get("encoder_weights") is not None:
            off["encoder_weights"] = None
        if not off:
            continue
        block = get_dotted(copy, path) if path else None
        if not isinstance(block, dict) or "class_path" not in block:
            return None
        block.setdefault("init_args", {}).update(off)
    return copy


def needed_weights(plans: list[Any]) -> list[WeightsNeed]:
    """The weight files the variants of ``plans`` need, each once, with its variants.

    Args:
        plans: :class:`~seglit.runner.plan.VariantPlan` objects (their ``resolved`` config).
    """
    found: dict[str, WeightsNeed] = {}
    for plan in plans:
        for need in config_weights(plan.resolved):
            key = f"{need.kind}:{need.url}"
            entry = found.setdefault(key, need)
            if plan.name not in entry.variants:
                entry.variants.append(plan.name)
    return list(found.values())


def missing_weights(plans: list[Any]) -> list[WeightsNeed]:
    """:func:`needed_weights` that are not cached yet."""
    return [need for need in needed_weights(plans) if not need.cached]


def _lock_path() -> Path:
    import torch

    folder = Path(torch.hub.get_dir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / WEIGHTS_LOCK


def fetch_weights(needs: list[WeightsNeed], say: Callable[[str], None] = print) -> int:
    """Download every need that is not cached, once, holding a lock in the hub folder.

    A second runner (or array task) that reaches the lock waits for the first and then
    finds the files cached.

    Returns:
        How many files were downloaded.

    Raises:
        FetchError: A download failed (one line: the file, the reason, the way out).
    """
    from filelock import FileLock

    missing = [need for need in needs if not need.cached]
    if not missing:
        return 0
    fetched = 0
    with FileLock(str(_lock_path())):
        for need in missing:
            if need.path is not None and need.path.is_file():
                continue  # fetched by another runner while this one waited for the lock
            say(f"fetching {need.describe()} from {need.url}")
            try:
                assert need.fetch is not None
                path = need.fetch()
            except Exception as err:
                raise FetchError(_fetch_failure(need, err)) from None
            if isinstance(path, (str, Path)):  # where the Hub cache put it
                need.path = Path(path)
            fetched += 1
    return fetched


def _fetch_failure(need: WeightsNeed, err: BaseException) -> str:
    reason = " ".join(str(err).split()) or type(err).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    where = need.path if need.path is not None else "the Hugging Face Hub cache"
    return (
        f"cannot fetch {need.describe()} from {need.url} ({reason}). "
        f"Without internet here, run the same command on a machine with internet (a login "
        f"node) first, or copy the file to {where} (TORCH_HOME / HF_HOME move the caches)"
    )


# -------------------------------------------------------------------------------- datasets


def dataset_name(resolved: dict[str, Any]) -> str | None:
    """The ``python -m seglit.data prepare`` dataset of a config (``None``: not preparable)."""
    class_path = str((resolved.get("data") or {}).get("class_path", ""))
    short = class_path.rsplit(".", 1)[-1].lower()
    if "synthetic" in short:
        return None
    if "voc" in short:
        return "voc"
    if "cityscapes" in short:
        return "cityscapes"
    return None


def download_data(resolved: dict[str, Any], say: Callable[[str], None] = print) -> bool:
    """Run ``python -m seglit.data prepare NAME --root ROOT --download`` for a config's data
    (VOC, and SBD too for the ``trainaug`` split). Cityscapes needs a login: not here.

    Returns:
        Whether something was prepared.

    Raises:
        FetchError: The download or the preparation failed.
    """
    import argparse

    from seglit.data.__main__ import _prepare
    from seglit.data.download import DownloadError

    name = dataset_name(resolved)
    init = (resolved.get("data") or {}).get("init_args") or {}
    root = init.get("root")
    if name != "voc" or not root:
        return False
    datasets = ["voc"]
    if "trainaug" in str(init.get("train_split", "")):
        datasets.append("sbd")
    Path(root).mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        say(f"preparing {dataset} in {root}: python -m seglit.data prepare {dataset} --download")
        args = argparse.Namespace(dataset=dataset, root=root, download=True)
        try:
            code = _prepare(args)
        except (DownloadError, OSError) as err:
            raise FetchError(f"cannot prepare {dataset} in {root}: {err}") from None
        if code:
            raise FetchError(f"python -m seglit.data prepare {dataset} --root {root} failed")
    return True


# --------------------------------------------------------------------------- the runner's step


def fetch_before_start(
    plans: list[Any], fetching: bool, download: bool, problems: list[str], console: Any
) -> list[WeightsNeed]:
    """The runner's fetch step, before any variant is checked, trained or submitted.

    Weights the unfinished variants need and that are not cached are fetched once (or, with
    ``fetching`` off, as in ``--dry-run``, listed as problems); with ``download``, missing
    VOC roots are prepared.

    Args:
        plans: The variants of this call (finished ones need nothing).
        fetching: Download what is missing (``False``: only list it).
        download: Prepare missing datasets (``--download``).
        problems: The runner's problem list: one line per missing file or failed fetch.
        console: Where progress lines go (``console.line``).

    Returns:
        The weights still missing: the model build of their variants fails for the same
        reason, and :func:`drop_covered` keeps those lines out of ``problems``.
    """
    from seglit.run_folder import FINISHED

    todo = [plan for plan in plans if plan.status != FINISHED]
    missing = missing_weights(todo)
    if not fetching:
        problems += [need.problem() for need in missing]
        return missing
    try:
        fetch_weights(missing, console.line)
        if download:
            _download_missing_data(todo, console.line)
    except FetchError as err:
        problems.append(str(err))
    return [need for need in missing if not need.cached]


def _download_missing_data(plans: list[Any], say: Callable[[str], None]) -> None:
    from seglit.data.voc import voc_dir

    done: set[str] = set()
    for plan in plans:
        init = (plan.resolved.get("data") or {}).get("init_args") or {}
        root = init.get("root")
        if dataset_name(plan.resolved) != "voc" or not root or str(root) in done:
            continue
        done.add(str(root))
        if not voc_dir(Path(root)).is_dir():
            download_data(plan.resolved, say)


def drop_covered(problems: list[str], missing: list[WeightsNeed]) -> None:
    """Remove the model builds' "not in the torch hub cache" errors of the weights that
    ``missing`` already names (one line per file instead of one error per variant)."""
    files = [need.path.name for need in missing if need.path is not None]
    problems[:] = [
        p
        for p in problems
        if not ("not in the torch hub cache" in p and any(f in p for f in files))
    ]
