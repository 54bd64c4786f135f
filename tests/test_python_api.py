"""The Python API: `Segmenter.from_task`, and the README's example run as written."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool import Segmenter
from segtool.cli import cli
from segtool.errors import UsageError, WeightsUnavailableError
from segtool.io import Volume
from tiny_task import app_with, make_spec, write_model_folder

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    """The first ```python block of README.md's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_on_the_bundled_example_and_matches_segtool_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["example", "spinal-gm", "-q"]).exit_code == 0  # t2s.nii.gz, as the README says
    namespace: dict = {}
    exec(compile(readme_python_example(), "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out
    seg, prediction = namespace["seg"], namespace["prediction"]

    image, mask = nib.load("t2s.nii.gz"), nib.load("t2s_gmseg.nii.gz")
    labels = np.asarray(mask.dataobj)
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)
    assert set(np.unique(labels).tolist()) == {0, 1}
    voxel_mm3 = float(np.prod(image.header.get_zooms()))
    assert prediction.volumes_mm3 == pytest.approx({"gray_matter": int(labels.sum()) * voxel_mm3})  # as --json
    assert prediction.volumes_by_value == pytest.approx({1: int(labels.sum()) * voxel_mm3})
    assert printed == f"{prediction.volumes_mm3}\n"
    exec(compile(readme_python_example(), "README.md (Python API)", "exec"), {})  # runnable twice (overwrite=True)
    assert capsys.readouterr().out == printed
    assert seg.resolved.pinned and seg.resolved.source == "bundled segtool_spinal_gm"
    assert seg.locator.spec.name == "spinal-cord" and seg.locator.resolved.pinned  # localise first, as `run` does

    result = CliRunner().invoke(cli, ["run", "spinal-gm", "t2s.nii.gz", "-o", "cli.nii.gz", "--offline", "-q"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(nib.load("cli.nii.gz").dataobj), labels)  # the API is what `run` runs


@pytest.fixture
def tiny(tmp_path):
    """A 3D one-convolution task without pinned weights, and a model folder for it."""
    spec = make_spec("tiny")
    model_dir = tmp_path / "model"
    write_model_folder(model_dir, spec)
    return spec, model_dir, app_with(spec)


def block_volume() -> Volume:
    """Zeros with one bright block, on the task's own grid (RAS, 1 x 1 x 2 mm): no resampling."""
    data = np.zeros((1, 12, 10, 6), dtype=np.float32)
    data[0, 3:8, 2:7, 1:4] = 100.0
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]))


def test_from_task_with_a_model_folder_takes_every_option(tiny):
    spec, model_dir, app = tiny
    seg = Segmenter.from_task(
        "tiny", model_dir, app=app, device="cpu", precision="fp32", batch_size=2, overlap=0.25, tta=True,
        threshold=0.7, keep_largest=True, fill_holes=True, min_size_mm3=3.0,
    )
    assert seg.device.type == "cpu" and seg.precision == "fp32" and seg.locator is None
    assert (seg.options.batch_size, seg.options.overlap, seg.options.tta) == (2, 0.25, True)
    assert seg.options.postprocess == replace(
        spec.postprocess, threshold=0.7, keep_largest=True, fill_holes=True, min_size_mm3=3.0
    )
    assert seg.resolved.source == f"--model-dir {model_dir}" and not seg.resolved.pinned
    prediction = seg.predict(block_volume())
    expected = np.zeros((12, 10, 6), dtype=np.uint8)
    expected[3:8, 2:7, 1:4] = 1  # the model's rule: bright (z-score > 0) is label 1
    assert np.array_equal(prediction.labels, expected)
    assert prediction.volumes_mm3 == {spec.labels[1]: 75 * 2.0} and prediction.volumes_by_value == {1: 75 * 2.0}


def test_default_warnings_are_python_warnings(tiny):
    _, model_dir, app = tiny
    seg = Segmenter.from_task("tiny", model_dir, app=app, device="cpu")
    with pytest.warns(UserWarning, match="the image is constant"):
        prediction = seg.predict(Volume(np.zeros((1, 6, 6, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0])))
    assert not prediction.labels.any()


def test_from_task_refusals(tiny):
    _, model_dir, app = tiny
    with pytest.raises(WeightsUnavailableError, match="task 'tiny' has no trained weights yet"):
        Segmenter.from_task("tiny", app=app)
    with pytest.raises(UsageError, match="task 'tiny' does not localise first"):
        Segmenter.from_task("tiny", model_dir, app=app, locator_model_dir=model_dir)
    with pytest.raises(UsageError, match="unknown task 'tinny'"):
        Segmenter.from_task("tinny", model_dir, app=app)
    with pytest.raises(TypeError, match="threshhold"):
        Segmenter.from_task("tiny", model_dir, app=app, threshhold=0.5)


def test_segtool_run_builds_its_segmenter_with_from_task(tiny, tmp_path, monkeypatch):
    _, model_dir, app = tiny
    calls = []
    real = Segmenter.from_task.__func__

    def spy(cls, name, model_dir=None, **options):
        calls.append((name, model_dir, options))
        return real(cls, name, model_dir, **options)

    monkeypatch.setattr(Segmenter, "from_task", classmethod(spy))
    volume = block_volume()
    nib.save(nib.Nifti1Image(volume.array[0], volume.affine), tmp_path / "block.nii.gz")
    result = CliRunner().invoke(
        cli, ["run", "tiny", str(tmp_path / "block.nii.gz"), "--model-dir", str(model_dir), "--no-amp",
              "--threshold", "0.7", "--batch-size", "2", "-q"], obj=app,
    )
    assert result.exit_code == 0, result.output
    [(name, given_dir, options)] = calls
    assert (name, given_dir) == ("tiny", model_dir)
    assert options["precision"] == "fp32" and options["threshold"] == 0.7 and options["batch_size"] == 2
    assert options["app"] is app
    written = np.asarray(nib.load(str(tmp_path / "block_seg.nii.gz")).dataobj)
    assert np.array_equal(written, Segmenter.from_task("tiny", model_dir, app=app).predict(volume).labels)
