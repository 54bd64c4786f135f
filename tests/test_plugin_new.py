"""`segtool plugin new`: the generated package installs, lists, trains, runs and evaluates.

The package is pip-installed once (a real build through its pyproject.toml) into a
folder of the test's own with ``--target``; that folder goes on ``sys.path`` for the
test only, so segtool finds the task through the package's entry point exactly as
after ``pip install``, in this process (no virtualenv and no segtool subprocess),
while the shared virtualenv is never modified.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from segtool.cli import cli
from test_train import write_3d_simple


def _segtool(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, f"segtool {' '.join(map(str, args))}:\n{result.output}"
    return result.stdout


def _run_own_tests(path) -> list[str]:
    """Every ``test_*`` function of the generated test file, called; their names."""
    spec = importlib.util.spec_from_file_location(f"generated_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = sorted(n for n in vars(module) if n.startswith("test_") and callable(getattr(module, n)))
    for name in names:
        getattr(module, name)()
    return names


def test_generated_plugin_installs_lists_trains_runs_and_evaluates(tmp_path, monkeypatch):
    name = f"tmpl-{uuid.uuid4().hex[:8]}"
    module = "segtool_" + name.replace("-", "_")
    pkg = tmp_path / "pkg"
    result = CliRunner().invoke(cli, ["plugin", "new", name, "--dir", str(pkg), "--labels", "ball",
                                      "--description", 'Bright "balls" in noise'])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(pkg)
    own_test = f"tests/test_{name.replace('-', '_')}.py"
    assert {str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", f"{module}/__init__.py", own_test,
    }
    pyproject = (pkg / "pyproject.toml").read_text(encoding="utf-8")
    assert f'[project.entry-points.segtool]\n{name} = "{module}"' in pyproject
    assert "segtool train" in (pkg / "README.md").read_text(encoding="utf-8")

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(pkg)],
        check=True, capture_output=True, timeout=120,
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("SEGTOOL_LOAD_PLUGINS", raising=False)
    tasks = {t["name"]: t for t in json.loads(_segtool("tasks", "--json"))}
    assert tasks[name]["plugin"] == name and tasks[name]["labels"] == {"1": "ball"}
    assert tasks[name]["network"] == "unet" and tasks[name]["model_factory"] is None
    assert sys.modules[module].__file__.startswith(str(site))  # imported from the installed copy

    assert _run_own_tests(pkg / own_test) == ["test_model_output_matches_the_patch", "test_task_registers"]

    data = write_3d_simple(tmp_path / "data", n=3)
    model = tmp_path / "model"
    # the scaffold plans by default (tests/test_plan_cli.py); --plan off trains the values it declares
    _segtool("train", name, data, "-o", model, "--plan", "off", "--epochs", "1", "--steps-per-epoch", "2",
             "--patch-size", "16,16,16", "--batch-size", "1", "--device", "cpu", "-q")
    assert (model / "model.safetensors").is_file() and (model / "README.md").is_file()
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["task"] == name and config["architecture"]["features"] == [16, 32, 64, 128]

    pred = tmp_path / "pred.nii.gz"
    _segtool("run", name, "--model-dir", model, data / "case0.nii.gz", "-o", pred, "--device", "cpu", "-q")
    scores = json.loads(_segtool("evaluate", pred, data / "case0_seg.nii.gz", "--task", name, "--json"))
    assert [m["name"] for m in scores["metrics"]][:1] == ["ball"]
    assert 0.0 <= scores["metrics"][0]["dice"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["Bad_Name"], "lowercase"),
        (["ok-name", "--channels", "a,a"], "distinct"),
        (["ok-name", "--labels", "x y"], "letters"),
    ],
)
def test_plugin_new_refuses_bad_input(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["plugin", "new", *args, "--dir", str(tmp_path / "p")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "p").exists()


def test_plugin_new_refuses_a_non_empty_folder_and_renders_2d(tmp_path):
    target = tmp_path / "p"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["plugin", "new", "photo-task", "--dir", str(target)])
    assert result.exit_code != 0 and "not empty" in result.output
    assert [p.name for p in target.iterdir()] == ["keep.txt"]

    from segtool.commands.plugin_new import render

    files = render("photo-task", 2, ["red", "green", "blue"], ["person"], "People in photos.")
    namespace: dict = {}
    exec(compile(files["segtool_photo_task/__init__.py"], "plugin", "exec"), namespace)
    spec = namespace["TASK"]
    assert spec.ndim == 2 and spec.normalization == "rgb" and spec.orientation is None and spec.num_classes == 2
    assert "photo.jpg" not in files["README.md"] and "case01.jpg" in files["README.md"]
