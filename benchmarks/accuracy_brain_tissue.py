"""brain-tissue: per real case, DSC of CSF, gray matter and white matter and their mean, plus the seed's distances.

    python benchmarks/accuracy.py brain-tissue [--data ../shared/data/brain-tissue] [--model-dir DIR ...] [--json out.json]

The vxm T1 of ../shared/data/brain-tissue (real, never trained on) and the same T1
contrast-inverted inside the brain (T2-like, to show contrast independence), each run
through ``segtool run brain-tissue`` for every ``--model-dir``, and the two together
(``--combine``: the mean of their probabilities). Scored on the input grid against the
FreeSurfer labels merged as the model was trained to merge them (the labels map its
config.json records, e.g. the ``ventricular-csf`` model's; else the plugin's ``TISSUE_OF``): DSC per tissue and their
mean over the whole image and inside the labelled brain only (the T1 keeps a rim of
extra-cerebral CSF labelled 0, SOURCE.md), and, as the iSeg seed reports them, the
modified Hausdorff distance (MHD) and average symmetric surface distance (ASSD) per
tissue in mm (`segtool.metrics`). "no model" when ``segtool run`` exits 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accuracy_common import NO_MODEL, ROOT, cases_trained_on, log, recorded_training, run_segtool

BRAIN_TISSUE_DATA = ROOT.parent / "shared" / "data" / "brain-tissue"
TISSUES = ("csf", "gray_matter", "white_matter")
#: The row of the T1 and its T2-like inversion segmented together (`segtool run --combine`).
COMBINED = "vxm_t1+t2like (--combine)"


def add_brain_tissue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BRAIN_TISSUE_DATA,
                        help="the brain-tissue data folder (vxm_test_scan.npz; default: ../shared/data/brain-tissue)")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare; default: the task's default model")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def brain_tissue_cases(data: Path, out: Path) -> list[tuple[str, Path, "np.ndarray"]]:
    """(case, image file, FreeSurfer label map) of the real T1 and its T2-like contrast inversion."""
    scripts = ROOT / "scripts"
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    import prepare_brain_tissue as prep

    t1, seg = prep.load_vxm(data)
    cases = []
    for name, image in (("vxm_t1", t1), ("vxm_t1_t2like", prep.t2_like(t1, seg))):
        path = out / f"{name}.nii.gz"
        prep.save(image, prep.VXM_AFFINE, path)
        cases.append((name, path, seg))
    return cases


def model_tissue_table(training: dict) -> tuple[dict[int, int], str]:
    """FreeSurfer value -> class as the model was trained (its recorded labels map, else the plugin's
    table), and a name for it."""
    import prepare_brain_tissue as prep

    recorded = training.get("labels_map")
    if not recorded:
        return prep.tissue_table("all"), "all CSF (TISSUE_OF)"
    from segtool.training.datasets import parse_labels_map

    table = parse_labels_map(recorded, prep.tissue_names())
    for name, label in (("all", "all CSF (TISSUE_OF)"), ("ventricular", "ventricular CSF")):
        if table == prep.tissue_table(name):
            return table, label
    return table, "the model's labels map"


def tissue_dice(pred: "np.ndarray", truth: "np.ndarray", mask: "np.ndarray | None" = None) -> dict[str, float | None]:
    """DSC of CSF (1), GM (2), WM (3) and their mean; ``mask`` restricts both to it (None: everywhere)."""
    import numpy as np

    if mask is not None:
        pred, truth = pred[mask], truth[mask]
    scores: dict[str, float | None] = {}
    for value, name in enumerate(TISSUES, start=1):
        p, t = pred == value, truth == value
        total = int(p.sum()) + int(t.sum())
        scores[name] = 2.0 * float((p & t).sum()) / total if total else None
    values = [v for v in scores.values() if v is not None]
    scores["mean"] = float(np.mean(values)) if values else None
    return scores


def tissue_distances(pred: "np.ndarray", truth: "np.ndarray") -> tuple[dict[str, float], dict[str, float]]:
    """Modified Hausdorff distance and ASSD (mm, 1 mm voxels) of CSF, GM and WM."""
    from segtool.metrics.distances import assd, modified_hausdorff

    mhd, mean = {}, {}
    for value, name in enumerate(TISSUES, start=1):
        p, t = pred == value, truth == value
        mhd[name] = float(modified_hausdorff(p, t, (1.0, 1.0, 1.0)))
        mean[name] = float(assd(p, t, (1.0, 1.0, 1.0)))
    return mhd, mean


def brain_tissue(args: argparse.Namespace) -> int:
    """brain-tissue: DSC per tissue and their mean on the vxm T1 and its T2-like inversion, per model.

    Scored on the input grid against the FreeSurfer labels merged to CSF/GM/WM (the
    plugin's ``TISSUE_OF``), over the whole image and, because the T1 keeps a dark
    rim of extra-cerebral CSF labelled 0 (SOURCE.md), also inside the labelled brain only.
    """
    import nibabel as nib
    import numpy as np

    data = args.data
    if not (data / "vxm_test_scan.npz").is_file():
        log(f"brain-tissue: no data at {data} (see ../shared/data/brain-tissue/SOURCE.md); nothing to do")
        return 0
    model_dirs = args.model_dir or [None]
    columns = [str(d) if d is not None else "default model" for d in model_dirs]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segtool-bench-brain-tissue-") as tmp:
        tmp = Path(tmp)
        cases = brain_tissue_cases(data, tmp)  # also puts scripts/ on the path
        import prepare_brain_tissue as prep

        for model_dir, column in zip(model_dirs, columns):
            training = recorded_training(model_dir, "brain-tissue")  # resolved once: the default model is looked up offline
            trained_on = cases_trained_on(training)
            table, convention = model_tissue_table(training)
            truth = prep.merge(cases[0][2], table)  # one reference for the T1, its inversion and both
            out = tmp / f"out_{len(rows)}"
            out.mkdir()
            started = time.monotonic()
            status, outputs, message = run_segtool([c[1] for c in cases], out, model_dir, task="brain-tissue")
            seconds = time.monotonic() - started
            # both contrasts of the subject at once (`--combine`: the mean of their probabilities)
            both = tmp / f"both_{len(rows)}"
            both.mkdir()
            c_status, c_outputs, c_message = run_segtool([c[1] for c in cases], both, model_dir,
                                                         task="brain-tissue", extra=["--combine"])
            outputs[COMBINED] = c_outputs.get(str(cases[0][1].resolve())) if c_status == "ok" else None
            for name, path, _ in [*cases, (COMBINED, Path(COMBINED), None)]:
                row: dict[str, Any] = {"model": column, "case": name, "seconds": round(seconds / len(cases), 1),
                                       "reference_csf": convention,
                                       "trained_on": None if trained_on is None
                                       else any(t.startswith("vxm") for t in trained_on)}
                output = outputs.get(name if name == COMBINED else str(path.resolve()))
                if status != "ok" or output is None:
                    row["status"] = status if status != "ok" else "error"
                    row["message"] = c_message if name == COMBINED else message
                else:
                    pred = np.asarray(nib.load(output).dataobj).astype(np.int64)
                    row["status"] = "ok"
                    row["dice"] = tissue_dice(pred, truth)
                    row["dice_in_brain"] = tissue_dice(pred, truth, truth > 0)
                    row["mhd_mm"], row["assd_mm"] = tissue_distances(pred, truth)
                rows.append(row)
    print(brain_tissue_table(rows))
    if all(r["status"] == NO_MODEL for r in rows):
        print(f"brain-tissue: {NO_MODEL}: train one with `segtool train brain-tissue` "
              "(scripts/prepare_brain_tissue.py lays out the data) and pass --model-dir")
    if args.json_out:
        payload = {"task": "brain-tissue", "data": str(data), "columns": columns, "rows": rows,
                   "note": "DSC on the input grid; dice_in_brain: restricted to voxels the reference labels as brain"}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def brain_tissue_table(rows: list[dict[str, Any]]) -> str:
    """DSC over the whole image and inside the labelled brain, then MHD and ASSD, one row per model and case."""
    def fmt(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| model | case | CSF | GM | WM | mean | in brain: CSF | GM | WM | mean | MHD mm CSF / GM / WM "
             "| ASSD mm CSF / GM / WM | trained on it | reference CSF |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | {row['case']} | {row['status']} |" + " |" * 11)
            continue
        d, b = row["dice"], row["dice_in_brain"]
        trained = "?" if row["trained_on"] is None else ("YES" if row["trained_on"] else "no")
        mhd = " / ".join(fmt(row["mhd_mm"][t], 2) for t in TISSUES)
        mean_distance = " / ".join(fmt(row["assd_mm"][t], 2) for t in TISSUES)
        lines.append(f"| {row['model']} | {row['case']} | " + " | ".join(fmt(d[k]) for k in (*TISSUES, "mean"))
                     + " | " + " | ".join(fmt(b[k]) for k in (*TISSUES, "mean"))
                     + f" | {mhd} | {mean_distance} | {trained} | {row.get('reference_csf', '-')} |")
    return "\n".join(lines)
