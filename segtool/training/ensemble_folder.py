"""One model folder from several trained ones: the `ensemble` network of their members.

    segtool models ensemble OUT_DIR MODEL_DIR MODEL_DIR [...] [--float16]

The members must have been trained for the same task with the same preprocessing
(labels, channels, orientation, spacing, resizing, normalisation and its statistics,
slice axis and context, post-processing): an ensemble runs one pipeline and averages
only the networks' probabilities. Any network families may be mixed. The folder written
holds a card (README.md, the members' record), one ``model.safetensors`` (member ``i``'s tensors under ``members.i.``), a
``config.json`` naming ``network: ensemble`` with the members' families and arguments,
and, in ``training.members``, each member's folder, weights sha256, selection and
scores, so what went in stays on record.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from segtool.errors import UsageError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig

#: Settings every member must share: the pipeline around the networks. Not ``normalization_stats``:
#: the training set's intensity statistics are a record (inference normalises each image by itself),
#: and members trained on different data (e.g. distilled copies) differ there; the first member's is kept.
SHARED = ("task", "labels", "channels", "normalization", "slice_axis", "slice_context", "target_spacing",
          "input_size", "orientation", "postprocess", "patch_size")


def _comparable(key: str, value: Any) -> Any:
    """``value`` as compared between members: post-processing by its meaning (older folders omit new steps)."""
    if key == "postprocess" and value is not None:
        from segtool.spec import Postprocess

        return Postprocess(**value)
    return value


def _member_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_FILENAME
    if not path.is_file() or not (folder / WEIGHTS_FILENAME).is_file():
        raise UsageError(f"{folder}: not a model folder ({CONFIG_FILENAME} and {WEIGHTS_FILENAME} expected)")
    config = ModelConfig.read(path)
    if config.network is None:
        raise UsageError(f"{folder}: its network is the task's own factory, not a family an ensemble can build")
    if config.network == "ensemble":
        raise UsageError(f"{folder}: is an ensemble already; list its members instead")
    if config.logit_offsets is not None:
        raise UsageError(f"{folder}: carries logit_offsets, which an ensemble member would lose; "
                         "give the ensemble its own offsets instead")
    return config


def ensemble_config(folders: Sequence[Path]) -> ModelConfig:
    """The ensemble's config (the first member's pipeline), after checking the members agree."""
    if len(folders) < 2:
        raise UsageError("an ensemble needs at least two model folders")
    configs = [_member_config(Path(f)) for f in folders]
    first = configs[0]
    for folder, config in zip(folders[1:], configs[1:]):
        differ = [key for key in SHARED
                  if _comparable(key, getattr(config, key)) != _comparable(key, getattr(first, key))]
        if differ:
            raise UsageError(f"{folder}: {', '.join(differ)} differ from {folders[0]}'s; members must share the pipeline")
    members = [{"network": c.network, **c.architecture} for c in configs]
    training: dict[str, Any] = {
        "members": [
            {
                "folder": str(folder),
                "network": c.network,
                "weights_sha256": c.weights_sha256,
                "selected": c.training.get("selected"),
                "command": c.training.get("command"),
                "validation_mean_dice": (c.training.get("validation") or {}).get("mean_dice"),
                "train_cases": (c.training.get("data") or {}).get("train_cases"),
            }
            for folder, c in zip(folders, configs)
        ],
    }
    datas = [c.training.get("data") for c in configs]
    if datas[0] and all(d == datas[0] for d in datas):  # one split for all: validation tools can still find it
        training["data"] = datas[0]
    # run-time choices are the ensemble's own, not its first member's: no flips unless asked for
    combined = replace(first, network="ensemble", architecture={"members": members}, weights_sha256=None,
                       training=training, tta=False)
    combined.validate("ensemble config")
    return combined


def _front_matter(folder: Path) -> str:
    """The first member's card metadata block (licence, tags), so the ensemble's card carries the same."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        return text[: text.index("\n---\n", 4) + 5] + "\n"
    return ""


def render_ensemble_card(config: ModelConfig, front_matter: str = "") -> str:
    """README.md of an ensemble folder: what it is, how to run it, and each member's record."""
    members = config.training["members"]
    lines = [
        f"# segtool ensemble for `{config.task}`",
        "",
        f"The mean class probability of {len(members)} trained networks "
        f"({', '.join(m['network'] for m in members)}), run as one model: one pass of the task's "
        "pipeline, each network on the same windows, their softmax averaged "
        "(`segtool.networks.ensemble`; written by `segtool models ensemble`).",
        "",
        "## Use",
        "",
        "```bash",
        f"segtool run {config.task} --model-dir MODEL_DIR INPUT",
        "```",
        "",
        "## Members",
        "",
        "| # | network | selected | validation mean Dice | weights sha256 (as trained) |",
        "|---|---|---|---|---|",
    ]
    for i, m in enumerate(members):
        score = m.get("validation_mean_dice")
        lines.append(f"| {i} | `{m['network']}` | {m.get('selected') or 'best validation epoch'} | "
                     f"{'-' if score is None else f'{score:.3f}'} | `{(m.get('weights_sha256') or '-')[:16]}…` |")
    lines += ["", "Training commands:", ""]
    for i, m in enumerate(members):
        lines += [f"{i}. `{m.get('command') or 'not recorded'}`"]
    return front_matter + "\n".join(lines) + "\n"


def write_ensemble(folders: Sequence[Path], out_dir: Path, float16: bool = False) -> ModelConfig:
    """Write the ensemble model folder ``out_dir`` from ``folders``; returns its config."""
    from safetensors.torch import load_file

    from segtool.training.model_folder import write_card, write_config, write_weights
    from segtool.weights.integrity import sha256_file

    folders = [Path(f) for f in folders]
    config = ensemble_config(folders)
    out_dir = Path(out_dir)
    if out_dir.resolve() in {f.resolve() for f in folders}:
        raise UsageError(f"{out_dir}: is one of the members; write the ensemble elsewhere")
    if (out_dir / WEIGHTS_FILENAME).exists():
        raise UsageError(f"{out_dir}: holds a model already")
    state = {}
    for i, folder in enumerate(folders):
        for key, tensor in load_file(str(folder / WEIGHTS_FILENAME)).items():
            if float16 and tensor.is_floating_point():
                tensor = tensor.half()
            state[f"members.{i}.{key}"] = tensor
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = write_weights(out_dir, state, producer="segtool ensemble")
    config = replace(config, weights_sha256=sha256_file(weights))
    write_config(out_dir, config)
    write_card(out_dir, render_ensemble_card(config, _front_matter(folders[0])))
    return config
