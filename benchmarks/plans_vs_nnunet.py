"""nnU-Net v2's own plan beside segtool's planned training recipe, for the same training folder.

    python benchmarks/plans_vs_nnunet.py DATA_DIR --task TASK [--budget 30m] [--venv build/nnunet-venv]
                                         [--json] [--keep WORKDIR] [--save-nnunet-plans FILE]

nnU-Net is never a dependency of segtool: it lives in its own virtualenv (``--venv``, made on
first use: ``torch==2.13.0`` first so pip takes the CPU build, then ``nnunetv2==2.8.1`` with
torch pinned, or the resolver swaps in a newer CUDA torch for torchvision's sake).

1. DATA_DIR (a segtool training folder, `segtool.training.datasets`) becomes an nnU-Net raw
   dataset ``WORK/nnUNet_raw/Dataset990_TASK`` (an nnU-Net folder is linked as it is). Cases are
   read as ``segtool train`` reads them (`segtool.training.prepare.read_case`: the task's channels,
   labels renumbered by the task's default labels map or by dataset.json's names) and each
   channel is written as NIfTI with the case's affine. A 2D image becomes the pseudo-3D image
   nnU-Net's docs ask for: (1, H, W) as nnU-Net (SimpleITK) reads it, i.e. NIfTI voxels
   (W, H, 1), spacing 999 on the dummy axis.
2. In the venv: ``nnUNetv2_extract_fingerprint -d 990 -np 2 --no_pbar`` then
   ``nnUNetv2_plan_experiment -d 990`` (no preprocessing, no training).
3. ``segtool train TASK DATA_DIR -o WORK/segtool_plan --plan-only --json --plan auto --budget B``.
4. One markdown table (or ``--json``: both plans). nnU-Net's axes (reversed voxel order, then
   ``transpose_forward``) are put into segtool's: x, y, z after reorientation to the task's
   orientation for 3D tasks (when every case shares one orientation), rows, cols for 2D tasks.
   "·" marks an axis that is not resampled (a slice axis), "-" a value a plan does not give.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
NNUNET = "nnunetv2==2.8.1"
DATASET_ID = 990
DUMMY_SPACING = 999.0
#: nnU-Net's normalisation classes, shortened.
SCHEMES = {"ZScoreNormalization": "zscore", "CTNormalization": "ct", "NoNormalization": "none",
           "RescaleTo01Normalization": "rescale-0-1", "RGBTo0_1Normalization": "rgb-0-1"}
ROWS = ("median spacing (data)", "median shape (data)", "target spacing", "2D / 3D", "patch size", "network",
        "stages / features", "batch size", "normalisation")
LINES = ("RL", "AP", "SI")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- nnU-Net's venv


def ensure_venv(venv: Path) -> Path:
    """The venv's bin/ folder, with nnunetv2 installed in it (made and installed when missing)."""
    bin_dir = venv / "bin"
    if (bin_dir / "nnUNetv2_plan_experiment").is_file():
        return bin_dir
    if not (bin_dir / "python").exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    log(f"installing {TORCH} (CPU) then {NNUNET} into {venv} (a few minutes)")
    subprocess.run([*pip, TORCH], check=True, stdout=sys.stderr)
    subprocess.run([*pip, NNUNET, TORCH], check=True, stdout=sys.stderr)
    return bin_dir


# ----------------------------------------------------------------------------- conversion


def task_spec(name: str):
    from segtool.app import App

    return App(warn=log).registry.get(name)


def default_labels_map(spec, info) -> dict[int, int] | None:
    """What `segtool train` uses without --labels-map: the task's own map, else dataset.json's names."""
    from segtool.training.datasets import map_from_dataset_json

    return dict(spec.labels_map) if spec.labels_map else map_from_dataset_json(info, spec.labels)


def dataset_json(spec, num_training: int, file_ending: str, info: dict | None = None) -> dict:
    """nnU-Net v2's dataset.json: ``info``'s keys where given, else the task's channels and labels."""
    out = dict(info or {})
    out.setdefault("channel_names", {str(i): name for i, name in enumerate(spec.channels)})
    out.setdefault("labels", {"background": 0, **{name: int(value) for value, name in sorted(spec.labels.items())}})
    out["numTraining"] = num_training
    out["file_ending"] = file_ending
    return out


def nifti_of(array, affine, ndim: int, dtype):
    """One channel as a NIfTI image; a 2D (rows, cols) array becomes voxels (cols, rows, 1), spacing 999."""
    import nibabel as nib
    import numpy as np

    from segtool.io.volume import spacing_of

    array = np.asarray(array, dtype=dtype)
    if ndim == 2:
        rows, cols = spacing_of(affine, 2)
        return nib.Nifti1Image(np.ascontiguousarray(array.T[:, :, None]), np.diag([cols, rows, DUMMY_SPACING, 1.0]))
    return nib.Nifti1Image(array, np.asarray(affine, dtype=float))


def convert(spec, data_dir: Path, raw_root: Path, dataset_id: int = DATASET_ID) -> dict:
    """Write (or link) DATA_DIR as ``raw_root/DatasetNNN_TASK``; returns what the table needs."""
    import nibabel as nib
    import numpy as np

    from segtool.training.datasets import discover, split_ending
    from segtool.training.prepare import label_dtype, read_case

    dataset = discover(data_dir, spec.channels)
    labels_map = default_labels_map(spec, dataset.info)
    folder = raw_root / f"Dataset{dataset_id:03d}_{spec.name.replace('-', '_')}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    info = {"folder": str(folder), "cases": len(dataset.cases), "labels_map": labels_map, "ndim": spec.ndim}
    if dataset.layout == "nnunet" and not dataset.ignored and labels_map is None:
        ending = split_ending(dataset.cases[0].images[0].name)[1]
        for sub in ("imagesTr", "labelsTr"):
            (folder / sub).symlink_to((Path(data_dir) / sub).resolve(), target_is_directory=True)
        codes = [nib.aff2axcodes(nib.load(c.images[0]).affine) for c in dataset.cases] if spec.ndim == 3 else []
        written = dataset_json(spec, len(dataset.cases), ending, dict(dataset.info))
        info["linked"] = True
    else:
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        codes, dtype = [], label_dtype(len(spec.labels))
        for case in dataset.cases:
            image, label = read_case(spec, case, labels_map)
            for c in range(image.channels):
                nib.save(nifti_of(image.array[c], image.affine, spec.ndim, np.float32),
                         folder / "imagesTr" / f"{case.name}_{c:04d}.nii.gz")
            nib.save(nifti_of(label.array[0], label.affine, spec.ndim, dtype), folder / "labelsTr" / f"{case.name}.nii.gz")
            if spec.ndim == 3:
                codes.append(nib.aff2axcodes(image.affine))
        written = dataset_json(spec, len(dataset.cases), ".nii.gz")
        info["linked"] = False
    (folder / "dataset.json").write_text(json.dumps(written, indent=2), encoding="utf-8")
    same_lines = len({tuple(_line(c) for c in case) for case in codes}) == 1  # LAS and LPS agree, LAS and ASL do not
    info["axcodes"] = list(codes[0]) if same_lines else None
    return info


def _line(code: str) -> int:
    """0, 1, 2 for an axis code on the R-L, A-P or S-I line."""
    return next(i for i, pair in enumerate(LINES) if code in pair)


# ----------------------------------------------------------------------------- the two planners


def nnunet_env(bin_dir: Path, work: Path) -> dict:
    """The environment nnU-Net's commands run in: its three folders under ``work``, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
               nnUNet_results=str(work / "nnUNet_results"), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


def planning_commands(dataset_id: int = DATASET_ID, processes: int = 2) -> list[list[str]]:
    """Fingerprint, then plan (no preprocessing)."""
    return [["nnUNetv2_extract_fingerprint", "-d", str(dataset_id), "-np", str(processes), "--no_pbar"],
            ["nnUNetv2_plan_experiment", "-d", str(dataset_id)]]


def preprocessed_folder(work: Path, dataset_id: int = DATASET_ID) -> Path:
    """``work/nnUNet_preprocessed/DatasetNNN_*`` (after planning)."""
    return next((work / "nnUNet_preprocessed").glob(f"Dataset{dataset_id:03d}_*"))


def run_nnunet(bin_dir: Path, work: Path, dataset_id: int = DATASET_ID, processes: int = 2) -> dict:
    """Fingerprint and plan in the venv; nnUNetPlans.json, the fingerprint, commands and wall times."""
    env = nnunet_env(bin_dir, work)
    commands = planning_commands(dataset_id, processes)
    wall = {}
    with open(work / "nnunet.log", "w", encoding="utf-8") as out:
        for cmd in commands:
            start = time.perf_counter()
            proc = subprocess.run([str(bin_dir / cmd[0]), *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT)
            wall[cmd[0]] = round(time.perf_counter() - start, 2)
            if proc.returncode:
                tail = (work / "nnunet.log").read_text(encoding="utf-8").strip().splitlines()[-5:]
                raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: " + " | ".join(tail))
    folder = preprocessed_folder(work, dataset_id)
    read = lambda name: json.loads((folder / name).read_text(encoding="utf-8"))  # noqa: E731
    return {"plans": read("nnUNetPlans.json"), "fingerprint": read("dataset_fingerprint.json"),
            "commands": [" ".join(c) for c in commands], "wall_s": wall, "plans_file": str(folder / "nnUNetPlans.json")}


def run_segtool(task: str, data_dir: Path, out: Path, budget: str) -> dict:
    """segtool's --plan-only output ({"fingerprint", "plan"}) or None with why, and the wall time."""
    cmd = [sys.executable, "-m", "segtool", "train", task, str(data_dir), "-o", str(out),
           "--plan-only", "--json", "--plan", "auto", "--budget", budget]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = {"command": " ".join(["segtool", *cmd[3:]]), "wall_s": round(time.perf_counter() - start, 2), "output": None}
    if proc.returncode == 0:
        for text in [proc.stdout, *reversed(proc.stdout.splitlines())]:
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "plan" in parsed:
                result["output"] = parsed
                return result
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    result["message"] = f"exit {proc.returncode}: {last}" if proc.returncode else "no JSON plan on stdout"
    return result


# ----------------------------------------------------------------------------- the table


def nnunet_axes(plans: dict, ndim: int, axcodes, orientation) -> list:
    """For each of nnU-Net's (transposed) axes, segtool's axis (None: the dummy axis of 2D data).

    nnU-Net reads NIfTI through SimpleITK: its axis a is voxel axis 2 - a; ``transpose_forward``
    then reorders. A 2D task's voxels are (cols, rows, dummy); a 3D task's voxel axis maps to its
    position in the task's orientation (by anatomical line), or stays itself without one.
    """
    if ndim == 2:
        voxel_to_task = {0: 1, 1: 0, 2: None}
    elif orientation and axcodes:
        slot = {_line(o): i for i, o in enumerate(orientation)}
        voxel_to_task = {v: slot[_line(code)] for v, code in enumerate(axcodes)}
    else:
        voxel_to_task = {0: 0, 1: 1, 2: 2}
    return [voxel_to_task[2 - a] for a in plans.get("transpose_forward", [0, 1, 2])]


def fmt(value) -> str:
    if value is None:
        return "·"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def fmt_axes(values, task_axes, ndim: int) -> str:
    """``values`` (on nnU-Net's trailing axes) put in segtool's axis order; "·" where none is given."""
    if not values:
        return "-"
    out = [None] * ndim
    for value, axis in zip(values, task_axes[len(task_axes) - len(values):]):
        if axis is not None:
            out[axis] = value
    return " × ".join(fmt(v) for v in out)


def fmt_list(values) -> str:
    return " × ".join(fmt(v) for v in values) if isinstance(values, (list, tuple)) and values else "-"


def nnunet_column(config: dict, plans: dict, task_axes: list, ndim: int, channels) -> dict:
    arch = config.get("architecture") or {}
    kwargs = arch.get("arch_kwargs") or {}
    features = kwargs.get("features_per_stage")
    is_2d = len(config.get("patch_size", [])) == 2
    patch_axes = [a for a in task_axes[len(task_axes) - len(config.get("patch_size", [])):] if a is not None]
    patch = [p for _, p in sorted(zip(patch_axes, config.get("patch_size", [])))] if patch_axes else None
    if not is_2d:
        kind = "3D"
    elif ndim == 2:
        kind = "2D"
    else:
        kind = f"2D, slices along axis {task_axes[0]}"
    schemes = config.get("normalization_schemes") or []
    masks = config.get("use_mask_for_norm") or [False] * len(schemes)
    norm = "; ".join(f"{ch}: {SCHEMES.get(s, s)}{' (nonzero mask)' if m else ''}"
                     for ch, s, m in zip(channels, schemes, masks))
    return {
        "median spacing (data)": fmt_axes(plans.get("original_median_spacing_after_transp"), task_axes, ndim),
        "median shape (data)": fmt_axes(plans.get("original_median_shape_after_transp"), task_axes, ndim),
        "target spacing": fmt_axes(config.get("spacing"), task_axes, ndim),
        "2D / 3D": kind,
        "patch size": fmt_list(patch),
        "network": arch.get("network_class_name", "-").rsplit(".", 1)[-1],
        "stages / features": f"{kwargs.get('n_stages', len(features))}: {'-'.join(map(str, features))}" if features else "-",
        "batch size": fmt(config.get("batch_size", "-")),
        "normalisation": norm or "-",
    }


def segtool_column(output: dict, channels) -> dict:
    plan, fingerprint = output.get("plan") or {}, output.get("fingerprint") or {}
    dims, slice_axis = plan.get("network_dims"), plan.get("slice_axis")
    kind = "-" if dims is None else f"{dims}D" + (f", slices along axis {slice_axis}" if slice_axis is not None else "")
    features = (plan.get("network_args") or {}).get("features")
    norm = plan.get("normalization")
    return {
        "median spacing (data)": fmt_list(fingerprint.get("median_spacing")),
        "median shape (data)": fmt_list(fingerprint.get("median_shape")),
        "target spacing": target_spacing(plan),
        "2D / 3D": kind,
        "patch size": fmt_list(plan.get("patch_size")),
        "network": plan.get("network", "-"),
        "stages / features": f"{len(features)}: {'-'.join(map(str, features))}" if features else "-",
        "batch size": fmt(plan.get("batch_size", "-")),
        "normalisation": "; ".join(f"{ch}: {norm}" for ch in channels) if norm else "-",
    }


def target_spacing(plan: dict) -> str:
    """segtool's target spacing; a plan that resizes whole images instead says to what size."""
    spacing, size = plan.get("target_spacing"), plan.get("input_size")
    if spacing is None and size:
        return f"native, images resized to {fmt_list(size)}"
    return "native" if spacing is None and "target_spacing" in plan else fmt_list(spacing)


def markdown_table(columns: dict) -> str:
    names = list(columns)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(columns[n].get(row, "-") for n in names) + " |")
    return "\n".join(lines)


def report(spec_info: dict, segtool: dict | None, nnunet: dict, conversion: dict) -> str:
    """The markdown table, the wall times and segtool's other choices with their reasons."""
    channels, ndim = spec_info["channels"], spec_info["ndim"]
    columns = {}
    output = (segtool or {}).get("output")
    if output is not None:
        columns["segtool"] = segtool_column(output, channels)
    plans = nnunet["plans"]
    axes = nnunet_axes(plans, ndim, conversion.get("axcodes"), spec_info.get("orientation"))
    for name in ("2d", "3d_fullres", "3d_lowres"):
        if name in plans.get("configurations", {}):
            columns[f"nnU-Net {name}"] = nnunet_column(plans["configurations"][name], plans, axes, ndim, channels)
    frame = ("rows × cols" if ndim == 2 else
             f"{spec_info.get('orientation') or 'voxel'} axes" if conversion.get("axcodes") or not spec_info.get("orientation")
             else "the files' voxel axes: cases differ in orientation")
    lines = [f"## {spec_info['name']}: segtool's plan beside nnU-Net's ({frame})", "", markdown_table(columns), ""]
    wall = nnunet.get("wall_s", {})
    times = [f"nnU-Net {sum(wall.values()):.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in wall.items()) + ")"]
    if output is not None:
        own = (output.get("plan") or {}).get("planning_seconds")
        times.insert(0, f"segtool {segtool['wall_s']:.1f} s" + (f" (its own count {own:.1f} s)" if own else ""))
    lines.append("Planning wall time: " + "; ".join(times) + f"; conversion {conversion.get('wall_s', 0):.1f} s.")
    if output is None:
        why = (segtool or {}).get("message", "not run")
        lines.append(f"segtool's plan is not available ({why}): nnU-Net's side alone.")
    else:
        plan = output.get("plan") or {}
        extra = [f"{k} {json.dumps(plan[k])}" for k in ("augmentation", "loss", "steps", "lr", "precision", "threshold")
                 if k in plan]
        if extra:
            lines += ["", "segtool also plans: " + "; ".join(extra) + "."]
        for key, why in (plan.get("reasons") or {}).items():
            lines.append(f"- {key}: {why}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--budget", default="30m", help="segtool's wall-clock training budget (default 30m)")
    parser.add_argument("--venv", type=Path, default=ROOT / "build" / "nnunet-venv")
    parser.add_argument("--json", action="store_true", help="both plans as JSON instead of the table")
    parser.add_argument("--keep", type=Path, metavar="WORKDIR", help="work in WORKDIR and keep it")
    parser.add_argument("--save-nnunet-plans", type=Path, metavar="FILE", help="copy nnUNetPlans.json to FILE")
    parser.add_argument("-np", "--processes", type=int, default=2, help="nnU-Net fingerprint workers (default 2)")
    args = parser.parse_args(argv)

    spec = task_spec(args.task)
    bin_dir = ensure_venv(args.venv.resolve())
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="plans_vs_nnunet_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        conversion = convert(spec, args.data_dir, work / "nnUNet_raw")
        conversion["wall_s"] = round(time.perf_counter() - start, 2)
        log(f"converted {conversion['cases']} case(s) in {conversion['wall_s']:.1f} s -> {conversion['folder']}")
        nnunet = run_nnunet(bin_dir, work, processes=args.processes)
        if args.save_nnunet_plans:
            args.save_nnunet_plans.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(nnunet["plans_file"], args.save_nnunet_plans)
        if not args.keep:
            del nnunet["plans_file"]  # in the work folder, removed below
        segtool = run_segtool(args.task, args.data_dir, work / "segtool_plan", args.budget)
        spec_info = {"name": spec.name, "channels": list(spec.channels), "ndim": spec.ndim,
                     "orientation": spec.orientation}
        if args.json:
            print(json.dumps({"task": spec_info, "data_dir": str(args.data_dir), "conversion": conversion,
                              "segtool": segtool, "nnunet": nnunet}, indent=1, default=str))
        else:
            print(report(spec_info, segtool, nnunet, conversion))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
