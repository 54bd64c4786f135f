"""Helpers of the hostile-input corpus: a tiny one-convolution task, and checks every case makes.

Every malformed input is made here, small, by the tests themselves. Each case
asserts the exit code, one error line on stderr, no traceback, no output written
and the inputs' bytes unchanged (see :func:`refused`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from pathlib import Path

from click.testing import CliRunner

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

_counter = itertools.count()


def conv3d(spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2):
    """The tiny task's model: one 1x1x1 convolution (core arguments default for older cores)."""
    import torch

    return torch.nn.Conv3d(in_channels, out_channels, kernel_size=1)


def conv2d(spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2):
    import torch

    return torch.nn.Conv2d(in_channels, out_channels, kernel_size=1)


def _bright_is_label_one(ndim: int, in_channels: int) -> dict:
    import torch

    weight = torch.zeros((2, in_channels) + (1,) * ndim)
    weight[1] = 8.0 / in_channels
    return {"weight": weight, "bias": torch.zeros(2)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_task(root: Path, name: str = "tiny", ndim: int = 3, channels=("t1",), with_weights=True, **overrides):
    """A TaskSpec with bundled one-convolution weights in a package under ``root`` (put on sys.path)."""
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig
    from segtool.spec import Postprocess as SpecPostprocess, TaskSpec, WeightsFile, WeightsRef

    values = dict(
        name=name,
        description=f"tiny {ndim}D hostile-input test task",
        channels=tuple(channels),
        ndim=ndim,
        labels={1: "bright"},
        model_factory=conv3d if ndim == 3 else conv2d,
        model_kwargs={},
        patch_size=(8, 8, 4) if ndim == 3 else (16, 16),
        orientation="RAS" if ndim == 3 else None,
        target_spacing=(1.0, 1.0, 2.0) if ndim == 3 else None,
        normalization="zscore",
        batch_size=3,
        postprocess=SpecPostprocess(),
    )
    values.update(overrides)
    bare = TaskSpec(**values)
    if not with_weights:
        return bare
    package = f"hostile_weights_{next(_counter)}"
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    save_file(_bright_is_label_one(ndim, len(channels)), str(pkg / "model.safetensors"))
    (pkg / "config.json").write_text(ModelConfig.for_spec(bare).to_json(), encoding="utf-8")
    ref = WeightsRef(
        weights=WeightsFile("model.safetensors", _sha256(pkg / "model.safetensors")),
        config=WeightsFile("config.json", _sha256(pkg / "config.json")),
        package=package,
    )
    return TaskSpec(**{**values, "models": {"default": ref}})


def app_with(*specs):
    from segtool.app import App
    from segtool.hookspecs import hookimpl
    from segtool.plugins import make_plugin_manager

    class _Tasks:
        @hookimpl
        def segtool_register_tasks(self, register):
            for spec in specs:
                register(spec)

    def factory():
        pm = make_plugin_manager(load_entrypoints=False)
        pm.register(_Tasks(), name="tests.hostile")
        return pm

    return App(plugin_manager_factory=factory)


# --------------------------------------------------------------------------- checking a refusal


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` with its bytes (files) or kind (anything else), links not followed."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = path.read_bytes()
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "special"
    return out


def invoke(app, args, input=None, env=None):
    return CliRunner().invoke(cli_group(), [str(a) for a in args], obj=app, input=input, env=env)


def cli_group():
    from segtool.cli import cli

    return cli


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def refused(result, code: int, before: dict, root: Path, *expected: str, warnings_ok: bool = False) -> None:
    """The call failed with ``code``, one error line (holding ``expected``), no traceback, nothing written.

    ``warnings_ok``: a library's one-line ``warning:`` about the same file may come first.
    """
    lines = error_lines(result)
    if warnings_ok:
        lines = [line for line in lines if not line.startswith("warning: ")]
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert len(lines) == 1, lines
    assert lines[0].startswith("segtool: error: "), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert snapshot(root) == before, "the call changed files under the test folder"


def save_nifti_with_zero_affine(path: Path, data) -> Path:
    """A NIfTI whose sform is all zeros (code 2), qform code 0 and voxel sizes 0: no usable geometry."""
    import nibabel as nib
    import numpy as np

    img = nib.Nifti1Image(np.asarray(data), np.eye(4))
    hdr = img.header
    hdr.set_qform(None, code=0)
    hdr["srow_x"][:] = hdr["srow_y"][:] = hdr["srow_z"][:] = 0
    hdr["sform_code"] = 2
    hdr["pixdim"][1:4] = 0
    hdr["vox_offset"] = 352
    hdr.set_slope_inter(1.0, 0.0)
    raw = hdr.binaryblock + b"\0" * 4 + np.asarray(data).tobytes(order="F")
    if str(path).endswith(".gz"):
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path
