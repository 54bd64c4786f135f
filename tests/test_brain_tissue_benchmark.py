"""benchmarks/accuracy_brain_tissue.py's two CSF references (issue 39), on a hand-made aseg-labelled row of voxels.

The rules under test: the ``ventricular`` reference is aseg merged by VENTRICULAR_CSF_TISSUE_OF;
the ``all-csf`` reference is aseg merged by TISSUE_OF plus CSF on unlabelled voxels inside the
skull strip (T1 > 0) no brighter than the midpoint of the ventricles' and the cortex's median T1,
never changing aseg's GM or WM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "plugins", ROOT / "benchmarks", ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import accuracy_brain_tissue as bench  # noqa: E402

#: aseg value, T1 intensity, ventricular reference, all-CSF reference
VOXELS = [
    (4, 0.06, 1, 1),    # lateral ventricle: CSF in both
    (43, 0.10, 1, 1),   # lateral ventricle: CSF in both
    (24, 0.12, 0, 1),   # aseg's CSF label: background in FreeSurfer's convention, CSF in the seed's
    (3, 0.20, 2, 2),    # cortex: GM
    (42, 0.30, 2, 2),   # cortex: GM
    (3, 0.10, 2, 2),    # dark cortex (sulcal CSF aseg calls cortex): stays GM, aseg is never overruled
    (2, 0.40, 3, 3),    # WM
    (0, 0.05, 0, 1),    # unlabelled, dark, inside the skull strip: extra-cerebral / sulcal CSF
    (0, 0.13, 0, 1),    # unlabelled, just darker than the threshold (midpoint of 0.08 and 0.20 = 0.14): CSF
    (0, 0.15, 0, 0),    # unlabelled, just brighter (partial volume, vessel, dura): background
    (0, 0.00, 0, 0),    # outside the skull strip: background
    (31, 0.05, 0, 0),   # aseg's choroid plexus: background in both, not reinterpreted
]


def row():
    seg = np.array([v[0] for v in VOXELS], dtype=np.int64).reshape(1, 1, -1)
    t1 = np.array([v[1] for v in VOXELS], dtype=np.float32).reshape(1, 1, -1)
    return t1, seg


def test_the_ventricular_reference_is_aseg_by_the_ventricular_map():
    t1, seg = row()
    truth, info = bench.ventricular_reference(t1, seg)
    assert truth.ravel().tolist() == [v[2] for v in VOXELS]
    assert info["csf_voxels"] == 2


def test_the_all_csf_reference_adds_dark_unlabelled_voxels_inside_the_skull_strip_only():
    t1, seg = row()
    truth, info = bench.all_csf_reference(t1, seg)
    assert truth.ravel().tolist() == [v[3] for v in VOXELS]
    # medians of aseg's own ventricles (0.06, 0.10) and cortex (0.20, 0.30, 0.10)
    assert np.isclose(info["ventricle_median"], 0.08) and np.isclose(info["cortex_median"], 0.20)
    assert np.isclose(info["threshold"], 0.14)
    assert info["added_csf_voxels"] == 2 and info["unlabelled_in_mask"] == 3
    assert set(bench.REFERENCES) == {"ventricular", "all-csf"}


def test_in_brain_dice_is_restricted_to_the_references_labelled_voxels():
    t1, seg = row()
    truth, _ = bench.all_csf_reference(t1, seg)
    pred = truth.copy()
    pred[truth == 0] = 2  # GM everywhere the reference says background
    whole, inside = bench.tissue_dice(pred, truth), bench.tissue_dice(pred, truth, truth > 0)
    assert inside == {"csf": 1.0, "gray_matter": 1.0, "white_matter": 1.0, "mean": 1.0}
    assert whole["gray_matter"] < 1.0 and whole["csf"] == 1.0


def test_every_bundled_model_is_scored_by_default_the_default_first():
    args = argparse.Namespace(models=None, model_dir=None)
    columns = bench.models_to_score(args)
    assert [c[0] for c in columns] == ["all-csf (default)", "ventricular-csf"]
    assert [c[2] for c in columns] == [["--model", "all-csf"], ["--model", "ventricular-csf"]]
    named = bench.models_to_score(argparse.Namespace(models=["ventricular-csf"], model_dir=[Path("m")]))
    assert named == [("ventricular-csf", None, ["--model", "ventricular-csf"]), ("m", Path("m"), [])]
