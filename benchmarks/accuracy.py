"""Accuracy of segtool's models on real data, next to published reference models.

    python benchmarks/accuracy.py TASK [options]          (python benchmarks/accuracy.py TASK --help)

    python benchmarks/accuracy.py spinal-gm [--data DIR] [--model-dir DIR] [--published challenge,large] [--json F]
    python benchmarks/accuracy.py brain-tumour-2d [--data DIR] [--model-dir DIR ...] [--patients A,B] [--run-args '...']
    python benchmarks/accuracy.py brain-tumour [--cv NAME=DIR,DIR,DIR,DIR] [--model-dir DIR ...]
    python benchmarks/accuracy.py brain-tissue [--data DIR] [--model NAME | --model-dir DIR ...] [--json F]
    python benchmarks/accuracy.py disc [--model-dir DIR ...] [--loso NAME=DIR,DIR,DIR] [--partial-fov]
    python benchmarks/accuracy.py clothing [--model-dir DIR ...] [--photos A,B | @FILE] [--run-args=...]

This file only dispatches: each task's benchmark is its own module, whose docstring says
what it measures and how (accuracy_spinal_gm.py, accuracy_lgg.py for brain-tumour-2d,
accuracy_brain_tumour.py, accuracy_brain_tissue.py, accuracy_disc.py,
accuracy_clothing.py); accuracy_common.py runs ``segtool run`` and reads model folders.
Every Dice, IoU and precision comes from `segtool.metrics`. Another task is one more
module and one more entry in `TASKS`.

Each task exits with a message (status 0) when its data folder is absent, and says
"no model" for a model column when ``segtool run`` exits 3 (no weights).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NamedTuple

# run as a file (python benchmarks/accuracy.py): its folder is on sys.path, the task modules import by name
from accuracy_brain_tissue import add_brain_tissue_arguments, brain_tissue
from accuracy_brain_tumour import add_brain_tumour_arguments, brain_tumour
from accuracy_clothing import add_clothing_arguments, clothing
from accuracy_disc import add_disc_arguments, disc
from accuracy_lgg import add_brain_tumour_2d_arguments, brain_tumour_2d
from accuracy_spinal_gm import add_spinal_gm_arguments, spinal_gm


class Benchmark(NamedTuple):
    """One task's accuracy benchmark: the function that runs it (parsed arguments -> exit status) and the one
    that adds its options to its subcommand."""

    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None]


#: task -> its benchmark
TASKS: dict[str, Benchmark] = {
    "spinal-gm": Benchmark(spinal_gm, add_spinal_gm_arguments),
    "brain-tumour-2d": Benchmark(brain_tumour_2d, add_brain_tumour_2d_arguments),
    "disc": Benchmark(disc, add_disc_arguments),
    "clothing": Benchmark(clothing, add_clothing_arguments),
    "brain-tissue": Benchmark(brain_tissue, add_brain_tissue_arguments),
    "brain-tumour": Benchmark(brain_tumour, add_brain_tumour_arguments),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, benchmark in TASKS.items():
        doc = sys.modules[benchmark.run.__module__].__doc__ or benchmark.run.__doc__ or ""
        p = sub.add_parser(name, help=f"benchmark {name}", description=doc.split("\n\n")[0],
                           epilog=f"(benchmarks/{benchmark.run.__module__}.py)")
        benchmark.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return TASKS[args.task].run(args)


if __name__ == "__main__":
    sys.exit(main())
