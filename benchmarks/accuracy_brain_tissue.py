"""brain-tissue: per real case, DSC of CSF, gray matter and white matter and their mean, plus the seed's distances,
against both CSF conventions.

    python benchmarks/accuracy.py brain-tissue [--data ../shared/data/brain-tissue] [--model NAME ...]
                                               [--model-dir DIR ...] [--json out.json]

The vxm T1 of ../shared/data/brain-tissue (real, never trained on) and the same T1
contrast-inverted inside the brain (T2-like, to show contrast independence), each run
through ``segtool run brain-tissue`` for every model (``--model NAME``: a bundled model;
``--model-dir DIR``: a model folder; neither: every bundled model, the default first), and
the two together (``--combine``: the mean of their probabilities). Every output is scored on
the input grid against two references built from the scan's FreeSurfer aseg labels, one per
CSF convention (`REFERENCES`, rules in `ventricular_reference` and `all_csf_reference`):

- ``ventricular``: aseg merged by the plugin's ``VENTRICULAR_CSF_TISSUE_OF``: CSF = aseg's
  ventricles (4, 5, 43, 44, 14, 15, 72); GM, WM as SOURCE.md section 3; everything else 0.
- ``all-csf``: aseg merged by the plugin's ``TISSUE_OF`` (the ventricles and aseg's small CSF
  label 24), plus CSF on every voxel aseg leaves 0 (unlabelled) that lies inside the image's
  skull-strip mask (T1 > 0) and is no brighter than the midpoint between the median T1 of
  aseg's ventricles and that of aseg's cerebral cortex (3, 42): the extra-cerebral and sulcal
  CSF the skull strip kept. Aseg's GM and WM labels are never changed, so sulcal CSF that aseg
  calls cortex stays GM; unlabelled voxels brighter than the midpoint (partial volume, vessels,
  dura, the brainstem below aseg's cut) stay 0. The threshold and the voxels added are printed.

DSC per tissue and their mean over the whole image and inside the reference's labelled brain
(voxels that reference labels CSF, GM or WM: aseg's brain, plus for ``all-csf`` the CSF it
adds), and, as the iSeg seed reports them, the modified Hausdorff distance (MHD) and average
symmetric surface distance (ASSD) per tissue in mm over the whole image (`segtool.metrics`).
"no model" when ``segtool run`` exits 3.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accuracy_common import NO_MODEL, SHARED_DATA, cases_trained_on, log, recorded_training, run_segtool, write_json
from repo_scripts import script_module

if TYPE_CHECKING:
    import numpy as np

BRAIN_TISSUE_DATA = SHARED_DATA / "brain-tissue"
TISSUES = ("csf", "gray_matter", "white_matter")
#: aseg's cerebral cortex (left, right): the tissue next to sulcal and extra-cerebral CSF, whose median T1
#: sets the all-CSF reference's threshold with that of the ventricles
CORTEX = (3, 42)
#: The row of the T1 and its T2-like inversion segmented together (`segtool run --combine`).
COMBINED = "vxm_t1+t2like (--combine)"


def add_brain_tissue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BRAIN_TISSUE_DATA,
                        help="the brain-tissue data folder (vxm_test_scan.npz; default: ../shared/data/brain-tissue)")
    parser.add_argument("--model", dest="models", action="append", default=None, metavar="NAME",
                        help="a bundled brain-tissue model to score (segtool run --model NAME); repeat to compare; "
                             "default (with no --model-dir either): every bundled model, the default first")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def brain_tissue_cases(data: Path, out: Path) -> tuple[list[tuple[str, Path]], "np.ndarray", "np.ndarray"]:
    """(case, image file) of the real T1 and its T2-like contrast inversion, and the T1 and its FreeSurfer labels."""
    prep = script_module("prepare_brain_tissue")
    t1, seg = prep.load_vxm(data)
    cases = []
    for name, image in (("vxm_t1", t1), ("vxm_t1_t2like", prep.t2_like(t1, seg))):
        path = out / f"{name}.nii.gz"
        prep.save(image, prep.VXM_AFFINE, path)
        cases.append((name, path))
    return cases, t1, seg


def bundled_training(name: str) -> dict:
    """``training`` of the bundled model ``name``'s config.json (offline), or {} when it cannot be read."""
    try:
        from segtool.app import App
        from segtool.weights import HubSettings, resolve_model

        app = App(warn=lambda message: None)
        spec = app.registry.get("brain-tissue")
        resolved = resolve_model(spec, name, HubSettings.from_env(offline_flag=True), app.plugin_manager)
        return resolved.config.training or {}
    except Exception:
        return {}


def models_to_score(args: argparse.Namespace) -> list[tuple[str, Path | None, list[str]]]:
    """(column, --model-dir or None, extra `segtool run` arguments) per model: ``--model`` names, then
    ``--model-dir`` folders; neither: every bundled model of the task, the default first."""
    names, dirs = list(args.models or []), list(args.model_dir or [])
    if not names and not dirs:
        from segtool.app import App

        spec = App(warn=lambda message: None).registry.get("brain-tissue")
        names = [spec.default_model, *(m for m in spec.models if m != spec.default_model)] if spec.models else []
        if not names:
            return [("default model", None, [])]
        names = [f"{n} (default)" if n == spec.default_model else n for n in names]
    return ([(n, None, ["--model", n.removesuffix(" (default)")]) for n in names]
            + [(str(d), d, []) for d in dirs])


def model_tissue_table(training: dict) -> tuple[dict[int, int], str]:
    """FreeSurfer value -> class as the model was trained (its recorded labels map, else the plugin's
    table), and the name of its CSF convention."""
    prep = script_module("prepare_brain_tissue")
    recorded = training.get("labels_map")
    if not recorded:
        return prep.tissue_table("all"), "all-csf"
    from segtool.training.datasets import parse_labels_map

    table = parse_labels_map(recorded, prep.tissue_names())
    for name, label in (("all", "all-csf"), ("ventricular", "ventricular")):
        if table == prep.tissue_table(name):
            return table, label
    return table, "the model's labels map"


def ventricular_reference(t1: "np.ndarray", seg: "np.ndarray") -> tuple["np.ndarray", dict[str, Any]]:
    """FreeSurfer's convention: aseg merged by ``VENTRICULAR_CSF_TISSUE_OF`` (CSF = the ventricles)."""
    prep = script_module("prepare_brain_tissue")
    truth = prep.merge(seg, prep.tissue_table("ventricular"))
    return truth, {"rule": "aseg merged by VENTRICULAR_CSF_TISSUE_OF: CSF = ventricles 4, 5, 43, 44, 14, 15, 72",
                   "csf_voxels": int((truth == 1).sum())}


def all_csf_reference(t1: "np.ndarray", seg: "np.ndarray") -> tuple["np.ndarray", dict[str, Any]]:
    """The seed's convention, as far as aseg and the image support it.

    aseg merged by ``TISSUE_OF`` (ventricles and label 24), plus CSF where aseg says 0, the image
    is inside its skull strip (T1 > 0) and T1 <= the midpoint between the medians of aseg's
    ventricles and cortex (a nearest-median CSF/GM split by aseg's own intensities). aseg's GM
    and WM stay as they are.
    """
    import numpy as np

    prep = script_module("prepare_brain_tissue")
    truth = prep.merge(seg, prep.tissue_table("all"))
    ventricles = prep.merge(seg, prep.tissue_table("ventricular")) == 1
    csf_median = float(np.median(t1[ventricles]))
    cortex_median = float(np.median(t1[np.isin(seg, CORTEX)]))
    threshold = 0.5 * (csf_median + cortex_median)
    added = (seg == 0) & (t1 > 0) & (t1 <= threshold)
    truth[added] = 1
    return truth, {"rule": "aseg merged by TISSUE_OF (ventricles + label 24), plus CSF where aseg is 0, T1 > 0 and "
                           f"T1 <= {threshold:.4f} (midpoint of the ventricles' median {csf_median:.4f} and the "
                           f"cortex's {cortex_median:.4f})",
                   "threshold": threshold, "ventricle_median": csf_median, "cortex_median": cortex_median,
                   "added_csf_voxels": int(added.sum()), "unlabelled_in_mask": int(((seg == 0) & (t1 > 0)).sum()),
                   "csf_voxels": int((truth == 1).sum())}


#: CSF convention -> how its reference is built from the T1 and its aseg labels
REFERENCES = {"ventricular": ventricular_reference, "all-csf": all_csf_reference}


def tissue_dice(pred: "np.ndarray", truth: "np.ndarray", mask: "np.ndarray | None" = None) -> dict[str, float | None]:
    """DSC (`segtool.metrics`) of CSF (1), GM (2), WM (3) and their mean; None for a tissue that neither image
    holds (left out of the mean); ``mask`` restricts both to it (None: everywhere)."""
    import numpy as np

    from segtool.metrics import overlap_metrics

    if mask is not None:
        pred, truth = pred[mask], truth[mask]
    scores: dict[str, float | None] = {}
    for value, name in enumerate(TISSUES, start=1):
        overlap = overlap_metrics(pred == value, truth == value)
        scores[name] = overlap.dice if overlap.tp + overlap.fp + overlap.fn else None
    values = [v for v in scores.values() if v is not None]
    scores["mean"] = float(np.mean(values)) if values else None
    return scores


def tissue_distances(pred: "np.ndarray", truth: "np.ndarray") -> tuple[dict[str, float], dict[str, float]]:
    """Modified Hausdorff distance and ASSD (mm, 1 mm voxels) of CSF, GM and WM."""
    from segtool.metrics import distance_metrics

    mhd, mean = {}, {}
    for value, name in enumerate(TISSUES, start=1):
        metrics = distance_metrics(pred == value, truth == value, (1.0, 1.0, 1.0))
        mhd[name], mean[name] = float(metrics.mhd), float(metrics.assd)
    return mhd, mean


def score_model(index: int, model: tuple[str, Path | None, list[str]], cases: list[tuple[str, Path]],
                references: dict, tmp: Path) -> list[dict[str, Any]]:
    """One model's rows: each case, and both contrasts combined, against each reference (or its failure)."""
    import nibabel as nib
    import numpy as np

    column, model_dir, extra = model
    training = (recorded_training(model_dir, "brain-tissue") if model_dir is not None or not extra
                else bundled_training(extra[-1]))
    trained_on = cases_trained_on(training)
    _, trained_csf = model_tissue_table(training)
    out, both = tmp / f"out_{index}", tmp / f"both_{index}"
    out.mkdir()
    both.mkdir()
    started = time.monotonic()
    status, outputs, message = run_segtool([c[1] for c in cases], out, model_dir, task="brain-tissue", extra=extra)
    seconds = time.monotonic() - started
    # both contrasts of the subject at once (`--combine`: the mean of their probabilities)
    c_status, c_outputs, c_message = run_segtool([c[1] for c in cases], both, model_dir,
                                                 task="brain-tissue", extra=[*extra, "--combine"])
    outputs[COMBINED] = c_outputs.get(str(cases[0][1].resolve())) if c_status == "ok" else None
    rows = []
    for name, path in [*cases, (COMBINED, Path(COMBINED))]:
        output = outputs.get(name if name == COMBINED else str(path.resolve()))
        failed = status != "ok" or output is None
        pred = None if failed else np.asarray(nib.load(output).dataobj).astype(np.int64)
        for reference, (truth, _) in references.items():
            row: dict[str, Any] = {"model": column, "model_csf": trained_csf, "case": name,
                                   "reference_csf": reference, "seconds": round(seconds / len(cases), 1),
                                   "trained_on": None if trained_on is None
                                   else any(t.startswith("vxm") for t in trained_on)}
            if failed:
                row["status"] = status if status != "ok" else "error"
                row["message"] = c_message if name == COMBINED else message
            else:
                row["status"] = "ok"
                row["dice"] = tissue_dice(pred, truth)
                row["dice_in_brain"] = tissue_dice(pred, truth, truth > 0)
                row["mhd_mm"], row["assd_mm"] = tissue_distances(pred, truth)
            rows.append(row)
    return rows


def brain_tissue(args: argparse.Namespace) -> int:
    """brain-tissue: DSC per tissue and their mean on the vxm T1, its T2-like inversion and both, per model,
    against the ventricular and the all-CSF reference (module docstring for their rules)."""
    data = args.data
    if not (data / "vxm_test_scan.npz").is_file():
        log(f"brain-tissue: no data at {data} (see ../shared/data/brain-tissue/SOURCE.md); nothing to do")
        return 0
    models = models_to_score(args)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segtool-bench-brain-tissue-") as tmp:
        cases, t1, seg = brain_tissue_cases(data, Path(tmp))
        references = {name: build(t1, seg) for name, build in REFERENCES.items()}  # from the T1: one subject
        for index, model in enumerate(models):
            rows += score_model(index, model, cases, references, Path(tmp))
    print(brain_tissue_table(rows))
    print("\nReferences (built from the vxm T1's aseg labels; 'in brain': voxels the reference labels CSF, GM or WM):")
    for name, (_, info) in references.items():
        print(f"- {name}: {info['rule']}; {info['csf_voxels']} CSF voxels"
              + (f" ({info['added_csf_voxels']} added of {info['unlabelled_in_mask']} unlabelled voxels inside "
                 "the skull strip)" if "added_csf_voxels" in info else ""))
    if all(r["status"] == NO_MODEL for r in rows):
        print(f"brain-tissue: {NO_MODEL}: train one with `segtool train brain-tissue` "
              "(scripts/prepare_brain_tissue.py lays out the data) and pass --model-dir")
    write_json(args.json_out, {"task": "brain-tissue", "data": str(data), "columns": [m[0] for m in models],
                               "rows": rows, "references": {name: info for name, (_, info) in references.items()},
                               "note": "DSC on the input grid; dice_in_brain: restricted to voxels the row's "
                                       "reference labels CSF, GM or WM; distances in mm, null = infinite"})
    return 0


def brain_tissue_table(rows: list[dict[str, Any]]) -> str:
    """DSC over the whole image and inside the labelled brain, then MHD and ASSD, one row per model, case and
    reference."""
    def fmt(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| model | case | reference CSF | CSF | GM | WM | mean | in brain: CSF | GM | WM | mean "
             "| MHD mm CSF / GM / WM | ASSD mm CSF / GM / WM | trained on it | model's CSF |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        head = f"| {row['model']} | {row['case']} | {row['reference_csf']} |"
        if row["status"] != "ok":
            lines.append(f"{head} {row['status']} |" + " |" * 11)
            continue
        d, b = row["dice"], row["dice_in_brain"]
        trained = "?" if row["trained_on"] is None else ("YES" if row["trained_on"] else "no")
        mhd = " / ".join(fmt(row["mhd_mm"][t], 2) for t in TISSUES)
        mean_distance = " / ".join(fmt(row["assd_mm"][t], 2) for t in TISSUES)
        lines.append(f"{head} " + " | ".join(fmt(d[k]) for k in (*TISSUES, "mean"))
                     + " | " + " | ".join(fmt(b[k]) for k in (*TISSUES, "mean"))
                     + f" | {mhd} | {mean_distance} | {trained} | {row.get('model_csf', '-')} |")
    return "\n".join(lines)
