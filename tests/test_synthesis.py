"""`segtool.training.synthesis` (SynthSeg-style images from label maps) and its use by brain-tissue.

Tiny FreeSurfer-style label maps made here: nested shells of background, skull (515),
extra-cerebral CSF (24), cortex (3), white matter (2) and a ventricle (4).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import segtool_brain_tissue as bt  # noqa: E402
from segtool.errors import UsageError  # noqa: E402
from segtool.training.synthesis import (  # noqa: E402
    LabelSynthesizer,
    SynthesisSampler,
    SynthesisSettings,
    label_maps_on_grid,
)

#: No deformation, blur, bias, noise or gamma: each label keeps one intensity.
PLAIN = SynthesisSettings(
    rotation_deg=0.0, scaling=(1.0, 1.0), flip_axes=(), centre_jitter=0.0, elastic_std=0.0,
    std_range=(0.0, 0.0), blur_sigma=(0.0, 0.0), p_low_resolution=0.0, bias_std=0.0, gamma_std=0.0,
    noise_std=(0.0, 0.0), p_strip=0.0, strip_labels=bt.NON_BRAIN, rim_labels=bt.OUTER_CSF, rim_voxels=(1, 1),
    normalization="none",
)


def head(shape=(21, 21, 21), shift=0) -> np.ndarray:
    """Shells by distance from the centre: WM core with a ventricle, cortex, CSF (4 voxels), skull, background."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    centre = np.array([n // 2 + shift for n in shape])[:, None, None, None]
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    out = np.zeros(shape, np.int32)
    out[r < 10] = 515
    out[r < 9] = 24
    out[r < 5] = 3
    out[r < 3.5] = 2
    out[r < 1.5] = 4
    return out


def synthesizer(settings=PLAIN, maps=None) -> LabelSynthesizer:
    return LabelSynthesizer(maps or [head(), head(shift=1)], bt.TISSUE_OF, settings)


def test_batches_have_the_right_shapes_dtypes_and_task_classes():
    sampler = SynthesisSampler(synthesizer(bt.synthesis_settings()), (16, 16, 12), batch_size=3)
    images, labels = sampler.sample(np.random.default_rng(0))
    assert images.shape == (3, 1, 16, 16, 12) and images.dtype == np.float32
    assert labels.shape == (3, 16, 16, 12) and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and {2, 3} <= set(np.unique(labels))
    assert np.isfinite(images).all()


def test_one_seed_gives_the_same_batch_and_two_seeds_differ():
    sampler = SynthesisSampler(synthesizer(bt.synthesis_settings()), (15, 15, 15), batch_size=2)
    a = sampler.sample(np.random.default_rng(7))
    b = sampler.sample(np.random.default_rng(7))
    c = sampler.sample(np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_each_label_gets_its_own_random_intensity():
    syn = synthesizer()
    means = []
    for seed in range(3):
        image, labels = syn.sample(np.random.default_rng(seed), (25, 25, 25), case=0)
        per_class = {}
        for k in (1, 2, 3):
            values = image[0][labels == k]
            assert values.size
            per_class[k] = float(values.mean())
        # GM (3) and WM (2) have one source label each here, so one intensity; CSF has two (24 and 4)
        assert np.ptp(image[0][labels == 2]) == 0 and np.ptp(image[0][labels == 3]) == 0
        assert len({round(v, 6) for v in per_class.values()}) == 3
        means.append(per_class)
    assert len({round(m[2], 6) for m in means}) == 3  # GM's intensity changes from sample to sample


def test_skull_stripping_removes_non_brain_and_outer_csf():
    patch = (41, 41, 41)  # odd: identity sampling lands on whole voxels; twice the map: all of it is seen
    kept = synthesizer(replace(PLAIN, p_strip=0.0))
    stripped = synthesizer(replace(PLAIN, p_strip=1.0))
    full_image, full_labels = kept.sample(np.random.default_rng(0), patch, case=0)
    image, labels = stripped.sample(np.random.default_rng(0), patch, case=0)
    # not stripped: skull (target 0) and background differ in intensity; all the CSF shell is CSF
    assert np.ptp(full_image[0][full_labels == 0]) > 0
    csf_voxels = int(((head() == 24) | (head() == 4)).sum())
    assert int((full_labels == 1).sum()) == csf_voxels
    # stripped: everything outside the brain is exactly 0, the outer CSF beyond a 1-voxel rim is gone
    assert np.all(image[0][labels == 0] == 0.0)
    assert 0 < int((labels == 1).sum()) < csf_voxels
    assert np.array_equal(labels > 1, full_labels > 1)  # tissue untouched


def test_low_resolution_bias_and_noise_change_the_image_but_not_the_labels():
    syn_plain = synthesizer()
    syn_rich = synthesizer(replace(bt.synthesis_settings(), rotation_deg=0.0, scaling=(1.0, 1.0), flip_axes=(),
                                   centre_jitter=0.0, elastic_std=0.0, p_strip=0.0, p_low_resolution=1.0))
    a_img, a_lab = syn_plain.sample(np.random.default_rng(3), (17, 17, 17), case=0)
    b_img, b_lab = syn_rich.sample(np.random.default_rng(3), (17, 17, 17), case=0)
    assert np.array_equal(a_lab, b_lab)
    assert np.ptp(b_img[0][b_lab == 2]) > 0  # blur, bias field and noise vary a constant label
    assert abs(float(b_img.mean())) < 1e-4 and abs(float(b_img.std()) - 1.0) < 1e-3  # percentile z-scored


def test_merge_table_follows_the_data_sources_mapping():
    assert bt.TISSUE_OF[24] == bt.CSF and bt.TISSUE_OF[136] == bt.CSF and bt.TISSUE_OF[4] == bt.CSF
    assert bt.TISSUE_OF[3] == bt.GM and bt.TISSUE_OF[8] == bt.GM and bt.TISSUE_OF[28] == bt.GM
    assert bt.TISSUE_OF[2] == bt.WM and bt.TISSUE_OF[16] == bt.WM and bt.TISSUE_OF[25] == bt.WM
    assert all(v not in bt.TISSUE_OF for v in (0, 30, 62, 31, 63, 80)) and not bt.NON_BRAIN & set(bt.TISSUE_OF)


def _save(array, path: Path, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))


def test_label_maps_are_read_onto_the_model_grid_and_real_images_refused(tmp_path):
    _save(head((20, 20, 20)).astype(np.int16), tmp_path / "map.nii.gz")
    rng = np.random.default_rng(0)
    _save(rng.uniform(0, 1, (20, 20, 20)).astype(np.float32), tmp_path / "t1.nii.gz")
    spec = replace(bt.BRAIN_TISSUE, patch_size=(8, 8), target_spacing=(2.0, 2.0, None))
    maps = label_maps_on_grid(spec, [SimpleNamespace(name="m", image_files=(tmp_path / "map.nii.gz",))],
                              target_of=bt.TISSUE_OF)
    # 2 mm in-plane, the slice axis kept at its 1 mm
    assert maps[0].shape == (10, 10, 20) and set(np.unique(maps[0])) <= {0, 2, 3, 4, 24, 515}
    with pytest.raises(UsageError, match="real scan|not a label map"):
        label_maps_on_grid(spec, [SimpleNamespace(name="t1", image_files=(tmp_path / "t1.nii.gz",))],
                           target_of=bt.TISSUE_OF)


def test_segtool_train_uses_the_brain_tissue_sampler(tmp_path, monkeypatch):
    """A 2-step `segtool train brain-tissue` on tiny data: every batch is synthesised, validation is real."""
    from segtool.app import App
    from segtool.cli import cli
    from segtool.plugins import make_plugin_manager
    from segtool.training import synthesis

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        label_map = head((24, 24, 24), shift=i).astype(np.int16)
        _save(label_map, data / f"map{i}.nii.gz")  # the "image" is the label map (the sampler replaces it)
        _save(np.vectorize(lambda v: bt.TISSUE_OF.get(int(v), 0))(label_map).astype(np.uint8),
              data / f"map{i}_seg.nii.gz")
    real = head((24, 24, 24))
    t1 = np.select([real == 2, real == 3, real == 24], [1.0, 0.6, 0.1], 0.0).astype(np.float32)
    _save(t1, data / "real.nii.gz")
    _save(np.vectorize(lambda v: bt.TISSUE_OF.get(int(v), 0))(real).astype(np.uint8), data / "real_seg.nii.gz")

    calls = []
    original = synthesis.SynthesisSampler.sample

    def counting(self, rng):
        images, labels = original(self, rng)
        calls.append((images.shape, labels.dtype))
        return images, labels

    monkeypatch.setattr(synthesis.SynthesisSampler, "sample", counting)
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(bt, name="brain-tissue")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["train", "brain-tissue", str(data), "-o", str(out), "--epochs", "1", "--steps-per-epoch", "2",
              "--patch-size", "32,32", "--batch-size", "3", "--val-cases", "real", "--precision", "fp32"],
        obj=App(plugin_manager_factory=lambda: pm),
    )
    assert result.exit_code == 0, result.output
    # one-slice patches of axial slices (axis 2)
    assert calls == [((3, 1, 32, 32, 1), np.dtype(np.int64))] * 2
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["training"]["data"]["validation_cases"] == ["real"]
    assert config["training"]["data"]["train_cases"] == ["map0", "map1"]
    assert "synthesised from 2 label map(s)" in (out / "README.md").read_text()  # the card says how it trained


_REAL_SAMPLE = SynthesisSampler.sample


def _train_capturing_labels(tmp_path, monkeypatch, extra: list[str]) -> list[np.ndarray]:
    """A 3-step `segtool train brain-tissue` on label maps kept unmerged (FreeSurfer values in the _seg files)."""
    from segtool.app import App
    from segtool.cli import cli
    from segtool.plugins import make_plugin_manager
    from segtool.training import synthesis

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(2):
        label_map = head((24, 24, 24), shift=i)
        label_map[label_map == 4] = 2  # no ventricle: label 24 (outer CSF) is the only CSF source
        _save(label_map.astype(np.int16), data / f"map{i}.nii.gz")
        _save(label_map.astype(np.int16), data / f"map{i}_seg.nii.gz")
    real = head((24, 24, 24))
    _save(np.select([real == 2, real == 3, real == 24], [1.0, 0.6, 0.1], 0.0).astype(np.float32), data / "real.nii.gz")
    _save(real.astype(np.int16), data / "real_seg.nii.gz")
    drawn = []

    def capturing(self, rng):
        images, labels = _REAL_SAMPLE(self, rng)  # not an earlier call's wrapper
        drawn.append(np.asarray(labels))
        return images, labels

    monkeypatch.setattr(synthesis.SynthesisSampler, "sample", capturing)
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(bt, name="brain-tissue")
    out = tmp_path / f"model{len(list(tmp_path.glob('model*')))}"
    result = CliRunner().invoke(
        cli, ["train", "brain-tissue", str(data), "-o", str(out), "--epochs", "1", "--steps-per-epoch", "3",
              "--patch-size", "32,32", "--batch-size", "4", "--val-cases", "real", "--precision", "fp32", *extra],
        obj=App(plugin_manager_factory=lambda: pm),
    )
    assert result.exit_code == 0, result.output
    return drawn


def test_the_runs_labels_map_merges_the_synthetic_images_labels(tmp_path, monkeypatch):
    """--labels-map decides the synthetic targets too: FreeSurfer's convention leaves label 24 background."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import prepare_brain_tissue as prep

    maps = {}
    for name in ("all", "ventricular"):
        maps[name] = tmp_path / f"{name}.json"
        prep.write_labels_map(prep.tissue_table(name), maps[name])
    everything = _train_capturing_labels(tmp_path, monkeypatch, ["--labels-map", str(maps["all"])])
    ventricular = _train_capturing_labels(tmp_path, monkeypatch, ["--labels-map", str(maps["ventricular"])])
    assert len(everything) == len(ventricular) == 3
    assert any((labels == bt.CSF).any() for labels in everything)  # label 24 -> CSF
    assert not any((labels == bt.CSF).any() for labels in ventricular)  # label 24 -> background
    assert all({int(v) for v in np.unique(labels)} <= {0, bt.GM, bt.WM} for labels in ventricular)
    assert any((labels == bt.GM).any() for labels in ventricular)
    assert bt.VENTRICULAR_CSF_TISSUE_OF == {k: v for k, v in bt.TISSUE_OF.items() if k != 24}
