"""Proof that a file is the one pinned: sha256 hashing, and removal of a bad cached copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from segtool.errors import WeightsIntegrityError, WeightsUnavailableError
from segtool.weights.settings import HubSettings

def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's content, in lowercase hex (follows symlinks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(Path(folder).resolve())
        return True
    except ValueError:
        try:
            Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(folder)))
            return True
        except ValueError:
            return False


def remove_cached_copy(path: str | os.PathLike, hub: HubSettings) -> bool:
    """Delete a file that lies in the Hub cache: its snapshot entry and the blob it points to.

    Returns False (and deletes nothing) for a file outside ``hub.cache_dir``.
    """
    path = str(path)
    if not _inside(path, hub.cache_dir):
        return False
    target = os.path.realpath(path)
    victims = [path] + ([target] if target != path and _inside(target, hub.cache_dir) else [])
    removed = False
    for victim in victims:
        try:
            os.unlink(victim)
            removed = True
        except OSError:
            pass
    return removed


def check_sha256(path: str, expected: str, hub: HubSettings, what: str, fix: str) -> str:
    """Hash ``path``; on a mismatch remove it if cached and raise WeightsIntegrityError.

    ``what`` names the file for the message, ``fix`` says what to do about it.
    """
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise WeightsUnavailableError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    if actual != expected:
        removed = remove_cached_copy(path, hub)
        action = "removed the bad cached copy; " if removed else ""
        raise WeightsIntegrityError(
            f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}; "
            f"refusing to use it ({action}{fix})"
        )
    return actual

