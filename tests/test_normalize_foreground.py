"""``zscore-foreground``: the z-score inside the head, whatever constant the outside holds.

Skull-stripped scans come with a constant outside the brain: 0 when raw, ``-mean/std`` when
the scan was z-scored inside its brain mask and the outside kept the value the z-score gave it
(the BraTS copies DeepMedic ships: -3.62 around pat0001's FLAIR). ``zscore-nonzero`` counts that
outside as head; ``zscore-foreground`` takes the commonest border value as the background.
"""

from __future__ import annotations

import numpy as np
import pytest

from segtool.normalize import background_value, normalize
from segtool.spec import NORMALIZATIONS


def _brain(shape=(12, 10, 8)) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return x ** 2 + y ** 2 + z ** 2 < 0.8


def test_the_background_is_the_commonest_border_value_when_it_fills_half_the_border():
    channel = np.full((5, 4, 3), -3.5, np.float32)
    channel[1:4, 1:3, 1] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert background_value(channel) == -3.5
    # an unstripped scan: noise on the border, no value repeated: the background is 0, as zscore-nonzero's
    noisy = np.arange(60, dtype=np.float32).reshape(5, 4, 3) + 0.5
    assert background_value(noisy) == 0.0
    # under half: 0 again (49 of the 52 border voxels here differ)
    part = noisy.copy()
    part[0, 0, :] = 7.0
    assert background_value(part) == 0.0


def test_foreground_voxels_get_their_own_z_score_and_the_background_0():
    channel = np.full((4, 4, 4), -2.0, np.float32)
    channel[1, 1, 1], channel[1, 2, 1], channel[2, 1, 2], channel[2, 2, 2] = 1.0, 2.0, 3.0, 6.0
    out = normalize(channel[None], "zscore-foreground")[0]
    # mean 3, std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
    expected = np.array([-2.0, -1.0, 0.0, 3.0]) / np.sqrt(3.5)
    got = [out[1, 1, 1], out[1, 2, 1], out[2, 1, 2], out[2, 2, 2]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.all(out[channel == -2.0] == 0.0)
    # zscore-nonzero counts the -2 outside as head: other values entirely
    assert not np.allclose(normalize(channel[None], "zscore-nonzero")[0][1, 1, 1], expected[0])


def test_raw_zscored_with_any_outside_and_rescaled_copies_normalise_alike():
    rng = np.random.default_rng(3)
    brain = _brain()
    raw = np.where(brain, rng.normal(600.0, 150.0, brain.shape), 0.0).astype(np.float32)
    mean, std = raw[brain].mean(), raw[brain].std()
    deepmedic = ((raw - mean) / std).astype(np.float32)  # the outside keeps -mean/std
    zero_outside = np.where(brain, deepmedic, 0.0).astype(np.float32)
    rescaled = (raw * 0.37 + 12.0).astype(np.float32)  # another scanner's gain and offset
    reference = normalize(raw[None], "zscore-foreground")
    for copy in (deepmedic, zero_outside, rescaled):
        np.testing.assert_allclose(normalize(copy[None], "zscore-foreground"), reference, atol=2e-5)
    assert np.all(reference[0][~brain] == 0.0)
    # what zscore-nonzero did with the DeepMedic copy: the outside counted, the brain squeezed
    assert np.abs(normalize(deepmedic[None], "zscore-nonzero") - reference).max() > 1.0


def test_each_channel_has_its_own_background_and_tasks_may_declare_it():
    brain = _brain()
    flair = np.where(brain, 3.0, -1.25).astype(np.float32)
    flair[brain] += np.linspace(0, 1, int(brain.sum()), dtype=np.float32)
    t1c = np.where(brain, flair * 2.0, 0.0).astype(np.float32)
    out = normalize(np.stack([flair, t1c]), "zscore-foreground")
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    assert "zscore-foreground" in NORMALIZATIONS


@pytest.mark.parametrize("value", [0.0, -3.62])
def test_an_empty_head_normalises_to_zeros(value):
    assert np.array_equal(normalize(np.full((1, 3, 3, 3), value, np.float32), "zscore-foreground"),
                          np.zeros((1, 3, 3, 3), np.float32))
