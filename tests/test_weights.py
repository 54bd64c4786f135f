"""segtool.weights against the real huggingface_hub client and a Hub on 127.0.0.1 (tests/hub_server.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub_server import (  # noqa: E402
    FakeHub,
    bundled_ref,
    hub_ref,
    make_model_folder,
    make_pm,
    serve,
    tiny_spec,
)

from segtool.errors import UsageError, WeightsIntegrityError, WeightsUnavailableError  # noqa: E402
from segtool.hookspecs import hookimpl  # noqa: E402
from segtool.weights import (  # noqa: E402
    HubSettings,
    build_model,
    load_state_dict,
    resolve_builtin,
    resolve_model,
    sha256_file,
)

REPO = "segtool-test/tiny"
REV = "0123456789abcdef0123456789abcdef01234567"
OTHER_REV = "fedcba9876543210fedcba9876543210fedcba98"


pytestmark = pytest.mark.usefixtures("clean_hub_env")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model"), tiny_spec(), seed=1)


@pytest.fixture
def hub(files):
    with FakeHub() as fake:
        serve(fake, files, REPO, REV)
        yield fake


@pytest.fixture
def spec(files):
    return tiny_spec(models={"default": hub_ref(files, REPO, REV)})


def settings(tmp_path, hub=None, offline=False, endpoint=None):
    return HubSettings(
        cache_dir=str(tmp_path / "cache"),
        endpoint=endpoint or (hub.endpoint if hub else "http://127.0.0.1:9"),
        offline=offline,
    )


def tamper(path: str) -> None:
    real = os.path.realpath(path)
    os.chmod(real, 0o644)
    data = bytearray(Path(real).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(real).write_bytes(bytes(data))


def incomplete_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]


# ---------------------------------------------------------------------------- settings


def test_hub_settings_read_the_environment_when_called(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert HubSettings.from_env().cache_dir == str(tmp_path / "home" / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hfcache"))
    assert HubSettings.from_env().cache_dir == str(tmp_path / "hfcache")
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "segcache"))
    assert HubSettings.from_env().cache_dir == str(tmp_path / "segcache")
    assert HubSettings.from_env(cache_dir=tmp_path / "explicit").cache_dir == str(tmp_path / "explicit")

    assert HubSettings.from_env().endpoint == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080/")
    assert HubSettings.from_env().endpoint == "http://mirror.local:8080"

    assert HubSettings.from_env().offline is False
    assert HubSettings.from_env(offline_flag=True).offline is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert HubSettings.from_env().offline is True
    monkeypatch.setenv("HF_TOKEN", "hf_abc")
    assert HubSettings.from_env().token == "hf_abc"


# ---------------------------------------------------------------------------- Hub resolution


def test_first_download_then_served_from_cache_with_server_stopped(hub, spec, files, tmp_path):
    hs = settings(tmp_path, hub)
    first = resolve_model(spec, None, hs, make_pm(spec))
    assert first.pinned and first.variant == "default"
    assert first.source == f"hub {REPO}@{REV[:12]}"
    assert first.weights_sha256 == files.weights_sha256
    assert first.config_sha256 == files.config_sha256
    assert Path(first.weights_path).is_relative_to(tmp_path / "cache")
    assert f"models--segtool-test--tiny/snapshots/{REV}/model.safetensors" in first.weights_path
    assert hub.gets("model.safetensors") == 1 and hub.gets("config.json") == 1
    assert first.config.task == "tiny"

    hub.stop()  # the Hub is gone: the pinned revision is served from the cache without any call
    second = resolve_model(spec, None, hs, make_pm(spec))
    assert second == first

    state = load_state_dict(second)
    model = build_model(spec, second)
    assert not model.training
    for key, tensor in model.state_dict().items():
        assert (tensor == state[key]).all()


def test_tampered_cached_file_is_refused_named_and_removed(hub, spec, files, tmp_path):
    hs = settings(tmp_path, hub)
    good = resolve_model(spec, None, hs, make_pm(spec))
    blob = os.path.realpath(good.weights_path)
    tamper(good.weights_path)
    bad_sha = sha256_file(blob)

    with pytest.raises(WeightsIntegrityError) as info:
        resolve_model(spec, None, hs, make_pm(spec))
    message = info.value.one_line()
    assert info.value.exit_code == 3
    assert "\n" not in message
    assert "model.safetensors" in message and files.weights_sha256 in message and bad_sha in message
    assert "segtool models pull tiny" in message
    assert not os.path.lexists(good.weights_path) and not os.path.exists(blob)

    again = resolve_model(spec, None, hs, make_pm(spec))  # the next run downloads a good copy
    assert again.weights_sha256 == files.weights_sha256
    assert hub.gets("model.safetensors") == 2


def test_tampered_config_is_refused_before_it_is_parsed(hub, spec, tmp_path):
    hs = settings(tmp_path, hub)
    good = resolve_model(spec, None, hs, make_pm(spec))
    Path(os.path.realpath(good.config_path)).write_text("not json at all")
    with pytest.raises(WeightsIntegrityError, match="config.json"):
        resolve_model(spec, None, hs, make_pm(spec))


def test_download_progress_goes_to_the_given_bar_factory(hub, spec, files, tmp_path):
    seen: list[tuple[int | None, int]] = []

    class Bar:
        def __init__(self, total=None, initial=0, **kwargs):
            self.total, self.done = total, initial

        def update(self, n=1):
            self.done += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            seen.append((self.total, self.done))

    from dataclasses import replace

    resolve_model(spec, None, replace(settings(tmp_path, hub), progress=Bar), make_pm(spec))
    size = files.weights.stat().st_size
    assert (size, size) in seen


def test_unknown_revision_is_a_one_line_error(hub, files, tmp_path):
    spec = tiny_spec(models={"default": hub_ref(files, REPO, OTHER_REV)})
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))
    message = info.value.one_line()
    assert info.value.exit_code == 3
    assert OTHER_REV in message and "does not exist" in message and "'tiny'" in message
    assert not list((tmp_path / "cache").rglob("model.safetensors"))


def test_unknown_repo_and_unknown_file(hub, files, tmp_path):
    spec = tiny_spec(models={"default": hub_ref(files, "nobody/nothing", REV)})
    with pytest.raises(WeightsUnavailableError, match="nobody/nothing was not found"):
        resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))
    from segtool.spec import WeightsFile, WeightsRef

    ref = WeightsRef(
        weights=WeightsFile("other.safetensors", files.weights_sha256),
        config=WeightsFile("config.json", files.config_sha256),
        repo_id=REPO,
        revision=REV,
    )
    spec = tiny_spec(models={"default": ref})
    with pytest.raises(WeightsUnavailableError, match="other.safetensors does not exist"):
        resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))


def test_offline_without_cache_names_the_fetch_command_and_sends_nothing(hub, spec, tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_model(spec, None, settings(tmp_path, hub, offline=True), make_pm(spec))
    message = info.value.one_line()
    assert info.value.exit_code == 3
    assert "weights for task 'tiny' (model 'default') are not in the cache" in message
    assert "offline" in message and "fetch them with: segtool models pull tiny" in message
    assert hub.log == []


def test_offline_with_cache_works_and_sends_nothing(hub, spec, tmp_path):
    resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))
    hub.log.clear()
    resolved = resolve_model(spec, None, settings(tmp_path, hub, offline=True), make_pm(spec))
    assert resolved.pinned
    assert hub.log == []


def test_hf_hub_offline_environment_variable_is_honoured(hub, spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hs = HubSettings.from_env(cache_dir=tmp_path / "cache")
    with pytest.raises(WeightsUnavailableError, match="segtool models pull tiny"):
        resolve_model(spec, None, hs, make_pm(spec))
    assert hub.log == []


def test_unreachable_hub_fails_fast_with_the_command_to_run(files, spec, tmp_path):
    import socket

    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_model(spec, None, settings(tmp_path, endpoint=f"http://127.0.0.1:{port}"), make_pm(spec))
    assert "cannot be reached" in info.value.one_line()
    assert "segtool models pull tiny" in info.value.one_line()


def test_variants_default_and_named(hub, files, tmp_path):
    fast = hub_ref(files, REPO, REV)
    accurate = hub_ref(files, REPO, OTHER_REV)  # not on the Hub
    spec = tiny_spec(models={"fast": fast, "accurate": accurate}, default_model="fast")
    pm = make_pm(spec)
    assert resolve_model(spec, None, settings(tmp_path, hub), pm).variant == "fast"
    with pytest.raises(WeightsUnavailableError, match="--model accurate"):
        resolve_model(spec, "accurate", settings(tmp_path, hub, offline=True), pm)
    with pytest.raises(UsageError, match="no model 'huge'"):
        resolve_model(spec, "huge", settings(tmp_path, hub), pm)


def test_task_without_weights_is_unavailable(tmp_path):
    spec = tiny_spec("untrained")
    with pytest.raises(WeightsUnavailableError, match="task 'untrained' has no trained weights yet"):
        resolve_model(spec, None, settings(tmp_path), make_pm(spec))


# ---------------------------------------------------------------------------- interrupted and concurrent downloads


def test_broken_download_resumes_and_leaves_no_partial_file(hub, spec, files, tmp_path):
    hub.cut_once.add("model.safetensors")  # the first GET stops halfway and drops the connection
    resolved = resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))
    assert resolved.weights_sha256 == files.weights_sha256
    assert hub.gets("model.safetensors") == 2  # resumed with a Range request
    assert incomplete_files(tmp_path / "cache") == []


def test_leftover_partial_download_never_passes_as_complete(hub, spec, files, tmp_path):
    # What a download killed mid-way leaves behind: a partial temporary blob, no snapshot entry.
    blobs = tmp_path / "cache" / "models--segtool-test--tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{files.weights_sha256}.deadbeef.incomplete").write_bytes(files.weights_bytes[:1000])
    with pytest.raises(WeightsUnavailableError, match="not in the cache"):
        resolve_model(spec, None, settings(tmp_path, hub, offline=True), make_pm(spec))
    resolved = resolve_model(spec, None, settings(tmp_path, hub), make_pm(spec))
    assert sha256_file(resolved.weights_path) == files.weights_sha256


def test_two_processes_pulling_at_once_end_with_one_good_copy(hub, files, tmp_path):
    # Each process sends 2 HEADs before its GET (segtool's quick reachability probe, then the
    # client's own); holding the first GET until all 4 have arrived makes the pulls overlap.
    hub.gate = ("model.safetensors", 4)
    hub.delay = 0.05
    FakeHub.CHUNK = 4096
    try:
        args = json.dumps(
            {
                "task": "tiny",
                "repo_id": REPO,
                "revision": REV,
                "weights": "model.safetensors",
                "weights_sha256": files.weights_sha256,
                "config": "config.json",
                "config_sha256": files.config_sha256,
                "cache_dir": str(tmp_path / "cache"),
                "endpoint": hub.endpoint,
            }
        )
        script = Path(__file__).with_name("hub_server.py")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEGTOOL_"))}
        procs = [
            subprocess.Popen([sys.executable, str(script), "pull", args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        FakeHub.CHUNK = 16 * 1024
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()
    paths = {out.decode().strip() for out, _ in outs}
    assert len(paths) == 1
    assert sha256_file(paths.pop()) == files.weights_sha256
    blobs = sorted(p.name for p in (tmp_path / "cache" / "models--segtool-test--tiny" / "blobs").iterdir())
    assert len(blobs) == 2 and files.weights_sha256 in blobs  # one weights blob, one config blob
    assert incomplete_files(tmp_path / "cache") == []
    # Both asked for the file before it existed, yet it was downloaded once: the second process
    # waited on the client's file lock, then used the first one's copy.
    assert hub.gets("model.safetensors", "HEAD") == 4
    assert hub.gets("model.safetensors") == 1


# ---------------------------------------------------------------------------- bundled weights


@pytest.fixture
def bundled(tmp_path, files, monkeypatch):
    package = f"segtool_testbundle_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "site" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "model.safetensors").write_bytes(files.weights_bytes)
    (folder / "config.json").write_bytes(files.config_bytes)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield package, folder
    sys.modules.pop(package, None)


def test_bundled_weights_resolve_from_the_package(bundled, files, tmp_path):
    package, folder = bundled
    spec = tiny_spec(models={"default": bundled_ref(files, package)})
    resolved = resolve_model(spec, None, settings(tmp_path, offline=True), make_pm(spec))
    assert Path(resolved.weights_path) == folder / "model.safetensors"
    assert resolved.source == f"bundled {package}"
    assert resolve_builtin(spec.models["default"], "config.json", settings(tmp_path)) == str(folder / "config.json")


def test_tampered_bundled_file_is_refused_and_left_in_place(bundled, files, tmp_path):
    package, folder = bundled
    tamper(str(folder / "model.safetensors"))
    spec = tiny_spec(models={"default": bundled_ref(files, package)})
    with pytest.raises(WeightsIntegrityError) as info:
        resolve_model(spec, None, settings(tmp_path), make_pm(spec))
    assert files.weights_sha256 in info.value.one_line() and "reinstall" in info.value.one_line()
    assert (folder / "model.safetensors").exists()  # not ours to delete


def test_bundled_file_missing_from_package(bundled, files, tmp_path):
    package, folder = bundled
    (folder / "config.json").unlink()
    spec = tiny_spec(models={"default": bundled_ref(files, package)})
    with pytest.raises(WeightsUnavailableError, match="config.json is missing from package"):
        resolve_model(spec, None, settings(tmp_path), make_pm(spec))


# ---------------------------------------------------------------------------- explicit files, plugins, loading


def test_explicit_weights_and_model_dir_are_hashed_for_provenance(files, tmp_path):
    spec = tiny_spec()  # no pinned models: explicit files still work
    pm = make_pm(spec)
    by_dir = resolve_model(spec, None, settings(tmp_path), pm, model_dir=files.folder)
    by_file = resolve_model(spec, None, settings(tmp_path), pm, weights_path=files.weights)
    for resolved in (by_dir, by_file):
        assert not resolved.pinned and resolved.variant is None
        assert resolved.weights_sha256 == files.weights_sha256
        assert resolved.config_sha256 == files.config_sha256
    assert by_dir.source.startswith("--model-dir") and by_file.source.startswith("--weights")
    build_model(spec, by_file)

    with pytest.raises(UsageError):
        resolve_model(spec, None, settings(tmp_path), pm, weights_path=files.weights, model_dir=files.folder)
    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"\x80\x04not really")
    with pytest.raises(WeightsUnavailableError, match="only .safetensors"):
        resolve_model(spec, None, settings(tmp_path), pm, weights_path=pickle_file)
    with pytest.raises(WeightsUnavailableError, match="not a directory"):
        resolve_model(spec, None, settings(tmp_path), pm, model_dir=tmp_path / "nope")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "model.safetensors").write_bytes(files.weights_bytes)
    with pytest.raises(WeightsUnavailableError, match="config.json"):
        resolve_model(spec, None, settings(tmp_path), pm, weights_path=lonely / "model.safetensors")
    other = tiny_spec("other-task")
    with pytest.raises(WeightsUnavailableError, match="trained for task 'tiny'"):
        resolve_model(other, None, settings(tmp_path), make_pm(other), model_dir=files.folder)


def test_weights_that_do_not_fit_the_architecture_give_one_line(files, tmp_path):
    spec = tiny_spec()
    resolved = resolve_model(spec, None, settings(tmp_path), make_pm(spec), model_dir=files.folder)
    from dataclasses import replace

    wrong = replace(resolved.config, architecture=dict(resolved.config.architecture, features=[8, 16]))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model(spec, replace(resolved, config=wrong))
    assert "do not fit the model of task 'tiny'" in info.value.one_line()
    assert "wrong shape" in info.value.one_line()

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.safetensors").write_bytes(b"\x00" * 64)
    (garbage / "config.json").write_bytes(files.config_bytes)
    broken = resolve_model(spec, None, settings(tmp_path), make_pm(spec), model_dir=garbage)
    with pytest.raises(WeightsUnavailableError, match="not a readable safetensors file"):
        load_state_dict(broken)


def test_a_plugin_can_answer_first_and_is_still_hash_checked(files, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.safetensors").write_bytes(files.weights_bytes)
    (mirror / "config.json").write_bytes(files.config_bytes)

    class Mirror:
        @hookimpl
        def segtool_resolve_weights(self, ref, filename, hub):
            return str(mirror / filename)

    spec = tiny_spec(models={"default": hub_ref(files, REPO, REV)})
    pm = make_pm(spec)
    pm.register(Mirror(), name="mirror")
    resolved = resolve_model(spec, None, settings(tmp_path), pm)  # the Hub URL points nowhere: never used
    assert resolved.weights_path == str(mirror / "model.safetensors")

    tamper(str(mirror / "model.safetensors"))
    with pytest.raises(WeightsIntegrityError):
        resolve_model(spec, None, settings(tmp_path), pm)
    assert (mirror / "model.safetensors").exists()  # outside the cache: reported, not deleted


def test_weights_package_never_unpickles():
    package = Path(__import__("segtool.weights").weights.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert {p.stem for p in modules} >= {"__init__", "resolve", "load", "sources", "archive"}
    for node in (n for p in modules for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[0] in ("pickle", "dill", "joblib") for n in names)
        if isinstance(node, ast.Attribute) and node.attr == "load":
            assert not (isinstance(node.value, ast.Name) and node.value.id in ("torch", "pickle"))

