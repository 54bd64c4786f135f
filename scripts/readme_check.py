"""Run every command of README.md as written, in order, in one temporary folder.

    python scripts/readme_check.py [--readme README.md] [--keep DIR]     (`make readme-check`)

Each ```bash block runs in ``bash -euo pipefail``, each ```python block with this Python,
all in the same folder, one after another, with this interpreter's folder first on PATH (the
``segtool`` installed beside it) and ``HF_HUB_OFFLINE=1`` (every built-in model is bundled).
A comment just above a block changes how it runs:

    <!-- readme-check: skip (REASON) -->     not run (installs, training, the test suite); REASON required
    <!-- readme-check: env NAME=VALUE ... --> run with these variables set (a SLURM script's array index)

Inputs the README names but segtool does not bundle (a FLAIR and T1c pair, LGG slices, a disc
T2, a T1, a small BIDS cohort) are written as synthetic stand-ins
(:data:`STAND_INS`) just before the first block that names them: the check proves the
commands run as written, not what they segment. Exit status 0 when every block succeeds,
1 at the first block that fails (its command and output are printed), 2 for a malformed README.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RUN_LANGUAGES = ("bash", "python")
_MARKER = re.compile(r"<!--\s*readme-check:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```([\w+-]*)\s*$")


class ReadmeError(ValueError):
    """The README cannot be checked as written (a malformed marker or fence)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README and how the check treats it."""

    language: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None = None  # the reason, when marked skip
    env: dict[str, str] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.skip is None


def parse_marker(text: str, line: int) -> tuple[str | None, dict[str, str]]:
    """``skip (reason)`` or ``env A=1 B=2`` -> (skip reason, env)."""
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "skip":
        reason = rest.strip("()").strip()
        if not reason:
            raise ReadmeError(f"README line {line}: 'readme-check: skip' needs a reason in parentheses")
        return reason, {}
    if word == "env":
        pairs = rest.split()
        if not pairs or any("=" not in pair or pair.startswith("=") for pair in pairs):
            raise ReadmeError(f"README line {line}: 'readme-check: env' needs NAME=VALUE pairs, got {rest!r}")
        return None, dict(pair.split("=", 1) for pair in pairs)
    raise ReadmeError(f"README line {line}: unknown readme-check marker {text!r} (skip or env)")


def extract_blocks(text: str) -> list[Block]:
    """Every fenced block, in order, with the marker of the comment just above it (blank lines allowed)."""
    blocks: list[Block] = []
    lines = text.split("\n")
    pending: tuple[str | None, dict[str, str]] | None = None
    i = 0
    while i < len(lines):
        marker, fence = _MARKER.search(lines[i]), _FENCE.match(lines[i])
        if marker:
            pending = parse_marker(marker.group(1), i + 1)
        elif fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ReadmeError(f"README line {i + 1}: code block never closed")
            skip, env = pending or (None, {})
            blocks.append(Block(fence.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1, skip, env))
            pending, i = None, end
        elif lines[i].strip():
            pending = None  # a marker belongs to the block right below it
        i += 1
    return blocks


# ---------------------------------------------------------------- stand-in inputs


def _volume(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int):
    """A float32 volume with a bright ellipsoid and noise: something to segment, not a constant."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum(g ** 2 for g in grid) < 0.4
    data = rng.normal(100.0, 10.0, shape) + 300.0 * inside
    return data.astype(np.float32), np.diag([*spacing, 1.0])


def write_nifti(path: Path, shape, spacing, seed: int) -> None:
    import nibabel as nib

    data, affine = _volume(shape, spacing, seed)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _lgg_patient(folder: Path) -> None:
    """Three 256x256 RGB TIFF slices named as the Kaggle LGG set names them."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in (1, 2, 3):
        data, _ = _volume((256, 256), (1.0, 1.0), seed=k)
        rgb = np.clip(np.stack([data] * 3, axis=-1) / 2, 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{folder.name}_{k}.tif")


def _example_t2s() -> Path:
    from segtool.examples import example_for

    return example_for("spinal-gm").paths()[0]


def _bids_cohort(data: Path) -> None:
    """data/sub-01 and sub-02, each with the bundled T2* as anat/sub-XX_T2starw.nii.gz."""
    for subject in ("sub-01", "sub-02"):
        anat = data / subject / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_example_t2s(), anat / f"{subject}_T2starw.nii.gz")


#: name the README uses -> what writes it (a path relative to the check's folder).
STAND_INS: dict[str, Callable[[Path], None]] = {
    "flair.nii.gz": lambda p: write_nifti(p, (48, 48, 32), (1.5, 1.5, 1.5), seed=1),
    "t1c.nii.gz": lambda p: write_nifti(p, (48, 48, 32), (1.5, 1.5, 1.5), seed=2),
    "t1.nii.gz": lambda p: write_nifti(p, (64, 64, 24), (1.0, 1.0, 1.0), seed=3),
    "t2.nii.gz": lambda p: write_nifti(p, (12, 96, 96), (4.0, 1.0, 1.0), seed=4),
    "TCGA_CS_4942_19970222": _lgg_patient,
    "data": _bids_cohort,
}


def write_stand_ins(code: str, folder: Path, log: Callable[[str], None]) -> None:
    """Write the stand-ins that ``code`` names and ``folder`` does not hold yet."""
    for name, make in STAND_INS.items():
        target = folder / name
        if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", code) and not target.exists():
            make(target)
            log(f"  stand-in: {name}")


# ---------------------------------------------------------------- running


def command_for(block: Block, folder: Path) -> list[str]:
    if block.language == "bash":
        return ["bash", "-euo", "pipefail", "-c", block.code]
    script = folder / f".readme_block_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    return [sys.executable, str(script)]


def run_blocks(blocks: list[Block], folder: Path, log: Callable[[str], None] = print) -> int:
    """Run the blocks that run, in order, in ``folder``; 0, or 1 at the first failure."""
    base = dict(os.environ, HF_HUB_OFFLINE="1")
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    for block in blocks:
        if block.language not in RUN_LANGUAGES:
            continue
        if block.skip is not None:
            log(f"README line {block.line}: skipped ({block.skip})")
            continue
        log(f"README line {block.line}: {block.language}, {len(block.code.splitlines())} line(s)")
        write_stand_ins(block.code, folder, log)
        start = time.perf_counter()
        result = subprocess.run(command_for(block, folder), cwd=folder, env=dict(base, **block.env),
                                capture_output=True, text=True)
        log(f"  exit {result.returncode} in {time.perf_counter() - start:.1f} s")
        if result.returncode != 0:
            log(f"README line {block.line} failed:\n{block.code}--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--keep", type=Path, help="run in this folder (created) and keep it, instead of a temporary one")
    args = parser.parse_args(argv)
    try:
        blocks = extract_blocks(args.readme.read_text(encoding="utf-8"))
    except (OSError, ReadmeError) as error:
        print(f"readme-check: error: {error}", file=sys.stderr)
        return 2
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run_blocks(blocks, args.keep)
    with tempfile.TemporaryDirectory(prefix="readme-check-") as folder:
        status = run_blocks(blocks, Path(folder))
    print("readme-check: every command ran" if status == 0 else "readme-check: FAILED", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
