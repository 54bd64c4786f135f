"""Collects task specs from plugins, rejects duplicates, suggests close names."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pluggy

from segtool.errors import PluginError, SegtoolError, UnknownTaskError
from segtool.spec import TaskSpec


@dataclass
class TaskRegistry:
    """Task specs by name, with the plugin that registered each."""

    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, spec: TaskSpec, plugin: str) -> None:
        if not isinstance(spec, TaskSpec):
            raise PluginError(f"plugin {plugin!r} registered {type(spec).__name__}, not a TaskSpec")
        if spec.name in self.tasks:
            raise PluginError(
                f"task {spec.name!r} is registered twice: by plugin {self.owners[spec.name]!r} and by plugin {plugin!r}"
            )
        self.tasks[spec.name] = spec
        self.owners[spec.name] = plugin

    def get(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.tasks), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {known}") from None

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self.tasks.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, name: object) -> bool:
        return name in self.tasks


def collect_tasks(pm: pluggy.PluginManager, warn: Callable[[str], None]) -> TaskRegistry:
    """Ask every plugin for its tasks.

    An invalid spec or a plugin that raises gives one warning and is skipped; a
    duplicate task name is an error naming both plugins.
    """
    registry = TaskRegistry()
    impls = list(reversed(pm.hook.segtool_register_tasks.get_hookimpls()))  # pluggy's calling order
    for impl in impls:
        plugin_name = impl.plugin_name
        pending: list[TaskSpec] = []
        # Through pluggy's hook calling (so SEGTOOL_TRACE_PLUGINS shows it), one plugin at a
        # time: each task is credited to its plugin, and a plugin that raises skips only itself.
        others = [other.plugin for other in impls if other is not impl]
        try:
            pm.subset_hook_caller("segtool_register_tasks", remove_plugins=others)(register=pending.append)
        except SegtoolError as exc:
            warn(f"plugin {plugin_name!r} registered an invalid task: {exc.one_line()}")
            continue
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break segtool
            warn(f"plugin {plugin_name!r} failed to register tasks: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        for spec in pending:
            if not isinstance(spec, TaskSpec):
                warn(f"plugin {plugin_name!r} registered {type(spec).__name__}, not a TaskSpec")
                continue
            registry.add(spec, plugin_name)
    return registry
