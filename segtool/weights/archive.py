"""Carrying cached Hub weights between machines: ``segtool models export`` / ``import``.

Archive layout (``export_weights`` writes it, ``import_weights`` reads it): a plain tar
whose members are a Hugging Face Hub cache, plus a manifest::

    segtool-weights.json                               manifest: task, model, repo, revision, file, sha256, size
    models--OWNER--NAME/blobs/SHA256                   file contents
    models--OWNER--NAME/snapshots/REVISION/FILENAME -> ../../blobs/SHA256

``import_weights`` checks every file against the manifest and against the sha256 pinned by
the installed plugins before it enters the cache; ``tar -xf FILE.tar -C CACHE`` also works
(segtool still checks the hashes before use). A folder source is an unpacked archive or
any Hub cache folder (e.g. a shared drive copy). Torch is never imported.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator

from segtool.version import __version__
from segtool.errors import UsageError, WeightsUnavailableError
from segtool.io.atomic import replacing
from segtool.weights.integrity import check_sha256, sha256_file
from segtool.weights.inventory import select_models
from segtool.weights.resolve import find_local, pull_command
from segtool.weights.results import ArchiveEntry, ExportResult, ImportResult
from segtool.weights.settings import HubSettings

if TYPE_CHECKING:
    import pluggy

    from segtool.registry import TaskRegistry
    from segtool.spec import TaskSpec

MANIFEST = "segtool-weights.json"
ARCHIVE_FORMAT = "segtool-weights"

Opener = Callable[[], BinaryIO]


def repo_folder(repo_id: str) -> str:
    """The Hub cache folder name of a model repository: ``models--OWNER--NAME``."""
    return "models--" + repo_id.replace("/", "--")


# ---------------------------------------------------------------------------- export


def export_weights(
    archive: Path,
    registry: "TaskRegistry",
    names: Iterable[str],
    models: Iterable[str],
    pm: "pluggy.PluginManager",
    hub: HubSettings,
    on_skip: Callable[["TaskSpec", str, str], None],
) -> ExportResult:
    """Write the cached, re-hashed Hub files of tasks ``names`` (default: all) to ``archive``.

    ``models`` limits the variants. Bundled models are skipped, and so are uncached ones
    unless their task is named (then WeightsUnavailableError); ``on_skip(spec, variant,
    why)`` hears of each skip. Returns the files written and the bytes of their distinct blobs;
    no files and no archive when every selected model is bundled (it ships with its plugin).
    """
    names = list(names)
    pairs, _ = select_models(registry, names, models, False)
    entries = _export_entries(pairs, pm, hub, bool(names), on_skip)
    if not entries and pairs and all(spec.models[variant].package for spec, variant in pairs):
        return ExportResult([], 0)
    if not entries:
        raise WeightsUnavailableError(
            f"no cached Hub weights to export from {hub.cache_dir}; fetch them first with: segtool models pull --all"
        )
    _write_archive(archive, entries)
    total = sum(e.size for e in {e.blob: e for e in entries}.values())
    return ExportResult(entries, total)


def _export_entries(pairs, pm, hub: HubSettings, strict: bool, on_skip) -> list[ArchiveEntry]:
    entries: list[ArchiveEntry] = []
    for spec, variant in pairs:
        ref = spec.models[variant]
        if ref.package:
            on_skip(spec, variant, "bundled with its plugin")
            continue
        found = []
        for wf in (ref.weights, ref.config):
            p = find_local(pm, spec, variant, wf.filename, hub)
            if p is None:
                break
            found.append((wf, p))
        if len(found) < 2:
            if strict:
                raise WeightsUnavailableError(
                    f"weights for task {spec.name!r} (model {variant!r}) are not cached; fetch them first with: "
                    f"{pull_command(spec.name, variant, spec.default_model, hub)}"
                )
            on_skip(spec, variant, "not cached")
            continue
        for wf, p in found:
            check_sha256(p, wf.sha256, hub, f"{wf.filename} of task {spec.name!r} (model {variant!r})", "pull it again")
            folder = repo_folder(ref.repo_id)
            entries.append(
                ArchiveEntry(
                    task=spec.name,
                    variant=variant,
                    repo_id=ref.repo_id,
                    revision=ref.revision,
                    filename=wf.filename,
                    sha256=wf.sha256,
                    size=os.path.getsize(p),
                    blob=f"{folder}/blobs/{wf.sha256}",
                    path=f"{folder}/snapshots/{ref.revision}/{wf.filename}",
                    local=p,
                )
            )
    return entries


def _write_archive(archive: Path, entries: list[ArchiveEntry]) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": 1,
        "created_by": f"segtool {__version__}",
        "files": [e.to_json() for e in entries],
    }
    with replacing(archive) as tmp:
        with tarfile.open(tmp, mode) as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
            written: set[str] = set()
            for e in entries:
                if e.blob not in written:
                    info = tar.gettarinfo(e.local, arcname=e.blob)  # follows the snapshot symlink
                    info = _regular(info, e.size)
                    with open(e.local, "rb") as f:
                        tar.addfile(info, f)
                    written.add(e.blob)
                if e.path not in written:
                    link = tarfile.TarInfo(e.path)
                    link.type = tarfile.SYMTYPE
                    link.linkname = os.path.relpath(e.blob, os.path.dirname(e.path))
                    link.mtime, link.mode = int(time.time()), 0o777
                    tar.addfile(link)
                    written.add(e.path)


def _regular(info: tarfile.TarInfo, size: int) -> tarfile.TarInfo:
    info.type = tarfile.REGTYPE
    info.size = size
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------------------- import


def import_weights(source: str, registry: "TaskRegistry", hub: HubSettings) -> list[ImportResult]:
    """Bring every file of ``source`` (archive, unpacked archive or Hub cache folder) into the cache.

    One result per file, ``status`` ``imported``, ``present`` or ``refused`` (with ``reason``).
    Raises UsageError for a source that is not segtool weights, WeightsUnavailableError
    when it holds none of the installed tasks' files.
    """
    pins = _pins(registry)
    results = [_import_one(item, opener, pins, hub) for item, opener in _import_items(Path(source), pins)]
    if not results:
        raise WeightsUnavailableError(f"{source}: no segtool weights found (no {MANIFEST} and no cached files of known tasks)")
    return results


def _pins(registry) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """(repo_id, revision, filename) -> (sha256, task, variant) for every Hub file the plugins declare."""
    pins = {}
    for spec in registry:
        for variant, ref in spec.models.items():
            if ref.repo_id:
                for wf in (ref.weights, ref.config):
                    pins[(ref.repo_id, ref.revision, wf.filename)] = (wf.sha256, spec.name, variant)
    return pins


def _import_items(src: Path, pins: dict) -> Iterator[tuple[dict[str, Any], Opener]]:
    if src.is_file():
        if not tarfile.is_tarfile(src):
            raise UsageError(f"{src}: not a tar archive (give an archive from `segtool models export`, or a folder)")
        with tarfile.open(src, "r:*") as tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise UsageError(f"{src}: no {MANIFEST} inside; not an archive from `segtool models export`") from None
            manifest = _read_manifest(tar.extractfile(member).read(), str(src))
            for item in manifest["files"]:
                try:
                    blob = tar.getmember(item["blob"])
                except KeyError:
                    yield item, _missing(f"{item['blob']} is missing from the archive")
                    continue
                if not blob.isreg():
                    yield item, _missing(f"{item['blob']} is not a regular file in the archive")
                    continue
                yield item, (lambda blob=blob: tar.extractfile(blob))
        return
    manifest_path = src / MANIFEST
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path.read_bytes(), str(manifest_path))
        for item in manifest["files"]:
            yield item, _file_opener(src / item["blob"])
        return
    # A Hub cache folder: look for every pinned file of the installed tasks.
    for (repo_id, revision, filename), (sha, task, variant) in sorted(pins.items()):
        candidate = src / repo_folder(repo_id) / "snapshots" / revision / filename
        if candidate.is_file():
            item = {"task": task, "variant": variant, "repo_id": repo_id, "revision": revision, "filename": filename, "sha256": sha}
            yield item, _file_opener(candidate)


def _file_opener(p: Path) -> Opener:
    def opener() -> BinaryIO:
        if not p.is_file():
            raise OSError(f"{p} is missing")
        return open(p, "rb")

    return opener


def _missing(message: str) -> Opener:
    def opener() -> BinaryIO:
        raise OSError(message)

    return opener


def _read_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        ok = manifest.get("format") == ARCHIVE_FORMAT and isinstance(manifest.get("files"), list)
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise UsageError(f"{where}: not a segtool weights manifest")
    from segtool.spec import HEX40, HEX64

    for item in manifest["files"]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("repo_id"), str)
            and item["repo_id"].count("/") == 1
            and ".." not in item["repo_id"]
            and HEX40.match(str(item.get("revision", "")))
            and HEX64.match(str(item.get("sha256", "")))
            and isinstance(item.get("filename"), str)
            and item["filename"]
            and not item["filename"].startswith("/")
            and ".." not in item["filename"].split("/")
        ):
            raise UsageError(f"{where}: malformed manifest entry {item!r}")
        item["blob"] = f"{repo_folder(item['repo_id'])}/blobs/{item['sha256']}"  # never a path from outside
    return manifest


class _Refused(Exception):
    """A file that must not enter the cache; its message is the reason."""


def _import_one(item: dict[str, Any], opener: Opener, pins: dict, hub: HubSettings) -> ImportResult:
    repo_id, revision, filename, expected = item["repo_id"], item["revision"], item["filename"], item["sha256"]
    result = ImportResult(repo_id, revision, filename, expected)
    pin = pins.get((repo_id, revision, filename))
    if pin is not None:
        result = replace(result, task=pin[1], variant=pin[2])
        if pin[0] != expected:
            return replace(result, status="refused", reason=f"sha256 {expected} differs from the pinned {pin[0]} (task {pin[1]!r})")
    storage = Path(hub.cache_dir) / repo_folder(repo_id)
    pointer = storage / "snapshots" / revision / Path(*filename.split("/"))
    if pointer.is_file() and sha256_file(pointer) == expected:
        return replace(result, status="present", path=str(pointer))

    from filelock import FileLock

    blob = storage / "blobs" / expected
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(hub.cache_dir) / ".locks" / repo_folder(repo_id) / f"{expected}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):
        if not (blob.is_file() and sha256_file(blob) == expected):
            try:
                with replacing(blob) as tmp:
                    actual = _copy_hashing(opener, tmp)
                    if actual != expected:
                        raise _Refused(f"content hashes to {actual}, manifest says {expected}")
            except _Refused as exc:
                return replace(result, status="refused", reason=str(exc))
            except OSError as exc:
                return replace(result, status="refused", reason=str(exc))
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _link(blob, pointer)
    return replace(result, status="imported", path=str(pointer))


def _copy_hashing(opener: Opener, target: Path) -> str:
    """Copy what ``opener`` opens to ``target``; the sha256 of the bytes copied."""
    import hashlib

    digest = hashlib.sha256()
    with opener() as src, open(target, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            dst.write(block)
    return digest.hexdigest()


def _link(blob: Path, pointer: Path) -> None:
    """Point the snapshot entry at the blob (relative symlink, else a copy), atomically."""
    with replacing(pointer) as tmp:
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        except OSError:
            import shutil

            shutil.copyfile(blob, tmp)
