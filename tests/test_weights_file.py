"""model.safetensors as segtool writes it: the same tensors give the same bytes, in any process."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from segtool.training.model_folder import canonical_safetensors, write_weights

WRITE = """
import sys, torch
from pathlib import Path
from segtool.training.model_folder import write_weights
state = {"conv.weight": torch.arange(24.0).reshape(2, 3, 4), "conv.bias": torch.tensor([0.5, -1.0])}
write_weights(Path(sys.argv[1]), state, producer="segtool train (final step)")
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_tensors_give_the_same_file_in_every_process(tmp_path):
    digests = set()
    for i in range(4):  # safetensors orders its metadata by a per-process hash seed
        folder = tmp_path / str(i)
        folder.mkdir()
        subprocess.run([sys.executable, "-c", WRITE, str(folder)], check=True)
        digests.add(sha(folder / "model.safetensors"))
    assert len(digests) == 1
    with safe_open(str(tmp_path / "0" / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", "producer": "segtool train (final step)"}
        assert torch.equal(f.get_tensor("conv.weight"), torch.arange(24.0).reshape(2, 3, 4))
        assert torch.equal(f.get_tensor("conv.bias"), torch.tensor([0.5, -1.0]))


def test_write_weights_is_repeatable_within_one_process(tmp_path):
    state = {"w": torch.ones(3), "b": torch.zeros(1)}
    digests = {sha(write_weights(tmp_path, state, producer="é")) for _ in range(8)}
    assert len(digests) == 1


def test_canonical_header_sorts_the_metadata_and_keeps_offsets():
    from safetensors.torch import load, save

    state = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
    blob = save(state, metadata={"zeta": "1", "alpha": "2", "mid": "3"})
    canonical = canonical_safetensors(blob)
    assert len(canonical) == len(blob)
    size = int.from_bytes(canonical[:8], "little")
    assert canonical[8 : 8 + size].startswith(b'{"__metadata__":{"alpha":"2","mid":"3","zeta":"1"}')
    loaded = load(canonical)
    assert torch.equal(loaded["a"], state["a"]) and torch.equal(loaded["b"], state["b"])
    assert canonical_safetensors(canonical) == canonical
