"""Plugin discovery and registration, one test per hook (see docs/plugins.md)."""

import subprocess
import sys
import textwrap

import pluggy
import pytest

from click.testing import CliRunner

from segtool.app import App
from segtool.cli import cli
from segtool.errors import PluginError, UnknownTaskError
from segtool.hookspecs import hookimpl
from segtool.plugins import describe_plugins, make_plugin_manager
from segtool.registry import TaskRegistry, collect_tasks
from tiny_task import TaskPlugin, make_spec

BUILTIN_TASKS = {"spinal-gm", "brain-tissue", "brain-tumour", "brain-tumour-2d", "disc", "clothing"}


def collect(pm):
    warnings = []
    return collect_tasks(pm, warnings.append), warnings


def test_builtin_plugins_load_through_entry_points():
    registry, warnings = collect(make_plugin_manager())
    assert warnings == []
    assert BUILTIN_TASKS <= set(registry.tasks)
    assert registry.owners["brain-tumour-2d"] == "brain-tumour"


def test_hook_segtool_register_tasks():
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(TaskPlugin(make_spec("alpha"), make_spec("beta")), name="p")
    registry, _ = collect(pm)
    assert [s.name for s in registry] == ["alpha", "beta"]
    assert registry.owners == {"alpha": "p", "beta": "p"}


def test_hook_segtool_register_commands():
    import click
    from click.testing import CliRunner

    from segtool.app import App
    from segtool.cli import cli

    class CommandPlugin:
        @hookimpl
        def segtool_register_commands(self, cli):
            @cli.command(name="hello-plugin")
            def hello():
                click.echo("hello from a plugin")

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(CommandPlugin(), name="cmd")
    try:
        result = CliRunner().invoke(cli, ["hello-plugin"], obj=App(plugin_manager_factory=lambda: pm))
        assert result.exit_code == 0, result.output
        assert result.output == "hello from a plugin\n"
    finally:
        cli.commands.pop("hello-plugin", None)


def test_hook_segtool_resolve_weights(tmp_path):
    from segtool.spec import WeightsFile, WeightsRef

    class Mirror:
        @hookimpl
        def segtool_resolve_weights(self, ref, filename):
            return str(tmp_path / filename)

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Mirror(), name="mirror")
    ref = WeightsRef(
        weights=WeightsFile("model.safetensors", "0" * 64),
        config=WeightsFile("config.json", "0" * 64),
        repo_id="o/n",
        revision="1" * 40,
    )
    from segtool.weights import HubSettings

    hub = HubSettings.from_env(offline_flag=True, cache_dir=tmp_path / "cache")
    assert pm.hook.segtool_resolve_weights(ref=ref, filename="config.json", hub=hub) == str(tmp_path / "config.json")


def test_hook_segtool_training_sampler(tmp_path):
    """A task's own sampler feeds `segtool train`: here images synthesised from the label maps."""
    import nibabel as nib
    import numpy as np

    from segtool.spec import TaskSpec
    from tiny_task import TaskPlugin

    spec = TaskSpec(name="synth", description="trained on images made from its labels", channels=("t1",), ndim=3,
                    labels={1: "blob"}, network="unet", model_kwargs={"features": (4, 8)}, patch_size=(8, 8, 8),
                    target_spacing=(1.0, 1.0, 1.0), batch_size=2, augmentation="none")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        label = np.zeros((12, 12, 12), np.uint8)
        label[3 + i:9, 3:9, 3:9] = 1
        nib.save(nib.Nifti1Image(np.zeros((12, 12, 12), np.float32), np.eye(4)), data / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), data / f"c{i}_seg.nii.gz")
    calls = []

    class Synthesiser:
        def __init__(self, cases, patch_size, batch_size):
            self.cases, self.patch, self.batch = cases, patch_size, batch_size

        def sample(self, rng):
            calls.append(len(self.cases))
            labels = np.stack([np.asarray(c.label[:8, :8, :8]) for c in self.cases[: self.batch]]).astype(np.int64)
            contrast = rng.uniform(0.5, 2.0)  # a random intensity per label, as SynthSeg draws them
            images = (labels * contrast + rng.normal(0, 0.1, labels.shape))[:, None].astype(np.float32)
            return images, labels

    class SynthPlugin:
        @hookimpl
        def segtool_training_sampler(self, spec, cases, patch_size, batch_size):
            return Synthesiser(cases, patch_size, batch_size) if spec.name == "synth" else None

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(TaskPlugin(spec), name="tiny")
    pm.register(SynthPlugin(), name="synth")
    assert pm.hook.segtool_training_sampler(spec=spec, cases=[], patch_size=(8, 8, 8), batch_size=2) is not None
    result = CliRunner().invoke(
        cli, ["train", "synth", str(data), "-o", str(tmp_path / "m"), "--epochs", "1", "--steps-per-epoch", "3",
              "--val-fraction", "0", "--precision", "fp32"],
        obj=App(plugin_manager_factory=lambda: pm),
    )
    assert result.exit_code == 0, result.output
    assert calls == [2, 2, 2]  # every step's batch came from the task's sampler


def test_misspelled_hook_is_rejected():
    class Typo:
        @hookimpl
        def segtool_register_task(self, register):  # missing the final "s"
            pass

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_duplicate_task_names_name_both_plugins():
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(TaskPlugin(make_spec("same")), name="first")
    pm.register(TaskPlugin(make_spec("same")), name="second")
    with pytest.raises(PluginError, match="'first'.*'second'|'second'.*'first'"):
        collect(pm)


def test_invalid_spec_or_raising_plugin_warns_and_others_survive():
    class Broken:
        @hookimpl
        def segtool_register_tasks(self, register):
            register(make_spec("Not Valid"))

    class Raising:
        @hookimpl
        def segtool_register_tasks(self, register):
            raise RuntimeError("boom\nsecond line")

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Broken(), name="broken")
    pm.register(Raising(), name="raising")
    pm.register(TaskPlugin(make_spec("good")), name="good")
    registry, warnings = collect(pm)
    assert list(registry.tasks) == ["good"]
    assert len(warnings) == 2
    assert all("\n" not in w for w in warnings)
    assert any("'broken'" in w and "name" in w for w in warnings)
    assert any("'raising'" in w and "boom" in w for w in warnings)


def test_unknown_task_suggests_close_names():
    registry = TaskRegistry()
    registry.add(make_spec("spinal-gm"), "p")
    with pytest.raises(UnknownTaskError, match="Did you mean: spinal-gm"):
        registry.get("spinal-gn")


def test_segtool_load_plugins_limits_entry_points(monkeypatch):
    monkeypatch.setenv("SEGTOOL_LOAD_PLUGINS", "disc, clothing")
    registry, _ = collect(make_plugin_manager())
    assert set(registry.tasks) == {"disc", "clothing"}
    monkeypatch.setenv("SEGTOOL_LOAD_PLUGINS", "")
    registry, _ = collect(make_plugin_manager())
    assert len(registry) == 0


def test_describe_plugins_reports_version_and_hooks():
    rows = {row["name"]: row for row in describe_plugins(make_plugin_manager())}
    assert rows["disc"]["hooks"] == ["segtool_register_tasks"]
    assert rows["disc"]["distribution"] == "segtool"
    assert rows["disc"]["version"]
    assert "segtool_resolve_weights" in rows["segtool.builtin"]["hooks"]


def test_trace_plugins_shows_task_registration(monkeypatch):
    import json

    monkeypatch.setenv("SEGTOOL_TRACE_PLUGINS", "1")
    monkeypatch.setenv("SEGTOOL_LOAD_PLUGINS", "clothing")
    result = CliRunner().invoke(cli, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in json.loads(result.stdout)] == ["clothing"]
    trace = [line for line in result.stderr.splitlines() if line.startswith("segtool trace: segtool_register_tasks")]
    assert trace[0].startswith("segtool trace: segtool_register_tasks -> ['clothing'] {'register': ")
    assert trace[1] == "segtool trace: segtool_register_tasks returned []"


def write_plugin_project(root, module_body: str, name: str = "segtool-extra-test"):
    pkg = root / "segtool_extra_test"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(module_body))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "1.2.3"

            [project.entry-points.segtool]
            extra-test = "segtool_extra_test"

            [tool.setuptools]
            packages = ["segtool_extra_test"]
            """
        )
    )


PLUGIN_BODY = """
    from segtool.hookspecs import hookimpl
    from segtool.spec import TaskSpec

    @hookimpl
    def segtool_register_tasks(register):
        register(TaskSpec(
            name="extra-test", description="installed from a temporary directory",
            channels=("t1",), ndim=3, labels={1: "thing"},
            network="unet",
            patch_size=(16, 16, 16),
        ))
"""


def install_into(target, project):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(project)],
        check=True,
        capture_output=True,
    )


def run_segtool(args, pythonpath):
    import os

    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    env.pop("SEGTOOL_LOAD_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "segtool", *args], capture_output=True, text=True, env=env)


def test_installed_third_party_plugin_appears_in_tasks(tmp_path):
    import json

    write_plugin_project(tmp_path / "project", PLUGIN_BODY)
    install_into(tmp_path / "site", tmp_path / "project")
    result = run_segtool(["tasks", "--json"], tmp_path / "site")
    assert result.returncode == 0, result.stderr
    tasks = {t["name"]: t for t in json.loads(result.stdout)}
    assert tasks["extra-test"]["plugin"] == "extra-test"
    assert BUILTIN_TASKS <= set(tasks)
    plugins = json.loads(run_segtool(["plugins", "--json"], tmp_path / "site").stdout)
    extra = next(p for p in plugins if p["name"] == "extra-test")
    assert (extra["distribution"], extra["version"], extra["tasks"]) == ("segtool-extra-test", "1.2.3", ["extra-test"])


def test_plugin_that_fails_to_import_gives_one_warning_line(tmp_path):
    write_plugin_project(tmp_path / "project", "raise ImportError('missing dependency xyz')\n")
    install_into(tmp_path / "site", tmp_path / "project")
    result = run_segtool(["tasks", "--json"], tmp_path / "site")
    assert result.returncode == 0
    warning_lines = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning_lines == ["segtool: warning: plugin 'extra-test' failed to load: ImportError: missing dependency xyz"]
    assert "Traceback" not in result.stderr


def test_every_hook_is_documented_and_tested():
    import inspect
    from pathlib import Path

    from segtool import hookspecs

    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    this_file = Path(__file__).read_text(encoding="utf-8")
    names = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("segtool_")]
    assert names
    for name in names:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}({params})`" in docs, f"{name} is not documented in docs/plugins.md"
        assert f"def test_hook_{name}" in this_file, f"{name} has no test_hook_{name}"
