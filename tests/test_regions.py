"""`segtool run --regions`: a task's nested regions as one label map (segtool.regions)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from segtool.regions import nested_regions, region_label_map, region_volumes

BRATS = {"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4), "enhancing_tumour": (4,)}


def test_nested_regions_orders_outside_in_whatever_the_declaration_order():
    shuffled = {"enhancing_tumour": (4,), "whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4)}
    assert [name for name, _ in nested_regions(shuffled)] == ["whole_tumour", "tumour_core", "enhancing_tumour"]


def test_region_map_takes_the_innermost_region_of_each_label():
    # BraTS labels: 0 background, 1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing
    labels = np.array([[0, 1, 2], [3, 4, 2]], dtype=np.uint8)
    mapped, names = region_label_map(labels, BRATS)
    assert names == {1: "whole_tumour", 2: "tumour_core", 3: "enhancing_tumour"}
    # edema is whole tumour only (1); necrosis and non-enhancing are core (2); enhancing is 3
    assert mapped.tolist() == [[0, 2, 1], [2, 3, 1]]
    assert mapped.dtype == np.uint8
    for value, members in ((1, BRATS["whole_tumour"]), (2, BRATS["tumour_core"]), (3, BRATS["enhancing_tumour"])):
        assert np.array_equal(mapped >= value, np.isin(labels, members))


def test_region_volumes_sum_their_labels():
    volumes = region_volumes({1: 10.0, 2: 100.0, 3: 1.0, 4: 5.0}, BRATS)
    assert volumes == {"whole_tumour": 116.0, "tumour_core": 16.0, "enhancing_tumour": 5.0}


def test_regions_that_are_not_nested_are_refused():
    with pytest.raises(ValueError, match="not nested"):
        nested_regions({"left": (1, 2), "right": (2, 3)})
    with pytest.raises(ValueError, match="no regions"):
        nested_regions({})


def test_run_regions_on_a_task_without_regions_is_a_usage_error(tmp_path):
    image = tmp_path / "t2s.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), str(image))
    result = CliRunner().invoke(cli, ["run", "spinal-gm", str(image), "--regions", "--offline"])
    assert result.exit_code == 2
    assert "--regions" in result.output and "no regions" in result.output
    assert list(tmp_path.iterdir()) == [image]
