"""`segtool models ...` through click's CliRunner, the real huggingface_hub client and a Hub on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from hub_server import FakeHub, hub_ref, make_model_folder, make_pm, serve, tiny_spec  # noqa: E402

from segtool.app import App  # noqa: E402
from segtool.cli import cli  # noqa: E402
from segtool.weights import HubSettings, resolve_model, sha256_file  # noqa: E402

REPO = "segtool-test/tiny"
REV = "89abcdef0123456789abcdef0123456789abcdef"
SUBCOMMANDS = ("list", "pull", "verify", "path", "export", "import", "push")


pytestmark = pytest.mark.usefixtures("clean_hub_env")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model"), tiny_spec(), seed=2)


@pytest.fixture
def hub(files, monkeypatch):
    with FakeHub() as fake:
        serve(fake, files, REPO, REV)
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)  # read when each command runs
        yield fake


@pytest.fixture
def specs(files):
    return [tiny_spec(models={"default": hub_ref(files, REPO, REV)}), tiny_spec("untrained")]


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def invoke(specs, *args: str):
    pm = make_pm(*specs)
    return CliRunner().invoke(cli, ["models", *args], obj=App(plugin_manager_factory=lambda: pm))


def listing(specs, cache) -> dict:
    result = invoke(specs, "list", "--json", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    return {entry["task"]: entry for entry in json.loads(result.stdout)}


# ---------------------------------------------------------------------------- help, imports


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand(sub):
    result = CliRunner().invoke(cli, ["models", sub, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_models_command_does_not_import_torch():
    code = "import sys, segtool.commands.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- list, pull, verify, path


def test_list_marks_tasks_without_weights_unavailable(specs, cache):
    tasks = listing(specs, cache)
    assert tasks["untrained"]["available"] is False and tasks["untrained"]["variants"] == []
    tiny = tasks["tiny"]
    assert tiny["available"] is True and tiny["default_model"] == "default"
    (variant,) = tiny["variants"]
    assert variant["variant"] == "default" and variant["default"] is True
    assert variant["source"] == "hub" and variant["repo_id"] == REPO and variant["revision"] == REV
    assert variant["present"] is False and variant["size"] is None and len(variant["sha256"]) == 64
    table = invoke(specs, "list", "--cache-dir", cache)
    assert table.exit_code == 0 and "no trained" in table.output


def test_pull_then_list_verify_and_path(hub, specs, files, cache):
    result = invoke(specs, "pull", "tiny", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "tiny/default" in result.output and "sha256 ok" in result.output

    variant = listing(specs, cache)["tiny"]["variants"][0]
    assert variant["present"] is True
    assert variant["size"] == files.weights.stat().st_size
    assert [f["present"] for f in variant["files"]] == [True, True]

    verified = invoke(specs, "verify", "--json", "--cache-dir", cache)
    assert verified.exit_code == 0, verified.output
    rows = json.loads(verified.stdout)
    assert {(r["filename"], r["status"]) for r in rows} == {("model.safetensors", "ok"), ("config.json", "ok")}

    where = invoke(specs, "path", "tiny", "--cache-dir", cache)
    assert where.exit_code == 0, where.output
    weights = where.stdout.strip()
    assert sha256_file(weights) == files.weights_sha256
    assert Path(weights).with_name("config.json").is_file()  # usable as `segtool run --weights PATH`

    hub.log.clear()  # pulling again only re-hashes
    again = invoke(specs, "pull", "--all", "--json", "--cache-dir", cache)
    assert again.exit_code == 0, again.output
    assert [r["ok"] for r in json.loads(again.stdout)] == [True]
    assert "untrained: no trained weights yet" in again.output
    assert hub.log == []


def test_pull_usage_and_offline_errors(hub, specs, cache):
    assert invoke(specs, "pull", "--cache-dir", cache).exit_code == 2
    assert invoke(specs, "pull", "tiny", "--model", "huge", "--cache-dir", cache).exit_code == 2
    offline = invoke(specs, "pull", "tiny", "--offline", "--cache-dir", cache)
    assert offline.exit_code == 3
    assert "segtool models pull tiny" in offline.output and hub.log == []
    untrained = invoke(specs, "pull", "untrained", "--cache-dir", cache)
    assert untrained.exit_code == 3 and "no trained weights yet" in untrained.output
    missing = invoke(specs, "path", "tiny", "--cache-dir", cache)
    assert missing.exit_code == 3 and "fetch them with: segtool models pull tiny" in missing.output


def test_verify_finds_a_tampered_file_and_pull_repairs_it(hub, specs, files, cache):
    assert invoke(specs, "pull", "tiny", "--cache-dir", cache).exit_code == 0
    weights = invoke(specs, "path", "tiny", "--cache-dir", cache).stdout.strip()
    blob = os.path.realpath(weights)
    Path(blob).write_bytes(b"tampered" + Path(blob).read_bytes()[8:])

    verified = invoke(specs, "verify", "--json", "--cache-dir", cache)
    assert verified.exit_code == 3
    bad = [r for r in json.loads(verified.stdout) if r["status"] == "mismatch"]
    assert len(bad) == 1 and bad[0]["filename"] == "model.safetensors" and bad[0]["removed"] is True
    assert bad[0]["expected"] == files.weights_sha256 and bad[0]["actual"] != files.weights_sha256
    assert not os.path.exists(blob)

    assert invoke(specs, "path", "tiny", "--cache-dir", cache).exit_code == 3
    assert invoke(specs, "pull", "tiny", "--cache-dir", cache).exit_code == 0
    assert invoke(specs, "verify", "--cache-dir", cache).exit_code == 0


# ---------------------------------------------------------------------------- export, import (air-gapped sites)


def test_export_then_import_into_an_empty_cache_works_offline(hub, specs, files, tmp_path, cache):
    assert invoke(specs, "pull", "tiny", "--cache-dir", cache).exit_code == 0
    archive = tmp_path / "carry" / "weights.tar"
    exported = invoke(specs, "export", str(archive), "--cache-dir", cache)
    assert exported.exit_code == 0, exported.output
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "segtool-weights.json" in names
    assert f"models--segtool-test--tiny/blobs/{files.weights_sha256}" in names
    assert f"models--segtool-test--tiny/snapshots/{REV}/model.safetensors" in names

    hub.stop()  # the air-gapped site
    site = str(tmp_path / "site-cache")
    imported = invoke(specs, "import", str(archive), "--json", "--cache-dir", site)
    assert imported.exit_code == 0, imported.output
    assert {r["status"] for r in json.loads(imported.stdout)} == {"imported"}
    assert listing(specs, site)["tiny"]["variants"][0]["present"] is True
    resolved = resolve_model(specs[0], None, HubSettings(cache_dir=site, endpoint=hub.endpoint, offline=True), make_pm(*specs))
    assert resolved.weights_sha256 == files.weights_sha256

    again = invoke(specs, "import", str(archive), "--json", "--cache-dir", site)
    assert {r["status"] for r in json.loads(again.stdout)} == {"present"}

    # A Hub cache folder (e.g. copied to a shared drive) imports too, without a manifest.
    other = str(tmp_path / "other-cache")
    from_dir = invoke(specs, "import", cache, "--json", "--cache-dir", other)
    assert from_dir.exit_code == 0, from_dir.output
    assert len(json.loads(from_dir.stdout)) == 2 and listing(specs, other)["tiny"]["variants"][0]["present"]


def _rewrite_archive(src: Path, dst: Path, change) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isreg() else None
            member, data = change(member, data)
            if data is not None:
                member.size = len(data)
                tout.addfile(member, io.BytesIO(data))
            else:
                tout.addfile(member)


def test_import_refuses_tampered_or_unpinned_content(hub, specs, files, tmp_path, cache):
    assert invoke(specs, "pull", "tiny", "--cache-dir", cache).exit_code == 0
    archive = tmp_path / "weights.tar"
    assert invoke(specs, "export", str(archive), "--cache-dir", cache).exit_code == 0

    def flip_weights(member, data):
        if member.name.endswith(files.weights_sha256):
            data = b"evil" + data[4:]
        return member, data

    tampered = tmp_path / "tampered.tar"
    _rewrite_archive(archive, tampered, flip_weights)
    site = tmp_path / "site"
    result = invoke(specs, "import", str(tampered), "--json", "--cache-dir", str(site))
    assert result.exit_code == 3
    status = {r["filename"]: r["status"] for r in json.loads(result.stdout)}
    assert status == {"model.safetensors": "refused", "config.json": "imported"}
    assert not list(site.rglob("model.safetensors")) and not list(site.rglob("*.incomplete"))

    # Content and manifest changed together still do not match what the plugin pins.
    evil = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "
    import hashlib

    evil_sha = hashlib.sha256(evil).hexdigest()

    def swap(member, data):
        if member.name == "segtool-weights.json":
            manifest = json.loads(data)
            for item in manifest["files"]:
                if item["filename"] == "model.safetensors":
                    item["sha256"] = evil_sha
            data = json.dumps(manifest).encode()
        elif member.name.endswith(files.weights_sha256):
            member.name = member.name.replace(files.weights_sha256, evil_sha)
            data = evil
        return member, data

    swapped = tmp_path / "swapped.tar"
    _rewrite_archive(archive, swapped, swap)
    result = invoke(specs, "import", str(swapped), "--json", "--cache-dir", str(tmp_path / "site2"))
    assert result.exit_code == 3
    refused = [r for r in json.loads(result.stdout) if r["status"] == "refused"]
    assert len(refused) == 1 and "pinned" in refused[0]["reason"]


def test_export_with_nothing_cached_and_import_of_garbage(specs, tmp_path, cache):
    result = invoke(specs, "export", str(tmp_path / "w.tar"), "--cache-dir", cache)
    assert result.exit_code == 3 and "segtool models pull" in result.output
    assert not (tmp_path / "w.tar").exists()
    named = invoke(specs, "export", str(tmp_path / "w.tar"), "tiny", "--cache-dir", cache)
    assert named.exit_code == 3 and "segtool models pull tiny" in named.output
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    assert invoke(specs, "import", str(junk), "--cache-dir", cache).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(specs, "import", str(empty), "--cache-dir", cache).exit_code == 3


# ---------------------------------------------------------------------------- push


def test_push_uploads_a_model_folder_and_the_printed_pin_resolves(hub, files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    spec = tiny_spec()
    result = invoke([spec], "push", str(files.folder), "me/tiny-model", "--json")
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout)
    assert len(pushed["revision"]) == 40 and pushed["repo_id"] == "me/tiny-model"
    sha = {f["filename"]: f["sha256"] for f in pushed["files"]}
    assert sha["model.safetensors"] == files.weights_sha256 and "README.md" in sha
    assert all(auth == "Bearer hf_test_token" for method, _, auth in hub.log if method == "POST")

    from segtool.spec import WeightsFile, WeightsRef

    ref = WeightsRef(
        weights=WeightsFile("model.safetensors", sha["model.safetensors"]),
        config=WeightsFile("config.json", sha["config.json"]),
        repo_id="me/tiny-model",
        revision=pushed["revision"],
    )
    pinned = tiny_spec(models={"default": ref})
    resolved = resolve_model(pinned, None, HubSettings(cache_dir=str(tmp_path / "c"), endpoint=hub.endpoint), make_pm(pinned))
    assert resolved.weights_sha256 == files.weights_sha256

    text = invoke([spec], "push", str(files.folder), "me/tiny-model")  # repo exists: a second commit
    assert text.exit_code == 0, text.output
    assert 'WeightsRef(\n    repo_id="me/tiny-model"' in text.stdout


def test_push_refuses_incomplete_folders(hub, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    result = invoke([tiny_spec()], "push", str(folder), "me/x")
    assert result.exit_code == 2 and "config.json is missing" in result.output
    assert invoke([tiny_spec()], "push", str(folder), "not-a-repo-id").exit_code == 2
    assert hub.log == []


def test_human_size_uses_decimal_units():
    from segtool.weights.inventory import human_size

    sizes = [None, 0, 999, 1000, 1_500, 20_300_000, 1_234_000_000]
    assert [human_size(s) for s in sizes] == ["-", "0 B", "999 B", "1.0 kB", "1.5 kB", "20.3 MB", "1.2 GB"]


@pytest.mark.parametrize("columns, whole", [(None, True), ("80", False)])
def test_piped_tables_keep_whole_words_unless_columns_says_otherwise(monkeypatch, columns, whole):
    """Written to a pipe (CliRunner's stdout is no terminal), `models list` is laid out wide;
    rich alone would squeeze it into 80 columns and cut 'bundled (segtool_spinal_gm)' into pieces."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "spinal-gm" in line and "dilated_gm" in line]
    assert len(rows) == 1
    assert ("bundled (segtool_spinal_gm)" in rows[0]) is whole
