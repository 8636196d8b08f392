"""The runner's console: permanent lines, and one live progress line per running variant.

In a terminal the live line is redrawn in place (``\\r``); when the output is not a
terminal (a CI log, a SLURM output file), the same line is printed as a plain line every
``interval_s`` seconds instead.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from seglit.io import read_json


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_text(progress: dict[str, Any] | None, elapsed: float) -> str:
    """``epoch 3/8, step 60/160, loss 0.412, val mIoU 0.8312, 25s, ETA 41s`` (what is known)."""
    parts = [] if progress else ["starting"]
    if progress:
        epoch, epochs = progress.get("epoch"), progress.get("max_epochs")
        if epoch is not None:
            shown = min(epoch + 1, epochs) if epochs and epochs > 0 else epoch + 1
            parts.append(f"epoch {shown}/{epochs}" if epochs and epochs > 0 else f"epoch {shown}")
        step, total = progress.get("step"), progress.get("total_steps")
        if step is not None:
            parts.append(f"step {step}/{total}" if total else f"step {step}")
        if progress.get("loss") is not None:
            parts.append(f"loss {progress['loss']:.3f}")
        if progress.get("val_mIoU") is not None:
            parts.append(f"val mIoU {progress['val_mIoU']:.4f}")
    parts.append(_duration(elapsed))
    if progress and progress.get("step") and progress.get("total_steps"):
        trained = progress.get("elapsed_s") or 0.0
        left = trained * (progress["total_steps"] - progress["step"]) / progress["step"]
        parts.append(f"ETA {_duration(max(left, 0.0))}")
    return ", ".join(parts)


def read_progress(path: Path) -> dict[str, Any] | None:
    """A variant's ``progress.json`` (``None`` while it has none or it is being replaced)."""
    try:
        return read_json(path)
    except (ValueError, OSError):
        return None


class Console:
    """Prints the runner's lines; keeps a live line at the bottom.

    Args:
        stream: Where to print (default ``sys.stdout``).
        interval_s: Without a terminal, print the live line as a plain line this often.
    """

    def __init__(self, stream: TextIO | None = None, interval_s: float = 30.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s
        self._live_width = 0
        self._last_plain = time.monotonic()

    def line(self, text: str) -> None:
        """Print a permanent line (above the live line)."""
        self._clear()
        print(text, file=self.stream, flush=True)

    def live(self, text: str) -> None:
        """Show ``text`` as the live line (redrawn in a terminal, periodic otherwise)."""
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            shown = text[:width]
            self.stream.write("\r" + shown.ljust(self._live_width))
            self.stream.flush()
            self._live_width = len(shown)
        elif time.monotonic() - self._last_plain >= self.interval_s:
            self._last_plain = time.monotonic()
            print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty and self._live_width:
            self.stream.write("\r" + " " * self._live_width + "\r")
            self._live_width = 0
