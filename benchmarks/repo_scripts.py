"""This checkout's data-preparation programs (scripts/), for benchmarks that convert data the same way.

Benchmarks run as files (``python benchmarks/accuracy.py ...``), so their folder is on
``sys.path`` and they import one another by name; segtool and the task plugins come from
the installed package (``pip install -e .``). scripts/ is a folder of programs, not a
package: :func:`script_module` loads ``scripts/NAME.py`` once, by its path, without
changing ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script_module(name: str) -> ModuleType:
    """``scripts/NAME.py`` as module ``NAME`` (the one already imported, if any)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no data-preparation script {SCRIPTS / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
