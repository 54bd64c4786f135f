"""The pinned files of a task's model: WeightsFile (a name and its sha256) and WeightsRef (bundled or Hub).

Re-exported by `segtool.spec`, where plugins import them from. Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segtool.errors import InvalidSpecError

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def raise_spec_error(what: str, problem: str) -> None:
    raise InvalidSpecError(f"{what}: {problem}")


@dataclass(frozen=True)
class WeightsFile:
    """One file of a model and the sha256 it must hash to."""

    filename: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.filename or self.filename.startswith("/") or ".." in self.filename.split("/"):
            raise_spec_error("weights file", f"bad filename {self.filename!r}")
        if not HEX64.match(self.sha256 or ""):
            raise_spec_error("weights file", f"{self.filename}: sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class WeightsRef:
    """Where one model variant's files live.

    Either bundled (``package`` names an importable package whose data files are
    ``weights.filename`` and ``config.filename``) or on the Hugging Face Hub
    (``repo_id`` at ``revision``, a full 40-hex commit, never a branch).

    ``member`` set: the weights file is an ensemble's (tensors ``members.<i>.*``) and this model
    is its member ``i``, run alone with its own config; one file then serves both models.
    """

    weights: WeightsFile
    config: WeightsFile
    repo_id: str | None = None
    revision: str | None = None
    package: str | None = None
    description: str = ""
    member: int | None = None

    def __post_init__(self) -> None:
        if self.member is not None and (
            isinstance(self.member, bool) or not isinstance(self.member, int) or self.member < 0
        ):
            raise_spec_error("weights", f"member must be an ensemble member index (an integer >= 0), got {self.member!r}")
        hub = self.repo_id is not None or self.revision is not None
        if hub == (self.package is not None):
            raise_spec_error("weights", "give either package= (bundled) or repo_id= and revision= (Hub), not both")
        if hub:
            if not self.repo_id or self.repo_id.count("/") != 1:
                raise_spec_error("weights", f"repo_id must be 'owner/name', got {self.repo_id!r}")
            if not HEX40.match(self.revision or ""):
                raise_spec_error("weights", f"{self.repo_id}: revision must be a full 40-hex commit, got {self.revision!r}")

    @classmethod
    def bundled(cls, package: str, weights_sha256: str, config_sha256: str, description: str = "",
                folder: str = "") -> "WeightsRef":
        """A model shipped inside ``package``: ``[folder/]model.safetensors`` and ``[folder/]config.json``."""
        prefix = f"{folder}/" if folder else ""
        return cls(weights=WeightsFile(f"{prefix}model.safetensors", weights_sha256),
                   config=WeightsFile(f"{prefix}config.json", config_sha256), package=package,
                   description=description)

    @classmethod
    def member_of(cls, ensemble: "WeightsRef", index: int, config_sha256: str, description: str = "",
                  folder: str = "") -> "WeightsRef":
        """Member ``index`` of ``ensemble`` run alone: the ensemble's weights file, ``[folder/]config.json``."""
        if ensemble.member is not None:
            raise_spec_error("weights", "member_of needs an ensemble's reference, not another member's")
        prefix = f"{folder}/" if folder else ""
        return cls(weights=ensemble.weights, config=WeightsFile(f"{prefix}config.json", config_sha256),
                   repo_id=ensemble.repo_id, revision=ensemble.revision, package=ensemble.package,
                   description=description, member=index)

    @property
    def source(self) -> str:
        return "bundled" if self.package else "hub"
