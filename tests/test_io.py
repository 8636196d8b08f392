"""Atomic writes: a file is replaced whole or not at all."""

from __future__ import annotations

import json

import pytest

from seglit.io import atomic_file, atomic_write_text, read_json, write_json


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_json_round_trip_writes_nan_as_null_and_names_a_garbled_file(tmp_path):
    path = tmp_path / "x.json"
    assert read_json(path) is None
    write_json(path, {"a": float("nan"), "b": [1.5, float("nan")]})
    assert read_json(path) == {"a": None, "b": [1.5, None]}
    assert path.read_text().endswith("\n") and json.loads(path.read_text())["a"] is None
    path.write_text("{garbled")
    with pytest.raises(ValueError, match="x.json is not valid JSON"):
        read_json(path)
