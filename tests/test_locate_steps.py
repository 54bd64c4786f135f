"""The localise-then-segment steps of `segtool.locate`, without a model.

`locate_structure` takes any callable from a Volume to labels (`Segmenter` passes its
localiser's), and the crop's labels and probabilities are pasted back under one
distance rule (`near`), so the streamed labels of a located task are the labels its
pasted probabilities give.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import segtool.locate
from segtool.io.volume import Volume
from segtool.locate import CropBox, Located, box_around, locate_structure, near
from segtool.postprocess import labels_from_probabilities
from segtool.spec import Locate

AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])  # RAS, 0.5 x 0.5 x 2 mm


def test_locate_structure_takes_a_plain_callable_and_keeps_the_largest_component():
    volume = Volume(np.zeros((1, 20, 20, 4), dtype=np.float32), AFFINE)
    found = np.zeros((20, 20, 4), dtype=np.uint8)
    found[5:8, 6:9, 1:3] = 1
    found[15, 15, 0] = 2  # a smaller component elsewhere: not the one to crop around
    seen = []

    def find(image):
        seen.append(image)
        return found

    located = locate_structure(find, volume, Locate("cord", margin_mm=(1.0, 1.5, 0.0), min_extent_mm=0.0))
    assert seen == [volume]
    assert located.box == CropBox((3, 3, 1), (10, 12, 3))  # 1 mm = 2 voxels, 1.5 mm = 3 voxels, 0 mm along z
    assert int(located.mask.sum()) == 3 * 3 * 2 and not located.mask[15, 15, 0]


def test_locate_structure_warns_and_gives_up_when_nothing_is_found():
    volume = Volume(np.zeros((1, 12, 12, 3), dtype=np.float32), AFFINE)
    messages = []
    located = locate_structure(lambda image: np.zeros((12, 12, 3), dtype=np.uint8), volume,
                               Locate("cord", min_extent_mm=0.0), messages.append)
    assert located is None
    assert messages == ["cord found nothing to crop around; segmenting the whole image (slower)"]


def test_locate_imports_no_segmenter():
    tree = ast.parse(Path(segtool.locate.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {"segtool.segmenter", "segtool.pipeline"} & imported


def test_near_is_the_euclidean_distance_in_mm():
    mask = np.zeros((16, 14, 5), dtype=bool)
    mask[8, 7, 2] = True
    close = near(mask, (0.5, 0.5, 2.0), 1.0)
    assert close[10, 7, 2] and close[8, 7, 2]  # 1.0 mm away: kept (<=)
    assert not close[11, 7, 2]  # 1.5 mm
    assert not close[8, 7, 3]  # one slice over: 2 mm
    assert close[9, 8, 2] and not close[10, 8, 2]  # sqrt(0.5) mm in, sqrt(1.25) mm out
    assert int(close.sum()) == 13  # the in-plane disc of radius 2 voxels


def test_pasted_labels_are_the_labels_of_the_pasted_probabilities():
    rng = np.random.default_rng(5)
    shape = (16, 14, 5)
    volume = Volume(np.zeros((1, *shape), dtype=np.float32), AFFINE)
    mask = np.zeros(shape, dtype=bool)
    mask[6:9, 5:7, 1:4] = True
    located = Located(mask, box_around(mask, (4, 4, 1)))
    crop_shape = tuple(b - a for a, b in zip(located.box.start, located.box.stop))
    probs = rng.random((3, *crop_shape)).astype(np.float32)
    probs /= probs.sum(0)
    for within_mm in (None, 0.0, 1.0, 5.0):
        pasted = located.paste_probabilities(probs, volume, within_mm)
        labels = located.paste_labels(labels_from_probabilities(probs), volume, within_mm)
        assert labels.dtype == np.uint8 and labels.shape == shape
        assert np.array_equal(labels, labels_from_probabilities(pasted)), within_mm
    outside = np.ones(shape, dtype=bool)
    outside[located.box.slices] = False
    assert not located.paste_labels(labels_from_probabilities(probs), volume, None)[outside].any()
    kept = located.paste_labels(np.full(crop_shape, 2, dtype=np.uint8), volume, 1.0)
    assert np.array_equal(kept > 0, near(mask, volume.spacing, 1.0))
