"""Model card CLI.

``python -m seglit.models`` lists the models and their knobs;
``python -m seglit.models describe NAME [--key value ...]`` prints parameter count, GFLOPs at
``--input-size``, output stride and theoretical receptive field. Knob values are parsed as
YAML (``--atrous_rates [6,12,18,24]``, ``--aux true``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import typing
from collections.abc import Sequence

import torch
import yaml

from seglit.models.card import describe_model
from seglit.models.registry import build_model, list_models, model_knobs, model_spec


def _knobs(name: str) -> list[str]:
    hints = typing.get_type_hints(model_spec(name).cls.__init__)
    lines = []
    for knob, p in model_knobs(name).items():
        ann = inspect.formatannotation(hints.get(knob, p.annotation))
        lines.append(f"    {knob}: {ann} = {p.default!r}")
    return lines


def list_text() -> str:
    """Text listing every model and its knobs."""
    out = []
    for name in list_models():
        out.append(f"{name}  (seglit.models.{model_spec(name).cls.__name__})")
        out += _knobs(name)
    return "\n".join(out)


def card_text(card: dict) -> str:
    """The model card as ``key: value`` lines (a global receptive field reads ``global``)."""
    lines = []
    for key, value in card.items():
        if key == "gflops":
            value = f"{value:.2f}"
        elif key == "params":
            value = f"{value:,} ({value / 1e6:.2f}M)"
        elif key == "receptive_field" and value is None:
            value = "global"
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _parse_knobs(items: Sequence[str]) -> dict:
    kwargs: dict = {}
    it = iter(items)
    for key in it:
        if not key.startswith("--"):
            raise ValueError(f"expected --key value, got {key!r}")
        key = key[2:].replace("-", "_")
        try:
            raw = next(it)
        except StopIteration:
            raise ValueError(f"missing value for --{key}") from None
        value = yaml.safe_load(raw)
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return kwargs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m seglit.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list models and knobs (default)")
    desc = sub.add_parser("describe", help="model card of one configuration", allow_abbrev=False)
    desc.add_argument("name", help=f"one of: {', '.join(list_models())}")
    # knobs are spelled as in Python (--base_width), so both spellings are accepted here too
    desc.add_argument("--num-classes", "--num_classes", dest="num_classes", type=int, default=21)
    desc.add_argument(
        "--input-size",
        "--input_size",
        dest="input_size",
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=("H", "W"),
    )
    desc.add_argument("--json", action="store_true", help="print JSON")
    args, rest = parser.parse_known_args(argv)
    if args.command in (None, "list"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        print(list_text())
        return 0
    try:
        kwargs = _parse_knobs(rest)
        with torch.device("meta"):  # shapes only: instant for any size, no memory
            model = build_model(args.name, args.num_classes, **kwargs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = describe_model(model, tuple(args.input_size))
    card = {"model": args.name, **kwargs, "input_size": list(args.input_size), **card}
    print(json.dumps(card, default=list) if args.json else card_text(card))
    return 0


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
