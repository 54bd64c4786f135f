"""The plugin manager: built-in and third-party plugins load the same way.

Built-in task plugins are ordinary packages under ``plugins/`` declared in the
``segtool`` entry-point group, exactly as a third-party plugin would be.

Environment:
- ``SEGTOOL_LOAD_PLUGINS=a,b`` loads only these entry points (by name); empty loads none.
- ``SEGTOOL_TRACE_PLUGINS=1`` prints every hook call and its result to stderr.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

import pluggy

from segtool import hookspecs

ENTRY_POINT_GROUP = "segtool"


@dataclass(frozen=True)
class LoadProblem:
    """A plugin that could not be loaded or registered something invalid."""

    plugin: str
    message: str


def _warn(message: str) -> None:
    print(f"segtool: warning: {message}", file=sys.stderr)


class SegtoolPluginManager(pluggy.PluginManager):
    """pluggy's manager plus the distribution (name, version) of each entry-point plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.distributions: dict[str, tuple[str, str]] = {}


def make_plugin_manager(
    load_entrypoints: bool = True,
    warn: Callable[[str], None] = _warn,
) -> SegtoolPluginManager:
    """A fresh plugin manager with segtool's hookspecs and, optionally, its entry points.

    A plugin that raises on import produces one warning (via ``warn``) and is skipped.
    """
    pm = SegtoolPluginManager()
    pm.add_hookspecs(hookspecs)
    from segtool import builtin_hooks

    pm.register(builtin_hooks, name="segtool.builtin")
    if load_entrypoints:
        _load_entrypoints(pm, warn)
    pm.check_pending()
    if os.environ.get("SEGTOOL_TRACE_PLUGINS"):
        _trace(pm)
    return pm


def _selected_names() -> set[str] | None:
    raw = os.environ.get("SEGTOOL_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _load_entrypoints(pm: SegtoolPluginManager, warn: Callable[[str], None]) -> None:
    selected = _selected_names()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if selected is not None and ep.name not in selected:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue  # loading twice is safe
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break segtool
            warn(f"plugin {ep.name!r} failed to load: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        try:
            pm.register(plugin, name=ep.name)
        except ValueError:
            continue  # the same module registered under another name
        except pluggy.PluginValidationError as exc:
            warn(f"plugin {ep.name!r} is invalid: {exc}".splitlines()[0])
            continue
        dist = getattr(ep, "dist", None)
        if dist is not None:
            pm.distributions[ep.name] = (dist.name, dist.version)


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name, hook_impls, kwargs):
        print(f"segtool trace: {hook_name} -> {[i.plugin_name for i in hook_impls]} {kwargs}", file=sys.stderr)

    def after(outcome, hook_name, hook_impls, kwargs):
        print(f"segtool trace: {hook_name} returned {outcome.get_result()!r}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def describe_plugins(pm: pluggy.PluginManager) -> list[dict]:
    """Name, distribution, version and implemented hooks of each registered plugin."""
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = getattr(pm, "distributions", {}).get(name)
        hooks = sorted(impl_hook.name for impl_hook in pm.get_hookcallers(plugin) or [])
        rows.append(
            {
                "name": name,
                "distribution": dist[0] if dist else None,
                "version": dist[1] if dist else None,
                "hooks": hooks,
            }
        )
    return rows
