"""A tiny Hugging Face Hub on 127.0.0.1 for tests, plus helpers that build tiny test models.

``FakeHub`` implements the parts of the Hub HTTP API that the real ``huggingface_hub``
client (2.x) uses for:

- ``hf_hub_download``: ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` with
  ``ETag`` (sha256 for LFS files, git blob sha1 otherwise), ``X-Repo-Commit``,
  ``Content-Length``, ``X-Linked-Etag``/``X-Linked-Size`` (LFS files) and ``Range``
  (``206 Partial Content``, used when the client resumes a broken download); errors
  carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``)
  exactly as the Hub sends them, which is what the client turns into its exceptions;
- ``HfApi.create_repo`` + ``upload_folder``: ``POST /api/repos/create``,
  ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{rev}`` (every file "regular",
  so no LFS/Xet storage is needed) and ``/api/models/{repo}/commit/{rev}`` (NDJSON with
  base64 file contents), which creates a new 40-hex commit and moves the branch.

Run ``python tests/hub_server.py pull SPEC_JSON`` to resolve a model in a separate
process (used by the concurrent-pull test).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from segtool.hookspecs import hookimpl

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>[^/]+)$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Repos -> commits -> {filename: bytes}, served over HTTP on 127.0.0.1 (port 0).

    Knobs for tests: ``delay`` (seconds between 16 KiB chunks of a GET), ``cut_once``
    (filenames whose next full GET stops halfway and drops the connection), ``gate``
    (``(filename, n)``: GETs of that file wait until n HEADs for it have arrived, so two
    clients are sure to overlap). ``log`` records (method, path, authorization) of each request.
    """

    CHUNK = 16 * 1024

    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.delay = 0.0
        self.cut_once: set[str] = set()
        self.gate: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._heads = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._endpoint: str | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ content
    def add_file(self, repo_id: str, revision: str, filename: str, data: bytes, branch: str | None = "main") -> None:
        with self._lock:
            self.commits.setdefault(repo_id, {}).setdefault(revision, {})[filename] = bytes(data)
            if branch:
                self.refs.setdefault(repo_id, {})[branch] = revision

    def gets(self, filename: str, method: str = "GET") -> int:
        """How many requests (GET by default) asked for ``filename``."""
        return sum(1 for m, path, _ in self.log if m == method and unquote(path).endswith("/" + filename))

    @staticmethod
    def is_lfs(filename: str, data: bytes) -> bool:
        return filename.endswith((".safetensors", ".bin", ".pt")) or len(data) > 10 * 1024 * 1024

    # ------------------------------------------------------------------ server
    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``; after ``stop()`` it still names the (now closed) port."""
        assert self._endpoint is not None, "hub not started"
        return self._endpoint

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self._endpoint = f"http://{host}:{port}"
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ lookups
    def _commit(self, repo_id: str, rev: str) -> str | None:
        if rev in self.commits.get(repo_id, {}):
            return rev
        return self.refs.get(repo_id, {}).get(rev)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self) -> None:
        with self.fake._lock:
            self.fake.log.append((self.command, self.path, self.headers.get("authorization")))
            self.fake._heads.notify_all()

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # ------------------------------------------------------------------ file API
    def do_HEAD(self) -> None:
        self._resolve(send_body=False)

    def do_GET(self) -> None:
        self._resolve(send_body=True)

    def _resolve(self, send_body: bool) -> None:
        self._record()
        m = RESOLVE.match(urlsplit(self.path).path)
        if not m:
            return self._error(404, "RepoNotFound", "Repository not found")
        repo, rev, filename = unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"])
        fake = self.fake
        with fake._lock:
            if repo not in fake.commits:
                return self._error(404, "RepoNotFound", "Repository not found")
            commit = fake._commit(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            data = fake.commits[repo][commit].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", "Entry not found", commit=commit)
            cut = send_body and filename in fake.cut_once and "Range" not in self.headers
            if cut:
                fake.cut_once.discard(filename)
            delay = fake.delay
            if send_body and fake.gate and fake.gate[0] == filename:
                name, n = fake.gate
                fake._heads.wait_for(lambda: fake.gets(name, "HEAD") >= n, timeout=30)

        lfs = FakeHub.is_lfs(filename, data)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        start, status = 0, 200
        rng = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if send_body and rng:
            start = int(rng[1])
            end = int(rng[2]) if rng[2] else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start : end + 1]
            status = 206
        else:
            body = data
        self.send_response(status)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if lfs:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        self.end_headers()
        if not send_body:
            return
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        for i in range(0, len(body), FakeHub.CHUNK):
            self.wfile.write(body[i : i + FakeHub.CHUNK])
            if delay:
                self.wfile.flush()
                threading.Event().wait(delay)

    # ------------------------------------------------------------------ upload API
    def do_POST(self) -> None:
        self._record()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        fake = self.fake
        if path == "/api/validate-yaml":
            return self._json({"errors": [], "warnings": []})
        if path == "/api/repos/create":
            payload = json.loads(raw or b"{}")
            repo = f"{payload.get('organization')}/{payload['name']}"
            with fake._lock:
                if repo in fake.commits:  # the Hub's 409 carries the url, which create_repo(exist_ok=True) reads
                    return self._json({"error": "You already created this model repo", "url": f"{fake.endpoint}/{repo}"}, 409)
                initial = hashlib.sha1(repo.encode()).hexdigest()
                fake.commits[repo] = {initial: {}}
                fake.refs[repo] = {"main": initial}
            return self._json({"url": f"{fake.endpoint}/{repo}", "name": repo})
        m = API_REPO.match(path)
        if not m:
            return self._error(404, "NotFound", f"no such endpoint {path}")
        repo, op, rev = unquote(m["repo"]), m["op"], unquote(m["rev"])
        with fake._lock:
            if repo not in fake.commits:
                return self._error(404, "RepoNotFound", "Repository not found")
            parent = fake._commit(repo, rev)
            if parent is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        if op == "preupload":
            files = json.loads(raw)["files"]
            return self._json(
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]}
            )
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        with fake._lock:
            files = dict(fake.commits[repo][parent])
            for item in lines:
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
                elif item["key"] != "header":
                    return self._error(400, "BadRequest", f"unsupported commit entry {item['key']}")
            oid = hashlib.sha1(parent.encode() + raw).hexdigest()
            fake.commits[repo][oid] = files
            fake.refs[repo][rev] = oid
        return self._json({"commitUrl": f"{fake.endpoint}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})


# ============================================================================ test models

TINY_ARCH = {
    "features": (4, 8),
    "strides": ((2, 2, 2),),
}


def tiny_spec(name: str = "tiny", models: dict | None = None, default_model: str | None = None, **kw: Any):
    """A 3D one-channel, one-label task with a two-level U-Net of 4 and 8 features."""
    from segtool.spec import TaskSpec

    return TaskSpec(
        name=name,
        description=f"test task {name}",
        channels=("img",),
        ndim=3,
        labels={1: "fg"},
        network="unet",
        model_kwargs=TINY_ARCH,
        patch_size=(8, 8, 8),
        target_spacing=(1.0, 1.0, 1.0),
        models=models or {},
        default_model=default_model,
        **kw,
    )


@dataclass(frozen=True)
class ModelFiles:
    folder: Path
    weights: Path
    config: Path
    weights_sha256: str
    config_sha256: str

    @property
    def weights_bytes(self) -> bytes:
        return self.weights.read_bytes()

    @property
    def config_bytes(self) -> bytes:
        return self.config.read_bytes()


def make_model_folder(folder: str | Path, spec, seed: int = 0) -> ModelFiles:
    """model.safetensors + config.json + README.md for ``spec``, from a seeded fresh network."""
    import torch
    from safetensors.torch import save_file

    from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = spec.build_network()
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    weights = folder / WEIGHTS_FILENAME
    save_file(state, str(weights))
    config = folder / CONFIG_FILENAME
    config.write_text(ModelConfig.for_spec(spec, seed=seed, training={"data": "synthetic"}).to_json())
    (folder / "README.md").write_text(f"---\nlicense: mit\n---\n# {spec.name}\nA tiny test model.\n")
    return ModelFiles(
        folder=folder,
        weights=weights,
        config=config,
        weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
        config_sha256=hashlib.sha256(config.read_bytes()).hexdigest(),
    )


def hub_ref(files: ModelFiles, repo_id: str, revision: str, description: str = ""):
    from segtool.spec import WeightsFile, WeightsRef

    return WeightsRef(
        weights=WeightsFile(files.weights.name, files.weights_sha256),
        config=WeightsFile(files.config.name, files.config_sha256),
        repo_id=repo_id,
        revision=revision,
        description=description,
    )


def bundled_ref(files: ModelFiles, package: str):
    from segtool.spec import WeightsFile, WeightsRef

    return WeightsRef(
        weights=WeightsFile(files.weights.name, files.weights_sha256),
        config=WeightsFile(files.config.name, files.config_sha256),
        package=package,
    )


def serve(hub: FakeHub, files: ModelFiles, repo_id: str, revision: str) -> None:
    hub.add_file(repo_id, revision, files.weights.name, files.weights_bytes)
    hub.add_file(repo_id, revision, files.config.name, files.config_bytes)


class TaskPlugin:
    """A plugin object that registers the given specs."""

    def __init__(self, *specs: Any) -> None:
        self.specs = specs

    @hookimpl
    def segtool_register_tasks(self, register):
        for spec in self.specs:
            register(spec)


def make_pm(*specs: Any):
    from segtool.plugins import make_plugin_manager

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(TaskPlugin(*specs), name="test-tasks")
    return pm


def _pull_main(argv: list[str]) -> int:
    """``pull JSON``: resolve one Hub model in this process and print its weights path."""
    from segtool.errors import SegtoolError
    from segtool.spec import WeightsFile, WeightsRef
    from segtool.weights import HubSettings, resolve_model

    args = json.loads(argv[1])
    ref = WeightsRef(
        weights=WeightsFile(args["weights"], args["weights_sha256"]),
        config=WeightsFile(args["config"], args["config_sha256"]),
        repo_id=args["repo_id"],
        revision=args["revision"],
    )
    spec = tiny_spec(args["task"], models={"default": ref})
    hub = HubSettings(cache_dir=args["cache_dir"], endpoint=args["endpoint"])
    try:
        resolved = resolve_model(spec, None, hub, make_pm(spec))
    except SegtoolError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
    print(resolved.weights_path)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pull":
        sys.exit(_pull_main(sys.argv[1:]))
    print("usage: python tests/hub_server.py pull JSON", file=sys.stderr)
    sys.exit(2)
