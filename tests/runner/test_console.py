"""The runner's console: the live line in a terminal and as periodic lines in a log."""

from __future__ import annotations

import io

from seglit.runner.console import Console, progress_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_text_says_where_a_variant_is_and_when_it_ends():
    progress = {
        "epoch": 2,
        "max_epochs": 8,
        "step": 60,
        "total_steps": 160,
        "loss": 0.41234,
        "val_mIoU": 0.83121,
        "elapsed_s": 30.0,
    }
    assert progress_text(progress, 31.4) == (
        "epoch 3/8, step 60/160, loss 0.412, val mIoU 0.8312, 31s, ETA 50s"
    )
    assert progress_text(None, 3.2) == "starting, 3s"  # nothing reported yet: the elapsed time
    assert progress_text({**progress, "val_mIoU": None}, 75).startswith("epoch 3/8, step 60/160")


def test_in_a_terminal_the_live_line_is_redrawn_in_place():
    screen = Terminal()
    console = Console(screen)
    console.live("[1/2] a: epoch 1/8, 3s")
    console.live("[1/2] a: epoch 2/8, 6s")
    console.line("[1/2] a: done in 12.0s, val mIoU 0.9000")
    text = screen.getvalue()
    assert text.count("\r[1/2] a: epoch") == 2 and "\n" not in text.split("[1/2] a: done")[0]
    assert text.endswith("[1/2] a: done in 12.0s, val mIoU 0.9000\n")


def test_without_a_terminal_the_live_line_is_printed_every_interval():
    log = io.StringIO()
    console = Console(log, interval_s=0.0)
    console.live("[1/1] a: epoch 1/8, 3s")
    console.live("[1/1] a: epoch 2/8, 6s")
    assert log.getvalue().splitlines() == ["[1/1] a: epoch 1/8, 3s", "[1/1] a: epoch 2/8, 6s"]
    quiet = io.StringIO()
    Console(quiet, interval_s=3600).live("[1/1] a: epoch 1/8, 3s")
    assert quiet.getvalue() == ""  # not before the interval
