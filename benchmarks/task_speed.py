"""Wall time of `segtool run TASK INPUT...` on real inputs, each run its own process, against `segtool --version`.

    python benchmarks/task_speed.py spinal-gm ../shared/data/spinal-gm/t2s/t2s_uncropped.nii.gz [--repeats 5]
                                    [--threads 2] [-- extra segtool run options]

The two sides alternate (`segtool --version`, the start-up floor, then the run), each
repeated ``--repeats`` times in fresh processes with ``OMP_NUM_THREADS=--threads``;
the table gives the median wall time with min and max, and the median time left once
the start-up floor is taken away. Used for the issues' per-task time goals (e.g.
spinal-gm: under 5 s for t2s_uncropped on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # what follows `--` goes to segtool run as it is
    args, extra = parser.parse_known_args(argv[:cut])
    extra += argv[cut + 1:]
    missing = [p for p in args.inputs if not p.exists()]
    if missing:
        print(f"no such input: {', '.join(map(str, missing))} (is ../shared there?)", file=sys.stderr)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    segtool = [sys.executable, "-m", "segtool"]
    floor, runs = [], []
    with tempfile.TemporaryDirectory() as out:
        command = [*segtool, "run", args.task, *map(str, args.inputs), "--output-dir", out, "--overwrite", "-q", *extra]
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)  # warm the page cache
        for _ in range(args.repeats):
            floor.append(timed([*segtool, "--version"], env))
            runs.append(timed(command, env))
    med = statistics.median
    print(f"| command | median s | min | max |\n|---|---|---|---|")
    print(f"| segtool --version | {med(floor):.2f} | {min(floor):.2f} | {max(floor):.2f} |")
    names = " ".join(p.name for p in args.inputs)
    print(f"| segtool run {args.task} {names} | {med(runs):.2f} | {min(runs):.2f} | {max(runs):.2f} |")
    print(f"\n{args.threads} thread(s), {args.repeats} repeats; run minus start-up floor (median): "
          f"{med(runs) - med(floor):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
