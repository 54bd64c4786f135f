"""Running the race's commands and measuring them: wall time, peak memory, exit code; the CPU they ran on.

Each command's peak RSS of its largest process comes from ``wait4`` rusage (as ``/usr/bin/time -v`` reports it);
the peak of its process tree's summed PSS is sampled once a second from /proc.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence


def _tree_pss_mb(root: int) -> float | None:
    """Summed PSS (RSS where PSS is unreadable) of ``root`` and its descendants, in MB; None off Linux."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total_kb, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                total_kb += next(int(line.split()[1]) for line in f if line.startswith(b"Pss:"))
        except (OSError, StopIteration, ValueError):
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    total_kb += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except (OSError, ValueError, IndexError):
                pass
    return total_kb / 1024


def run_measured(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 stdout_path: Path | None = None, step: str | None = None) -> dict:
    """Run ``cmd`` (stderr, and stdout unless ``stdout_path``, to ``log_path``); wall time, peak memory, exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as err, \
            open(stdout_path or os.devnull, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([str(c) for c in cmd], env=dict(env) if env is not None else None,
                                stdout=out if stdout_path else err, stderr=err)
        peak, last_sample = 0.0, 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - last_sample >= 1.0:
                peak = max(peak, _tree_pss_mb(proc.pid) or 0.0)
                last_sample = time.perf_counter()
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    shown = ["segtool", *map(str, cmd[3:])] if list(map(str, cmd[1:3])) == ["-m", "segtool"] else [Path(cmd[0]).name, *map(str, cmd[1:])]
    return {"step": step or Path(cmd[0]).name, "command": " ".join(shown), "rc": proc.returncode,
            "wall_s": round(time.perf_counter() - start, 2), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_pss_mb": round(peak, 1) if peak else None, "log": str(log_path)}


def checked(run: dict) -> dict:
    """``run`` (a ``run_measured`` record) when its command succeeded; else an error with its log's last lines."""
    if run["rc"]:
        tail = Path(run["log"]).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        raise RuntimeError(f"{run['command']} exited {run['rc']} (log {run['log']}): " + " | ".join(tail))
    return run


def cpu_model() -> str:
    """``lscpu``'s model name and the cores this process may use."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {len(os.sched_getaffinity(0))} cores usable"
