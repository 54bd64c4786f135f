"""`segtool example TASK [-o DIR]`: the bundled example inputs, their licences, and the command's refusals."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from segtool.cli import cli
from segtool.examples import EXAMPLES, FOLDER

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args):
    return CliRunner().invoke(cli, ["example", *map(str, args)])


def test_spinal_gm_example_is_the_sct_t2s_crop_written_where_asked(tmp_path):
    result = invoke("spinal-gm", "-o", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    written = tmp_path / "demo" / "t2s.nii.gz"
    assert result.stdout == f"{written}\n"
    assert sha256(written) == "7e267764a558b8595ce0642d827b71a8a7fba3e3311eb5a3ed7126a206b948fd"
    assert "MIT" in result.stderr and "README.md" in result.stderr
    import nibabel as nib

    image = nib.load(str(written))
    assert image.shape == (49, 54, 9) and nib.aff2axcodes(image.affine) == ("L", "A", "S")


def test_clothing_example_is_one_ccp_photo(tmp_path):
    result = invoke("clothing", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / '0030.jpg'}\n" and result.stderr == ""
    from segtool.io import read_volume

    photo = read_volume(tmp_path / "0030.jpg")
    assert photo.kind == "photo" and photo.array.shape == (3, 830, 550)


def test_default_folder_is_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("spinal-cord", "-q")  # spinal-gm's localiser takes the same T2* image
    assert result.exit_code == 0, result.output
    assert result.stdout == "t2s.nii.gz\n" and (tmp_path / "t2s.nii.gz").is_file()


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    target = tmp_path / "t2s.nii.gz"
    target.write_bytes(b"mine")
    refused = invoke("spinal-gm", "-o", tmp_path)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.strip() == f"segtool: error: {target}: output exists (use --overwrite)"
    assert target.read_bytes() == b"mine"
    replaced = invoke("spinal-gm", "-o", tmp_path, "--overwrite", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert target.read_bytes() == (FOLDER / "spinal-gm" / "t2s.nii.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2s.nii.gz"]  # no temporary file left behind


@pytest.mark.parametrize("task", ["disc", "brain-tumour", "brain-tissue", "brain-tumour-2d"])
def test_a_task_without_example_says_so_in_one_line(tmp_path, task):
    result = invoke(task, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"segtool: error: task {task!r} has no bundled example input; "
        "tasks with one: clothing, spinal-cord, spinal-gm\n"
    )
    assert not (tmp_path / "out").exists()


def test_unknown_task_and_a_file_as_folder_are_usage_errors(tmp_path):
    unknown = invoke("spinalgm", "-o", tmp_path)
    assert unknown.exit_code == 2 and "unknown task 'spinalgm'" in unknown.stderr and "spinal-gm" in unknown.stderr
    (tmp_path / "file").write_text("x")
    as_folder = invoke("spinal-gm", "-o", tmp_path / "file")
    assert as_folder.exit_code == 2 and len(as_folder.stderr.strip().splitlines()) == 1
    assert "Traceback" not in as_folder.output


def test_completion_offers_the_tasks_with_an_example():
    def complete(incomplete):
        items = ShellComplete(cli, {}, "segtool", "_SEGTOOL_COMPLETE").get_completions(["example"], incomplete)
        return sorted(i.value for i in items)

    assert complete("spin") == ["spinal-cord", "spinal-gm"]
    assert complete("cl") == ["clothing"]
    assert complete("di") == []  # disc is a task, but has no example


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_every_example_fits_its_task_and_carries_source_and_licence(task):
    from segtool.app import App
    from segtool.io import read_channels

    spec = App().registry.get(task)
    example = EXAMPLES[task]
    volume = read_channels(example.paths(), spec.ndim, spec.channels, grey_as_rgb=spec.normalization == "rgb")
    assert volume.channels == len(spec.channels)
    folder = FOLDER / example.folder
    readme = (folder / "README.md").read_text(encoding="utf-8")
    licence = (folder / "LICENSE").read_text(encoding="utf-8")
    assert "https://github.com/" in readme and "commit" in readme
    for path in example.paths():
        assert sha256(path) in readme  # the README vouches for exactly these bytes
    assert ("MIT License" in licence) or ("Apache License" in licence and "Version 2.0" in licence)


def test_package_data_ships_every_example_file():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    mine = patterns["segtool.examples"]
    files = [p.relative_to(FOLDER).as_posix() for p in FOLDER.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    data = [f for f in files if f != "__init__.py"]
    assert data and all(any(fnmatch.fnmatch(f, pat) for pat in mine) for f in data), (data, mine)


def test_example_command_does_not_import_torch(tmp_path):
    code = f"""
import json, sys
from click.testing import CliRunner
from segtool.cli import cli
r = CliRunner().invoke(cli, ["example", "spinal-gm", "-o", {str(tmp_path)!r}, "-q"])
assert r.exit_code == 0, r.output
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in json.loads(out.stdout.strip().splitlines()[-1])
    assert (tmp_path / "t2s.nii.gz").is_file()
