"""The fetch step: weights fetched once (checksummed, under a lock) before any variant
starts; listed by ``--dry-run``; one clear line offline. A file server on 127.0.0.1 stands
in for download.pytorch.org: no test reaches the network."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path

import pytest
import torch
import yaml

from seglit.fit import main
from seglit.runner.fetch import (
    FetchError,
    WeightsNeed,
    config_weights,
    fetch_weights,
    needed_weights,
    torchvision_need,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def weights_server(tmp_path):
    """A file server on 127.0.0.1 serving a tiny state dict named as torch hub names files
    (``<name>-<sha256 prefix>.pth``); ``server.requests`` counts the downloads."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(4.0)}, buffer)
    payload = buffer.getvalue()
    name = f"tiny-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    served = tmp_path / "served"
    served.mkdir()
    (served / name).write_bytes(payload)
    (served / "tiny-00000000.pth").write_bytes(payload)  # a name whose hash does not match

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server's name)
            server.requests += 1
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.file = name
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _need(url: str, cache: Path, name: str) -> WeightsNeed:
    """A torchvision-style need fetched with torch hub's checksummed download."""

    def fetch():
        torch.hub.load_state_dict_from_url(
            f"{url}/{name}", model_dir=str(cache), progress=False, check_hash=True
        )

    return WeightsNeed("torchvision", "tiny", f"{url}/{name}", cache / name, ["a", "b"], fetch)


def test_fetch_downloads_once_under_a_lock(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    needs = [_need(weights_server.url, cache, weights_server.file) for _ in range(3)]
    lines: list[str] = []
    threads = [
        threading.Thread(target=fetch_weights, args=([need], lines.append)) for need in needs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert weights_server.requests == 1  # three runners, one download
    assert len(lines) == 1 and "tiny-" in lines[0] and "for 2 variants" in lines[0]
    assert torch.load(cache / weights_server.file)["weight"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert fetch_weights(needs, lines.append) == 0  # cached: nothing to do


def test_fetch_checks_the_hash_and_fails_in_one_line(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(FetchError) as bad:
        fetch_weights([_need(weights_server.url, cache, "tiny-00000000.pth")], print)
    assert "hash" in str(bad.value) and "\n" not in str(bad.value)
    assert not (cache / "tiny-00000000.pth").exists()
    weights_server.shutdown()
    weights_server.server_close()  # offline from here on
    with pytest.raises(FetchError) as offline:
        fetch_weights([_need(weights_server.url, cache, weights_server.file)], print)
    message = str(offline.value)
    assert "\n" not in message
    assert f"cannot fetch torchvision's ImageNet weights {weights_server.file}" in message
    assert str(cache / weights_server.file) in message  # where to copy it


def test_torchvision_weights_go_through_torchvision(monkeypatch):
    calls = []

    def get_state_dict(self, *args, **kwargs):
        calls.append((self.url, kwargs))
        return {}

    import torchvision.models as tvm

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", get_state_dict)
    need = torchvision_need("resnet18")
    assert need.path.name == "resnet18-f37072fd.pth" and not need.cached
    need.fetch()
    assert calls == [(need.url, {"progress": False, "check_hash": True})]
    assert torchvision_need("xception65") is None


def test_needed_weights_reads_the_resolved_configs():
    def config(class_path, **init):
        return {"model": {"net": {"class_path": class_path, "init_args": init}}}

    fcn = config("seglit.models.FCN8s", backbone="resnet50", pretrained=True)
    v1 = config("seglit.models.DeepLabV1", pretrained=True)
    smp = config("seglit.models.SMPModel", encoder="resnet34", encoder_weights="imagenet")
    none = config("seglit.models.SMPModel", encoder="resnet34", encoder_weights=None)
    assert [n.name for n in config_weights(fcn)] == ["resnet50"]
    assert [n.name for n in config_weights(v1)] == ["vgg16"]
    assert [(n.kind, n.url) for n in config_weights(smp)] == [
        ("smp", "hf://smp-hub/resnet34.imagenet")
    ]
    assert config_weights(none) == []

    class Plan:
        def __init__(self, name, resolved):
            self.name, self.resolved = name, resolved

    needs = needed_weights([Plan("a", fcn), Plan("b", fcn), Plan("c", v1)])
    assert [(n.name, n.variants) for n in needs] == [("resnet50", ["a", "b"]), ("vgg16", ["c"])]


def _pretrained_recipe(write_tiny_recipe, path: Path) -> Path:
    recipe = write_tiny_recipe(path)
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["net"] = {
        "class_path": "seglit.models.FCN8s",
        "init_args": {"backbone": "resnet18", "pretrained": True},
    }
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    return recipe


def test_dry_run_lists_missing_weights_once(tmp_path, write_tiny_recipe, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    recipe = _pretrained_recipe(write_tiny_recipe, tmp_path / "recipe.yaml")
    assert main([str(recipe), "--dry-run", "--out", str(tmp_path / "runs")]) == 2
    out, err = capsys.readouterr()
    assert "sum:" in out and "concat:" in out  # every variant, then the problems
    assert len(err.strip().splitlines()) == 1, err  # one line for the file, not one per variant
    assert "resnet18-f37072fd.pth" in err
    assert "for 2 variants" in err and "not in the torch hub cache" not in err


def test_offline_fetch_stops_before_training(tmp_path, write_tiny_recipe, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision.models as tvm

    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", offline)
    recipe = _pretrained_recipe(write_tiny_recipe, tmp_path / "recipe.yaml")
    out_dir = tmp_path / "runs"
    assert main([str(recipe), "--out", str(out_dir), "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # today's clear message, one line
    assert lines[0].startswith("seglit.fit: error: cannot fetch torchvision's ImageNet weights")
    assert "Temporary failure in name resolution" in lines[0]
    assert not (out_dir / "tiny_skip" / "_slurm").exists()  # nothing submitted
    assert not list(out_dir.rglob("config.yaml"))  # nothing started


@pytest.mark.filterwarnings("ignore:.*meta parameter")  # the model check builds on meta
def test_a_seeded_cache_needs_no_fetch(tmp_path, write_tiny_recipe, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision.models as tvm

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(tvm.resnet18().state_dict(), cache / "resnet18-f37072fd.pth")
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", pytest.fail)  # never called
    recipe = _pretrained_recipe(write_tiny_recipe, tmp_path / "recipe.yaml")
    assert main([str(recipe), "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    assert "2 variants valid" in capsys.readouterr().out


def test_real_recipe_dry_run_lists_every_variant_and_problem(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)  # no data/ here
    assert main([str(REPO / "recipes" / "compare_smp.yaml"), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) >= 3  # the variants
    assert "problems found" in err
    assert "resnet101-63fe2227.pth" in err and "resnet34-b627a593.pth" in err
    assert "hf://smp-hub/resnet34.imagenet" in err
    assert "data:" in err


def test_download_prepares_a_missing_voc_root_once(tmp_path, monkeypatch):
    import seglit.data.__main__ as data_cli
    from seglit.runner.fetch import fetch_before_start

    prepared = []

    def prepare(args):
        prepared.append((args.dataset, args.root, args.download))
        return 0

    monkeypatch.setattr(data_cli, "_prepare", prepare)

    class Plan:
        status = "pending"
        name = "v"

        def __init__(self, data):
            self.resolved = {"model": {}, "data": data}

    root = str(tmp_path / "voc")
    voc = {"class_path": "seglit.data.VOCDataModule",
           "init_args": {"root": root, "train_split": "trainaug"}}  # fmt: skip
    synthetic = {"class_path": "seglit.data.SyntheticVOCDataModule", "init_args": {"root": root}}
    plans = [Plan(voc), Plan(voc), Plan(synthetic)]

    class Console:
        def __init__(self):
            self.lines = []

        def line(self, text):
            self.lines.append(text)

    problems: list[str] = []
    fetch_before_start(plans, True, False, problems, Console())
    assert prepared == [] and problems == []  # without --download nothing is fetched
    console = Console()
    fetch_before_start(plans, True, True, problems, console)
    assert prepared == [("voc", root, True), ("sbd", root, True)]  # once per root
    assert problems == [] and "prepare voc --download" in console.lines[0]


@pytest.mark.parametrize(
    ("ablation", "reason"),
    [
        # the CLI parser refuses "bad" (the quick check cannot tell)
        ({"model.optimizer.init_args.momentum": {"ok": 0.9, "bad": "lots"}}, "lots"),
        # the parser takes both; FCN's constructor refuses the reference padding on ResNet-18
        ({"model.net.init_args.input_padding": {"ok": 0, "bad": 100}}, "input_padding=100"),
    ],
    ids=["parser", "model build"],
)
def test_a_refused_variant_is_named_before_anything_is_fetched(
    tmp_path, write_tiny_recipe, monkeypatch, capsys, ablation, reason
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision.models as tvm

    fetched = []
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", lambda *a, **k: fetched.append(a))
    recipe = _pretrained_recipe(write_tiny_recipe, tmp_path / "recipe.yaml")
    raw = yaml.safe_load(recipe.read_text())
    raw["ablation"] = ablation  # "ok" needs weights, "bad" is refused
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main([str(recipe), "--out", str(tmp_path / "runs")]) == 2
    assert fetched == []
    err = capsys.readouterr().err
    assert "variant bad" in err and reason in err  # the refused variant, with its reason
    assert "variant ok" not in err  # the valid variant: only its weights, listed
    assert "resnet18-f37072fd.pth" in err
    assert not list((tmp_path / "runs").rglob("config.yaml"))  # nothing started


def _net(init: dict | None = None, class_path: str = "seglit.models.FCN8s") -> dict:
    block = {"class_path": class_path}
    if init is not None:
        block["init_args"] = init
    return {"model": {"net": block}}


@pytest.mark.parametrize(
    ("config", "resolved", "expected"),
    [
        # stated in the config: switched off
        (_net({"pretrained": True}), _net({"pretrained": True}), _net({"pretrained": False})),
        # a class's default, seen only in the resolved config: switched off too
        (
            _net(None, "segmentation_models_pytorch.Unet"),
            _net({"encoder_weights": "imagenet"}, "segmentation_models_pytorch.Unet"),
            _net({"encoder_weights": None}, "segmentation_models_pytorch.Unet"),
        ),
        # nothing to switch off: the config as it is
        (_net({"pretrained": False}), _net({"pretrained": False}), _net({"pretrained": False})),
        # a block the config does not spell out: not located, built after the fetch
        ({"model": {"net": "FCN8s"}}, _net({"pretrained": True}), None),
    ],
)
def test_without_weights_switches_off_every_weight_load(config, resolved, expected):
    from seglit.runner.fetch import without_weights

    before = yaml.safe_dump(config)
    assert without_weights(config, resolved) == expected
    assert yaml.safe_dump(config) == before  # a copy: the variant's own config is untouched
