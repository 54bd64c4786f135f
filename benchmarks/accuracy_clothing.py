"""clothing: per class of the task's 14, IoU and precision with the seed's definition, per model.

    python benchmarks/accuracy.py clothing [--data ../shared/data/clothing] [--model-dir DIR ...]
                                           [--photos A,B | --photos @FILE] [--run-args=...] [--json out.json]

On the validation photos recorded in the first model's config.json (or ``--photos``),
per class of the task's 14 (plugins/segtool_clothing), IoU and precision with the seed's
definition (for each class, the IoU = TP/(TP+FP+FN) and precision = TP/(TP+FP) of each
photo whose ground truth contains the class, averaged over those photos), their 14-class
means, and the dataset-level IoU (counts pooled over the photos), all from
`segtool.metrics.overlap_from_counts`; one column group per ``--model-dir``; "no model"
when ``segtool run`` exits 3.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accuracy_common import NO_MODEL, ROOT, SHARED_DATA, column_names, log, run_segtool, validation_cases, write_json

if TYPE_CHECKING:
    import numpy as np

CLOTHING_DATA = SHARED_DATA / "clothing"


def add_clothing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=CLOTHING_DATA,
                        help="the clothing data folder (photos/, annotations/pixel-level/; default: ../shared/data/clothing)")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare (e.g. deeplabv3plus and a plain U-Net); "
                             "default: the task's default model")
    parser.add_argument("--photos", default=None,
                        help="comma-separated photo names or @FILE (default: the validation photos recorded in the "
                             "first model's config.json)")
    parser.add_argument("--run-args", default="",
                        help="extra `segtool run` arguments, e.g. --run-args=--tta (a lone option needs the '=')")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def clothing_classes() -> tuple[dict[int, str], dict[int, int]]:
    """({value: class} for 0..13, {CCP tag: class}) from the task's one table (plugins/segtool_clothing)."""
    from segtool_clothing import CLASSES, ccp_labels_map

    return {value: name for value, name, _, _ in CLASSES}, ccp_labels_map()


def clothing_counts(pred: "np.ndarray", truth: "np.ndarray", classes: int) -> "np.ndarray":
    """(classes, 3) TP, FP, FN per class value 0..classes-1 of one photo."""
    import numpy as np

    k = classes
    confusion = np.bincount(truth.astype(np.int64).ravel() * k + pred.astype(np.int64).ravel(),
                            minlength=k * k).reshape(k, k)  # rows: truth, columns: prediction
    tp = np.diag(confusion)
    return np.stack([tp, confusion.sum(0) - tp, confusion.sum(1) - tp], axis=1)


def seed_scores(per_photo: "list[np.ndarray]") -> dict[str, Any]:
    """The seed's per-class IoU and precision, and the dataset-level (pooled) IoU and precision.

    ``per_photo``: (classes, 3) TP/FP/FN of each photo. Seed's definition: for each class,
    the IoU = TP/(TP+FP+FN) (precision = TP/(TP+FP)) of each photo whose ground truth
    contains the class, averaged over those photos (None when no photo contains it; a
    photo with no predicted pixel of the class has precision 0, segtool.metrics' rule when
    the truth is not empty). Dataset level: the counts pooled over all photos, then the
    same ratios (None when a class was neither present nor predicted). Means are over the
    classes with a value (all 14 when each occurs).
    """
    import numpy as np

    from segtool.metrics import overlap_from_counts

    counts = np.stack(per_photo)  # (photos, classes, 3)
    iou, precision, photos = [], [], []
    for c in range(counts.shape[1]):
        present = [overlap_from_counts(int(tp), int(fp), int(fn), 0, 1.0)
                   for tp, fp, fn in counts[:, c] if tp + fn > 0]
        photos.append(len(present))
        iou.append(float(np.mean([m.iou for m in present])) if present else None)
        precision.append(float(np.mean([m.precision for m in present])) if present else None)
    pooled = [overlap_from_counts(int(tp), int(fp), int(fn), 0, 1.0) for tp, fp, fn in counts.sum(0)]
    ds_iou = [m.iou if m.tp + m.fp + m.fn > 0 else None for m in pooled]
    ds_precision = [m.precision if m.tp + m.fp > 0 else None for m in pooled]

    def mean(values):
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    return {"iou": iou, "precision": precision, "photos": photos, "mean_iou": mean(iou),
            "mean_precision": mean(precision), "dataset_iou": ds_iou, "dataset_precision": ds_precision,
            "mean_dataset_iou": mean(ds_iou), "mean_dataset_precision": mean(ds_precision)}


def clothing_photos(args: argparse.Namespace, model_dirs: list[Path | None], data: Path) -> tuple[list[str], str]:
    """(photo names, where the list came from): --photos, the first model's validation photos, or all annotated."""
    if args.photos:
        text = args.photos
        if text.startswith("@"):
            lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
            text = ",".join(line.split("#", 1)[0] for line in lines)
        return [p.strip() for p in text.split(",") if p.strip()], "--photos"
    folder = model_dirs[0] if model_dirs[0] is not None else ROOT / "plugins" / "segtool_clothing"  # the bundled model
    cases = validation_cases(folder)
    if cases:
        return cases, "validation photos of the model"
    return sorted(p.stem for p in (data / "annotations" / "pixel-level").glob("*.mat")), \
        "all annotated photos (no validation split recorded)"


def clothing_table(names: dict[int, str], summary: dict[str, Any], columns: list[str]) -> str:
    """The seed's table: one row per class, IoU and precision per model column, then the 14-class means."""
    def f(v):
        return "—" if v is None else f"{v:.3f}"

    head = ["value", "class", "photos"]
    for c in columns:
        head += [f"{c} IoU", f"{c} precision", f"{c} dataset IoU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = next((summary[c] for c in columns if isinstance(summary[c], dict)), None)
    for value, name in names.items():
        cells = [str(value), name, str(first["photos"][value]) if first else ""]
        for c in columns:
            s = summary[c]
            cells += [s, "", ""] if isinstance(s, str) else [f(s["iou"][value]), f(s["precision"][value]),
                                                             f(s["dataset_iou"][value])]
        lines.append("| " + " | ".join(cells) + " |")
    scored = sum(1 for v in (first or {}).get("iou", []) if v is not None)
    cells = ["", f"**mean ({scored} of {len(names)} classes present)**", ""]
    for c in columns:
        s = summary[c]
        cells += [s, "", ""] if isinstance(s, str) else [f"**{f(s['mean_iou'])}**", f"**{f(s['mean_precision'])}**",
                                                         f"**{f(s['mean_dataset_iou'])}**"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def photo_counts(photos: list[str], images: list[Path], outputs: dict, data: Path, lookup: "np.ndarray",
                 classes: int, column: str) -> tuple[list["np.ndarray"], list[str]]:
    """(TP/FP/FN per class of each scored photo, the photos that failed) of one model's outputs."""
    import numpy as np
    from PIL import Image
    from scipy.io import loadmat

    counts, failed = [], []
    for name, image in zip(photos, images):
        out = outputs.get(str(image))
        if out is None:
            failed.append(name)
            continue
        with Image.open(out) as im:
            pred = np.asarray(im).astype(np.int64)
        truth = lookup[np.asarray(loadmat(str(data / "annotations" / "pixel-level" / f"{name}.mat"))["groundtruth"])]
        if pred.shape != truth.shape:
            log(f"clothing {column} {name}: output shape {pred.shape} != {truth.shape}")
            failed.append(name)
            continue
        counts.append(clothing_counts(np.clip(pred, 0, classes - 1), truth, classes))
    return counts, failed


def clothing(args: argparse.Namespace) -> int:
    """clothing: per-class IoU and precision (the seed's definition) and dataset-level IoU, per --model-dir."""
    import numpy as np

    data: Path = args.data
    if not (data / "annotations" / "pixel-level").is_dir():
        log(f"clothing: no data at {data} (see ../shared/data/clothing/SOURCE.md); nothing to do")
        return 0
    names, tag_map = clothing_classes()
    lookup = np.zeros(256, np.int64)
    for tag, value in tag_map.items():
        lookup[tag] = value
    model_dirs: list[Path | None] = list(args.model_dir or [None])
    columns = column_names(model_dirs)
    photos, source = clothing_photos(args, model_dirs, data)
    missing = [p for p in photos if not (data / "photos" / f"{p}.jpg").is_file()]
    if missing:
        log(f"clothing: photo(s) not in {data / 'photos'}: {', '.join(missing[:5])}")
        return 2
    images = [(data / "photos" / f"{p}.jpg").resolve() for p in photos]
    summary: dict[str, Any] = {}
    for model_dir, column in zip(model_dirs, columns):
        with tempfile.TemporaryDirectory(prefix="segtool-accuracy-clothing-") as tmp:
            t0 = time.perf_counter()
            status, outputs, message = run_segtool(images, Path(tmp), model_dir, task="clothing", timeout=7200,
                                                   extra=args.run_args.split())
            seconds = time.perf_counter() - t0
            if status != "ok":
                log(f"clothing {column}: {'no model (' + message + ')' if status == NO_MODEL else message}")
            if status == NO_MODEL:
                summary[column] = NO_MODEL
                continue
            counts, failed = photo_counts(photos, images, outputs, data, lookup, len(names), column)
        if not counts:
            summary[column] = "failed"
            continue
        summary[column] = dict(seed_scores(counts), scored=len(counts), failed=failed, seconds=round(seconds, 1))
        log(f"clothing {column}: {len(counts)} photos in {seconds:.0f} s")
    if all(summary[c] == NO_MODEL for c in columns):
        print(f"clothing: no model ({', '.join(columns)}): train one with `segtool train clothing` "
              "(scripts/prepare_clothing.py lays out the data), then pass --model-dir")
        return 0
    print(clothing_table(names, summary, columns))
    print(f"\nPhotos: {source} ({len(photos)}). IoU and precision: the seed's definition (per class, averaged over "
          "the photos whose ground truth contains the class); dataset IoU: counts pooled over all photos. "
          "Ground truth: CCP tags merged by the clothing task's table.")
    write_json(args.json_out, {"task": "clothing", "data": str(data), "photos": photos, "photos_from": source,
                               "classes": {str(k): v for k, v in names.items()}, "columns": columns,
                               "model_dirs": [str(d) if d is not None else None for d in model_dirs],
                               "summary": summary})
    return 0
