"""Fetching and unpacking dataset archives (no torch: the data command line starts fast)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    """A download failed (no network, bad URL, wrong checksum)."""


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (skipped if ``dest`` exists with the right checksum).

    Raises:
        DownloadError: the server cannot be reached or the checksum does not match.
    """
    if dest.is_file() and (md5 is None or file_md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"cannot download {url}: {reason}. Without network access, fetch it elsewhere, put "
            f"it at {dest} and run prepare again without --download"
        ) from None
    if md5 is not None and (actual := file_md5(partial)) != md5:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{url} downloaded with md5 {actual}, expected {md5}")
    os.replace(partial, dest)
    return dest


def file_md5(path: Path) -> str:
    """MD5 hex digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into ``dest`` (members outside ``dest`` are refused)."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
