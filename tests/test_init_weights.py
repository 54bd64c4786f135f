"""`segtool train --init-weights MODEL_DIR`: a run that starts from a trained model folder (fine-tuning)."""

from __future__ import annotations

import json
from dataclasses import replace

from test_train import reference_run, tiny_2d, train, weights  # noqa: F401  (reference_run is a fixture)


def distance(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_a_run_starts_from_the_given_weights_and_records_them(reference_run, tmp_path):
    data, reference = reference_run
    # a learning rate too small to move any weight: the run ends where it started
    tuned = tmp_path / "tuned"
    train(tiny_2d(), data, tuned, "--seed", "5", "--val-fraction", "0", "--lr", "1e-12", "--weight-decay", "0",
          "--init-weights", reference)
    fresh = tmp_path / "fresh"
    train(tiny_2d(), data, fresh, "--seed", "5", "--val-fraction", "0", "--lr", "1e-12", "--weight-decay", "0")
    assert distance(weights(tuned), weights(reference)) < 1e-6
    assert distance(weights(fresh), weights(reference)) > 1e-2  # without it: a new random start

    config = json.loads((tuned / "config.json").read_text(encoding="utf-8"))
    record = config["training"]["init_weights"]
    assert record["folder"] == str(reference) and record["network"] == "unet" and record["steps"] == 6
    assert record["weights_sha256"] == json.loads((reference / "config.json").read_text())["weights_sha256"]
    assert "--init-weights" in config["training"]["command"]
    assert f"Fine-tuned: started from the unet weights of `{reference}`" in (tuned / "README.md").read_text()
    assert json.loads((fresh / "config.json").read_text())["training"]["init_weights"] is None


def test_weights_of_another_architecture_are_refused_in_one_line(reference_run, tmp_path):
    data, reference = reference_run
    wider = replace(tiny_2d(), model_kwargs={"features": (6, 12), "strides": (2,)})
    result = train(wider, data, tmp_path / "wider", "--val-fraction", "0", "--init-weights", reference, ok=False)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--init-weights" in lines[0] and "do not fit" in lines[0]
    assert not (tmp_path / "wider" / "model.safetensors").exists()


def test_a_folder_of_another_task_is_refused(reference_run, tmp_path):
    data, reference = reference_run
    other = replace(tiny_2d(), labels={1: "square", 2: "circle"})
    result = train(other, data, tmp_path / "other", "--val-fraction", "0", "--init-weights", reference, ok=False)
    assert result.exit_code == 2 and "--init-weights" in result.output
