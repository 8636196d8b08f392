"""Offline W&B runs on disk: the run files below a folder, and those not uploaded yet.

:func:`unsynced_runs` lists the offline runs ``wandb sync`` has not uploaded yet. (wandb
has no Python reader for its ``.wandb`` run files; the test suite's ``tests/wandb_records.py``
reads them back to check what runs logged.)
"""

from __future__ import annotations

from pathlib import Path

from seglit.run_folder.layout import ARCHIVE_DIR


def find_offline_runs(root: str | Path) -> list[Path]:
    """All offline ``.wandb`` run files below ``root``, oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"))


def unsynced_runs(root: str | Path) -> list[Path]:
    """The offline run folders below ``root`` that ``wandb sync`` has not uploaded.

    ``wandb sync`` leaves ``run-<id>.wandb.synced`` beside a run file it uploaded. Runs under
    an ``_archive/`` folder are left out: they belong to a configuration ``--rerun-changed``
    replaced, and carry the same name, group and tags as the runs that replaced it.
    """
    root = Path(root)
    return [
        path.parent
        for path in find_offline_runs(root)
        if not path.with_name(path.name + ".synced").exists()
        and ARCHIVE_DIR not in path.relative_to(root).parts
    ]
