"""segtool's own hook implementations, registered in every plugin manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segtool.hookspecs import hookimpl

if TYPE_CHECKING:
    from segtool.spec import WeightsRef
    from segtool.weights import HubSettings


@hookimpl(trylast=True)
def segtool_resolve_weights(ref: "WeightsRef", filename: str, hub: "HubSettings") -> str | None:
    """Bundled files from their package; Hub files from the cache or a pinned download."""
    from segtool.weights import resolve_builtin

    return resolve_builtin(ref, filename, hub)
