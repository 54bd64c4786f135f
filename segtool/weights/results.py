"""Typed results of the weights commands (``segtool models ...``), each with the JSON row it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


class _Row:
    """``to_json``: the fields as a dict, without the ``OPTIONAL`` ones that are None and the ``PRIVATE`` ones."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    PRIVATE: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in asdict(self).items()  # type: ignore[call-overload]
            if k not in self.PRIVATE and not (k in self.OPTIONAL and v is None)
        }


@dataclass(frozen=True)
class ModelFile(_Row):
    """One file (weights or config) of a model variant: its pin, and where it lies here if it does."""

    role: str  # "weights" | "config"
    filename: str
    sha256: str
    present: bool
    size: int | None
    path: str | None


@dataclass(frozen=True)
class ModelVariant(_Row):
    """One model of a task: where it comes from and whether both its files are here.

    ``member``: the weights file is an ensemble's and this model is its member of that index (else None).
    """

    variant: str
    default: bool
    source: str
    repo_id: str | None
    revision: str | None
    package: str | None
    description: str | None
    sha256: str  # of the weights file
    size: int | None  # of the weights file
    present: bool
    path: str | None  # of the weights file
    files: list[ModelFile]
    member: int | None = None


@dataclass(frozen=True)
class TaskModels(_Row):
    """A task's models (``segtool models list``); ``note`` says why there are none."""

    OPTIONAL = ("note",)

    task: str
    plugin: str | None
    available: bool
    default_model: str | None
    variants: list[ModelVariant] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class FileCheck(_Row):
    """A re-hash of one file against its pin (``segtool models verify``): ``status`` ok | missing | mismatch."""

    OPTIONAL = ("size", "removed")

    task: str
    variant: str
    filename: str
    expected: str
    status: str
    path: str | None
    actual: str | None
    size: int | None = None
    removed: bool | None = None  # mismatches only: whether the bad cached copy was deleted


@dataclass(frozen=True)
class LocalModel:
    """A model variant whose two files lie here, checked: their paths."""

    variant: str
    weights: str
    config: str


@dataclass(frozen=True)
class PullResult(_Row):
    """One model fetched (``ok``) or not (``error``) by ``segtool models pull``."""

    OPTIONAL = ("error", "source", "path", "config_path", "sha256", "size")

    task: str
    variant: str
    ok: bool
    error: str | None = None
    source: str | None = None
    path: str | None = None
    config_path: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ArchiveEntry(_Row):
    """One file in an export archive (its manifest row); ``local`` is where it was read from."""

    PRIVATE = ("local",)

    task: str
    variant: str
    repo_id: str
    revision: str
    filename: str
    sha256: str
    size: int
    blob: str  # archive member of the content
    path: str  # archive member of the snapshot link
    local: str = ""


@dataclass(frozen=True)
class ExportResult:
    """What ``segtool models export`` wrote: the files and the bytes of their distinct contents."""

    files: list[ArchiveEntry]
    bytes: int


@dataclass(frozen=True)
class ImportResult(_Row):
    """One file brought in by ``segtool models import``: ``status`` imported | present | refused."""

    OPTIONAL = ("task", "variant", "reason", "path")

    repo_id: str
    revision: str
    filename: str
    sha256: str
    task: str | None = None
    variant: str | None = None
    status: str = ""
    reason: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class PushedFile(_Row):
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PushResult(_Row):
    """The commit ``segtool models push`` made, and the files it holds."""

    repo_id: str
    revision: str
    commit_url: str
    task: str
    files: list[PushedFile]
