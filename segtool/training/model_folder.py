"""The model folder `segtool train` writes and `segtool run --model-dir` / `segtool models push` read.

    MODEL_DIR/model.safetensors   the best weights (safetensors, never a pickle)
    MODEL_DIR/config.json         segtool.model_config.ModelConfig
    MODEL_DIR/README.md           a Hugging Face model card (YAML front matter + text)
    MODEL_DIR/train_log.jsonl     one JSON object per epoch
    MODEL_DIR/.train/             resume checkpoint and data cache (local only, not part of the model)

Every file is written to a temporary name and renamed, so a stopped run never
leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from segtool.io.atomic import replacing, write_text_atomic
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.spec import TaskSpec, describe_spacing

README_FILENAME = "README.md"
LOG_FILENAME = "train_log.jsonl"
MODEL_FILES = (WEIGHTS_FILENAME, CONFIG_FILENAME, README_FILENAME, LOG_FILENAME)

#: Licence identifiers the Hugging Face Hub knows (the common ones); anything else is "other".
HF_LICENSES = (
    "apache-2.0",
    "mit",
    "bsd-2-clause",
    "bsd-3-clause",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0",
    "gpl-3.0",
    "lgpl-3.0",
    "mpl-2.0",
    "openrail",
    "other",
)


def write_weights(model_dir: Path, state_dict: Mapping[str, Any], producer: str = "segtool train") -> Path:
    """model.safetensors from a state dict (tensors copied to the CPU, contiguous, unshared).

    The same tensors and producer give the same bytes (and sha256) every time.
    """
    from safetensors.torch import save

    path = Path(model_dir) / WEIGHTS_FILENAME
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    blob = canonical_safetensors(save(tensors, metadata={"format": "pt", "producer": producer}))
    umask = os.umask(0)
    os.umask(umask)
    # a model folder is meant to be shared
    with replacing(path, mode=0o666 & ~umask) as tmp:
        Path(tmp).write_bytes(blob)
    return path


def canonical_safetensors(blob: bytes) -> bytes:
    """``blob`` with its header's ``__metadata__`` keys in sorted order.

    safetensors writes the metadata from a hash map, so two saves of the same tensors
    may order its keys differently and get different sha256s. Reordering keeps the
    header's length (same keys, same values), so the tensor offsets stay valid; a
    header that would change length is left as written.
    """
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    metadata = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) != len(blob[8 : 8 + size].rstrip(b" ")):
        return blob
    return blob[:8] + text + b" " * (size - len(text)) + blob[8 + size :]


def write_config(model_dir: Path, config: ModelConfig) -> Path:
    path = Path(model_dir) / CONFIG_FILENAME
    write_text_atomic(path, config.to_json())
    return path


def append_log(model_dir: Path, record: Mapping[str, Any]) -> None:
    with open(Path(model_dir) / LOG_FILENAME, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")


def read_log(model_dir: Path) -> list[dict]:
    path = Path(model_dir) / LOG_FILENAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_log(model_dir: Path, keep_step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (step > ``keep_step``)."""
    records = [r for r in read_log(model_dir) if r.get("step", 0) <= keep_step]
    write_text_atomic(
        Path(model_dir) / LOG_FILENAME,
        "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in records),
    )


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def hf_license(text: str | None) -> str:
    """A Hub licence identifier from free text such as 'Apache-2.0 (training data)'."""
    if not text:
        return "other"
    first = text.strip().split()[0].lower().rstrip(",;")
    return first if first in HF_LICENSES else "other"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def render_card(spec: TaskSpec, config: ModelConfig, licence: str | None = None, datasets: Iterable[str] = ()) -> str:
    """README.md: a Hugging Face model card built from the task and the training record."""
    t = config.training
    data = t.get("data", {})
    photo = spec.is_photo
    tags = ["segtool", "image-segmentation", "photo" if photo else "medical-imaging", f"{spec.ndim}d", spec.name]
    front = _front_matter(hf_license(licence or spec.licence), tags, list(datasets))
    lines = _card_head(spec, config, data)
    lines += _card_validation(spec, t)
    lines += _card_training(config, t, data)
    if t.get("plan"):
        lines += plan_section(t["plan"])
    if data.get("name") or data.get("description") or data.get("reference") or data.get("licence"):
        lines += ["## Training data", ""]
        for key in ("name", "description", "reference", "licence"):
            if data.get(key):
                lines.append(f"- {key.capitalize()}: {data[key]}")
        lines.append("")
    if spec.citation:
        lines += ["## Citation", "", spec.citation, ""]
    return front + "\n".join(lines)


def _card_head(spec: TaskSpec, config: ModelConfig, data: Mapping[str, Any]) -> list[str]:
    """The card's title, description, "## Use" and "## Labels" lines, and the "## Validation" heading."""
    return [
        f"# segtool model for `{spec.name}`",
        "",
        spec.description,
        "",
        f"Trained with `segtool train` (segtool {config.segtool_version}) on {len(data.get('train_cases', []))} "
        f"case(s), validated on {len(data.get('validation_cases', []))}.",
        "",
        "## Use",
        "",
        "```bash",
        f"segtool run {spec.name} --model-dir MODEL_DIR image{'.png' if spec.is_photo else '.nii.gz'}",
        "```",
        "",
        "`MODEL_DIR` is this folder (or its download from the Hub). The task's plugin must be installed",
        f"(`segtool tasks {spec.name}`); the plugin gives the architecture and the preprocessing, and",
        "`config.json` records them so a mismatch is refused.",
        "",
        "## Labels",
        "",
        "| value | name |",
        "|---|---|",
        *[f"| {value} | {name} |" for value, name in sorted(config.labels.items())],
        "",
        "## Validation",
        "",
    ]


def _best_epoch(t: Mapping[str, Any]) -> str:
    """"Best epoch B of N", counting a last shorter epoch (a budget's leftover) among the N."""
    best, full, steps, per_epoch = t.get("best_epoch"), t.get("epochs_trained"), t.get("steps"), t.get("steps_per_epoch")
    last = steps % per_epoch if isinstance(steps, int) and isinstance(per_epoch, int) and per_epoch > 0 else 0
    if last and isinstance(full, int):
        return f"Best epoch {best} of {full + 1} (the last a shorter one of {last} steps)"
    return f"Best epoch {best} of {full}"


def _card_validation(spec: TaskSpec, t: Mapping[str, Any]) -> list[str]:
    """The card's validation scores: per label, then per validation case; or why there are none."""
    val = t.get("validation") or {}
    if not val.get("dice"):
        return ["No validation cases were held out: these are the weights of the last epoch.", ""]
    lines = [
        f"{_best_epoch(t)}, on {val.get('cases', 0)} validation case(s), "
        "whole images through the same pipeline as `segtool run`. Means skip labels absent from both "
        "prediction and ground truth; HD95 means skip cases where one side is empty.",
        "",
        "| label | Dice | HD95 (mm) |",
        "|---|---|---|",
        *[f"| {name} | {_fmt(val['dice'].get(name))} | {_fmt(val.get('hd95', {}).get(name), 2)} |" for name in spec.labels.values()],
        f"| **mean** | **{_fmt(val.get('mean_dice'))}** | |",
        "",
    ]
    per_case = val.get("per_case") or {}
    if per_case:
        names = list(spec.labels.values())
        lines += [
            "Per validation case (Dice / HD95 mm):",
            "",
            "| case | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            *[
                f"| {case} | " + " | ".join(
                    f"{_fmt((scores.get(n) or {}).get('dice'))} / {_fmt((scores.get(n) or {}).get('hd95'), 2)}"
                    for n in names
                ) + " |"
                for case, scores in sorted(per_case.items())
            ],
            "",
        ]
    return lines


def _card_training(config: ModelConfig, t: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """The card's "## Training" lines: the exact command, the data, the preprocessing and the recipe."""
    lines = [
        "## Training",
        "",
        "Exact command:",
        "",
        "```bash",
        t.get("command", "segtool train ..."),
        "```",
        "",
        f"- Data: `{data.get('path', '?')}` ({data.get('layout', '?')} layout), "
        f"{data.get('cases', '?')} case(s); split seed {config.seed}",
        f"- Validation cases: {', '.join(data.get('validation_cases', [])) or 'none'}",
    ]
    if t.get("labels_map"):
        lines.append(f"- Labels map (source:target): `{t['labels_map']}`")
    if t.get("init_weights"):
        start = t["init_weights"]
        lines.append(f"- Fine-tuned: started from the {start.get('network')} weights of `{start.get('folder')}` "
                     f"(sha256 {str(start.get('weights_sha256'))[:16]}…, {start.get('steps') or '?'} steps)")
    lines += [
        f"- Preprocessing: orientation {config.orientation or 'as stored'}, spacing "
        f"{describe_spacing(config.target_spacing)}, "
        f"normalisation {config.normalization}",
        f"- Patch {'x'.join(map(str, config.patch_size))}, batch {t.get('batch_size')} per process x "
        f"{t.get('world_size', 1)} process(es), {t.get('steps_per_epoch')} steps per epoch, "
        f"{t.get('epochs_trained')} of {t.get('epochs')} epochs",
        f"- AdamW (lr {t.get('lr')}, weight decay {t.get('weight_decay')}), cosine schedule, "
        f"{'Dice over the regions' if t.get('region_dice') else 'Dice'} + cross-entropy, "
        f"gradient clipping {t.get('grad_clip')}, mixed precision {'on' if t.get('amp') else 'off'}",
        f"- Augmentation: {t.get('augmentation', 'none')}",
        f"- Device: {t.get('device')}; training time {t.get('minutes', 0):.1f} min"
        + (f"; stopped early ({t['stopped']})" if t.get("stopped") else ""),
        "- Per-epoch losses and scores: `train_log.jsonl`",
        "",
    ]
    return lines


def plan_section(recorded: dict) -> list[str]:
    """The card's "## Plan" lines for a plan recorded in config.json (``training.plan``)."""
    from segtool.training.plan import TrainingPlan, markdown

    plan = TrainingPlan.from_json(recorded)
    return [
        "## Plan",
        "",
        f"`segtool train` planned this recipe from the data's fingerprint and a budget of "
        f"{(plan.budget_seconds or 0) / 60:.0f} min on this device"
        + (f" (set by hand: {', '.join(plan.overridden)})" if plan.overridden else "") + ":",
        "",
        markdown(plan),
        "",
    ]


def _front_matter(licence: str, tags: list[str], datasets: list[str]) -> str:
    """The card's YAML metadata block (``---`` ... ``---``), written by huggingface_hub's ModelCardData."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        library_name="segtool", license=licence, pipeline_tag="image-segmentation", tags=tags,
        datasets=datasets or None, metrics=["dice"],
    )
    return f"---\n{data.to_yaml()}\n---\n\n"


def write_card(model_dir: Path, text: str) -> Path:
    path = Path(model_dir) / README_FILENAME
    write_text_atomic(path, text)
    return path
