"""The one writer under faults, in real `segtool run` processes (``python -m segtool``): killed with SIGKILL
while writing, on a full disk (``RLIMIT_FSIZE``), and eight at once into one output folder and one Hub cache.

The task is the one-convolution ``faults`` task of a plugin installed into a temporary folder (a module plus
its ``.dist-info`` with the ``segtool`` entry point), so the processes find it as they find any plugin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hub_server import FakeHub
from tiny_task import make_spec, write_model_folder

TESTS = Path(__file__).resolve().parent
TEMP_PREFIX = ".seg-tmp-"
REPO = "segtool-test/faults"
REV = "0123456789abcdef0123456789abcdef01234567"

PLUGIN = '''
from segtool.hookspecs import hookimpl
from segtool.spec import WeightsFile, WeightsRef
from tiny_task import make_spec

REFS = {refs!r}


@hookimpl
def segtool_register_tasks(register):
    models = {{name: WeightsRef(weights=WeightsFile(*ref["weights"]), config=WeightsFile(*ref["config"]),
                               repo_id=ref["repo_id"], revision=ref["revision"]) for name, ref in REFS.items()}}
    register(make_spec("faults", patch_size=(64, 64, 32), batch_size=2, models=models))
'''


def install_plugin(site: Path, refs: dict | None = None) -> None:
    """The ``faults`` task as an installed plugin: its module and a .dist-info naming it in ``[segtool]``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "segtool_faults_plugin.py").write_text(PLUGIN.format(refs=refs or {}), encoding="utf-8")
    info = site / "segtool_faults_plugin-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segtool-faults-plugin\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[segtool]\nfaults = segtool_faults_plugin\n")


def segtool_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEGTOOL_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(TESTS)]), SEGTOOL_LOAD_PLUGINS="faults",
               OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.update(extra)
    return env


def segtool_args(*args) -> list[str]:
    return [sys.executable, "-m", "segtool", "run", "faults", *map(str, args), "--precision", "fp32", "-q"]


@pytest.fixture
def model_dir(tmp_path):
    """The plugin installed without weights and a model folder for --model-dir."""
    install_plugin(tmp_path / "site")
    write_model_folder(tmp_path / "model", make_spec("faults", patch_size=(64, 64, 32), batch_size=2))
    return tmp_path / "model"


def noisy_volume(path: Path, shape, seed: int = 0) -> Path:
    """Gaussian noise: about half the voxels come out bright, so the mask and probabilities compress poorly."""
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def temp_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def final_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def kill_at_write(args, env, folder: Path, nth: int) -> set[str]:
    """Start ``args``; SIGKILL it as soon as its ``nth`` temporary entry appears in ``folder``. Returns those seen."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[str] = set()
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                seen.update(e.name for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX))
            except FileNotFoundError:
                pass
            if len(seen) >= nth:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and len(seen) < nth:
            proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before its write {nth} began: {err.decode()[-2000:]}"
    return seen


@pytest.mark.slow
def test_sigkill_while_writing_leaves_no_partial_output_and_reruns_write_everything(tmp_path, model_dir):
    image = noisy_volume(tmp_path / "in" / "scan.nii.gz", (128, 128, 64))
    base = [image, "--model-dir", model_dir, "--offline", "--prob"]
    env = segtool_env(tmp_path)
    ref = subprocess.run(segtool_args(*base, "-o", tmp_path / "ref" / "m.nii.gz"), env=env, capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()
    ref_mask, ref_prob = voxels(tmp_path / "ref" / "m.nii.gz"), voxels(tmp_path / "ref" / "m_prob.nii.gz")
    assert 0.3 < ref_mask.mean() < 0.7 and ref_prob.shape == (128, 128, 64, 2)

    out = tmp_path / "out"
    run = segtool_args(*base, "-o", out / "m.nii.gz")
    # Killed while the mask is being written: nothing under a final name, or the whole mask.
    kill_at_write(run, env, out, nth=1)
    assert final_names(out) in ([], ["m.nii.gz"])
    if final_names(out):
        assert np.array_equal(voxels(out / "m.nii.gz"), ref_mask)
    again = subprocess.run(run + ["--overwrite"] * bool(final_names(out)), env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()
    assert final_names(out) == ["m.nii.gz", "m_prob.nii.gz"] and temp_entries(out) == []
    assert np.array_equal(voxels(out / "m.nii.gz"), ref_mask)
    assert np.array_equal(voxels(out / "m_prob.nii.gz"), ref_prob)

    # Killed while the probabilities are written (the mask is already in place): the old files or the new.
    kill_at_write(run + ["--overwrite"], env, out, nth=2)
    assert final_names(out) == ["m.nii.gz", "m_prob.nii.gz"]
    assert np.array_equal(voxels(out / "m_prob.nii.gz"), ref_prob)
    assert np.array_equal(voxels(out / "m.nii.gz"), ref_mask)
    left = temp_entries(out)
    assert len(left) == 1 and left[0].startswith(TEMP_PREFIX)  # the killed writer's, hidden
    skipped = subprocess.run(run + ["--skip-existing", "--json"], env=env, capture_output=True, text=True)
    assert skipped.returncode == 0, skipped.stderr
    assert [json.loads(line)["status"] for line in skipped.stdout.splitlines()] == ["skipped"]
    assert temp_entries(out) == left  # never taken for an output; a run that writes sweeps it:
    again = subprocess.run(run + ["--overwrite"], env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()
    assert final_names(out) == ["m.nii.gz", "m_prob.nii.gz"] and temp_entries(out) == []
    assert np.array_equal(voxels(out / "m_prob.nii.gz"), ref_prob)


def full_disk(limit: int):
    def limit_file_size() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


@pytest.mark.slow
@pytest.mark.parametrize("name", ["m.nii.gz", "m.nrrd", "m.hdr"])
def test_full_disk_gives_one_error_line_exit_1_and_no_file(tmp_path, model_dir, name):
    image = noisy_volume(tmp_path / "in" / "scan.nii.gz", (48, 48, 24))  # a mask of at least 7 KB in any format
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(segtool_args(image, "-o", out / name, "--model-dir", model_dir, "--offline"),
                          env=segtool_env(tmp_path), capture_output=True, text=True, preexec_fn=full_disk(4096),
                          timeout=240)
    errors = [line for line in done.stderr.splitlines() if line.startswith("segtool: error:")]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and "File too large" in errors[0] and str(out / name) in errors[0], done.stderr
    assert done.stdout == ""
    assert os.listdir(out) == []


def hub_refs(tmp_path: Path, hub: FakeHub) -> dict:
    """The faults model served by ``hub`` at REPO@REV; the plugin's WeightsRef for it."""
    folder = tmp_path / "served"
    weights, config = write_model_folder(folder, make_spec("faults", patch_size=(64, 64, 32), batch_size=2))
    for item in (weights, config):
        hub.add_file(REPO, REV, item.filename, (folder / item.filename).read_bytes())
    return {"default": {"weights": [weights.filename, weights.sha256], "config": [config.filename, config.sha256],
                        "repo_id": REPO, "revision": REV}}


def eight_runs(tmp_path: Path, inputs_of) -> tuple[list, list[dict], list[Path], int]:
    """Eight `segtool run` processes at once, run ``i`` on ``inputs_of(images, i)``, into one --output-dir and one
    HF_HOME, the model downloaded from a Hub on 127.0.0.1; also a run of every case alone (into ``alone/``)."""
    images = [noisy_volume(tmp_path / "in" / f"case{i}.nii.gz", (40, 32, 16), seed=i) for i in range(8)]
    with FakeHub() as hub:
        install_plugin(tmp_path / "site", hub_refs(tmp_path, hub))
        env = segtool_env(tmp_path, HF_ENDPOINT=hub.endpoint)
        procs = [subprocess.Popen(segtool_args(*inputs_of(images, i), "--output-dir", tmp_path / "out",
                                               "--skip-existing", "--json"),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(8)]
        ends = [p.communicate(timeout=300) for p in procs]
        weight_gets = hub.gets("model.safetensors")
    alone = subprocess.run(segtool_args(*images, "--output-dir", tmp_path / "alone", "--offline"), env=env,
                           capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    rows = [json.loads(line) for stdout, _ in ends for line in stdout.splitlines()]
    for proc, (_, stderr) in zip(procs, ends):
        assert proc.returncode == 0, (stderr, [(Path(r["input"]).name, r["status"], r.get("error")) for r in rows])
    return procs, rows, images, weight_gets


def check_outputs(tmp_path: Path) -> None:
    """Each case's mask once, whole, equal to a run of it alone; no temporary entry left."""
    out = tmp_path / "out"
    assert final_names(out) == sorted(f"case{i}_seg.nii.gz" for i in range(8)) and temp_entries(out) == []
    for i in range(8):
        name = f"case{i}_seg.nii.gz"
        assert np.array_equal(voxels(out / name), voxels(tmp_path / "alone" / name)), name


@pytest.mark.slow
def test_eight_runs_at_once_into_one_folder_and_one_cache_corrupt_nothing(tmp_path):
    _, rows, images, weight_gets = eight_runs(tmp_path, lambda images, i: [images[i]])
    assert sorted((r["input"], r["status"]) for r in rows) == [(str(image), "done") for image in images]
    check_outputs(tmp_path)
    assert weight_gets == 1  # one download: the others waited for it and used the cached copy
    cache = tmp_path / "hf-home" / "hub"
    blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert len(os.listdir(blobs)) == 2 and not [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]


@pytest.mark.slow
def test_eight_runs_racing_for_the_same_cases_with_skip_existing_write_each_once(tmp_path):
    # Each run gets every case, starting from its own: they race for the later ones.
    _, rows, images, _ = eight_runs(tmp_path, lambda images, i: images[i:] + images[:i])
    for image in images:
        mine = [r["status"] for r in rows if r["input"] == str(image)]
        assert sorted(mine) == ["done"] + ["skipped"] * 7, (image.name, mine)
    check_outputs(tmp_path)


# ---------------------------------------------------------------------------- the same rules, in this process


def small_volume(tmp_path: Path):
    from segtool.io import read_volume

    return read_volume(noisy_volume(tmp_path / "in.nii.gz", (6, 5, 4)))


def test_output_that_appears_while_writing_is_kept_and_the_late_writer_refused(tmp_path):
    from segtool.errors import OutputExistsError
    from segtool.io.atomic import atomic_write

    volume, out = small_volume(tmp_path), tmp_path / "out" / "m.nii.gz"

    def write(tmp: Path) -> None:  # another process finishes the same output while this one writes
        out.write_bytes(b"theirs")
        tmp.write_bytes(b"mine")

    with pytest.raises(OutputExistsError, match="output exists"):
        atomic_write(out, volume, False, write)
    assert out.read_bytes() == b"theirs" and os.listdir(out.parent) == ["m.nii.gz"]
    atomic_write(out, volume, True, lambda tmp: tmp.write_bytes(b"mine"))
    assert out.read_bytes() == b"mine" and os.listdir(out.parent) == ["m.nii.gz"]


def test_a_write_sweeps_dead_writers_leftovers_but_not_a_live_writers(tmp_path):
    from segtool.io import write_labels

    volume, out = small_volume(tmp_path), tmp_path / "out"
    dead, live = out / f"{TEMP_PREFIX}dead", out / f"{TEMP_PREFIX}live"
    for leftover in (dead, live):
        leftover.mkdir(parents=True)
        (leftover / "m.nii.gz").write_bytes(b"half a mask")
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        write_labels(np.ones((6, 5, 4), np.uint8), volume, out / "m.nii.gz")
        assert sorted(os.listdir(out)) == [f"{TEMP_PREFIX}live", "m.nii.gz"]
    finally:
        holder.kill()
        holder.wait()
    assert np.array_equal(voxels(out / "m.nii.gz"), np.ones((6, 5, 4)))
