"""Numeric precision for `run` and `train`: ``--precision auto|fp32|bf16|fp16``.

``auto`` picks float16 autocast on CUDA, bfloat16 autocast on CPUs whose
instruction set has native bfloat16 arithmetic (x86 ``avx512_bf16`` or ``amx_bf16``,
where it measured about 2-3x faster than float32 for our networks; see
``benchmarks/train_throughput.py``), and float32 everywhere else (older CPUs
emulate bfloat16 and get slower, MPS). 2D networks also use the channels-last memory
layout under reduced precision on the CPU, which oneDNN's bfloat16 kernels prefer.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def resolve_precision(name: str, device: "torch.device") -> str:
    """The concrete precision (fp32, bf16 or fp16) that ``name`` means on ``device``."""
    from segtool.errors import UsageError

    if name not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if name == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")
    return name


def autocast(device: "torch.device", precision: str):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def memory_format(device: "torch.device", precision: str, spatial_dims: int):
    """channels_last for 2D networks at reduced precision on the CPU, else contiguous."""
    import torch

    if device.type == "cpu" and precision != "fp32" and spatial_dims == 2:
        return torch.channels_last
    return torch.contiguous_format
