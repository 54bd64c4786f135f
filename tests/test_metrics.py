"""segtool.metrics: hand-computed cases, a brute-force reference, and properties."""

from __future__ import annotations

import json
import math
import string
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.distance import cdist

from segtool import metrics as M
from segtool.metrics.nearest import _ring

# ---------------------------------------------------------------- a brute-force reference


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels with scipy's binary erosion (face connectivity, outside = background)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def brute_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    pa = np.argwhere(brute_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(brute_surface(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


def brute_metrics(a, b, spacing, tol):
    d_ab, d_ba = brute_distances(a, b, spacing)
    both = np.concatenate([d_ab, d_ba])
    return {
        "hd": both.max(),
        "hd95": max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)),
        "assd": both.mean(),
        "msd_pred_to_gt": d_ab.mean(),
        "msd_gt_to_pred": d_ba.mean(),
        "mhd": max(d_ab.mean(), d_ba.mean()),
        "nsd": (both <= tol).mean(),
    }


def one_voxel(shape, at):
    m = np.zeros(shape, bool)
    m[at] = True
    return m


def box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def ball(shape, centre_mm, radius_mm, spacing):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij", sparse=True)
    return sum((g - c) ** 2 for g, c in zip(grids, centre_mm)) <= radius_mm**2


# ---------------------------------------------------------------- hand-computed cases


def test_single_voxels_at_anisotropic_spacing():
    spacing = (2.0, 0.5, 3.0)
    a = one_voxel((8, 8, 8), (1, 2, 3))
    for offset, expected in [((3, 0, 0), 6.0), ((0, 4, 0), 2.0), ((0, 0, 2), 6.0), ((1, 2, 1), math.sqrt(4 + 1 + 9))]:
        b = one_voxel((8, 8, 8), tuple(np.add((1, 2, 3), offset)))
        d = M.distance_metrics(a, b, spacing, tolerance=1.0)
        for key in ("hd", "hd95", "assd", "msd_pred_to_gt", "msd_gt_to_pred", "mhd"):
            assert getattr(d, key) == pytest.approx(expected, abs=1e-12), (offset, key)
        assert d.nsd == 0.0
        o = M.overlap_metrics(a, b, spacing)
        assert (o.dice, o.iou, o.tp, o.fp, o.fn) == (0.0, 0.0, 0, 1, 1)
        assert o.volume_pred == o.volume_gt == 3.0  # 2 * 0.5 * 3 mm³


def test_identical_single_voxel():
    a = one_voxel((3, 3), (1, 1))
    d = M.distance_metrics(a, a, (0.3, 0.7))
    assert (d.hd, d.hd95, d.assd, d.mhd, d.nsd) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert M.dice(a, a) == 1.0


def test_shifted_cubes_by_hand():
    # two 10^3 cubes, one shifted by 2 voxels along axis 0 (0.5 mm): overlap 8/10 of each
    spacing = (0.5, 1.0, 2.0)
    shape = (16, 12, 12)
    gt = box(shape, (0, 1, 1), (10, 11, 11))
    pred = box(shape, (2, 1, 1), (12, 11, 11))
    o = M.overlap_metrics(pred, gt, spacing)
    assert o.dice == pytest.approx(0.8)
    assert o.iou == pytest.approx(8 / 12)
    assert o.precision == o.recall == pytest.approx(0.8)
    assert o.volume_pred == o.volume_gt == 1000.0
    assert o.volume_difference == 0.0 and o.relative_volume_difference == 0.0
    assert o.specificity == pytest.approx((16 * 12 * 12 - 1200) / (16 * 12 * 12 - 1000))
    d = M.distance_metrics(pred, gt, spacing, tolerance=0.5)
    # every surface voxel is within 2 voxels along axis 0 (1 mm) of the other surface,
    # and the far faces are exactly that far
    assert d.hd == pytest.approx(1.0)
    assert d.nsd < 1.0
    assert M.distance_metrics(pred, gt, spacing, tolerance=1.0).nsd == 1.0
    ref = brute_metrics(pred, gt, spacing, 0.5)
    for key, value in ref.items():
        assert getattr(d, key) == pytest.approx(value, abs=1e-12), key


def test_concentric_spheres_at_known_spacing():
    spacing = (0.7, 0.9, 1.6)
    shape = (48, 40, 24)
    centre = (16.8, 18.0, 18.4)
    gt = ball(shape, centre, 10.0, spacing)
    pred = ball(shape, centre, 13.0, spacing)
    o = M.overlap_metrics(pred, gt, spacing)
    assert o.volume_gt == pytest.approx(4 / 3 * math.pi * 10**3, rel=0.03)
    assert o.volume_pred == pytest.approx(4 / 3 * math.pi * 13**3, rel=0.03)
    assert o.recall == 1.0  # the small sphere lies inside the big one
    for surface in M.SURFACES:
        d = M.distance_metrics(pred, gt, spacing, surface=surface, tolerance=3.0 + 1.6)
        assert abs(d.hd - 3.0) <= 1.6, surface  # the radii differ by 3 mm, up to a voxel
        assert abs(d.assd - 3.0) <= 0.8, surface
        assert d.nsd == 1.0
        assert d.hd95 <= d.hd
    ref = brute_metrics(pred, gt, spacing, 3.0)
    d = M.distance_metrics(pred, gt, spacing, tolerance=3.0)
    for key, value in ref.items():
        assert getattr(d, key) == pytest.approx(value, abs=1e-9), key


def test_surfels_of_two_single_voxels():
    # each voxel has 8 corner surfels of equal area; facing corners are 2 voxels apart, the others 3
    spacing = (1.5, 1.0, 2.0)
    a = one_voxel((10, 4, 4), (2, 1, 1))
    b = one_voxel((10, 4, 4), (5, 1, 1))
    sd = M.surface_distances(a, b, spacing, surface="surfel")
    assert sorted(sd.pred_to_gt) == pytest.approx([3.0] * 4 + [4.5] * 4)
    corner = math.sqrt((1.0 * 2.0) ** 2 + (1.5 * 2.0) ** 2 + (1.5 * 1.0) ** 2) / 8
    assert sd.pred_weights == pytest.approx([corner] * 8)
    d = M.summarise_distances(sd)
    assert (d.hd, d.hd95, d.assd, d.mhd) == pytest.approx((4.5, 4.5, 3.75, 3.75))
    assert M.summarise_distances(sd, percentile=50).hd95 == 3.0


def test_surfel_area_of_a_box_is_its_marching_cubes_area():
    # a 1-voxel slab of 6x6 voxels: two 6x6 faces (minus corner bevels) plus rims; just
    # check the 2D contour of a square against its perimeter with bevelled corners
    spacing = (0.5, 2.0)
    sq = box((10, 10), (2, 2), (8, 6))  # 6 x 4 pixels
    sd = M.surface_distances(sq, sq, spacing, surface="surfel")
    diag = 0.5 * math.hypot(*spacing)
    straight = 2 * (5 * 0.5 + 3 * 2.0)  # edges between the corner cells
    assert sd.pred_weights.sum() == pytest.approx(straight + 4 * diag)


def test_empty_masks():
    e = np.zeros((5, 5, 5), bool)
    a = one_voxel((5, 5, 5), (2, 2, 2))
    both = M.distance_metrics(e, e)
    assert (both.hd, both.hd95, both.assd, both.mhd, both.nsd, both.empty) == (0, 0, 0, 0, 1, "both")
    o = M.overlap_metrics(e, e)
    assert (o.dice, o.iou, o.precision, o.recall, o.specificity) == (1, 1, 1, 1, 1)
    for pred, gt, which in ((e, a, "pred"), (a, e, "gt")):
        d = M.distance_metrics(pred, gt, (1, 2, 3))
        assert d.empty == which and d.nsd == 0.0 and not d.penalised
        assert all(math.isinf(getattr(d, k)) for k in M.DISTANCE_KEYS)
        assert M.dice(pred, gt) == 0.0 and M.iou(pred, gt) == 0.0
        p = M.distance_metrics(pred, gt, (1, 2, 3), empty_distance=373.0)
        assert (p.hd, p.hd95, p.assd, p.mhd, p.penalised) == (373.0, 373.0, 373.0, 373.0, True)
    o = M.overlap_metrics(e, a)
    assert (o.precision, o.recall, o.relative_volume_difference) == (0.0, 0.0, -1.0)
    o = M.overlap_metrics(a, e)
    assert (o.precision, o.recall) == (0.0, 0.0) and math.isinf(o.relative_volume_difference)


def test_json_safe_rows_flag_infinite_values():
    gt = np.zeros((6, 6), np.uint8)
    gt[1:3, 1:3] = 1
    gt[4, 4] = 2
    pred = np.where(gt == 2, 0, gt)
    rows = {m.name: m for m in M.evaluate(pred, gt, labels={1: "a", 2: "b", 3: "c"})}
    b = rows["b"].as_dict(json_safe=True)
    assert b["empty"] == "pred" and b["hd"] is None and "hd" in b["infinite"] and b["dice"] == 0.0
    json.dumps(b, allow_nan=False)
    c = rows["c"].as_dict(json_safe=True)
    assert c["empty"] == "both" and c["dice"] == 1.0 and c["hd"] == 0.0 and c["infinite"] == []
    assert rows["a"].as_dict()["dice"] == 1.0 and rows["a"].empty is None


def test_evaluate_matches_per_label_masks_and_regions():
    rng = np.random.default_rng(3)
    gt = ndimage.median_filter(rng.integers(0, 4, (20, 18, 12)), 3).astype(np.uint8)
    pred = ndimage.median_filter(rng.integers(0, 4, (20, 18, 12)), 3).astype(np.int16)
    spacing = (0.9, 1.1, 2.5)
    rows = M.evaluate(pred, gt, spacing, regions={"upper": (2, 3)}, tolerance=1.5)
    assert [r.name for r in rows] == ["1", "2", "3", "upper"]
    for row, members in zip(rows, [(1,), (2,), (3,), (2, 3)]):
        p, g = np.isin(pred, members), np.isin(gt, members)
        assert row.overlap == M.overlap_metrics(p, g, spacing)
        assert row.distance == M.distance_metrics(p, g, spacing, tolerance=1.5)
        ref = brute_metrics(p, g, spacing, 1.5)
        for key, value in ref.items():
            assert getattr(row.distance, key) == pytest.approx(value, abs=1e-9), (row.name, key)
    assert rows[-1].region and rows[-1].labels == (2, 3)


def test_evaluate_handles_unusual_label_values():
    gt = np.array([[0, 5000, 5000], [-3, -3, 0]])
    pred = np.array([[0, 5000, 0], [-3, 0, 0]])
    rows = {r.labels[0]: r for r in M.evaluate(pred, gt)}
    assert set(rows) == {-3, 5000}
    assert rows[5000].overlap.dice == pytest.approx(2 / 3)
    assert rows[-3].overlap.dice == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="integers"):
        M.evaluate(pred + 0.5, gt)
    with pytest.raises(ValueError, match="shape"):
        M.evaluate(pred[:1], gt)


# DeepMind surface-distance 0.1's create_table_neighbour_code_to_surface_area((0.8, 0.9, 1.7)),
# written down here so that the comparison runs without the package: the 27 distinct
# areas (mm²), then for each code 0..127 the letter of its area (a = the first value);
# code c and its complement 255 - c carry the same surface.
DEEPMIND_AREAS_SPACING = (0.8, 0.9, 1.7)
DEEPMIND_AREAS = (
    0.0, 0.27125, 0.5425, 0.7200000000000001, 0.7694153624668538, 0.81375, 0.8454732402625171,
    1.023535539197345, 1.0406653624668538, 1.085, 1.1167232402625171, 1.17375, 1.294785539197345, 1.36,
    1.445, 1.4937500000000001, 1.53, 1.5388307249337076, 1.57875, 1.6275, 1.6909464805250343, 1.765,
    1.8499999999999999, 1.8924443013646854, 1.9814754508320993, 2.019504389729931, 2.04707107839469,
)
DEEPMIND_AREA_OF_CODE = (
    "abbhbgcsbcgshssqbecpclftcikxmywsbcepckixcfltmwyshppnmzvpmvzpAmmh"
    "bccmeliycfkwptxsglkzldolkoukzlkgcfiviorifjofvficstxpyliewfkcmccb"
)


def test_surfel_table_matches_deepmind():
    s0, s1, s2 = DEEPMIND_AREAS_SPACING
    table = M.surfel_area_table(DEEPMIND_AREAS_SPACING)
    expected = [DEEPMIND_AREAS[string.ascii_letters.index(ch)] for ch in DEEPMIND_AREA_OF_CODE]
    assert table[:128] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert table[128:] == pytest.approx(table[:128][::-1], rel=1e-12, abs=1e-15)  # complements
    # by hand: a corner cut off (one triangle), a face (a rectangle), an edge (a bevel)
    assert table[0b00000001] == pytest.approx(math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2) / 8)
    assert table[0b00001111] == pytest.approx(s1 * s2)  # voxels (1, *, *): the plane x = 1/2
    assert table[0b00000011] == pytest.approx(s2 * math.hypot(s0, s1) / 2)  # voxels (1, 1, *)
    # 2D: a corner is a diagonal half-segment, a row or column a segment, a saddle two halves
    c0, c1 = 0.8, 1.7
    half = math.hypot(c0, c1) / 2
    assert M.surfel_area_table((c0, c1)) == pytest.approx(
        [0, half, half, c1, half, c0, 2 * half, half, half, 2 * half, c0, half, c1, half, half, 0]
    )
    try:  # and against the package itself, at more spacings, when it is installed
        from surface_distance import lookup_tables
    except ImportError:
        return
    for spacing in [(1, 1, 1), (0.8, 0.9, 1.7), (2.5, 0.3, 1.1)]:
        assert M.surfel_area_table(spacing) == pytest.approx(
            lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        )
    for spacing in [(1, 1), (0.8, 1.7)]:
        assert M.surfel_area_table(spacing) == pytest.approx(
            lookup_tables.create_table_neighbour_code_to_contour_length(spacing)
        )


def ellipsoid(shape, centre, radii):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij", sparse=True)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def deepmind_cases():
    """(pred, gt, spacing, DeepMind surface-distance 0.1's (hd, hd95, msd pred->gt, msd gt->pred, nsd@1.5))."""
    a = ellipsoid((24, 20, 16), (9, 9, 7), (6, 5, 4))
    b = ellipsoid((24, 20, 16), (11, 10, 8), (7, 4.5, 4))
    b[19:22, 2:4, 11:14] = True  # a far island
    yield a, b, (0.7, 1.3, 1.9), (10.697195894251914, 7.688953114696433, 0.9390067983977709,
                                  1.619606539344937, 0.7315352644139683)
    a = ellipsoid((40, 36), (18, 17), (11, 8))
    b = ellipsoid((40, 36), (20, 16), (9, 10))
    b[34:37, 3:6] = True
    yield a, b, (0.6, 1.4), (12.52517464948094, 11.462983904725679, 1.1255214068912511,
                             2.551454711177489, 0.5509793824899545)


def test_surfel_metrics_match_deepmind():
    try:
        import surface_distance as sd_mod
    except ImportError:
        sd_mod = None
    for a, b, spacing, expected in deepmind_cases():
        d = M.distance_metrics(a, b, spacing, surface="surfel", tolerance=1.5)
        assert (d.hd, d.hd95, d.msd_pred_to_gt, d.msd_gt_to_pred, d.nsd) == pytest.approx(expected, abs=1e-9)
        if sd_mod is not None:  # the package itself, when installed, gives the values written above
            ref = sd_mod.compute_surface_distances(b, a, spacing)  # (gt, pred)
            g2p, p2g = sd_mod.compute_average_surface_distance(ref)
            live = (sd_mod.compute_robust_hausdorff(ref, 100), sd_mod.compute_robust_hausdorff(ref, 95), p2g, g2p,
                    sd_mod.compute_surface_dice_at_tolerance(ref, 1.5))
            assert live == pytest.approx(expected, abs=1e-12)


def test_metrics_never_import_torch():
    code = (
        "import sys, json, numpy as np\n"
        "from segtool import metrics\n"
        "a = np.zeros((6, 6, 6), np.uint8); a[1:4, 1:4, 1:4] = 1\n"
        "metrics.evaluate(a, np.roll(a, 1, 0), (1, 1, 2), surface='surfel')\n"
        "import segtool.evaluation\n"
        "print(json.dumps('torch' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "false"


# ---------------------------------------------------------------- properties

SPACINGS = st.tuples(*[st.sampled_from([0.3, 0.5, 1.0, 1.7, 3.0])] * 3)


@st.composite
def mask_pairs(draw):
    shape = draw(st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(1, 5)))
    size = int(np.prod(shape))
    a = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))).reshape(shape)
    b = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))).reshape(shape)
    return a, b


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(pair=mask_pairs(), spacing=SPACINGS)
def test_self_comparison_is_perfect(pair, spacing):
    a, _ = pair
    assert M.dice(a, a) == 1.0 and M.iou(a, a) == 1.0
    d = M.distance_metrics(a, a, spacing)
    assert (d.hd, d.hd95, d.assd, d.nsd) == (0.0, 0.0, 0.0, 1.0)


@PROPS
@given(pair=mask_pairs(), spacing=SPACINGS, surface=st.sampled_from(M.SURFACES))
def test_symmetry_and_orderings(pair, spacing, surface):
    a, b = pair
    assert M.dice(a, b) == M.dice(b, a)
    ab = M.distance_metrics(a, b, spacing, surface=surface)
    ba = M.distance_metrics(b, a, spacing, surface=surface)
    for key in ("hd", "hd95", "assd", "mhd", "nsd"):
        assert getattr(ab, key) == pytest.approx(getattr(ba, key), abs=1e-12), key
    assert (ab.msd_pred_to_gt, ab.msd_gt_to_pred) == pytest.approx((ba.msd_gt_to_pred, ba.msd_pred_to_gt), abs=1e-12)
    if ab.empty is None:
        assert ab.hd95 <= ab.hd and ab.assd <= ab.mhd <= ab.hd
        assert 0.0 <= ab.nsd <= 1.0


@PROPS
@given(pair=mask_pairs())
def test_iou_is_dice_over_two_minus_dice(pair):
    a, b = pair
    d = M.dice(a, b)
    assert M.iou(a, b) == pytest.approx(d / (2 - d), abs=1e-12)


FACTORS = st.sampled_from([0.25, 2.0, 3.5])


@PROPS
@given(pair=mask_pairs(), spacing=SPACINGS, factor=FACTORS, surface=st.sampled_from(M.SURFACES))
def test_distances_scale_with_spacing(pair, spacing, factor, surface):
    a, b = pair
    d1 = M.distance_metrics(a, b, spacing, surface=surface, tolerance=1.0)
    d2 = M.distance_metrics(a, b, tuple(s * factor for s in spacing), surface=surface, tolerance=factor)
    for key in ("hd", "hd95", "assd", "msd_pred_to_gt", "msd_gt_to_pred", "mhd"):
        v1, v2 = getattr(d1, key), getattr(d2, key)
        assert v2 == pytest.approx(v1 * factor, rel=1e-9, abs=1e-12) or (math.isinf(v1) and math.isinf(v2)), key
    assert d2.nsd == pytest.approx(d1.nsd, abs=1e-9)


@PROPS
@given(pair=mask_pairs(), spacing=SPACINGS)
def test_voxel_mode_equals_brute_force(pair, spacing):
    a, b = pair
    if not a.any() or not b.any():
        return
    d = M.distance_metrics(a, b, spacing, tolerance=1.0)
    for key, value in brute_metrics(a, b, spacing, 1.0).items():
        assert getattr(d, key) == pytest.approx(value, abs=1e-12), key


def test_distances_equal_a_distance_transform_of_the_bounding_box():
    rng = np.random.default_rng(7)
    shape, spacing = (40, 36, 20), (0.7, 1.1, 2.3)
    a = ndimage.gaussian_filter(rng.standard_normal(shape), 2) > 0.1
    b = ndimage.gaussian_filter(rng.standard_normal(shape), 2) > 0.1
    b[30:34, 2:5, 1:3] = True  # a far-away island: found by the k-d tree, not the ring
    sd = M.surface_distances(a, b, spacing)
    sa, sb = brute_surface(a), brute_surface(b)
    edt_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    edt_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    assert np.sort(sd.pred_to_gt) == pytest.approx(np.sort(edt_b[sa]), abs=1e-12)
    assert np.sort(sd.gt_to_pred) == pytest.approx(np.sort(edt_a[sb]), abs=1e-12)
    assert sd.gt_to_pred.max() > _ring(spacing)[1][-1]  # beyond the ring: the k-d tree found it


@pytest.mark.parametrize("surface", ["voxel", "surfel"])
def test_column_major_images_give_the_values_of_their_c_order_copies(surface):
    """NIfTI label arrays come column-major; evaluate works on their transposes with the spacing reversed."""
    from segtool.metrics.labels import evaluate as evaluate_labels

    rng = np.random.default_rng(3)
    gt = np.zeros((14, 11, 9), dtype=np.int32)
    gt[2:10, 3:9, 1:7] = 1
    gt[4:7, 4:6, 2:5] = 2
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.05] = 1
    pred[9:12, 1:3, 6:8] = 2
    spacing = (0.5, 0.8, 1.7)
    fortran = [np.asfortranarray(a) for a in (pred, gt)]
    assert fortran[0].flags.f_contiguous and not fortran[0].flags.c_contiguous
    ours = evaluate_labels(*fortran, spacing, surface=surface, regions={"both": (1, 2)})
    reference = evaluate_labels(pred, gt, spacing, surface=surface, regions={"both": (1, 2)})
    assert [m.name for m in ours] == ["1", "2", "both"]
    for a, b in zip(ours, reference):
        assert a.overlap == b.overlap
        for key in ("hd", "hd95", "assd", "nsd"):
            assert getattr(a.distance, key) == pytest.approx(getattr(b.distance, key), abs=1e-12)
