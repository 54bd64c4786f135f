"""`segtool train --region-dice`: the Dice term over a task's regions (BraTS: WT {1,2,3,4}, TC {1,3,4},
ET {4}), each region's probability the sum of its labels' softmax probabilities."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from segtool.training.loss import DiceCELoss, region_matrix, soft_dice_loss, soft_region_dice_loss
from test_train import invoke, tiny_2d, tiny_3d, train, write_2d_photos

BIG = 60.0  # logits this far apart: softmax probabilities 0 or 1 to float32 precision


def _confident(labels: list[int], num_classes: int) -> torch.Tensor:
    """Logits (1, K, n) whose softmax is the one-hot of ``labels``."""
    onehot = torch.nn.functional.one_hot(torch.tensor(labels), num_classes).T[None].float()
    return onehot * BIG


def test_region_dice_scores_unions_of_labels_where_label_dice_scores_each():
    # four voxels: truth 0, 1, 2, 2; prediction 0, 2, 1, 2 (labels 1 and 2 swapped on voxels 1 and 2)
    target = torch.tensor([[0, 1, 2, 2]])
    logits = _confident([0, 2, 1, 2], 3)
    # per label: label 1 Dice 0 (1 voxel each, apart), label 2 Dice 2*1/(2+2) = 0.5 -> loss 1 - 0.25
    assert float(soft_dice_loss(logits, target)) == pytest.approx(0.75, abs=1e-5)
    # regions {1,2}: the same three voxels, Dice 1; {2}: 0.5 -> loss 1 - 0.75
    matrix = region_matrix([(1, 2), (2,)], 3)
    assert matrix.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    assert float(soft_region_dice_loss(logits, target, matrix)) == pytest.approx(0.25, abs=1e-5)
    # DiceCELoss adds the same cross-entropy either way: the difference is the Dice term's
    plain, regional = DiceCELoss(), DiceCELoss(regions=[(1, 2), (2,)], num_classes=3)
    assert float(plain(logits, target) - regional(logits, target)) == pytest.approx(0.5, abs=1e-5)


def test_a_region_probability_is_the_sum_of_its_labels_probabilities():
    # one voxel of truth 2, the network split evenly between labels 1 and 2: region {1,2} certain
    logits = torch.tensor([[[-BIG], [0.0], [0.0]]])
    target = torch.tensor([[2]])
    loss = soft_region_dice_loss(logits, target, region_matrix([(1, 2)], 3))
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    loss = soft_region_dice_loss(logits, target, region_matrix([(2,)], 3))
    assert float(loss) == pytest.approx(1 - 2 * 0.5 / 1.5, abs=1e-5)


def test_region_matrix_refuses_background_unknown_labels_and_empty_regions():
    for regions in ([(0, 1)], [(3,)], [()]):
        with pytest.raises(ValueError):
            region_matrix(regions, 3)
    with pytest.raises(ValueError, match="num_classes"):
        DiceCELoss(regions=[(1,)])


def _core_and_shell(folder, n=3):
    """Balls whose centre is label 1 and whose shell is label 2 (a core inside a whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = (22, 20, 14)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    for i in range(n):
        centre = np.array([rng.uniform(7, s - 7) for s in shape])[:, None, None, None]
        r2 = ((grid - centre) ** 2).sum(0)
        labels = np.where(r2 < 5, 1, np.where(r2 < 20, 2, 0)).astype(np.uint8)
        image = (rng.normal(100.0, 10.0, shape) + 80.0 * (labels == 2) + 40.0 * (labels == 1)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / f"case{i}_seg.nii.gz")
    return folder


def test_train_region_dice_changes_the_loss_and_is_recorded(tmp_path):
    spec = replace(tiny_3d(labels={1: "core", 2: "shell"}), regions={"whole": (1, 2), "core": (1,)})
    data = _core_and_shell(tmp_path / "data")
    common = ("--val-fraction", "0", "--seed", "3")
    train(spec, data, tmp_path / "plain", *common)
    train(spec, data, tmp_path / "regions", *common, "--region-dice")
    losses = {}
    for name in ("plain", "regions"):
        log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        losses[name] = [row["train_loss"] for row in log]
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["training"]["region_dice"] is (name == "regions")
    # same seed, same patches, same start: only the Dice term differs
    assert losses["plain"][0] != pytest.approx(losses["regions"][0], abs=1e-4)
    card = (tmp_path / "regions" / "README.md").read_text()
    assert "Dice over the regions + cross-entropy" in card
    assert "Dice over the regions" not in (tmp_path / "plain" / "README.md").read_text()


def test_region_dice_needs_a_task_with_regions(tmp_path):
    spec = tiny_2d()
    data = write_2d_photos(tmp_path / "p", n=2)
    result = train(spec, data, tmp_path / "m", "--region-dice", ok=False)
    assert result.exit_code == 2 and "declares no regions" in result.output
    assert "--region-dice" in invoke(spec, "train", "--help").output
