"""``python -m seglit.data prepare|check|synthetic``: get, convert, verify and check datasets.

Examples::

    python -m seglit.data prepare voc --root data/ --download
    python -m seglit.data prepare sbd --root data/ --download    # + trainaug split
    python -m seglit.data prepare cityscapes --root data/cityscapes
    python -m seglit.data check voc --root data/
    python -m seglit.data synthetic cityscapes --root /tmp/synth
    python -m seglit.data synthetic voc --root /tmp/lab --fine-structure 1 --context 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seglit.data.download import DownloadError, download, extract
from seglit.data.synthetic import write_synthetic_cityscapes, write_synthetic_voc
from seglit.data.synthetic_lab import CONTEXT_CUE_SHARE, FAR_CUE_DISTANCE, LAB_FACTORS
from seglit.text import plural


def _prepare(args: argparse.Namespace) -> int:
    from seglit.data import prepare  # the dataset readers import torch: only when used
    from seglit.data.voc import SBD_DIR, voc_dir

    root = Path(args.root)
    if args.dataset == "voc":
        archive = root / "VOCtrainval_11-May-2012.tar"
        if args.download:
            download(prepare.VOC_URL, archive, prepare.VOC_MD5)
        if archive.is_file() and not voc_dir(root).is_dir():
            extract(archive, root)
        problems = prepare.verify_voc(root)
    elif args.dataset == "sbd":
        archive = root / "benchmark.tgz"
        if args.download:
            download(prepare.SBD_URL, archive, prepare.SBD_MD5)
        if archive.is_file() and not (root / SBD_DIR).is_dir():
            extract(archive, root)
        print(f"converted {prepare.convert_sbd(root)} SBD masks to PNG")
        ids = prepare.make_trainaug(root)
        print(f"wrote trainaug.txt with {len(ids)} ids")
        problems = []
        if len(ids) != prepare.TRAINAUG_SIZE:
            problems.append(f"trainaug has {len(ids)} ids, expected {prepare.TRAINAUG_SIZE}")
    else:
        if args.download:
            print(prepare.CITYSCAPES_HOWTO.replace("ROOT", str(root)), file=sys.stderr)
            return 2
        print(f"wrote {prepare.convert_cityscapes(root)} labelTrainIds files")
        problems = prepare.verify_cityscapes(root)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dataset} at {root}: ok")
    return 0


def _check(args: argparse.Namespace) -> int:
    from seglit.data import prepare

    counts, problems = prepare.check_dataset(args.dataset, args.root, args.num_classes)
    for split, count in counts.items():
        print(f"{split}: {count} samples read")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"{plural(len(problems), 'problem')} in {args.root}", file=sys.stderr)
        return 1
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    writer = write_synthetic_voc if args.dataset == "voc" else write_synthetic_cityscapes
    root = writer(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        min_size=args.min_size,
        max_size=args.max_size,
        overwrite=args.overwrite,
        fine_structure=args.fine_structure,
        context=args.context,
        scale_variation=args.scale_variation,
        context_cue_share=args.context_cue_share,
        far_cue=args.far_cue,
        cue_distance=args.cue_distance,
    )
    print(f"synthetic {args.dataset} data in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m seglit.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="download (where allowed), convert and verify")
    p.add_argument("dataset", choices=["voc", "sbd", "cityscapes"])
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--download", action="store_true", help="download the archive first")
    p.set_defaults(run=_prepare)

    p = commands.add_parser("check", help="read every sample of every split")
    p.add_argument("dataset", choices=["voc", "cityscapes"])
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--num-classes", type=int, default=None, help="VOC: classes (default 21)")
    p.set_defaults(run=_check)

    p = commands.add_parser("synthetic", help="write the synthetic dataset in a real layout")
    p.add_argument("dataset", choices=["voc", "cityscapes"])
    p.add_argument("--root", required=True, help="output root")
    p.add_argument("--num-train", type=int, default=160)
    p.add_argument("--num-val", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-size", type=int, default=57, help="smallest image side (px)")
    p.add_argument("--max-size", type=int, default=131, help="largest image side (px)")
    for name, factor in LAB_FACTORS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"lab factor in [0, 1], 0 = off (default): {factor.stresses}",
        )
    p.add_argument(
        "--context-cue-share",
        type=float,
        default=CONTEXT_CUE_SHARE,
        metavar="S",
        help="with --context: share in (0.5, 1] of the background in the cue's colour family "
        f"(default {CONTEXT_CUE_SHARE}; 1 puts the cue next to every object)",
    )
    p.add_argument(
        "--cue-distance",
        type=int,
        default=FAR_CUE_DISTANCE,
        metavar="PX",
        help=f"with --far-cue: gap in px between a box and its band (default {FAR_CUE_DISTANCE})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace different existing data")
    p.set_defaults(run=_synthetic)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (errors print one line, no traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DownloadError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
