"""The per-invocation application state: plugin manager and task registry, built on first use."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from segtool.plugins import SegtoolPluginManager, make_plugin_manager
from segtool.registry import TaskRegistry, collect_tasks


def _warn(message: str) -> None:
    print(f"segtool: warning: {message}", file=sys.stderr)


@dataclass
class App:
    """Loads plugins lazily, once; tests pass their own plugin manager."""

    plugin_manager_factory: Callable[[], SegtoolPluginManager] | None = None
    warn: Callable[[str], None] = field(default=_warn)

    @cached_property
    def plugin_manager(self) -> SegtoolPluginManager:
        if self.plugin_manager_factory is not None:
            return self.plugin_manager_factory()
        return make_plugin_manager(warn=self.warn)

    @cached_property
    def registry(self) -> TaskRegistry:
        return collect_tasks(self.plugin_manager, self.warn)
