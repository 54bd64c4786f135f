"""JSON files that must hold an object: a labels map given as a file, a dataset's dataset.json."""

from __future__ import annotations

import pytest

from segtool.errors import UsageError
from segtool.json_object import read_json_object
from segtool.labels_map import parse_labels_map
from segtool.training.datasets import DataLayoutError, discover


def test_an_object_is_read_and_anything_else_is_a_one_line_error(tmp_path):
    good, broken, listed = tmp_path / "good.json", tmp_path / "broken.json", tmp_path / "list.json"
    good.write_text('{"csf": [4, 43]}')
    broken.write_text('{"csf": [4, 43]')
    listed.write_text("[1, 2]")
    assert read_json_object(good, UsageError) == {"csf": [4, 43]}
    with pytest.raises(UsageError, match=r"^--labels-map x: not valid JSON \(") as info:
        read_json_object(broken, UsageError, "--labels-map x")
    assert "\n" not in str(info.value)
    with pytest.raises(DataLayoutError, match=r"list\.json: expected a JSON object, got list$"):
        read_json_object(listed, DataLayoutError)
    with pytest.raises(UsageError, match=r"missing\.json: cannot read it \(No such file or directory\)$"):
        read_json_object(tmp_path / "missing.json", UsageError)


def test_labels_map_files_and_dataset_json_use_it(tmp_path):
    labels = {1: "csf", 2: "gm"}
    mapping = tmp_path / "map.json"
    mapping.write_text('{"csf": [4, 43], "3": 2}')
    assert parse_labels_map(str(mapping), labels) == {4: 1, 43: 1, 3: 2}
    mapping.write_text('["csf"]')
    with pytest.raises(UsageError, match=r"^--labels-map .*map\.json: expected a JSON object, got list$"):
        parse_labels_map(str(mapping), labels)
    data = tmp_path / "Dataset001_X"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    (data / "dataset.json").write_text("not json")
    with pytest.raises(DataLayoutError, match=r"dataset\.json: not valid JSON"):
        discover(data, ("t1",))
