"""Tasks with predictable one-convolution models for tests of `segtool run`'s extra outputs
(--statistics, --stats, --bids): a 3D single-label task, a 3D two-channel three-class task and the
clothing photo task, each with a model folder for --model-dir."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from tiny_task import app_with, make_spec, one_conv, write_model_folder

#: voxels of 1 x 1 x 2 mm (2 mm³), LPS
LPS = np.array([[-1.0, 0, 0, 10], [0, -1.0, 0, 20], [0, 0, 2.0, -5], [0, 0, 0, 1]])


def save_nifti(path: Path, data, affine=LPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), path)
    return path


def bright_cube(low: float = 100.0, high: float = 300.0) -> np.ndarray:
    """12 x 10 x 6 zeros with a 5 x 5 x 3 cube (75 voxels): 45 of ``low`` (x 3..5), 30 of ``high`` (x 6..7)."""
    data = np.zeros((12, 10, 6), dtype=np.float32)
    data[3:8, 2:7, 1:4] = low
    data[6:8, 2:7, 1:4] = high  # 2 x 5 x 3 = 30 voxels of high, 45 of low
    return data


def tiny_folder(folder: Path):
    """The 3D one-label task ``tiny`` (bright voxels -> label 1 ``bright``) and its model folder."""
    spec = make_spec("tiny")
    write_model_folder(folder, spec)
    return spec


def two_label_folder(folder: Path):
    """A two-channel (flair, t1c) 3D task ``duo3``: bright flair -> 1 ``oedema``, bright t1c -> 2 ``core``."""
    from safetensors.torch import save_file
    import torch

    from segtool.model_config import ModelConfig

    spec = make_spec("duo3", channels=("flair", "t1c"), labels={1: "oedema", 2: "core"})
    folder.mkdir(parents=True, exist_ok=True)
    weight = torch.zeros((3, 2, 1, 1, 1))
    weight[1, 0], weight[2, 1] = 8.0, 8.0
    save_file({"weight": weight, "bias": torch.zeros(3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")
    return spec


def two_label_images(folder: Path, stem: str) -> tuple[Path, Path]:
    """flair 50 in x 1..3, t1c 80 in x 7..9 (each 3 x 4 x 2 = 24 voxels); files ``<stem>_flair/_t1c``."""
    flair = np.zeros((12, 10, 6), dtype=np.float32)
    t1c = np.zeros((12, 10, 6), dtype=np.float32)
    flair[1:4, 2:6, 2:4] = 50.0
    t1c[7:10, 2:6, 2:4] = 80.0
    t1c[1:4, 2:6, 2:4] = 5.0  # a little t1c inside the oedema: its mean there is 5
    return (save_nifti(folder / f"{stem}_flair.nii.gz", flair), save_nifti(folder / f"{stem}_t1c.nii.gz", t1c))


def skin_photo_folder(folder: Path, factory=None):
    """The clothing task with a one-conv network (bright -> skin 2, dark -> background; built by ``factory``,
    default `one_conv`) at 32 x 24, and its model folder."""
    import torch
    from safetensors.torch import save_file

    from segtool.app import App
    from segtool.model_config import ModelConfig

    spec = replace(App().registry.get("clothing"), network=None, model_factory=factory or one_conv, model_kwargs={},
                   input_size=(32, 24), patch_size=(32, 24), models={}, default_model=None)
    folder.mkdir(parents=True, exist_ok=True)
    weight, bias = torch.zeros((14, 3, 1, 1)), torch.zeros(14)
    weight[2], bias[0] = 8.0 / 3, 1.0
    save_file({"weight": weight, "bias": bias}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")
    return spec


def block_photo(path: Path, rows: int, cols: int, top: int, left: int, size: int, colour=(240, 200, 160)) -> Path:
    """A dark (20, 30, 40) photo with a bright ``size`` x ``size`` block of ``colour``."""
    from PIL import Image

    rgb = np.empty((rows, cols, 3), np.uint8)
    rgb[:] = (20, 30, 40)
    rgb[top : top + size, left : left + size] = colour
    Image.fromarray(rgb).save(path)
    return path


def run_cli(spec, args, **kwargs):
    from segtool.cli import cli

    return CliRunner().invoke(cli, ["run", spec.name, *map(str, args)], obj=app_with(spec), **kwargs)
