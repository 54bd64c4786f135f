"""What every task's accuracy benchmark shares (benchmarks/accuracy.py and its accuracy_TASK.py modules):
running ``segtool run`` in a subprocess, reading the training and validation cases a model folder
records, naming model columns and writing the JSON report.

Standard library only at import: tests load this file by its path on its own.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The shared data folder beside the checkout (../shared/data); each task's default --data is under it.
SHARED_DATA = ROOT.parent / "shared" / "data"

#: segtool run's exit status when no weights are available (segtool.errors.EXIT_WEIGHTS_UNAVAILABLE)
EXIT_NO_WEIGHTS = 3
NO_MODEL = "no model"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_training(model_dir: Path | None, task: str) -> dict:
    """``training`` of the model's config.json: ``model_dir``'s, or that of the task's default model,
    resolved offline as `segtool run` would. Raises when there is no model or no config."""
    if model_dir is not None:
        return json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("training") or {}
    from segtool.app import App
    from segtool.weights import HubSettings, resolve_model

    app = App(warn=lambda message: None)
    spec = app.registry.get(task)
    resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), app.plugin_manager)
    return resolved.config.training or {}


def recorded_training(model_dir: Path | None, task: str) -> dict:
    """`model_training`, or {} when there is no model, no config or an unreadable file."""
    try:
        return model_training(model_dir, task)
    except Exception:
        return {}


def validation_cases(model_dir: Path | None) -> list[str] | None:
    """``training.data.validation_cases`` of a model folder's config.json, or None when not recorded."""
    if model_dir is None:
        return None
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        cases = ((config.get("training") or {}).get("data") or {}).get("validation_cases")
        return [str(c) for c in cases] if cases else None
    except (OSError, ValueError, AttributeError, TypeError):  # no config, not JSON, a malformed record: unknown
        return None


def training_cases(model_dir: Path | None, task: str = "spinal-gm") -> list[str] | None:
    """``training.data.train_cases`` of the model's config.json, or None when unknown (the column says "?")."""
    return cases_trained_on(recorded_training(model_dir, task))


def cases_trained_on(training: dict) -> list[str] | None:
    """The training cases a config.json's ``training`` records, or None when unknown.

    An ensemble whose members trained on different data records no ``training.data``; its
    training cases are then the union of its members' (``training.members[i].train_cases``).
    """
    try:
        cases = (training.get("data") or {}).get("train_cases")
        if cases is None and training.get("members"):
            per_member = [m.get("train_cases") for m in training["members"]]
            if all(c is not None for c in per_member):
                cases = sorted({str(c) for member in per_member for c in member})
        return [str(c) for c in cases] if cases is not None else None
    except (AttributeError, TypeError):  # a malformed record: the column says "?"
        return None


def segtool_records(task: str, args: list[str], model_dir: Path | None, timeout: float) -> tuple[int, list[dict], str]:
    """``segtool run TASK ARGS... --json --quiet --overwrite`` in a subprocess (this checkout first on the path):
    (exit status, its JSON records, the last line of its stderr)."""
    cmd = [sys.executable, "-m", "segtool", "run", task, *args, "--json", "--quiet", "--overwrite"]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    records = []
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "input" in record:
            records.append(record)
    return proc.returncode, records, (proc.stderr.strip().splitlines() or [""])[-1]


def run_segtool(images: list[Path], out_dir: Path, model_dir: Path | None, timeout: float = 1800,
                task: str = "spinal-gm", extra: list[str] | tuple[str, ...] = ()):
    """``segtool run TASK IMAGES --output-dir OUT --json [EXTRA...]`` (TASK: spinal-gm unless given).

    Returns (status, {input path: output path or None}, message); status is "ok",
    "no model" (exit 3) or "error".
    """
    status, records, last = segtool_records(task, [*map(str, images), "--output-dir", str(out_dir), *extra],
                                            model_dir, timeout)
    if status == EXIT_NO_WEIGHTS:
        return NO_MODEL, {}, last
    outputs = {str(Path(r["input"]).resolve()): r["output"] if r.get("status") == "done" else None for r in records}
    if status not in (0, 1) or not outputs:
        return "error", outputs, f"segtool run exited {status}: {last}"
    return "ok", outputs, last


def column_names(model_dirs: list[Path | None]) -> list[str]:
    """One table column per model folder: its name ("default" for the task's default model), or its whole
    path when two folders share a name."""
    names = [d.name if d is not None else "default" for d in model_dirs]
    if len(set(names)) != len(names):
        names = [str(d) if d is not None else "default" for d in model_dirs]
    return names


def json_ready(value):
    """``value`` with every infinite float (an empty prediction's distance) made None, in dicts and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return None if isinstance(value, float) and math.isinf(value) else value


def write_json(path: Path | None, payload: dict) -> None:
    """The benchmark's numbers as JSON at ``path`` (None: nothing), infinite distances as null."""
    if path is not None:
        Path(path).write_text(json.dumps(json_ready(payload), indent=2) + "\n", encoding="utf-8")
