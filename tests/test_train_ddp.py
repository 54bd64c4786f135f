"""Distributed training: two gloo processes on the CPU, as `torchrun --nproc_per_node 2` would run them.

Each process gets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* in its environment (what
torchrun sets) and runs the same trainer. They sample different patches, so their
weights stay identical only if DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from test_train import tiny_3d, write_3d_simple

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data: str, out: str, results: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
    )
    import torch
    from safetensors.torch import save_file

    from segtool.training.loop import TrainOptions, train

    from segtool.training.batches import StepBatches

    seen = {}  # optimiser step -> sha256 of the (augmented) image batch this rank trained on
    real_batch = StepBatches.__getitem__

    def recording(self, step):
        images, labels = real_batch(self, step)
        seen[int(step)] = hashlib.sha256(images.numpy().tobytes()).hexdigest()
        return images, labels

    StepBatches.__getitem__ = recording  # a spy: the real batch, recorded on its way to the network
    torch.set_num_threads(1)
    options = TrainOptions(epochs=2, steps_per_epoch=3, device="cpu", val_fraction=0.25, seed=0)
    result = train(tiny_3d(), data, out, options)
    assert result.rank == rank and result.global_step == 6
    save_file(result.state_dict, os.path.join(results, f"rank{rank}.safetensors"))
    with open(os.path.join(results, f"rank{rank}_batches.json"), "w", encoding="utf-8") as f:
        json.dump(seen, f)


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(tmp_path):
    import torch
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    data = write_3d_simple(tmp_path / "data", n=4)
    out, results = tmp_path / "model", tmp_path / "results"
    results.mkdir()
    context = mp.start_processes(
        _worker, args=(_free_port(), str(data), str(out), str(results)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("distributed training did not finish in 120 s")

    # the two ranks trained on different batches at every step (else identical weights would prove nothing)
    seen = [json.loads((results / f"rank{r}_batches.json").read_text(encoding="utf-8")) for r in range(WORLD)]
    assert sorted(seen[0], key=int) == sorted(seen[1], key=int) == [str(s) for s in range(6)]
    assert all(seen[0][s] != seen[1][s] for s in seen[0])
    ranks = [load_file(str(results / f"rank{r}.safetensors")) for r in range(WORLD)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])

    # Only rank 0 wrote the model folder, once per epoch.
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "README.md", "train_log.jsonl"}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all("validation" in r for r in log)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["world_size"] == WORLD
    assert "x 2 process(es)" in (out / "README.md").read_text(encoding="utf-8")
