"""`segtool models ensemble | logit-adjust | export-checkpoint | bundle`: make and package model folders.

These commands parse their arguments and print; the mechanics live in the core:
`segtool.training.ensemble_folder`, `segtool.training.logit_adjustment`,
`segtool.training.export_checkpoint` and `segtool.weights.bundle`. Each is imported
only when its command runs, so `segtool models --help` never imports torch.
Never uses the network.
"""

from __future__ import annotations

from pathlib import Path

import click

from segtool.commands.common import echo_json, get_app
from segtool.console import make_console
from segtool.errors import UsageError

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a summary line.")
_folder = click.Path(file_okay=False, path_type=Path)


def _model_folder(folder: Path) -> Path:
    """`folder`, if it holds a config.json; else a one-line UsageError."""
    from segtool.model_config import CONFIG_FILENAME

    if not (folder / CONFIG_FILENAME).is_file():
        raise UsageError(f"{folder}: not a model folder (no {CONFIG_FILENAME})")
    return folder


@click.command("ensemble")
@click.argument("out_dir", type=_folder)
@click.argument("members", nargs=-1, required=True, type=_folder)
@click.option("--float16", is_flag=True, help="Store the tensors in float16 (half the size).")
@_json_option
def ensemble(out_dir: Path, members: tuple[Path, ...], float16: bool, as_json: bool) -> None:
    """Write OUT_DIR: one model folder whose network averages the probabilities of MODEL_DIR... (two or more).

    The members (folders written by `segtool train` or `segtool models export-checkpoint`)
    must share the task and its preprocessing; any network families may be mixed. Run the
    result as any model folder (`segtool run TASK --model-dir OUT_DIR`), or bundle it.

    \b
    Example:
      segtool models ensemble models/ens models/unet models/res_se_unet --float16
    """
    from segtool.training.ensemble_folder import write_ensemble

    config = write_ensemble(list(members), out_dir, float16=float16)
    families = [m["network"] for m in config.architecture["members"]]
    if as_json:
        echo_json({"out_dir": str(out_dir), "members": [str(m) for m in members], "networks": families,
                   "weights_sha256": config.weights_sha256})
        return
    make_console().print(f"{out_dir}: ensemble of {len(members)} ({', '.join(families)}), "
                         f"weights sha256 {config.weights_sha256}")


@click.command("logit-adjust")
@click.argument("model_dir", type=_folder)
@click.argument("data_dir", type=_folder)
@click.option("--tau", type=float, required=True, help="Strength: 0 changes nothing, 1 divides by the class prior.")
@click.option("--reason", required=True, help="How tau was chosen (recorded in config.json).")
@_json_option
@click.pass_context
def logit_adjust(ctx: click.Context, model_dir: Path, data_dir: Path, tau: float, reason: str, as_json: bool) -> None:
    """Give MODEL_DIR logit offsets from its training labels' class frequencies.

    DATA_DIR is the folder the model was trained from (`segtool train TASK DATA_DIR`); its
    training cases (recorded in MODEL_DIR/config.json) give the class prior. config.json
    gets `logit_offsets` = -tau * log(prior) and a record of them; `segtool run` then adds
    them to the network's logits. The weights are untouched.

    \b
    Example:
      segtool models logit-adjust models/knee data/ --tau 0.1 --reason "best of 0, 0.1, 0.3 on training photos"
    """
    from segtool.model_config import CONFIG_FILENAME, ModelConfig
    from segtool.training.logit_adjustment import adjust_folder, offsets_summary

    task = ModelConfig.read(_model_folder(model_dir) / CONFIG_FILENAME).task
    spec = get_app(ctx).registry.get(task)
    try:
        config = adjust_folder(model_dir, spec, data_dir, tau, reason)
    except ValueError as exc:
        raise UsageError(f"--tau {tau}: {exc}") from None
    if as_json:
        echo_json({"model_dir": str(model_dir), "tau": tau, "logit_offsets": config.logit_offsets,
                   "class_fractions": config.training["logit_adjustment"]["class_fractions"]})
        return
    make_console().print(f"{model_dir}: logit offsets (tau {tau}): {offsets_summary(config)}")


@click.command("export-checkpoint")
@click.argument("model_dir", type=_folder)
@click.argument("out_dir", type=_folder)
@_json_option
@click.pass_context
def export_checkpoint(ctx: click.Context, model_dir: Path, out_dir: Path, as_json: bool) -> None:
    """Write OUT_DIR: MODEL_DIR's model with the final weights of its training run (.train/last.pt).

    `segtool train` keeps the weights of its best validation epoch; these are the weights
    after its last step, checked to load strictly into the task's network. config.json
    records them as `training.selected` = "final step N", and `training.validation_of`
    says which weights the recorded validation scored.

    \b
    Example:
      segtool models export-checkpoint models/fold0 models/fold0_final
    """
    from segtool.model_config import CONFIG_FILENAME, ModelConfig
    from segtool.training.export_checkpoint import export_final_weights

    task = ModelConfig.read(_model_folder(model_dir) / CONFIG_FILENAME).task
    spec = get_app(ctx).registry.get(task)
    done = export_final_weights(model_dir, out_dir, spec)
    if as_json:
        echo_json(done.to_json())
        return
    make_console().print(f"{out_dir}: weights of step {done.step} (sha256 {done.weights_sha256}); "
                         f"validation: {done.validation_of or 'none recorded'}")


@click.command("bundle")
@click.argument("model_dir", type=_folder)
@click.argument("plugin_dir", type=_folder)
@click.option("--variant", default=None, help="Bundle into PLUGIN_DIR/VARIANT/ (a task with several bundled models).")
@click.option("--card-extra", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Markdown appended to the model card (e.g. a per-case table).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=JSON",
              help="Set a config.json value, e.g. postprocess.keep_largest=true (repeatable).")
@_json_option
def bundle(model_dir: Path, plugin_dir: Path, variant: str | None, card_extra: Path | None,
           overrides: tuple[str, ...], as_json: bool) -> None:
    """Copy trained MODEL_DIR into the task plugin PLUGIN_DIR as a bundled model.

    Copies model.safetensors, config.json and train_log.jsonl, writes the card (MODEL_DIR's
    README.md) as model_card.md, and prints the plugin's declaration with the sha256 of the
    two pinned files. Refuses a folder whose config.json does not record the sha256 of its
    weights. `--set` changes are recorded in `training.bundle_overrides`.

    \b
    Example:
      segtool models bundle models/disc plugins/segtool_disc --variant unet --set postprocess.keep_largest=true
    """
    from segtool.weights.bundle import bundle_model

    extra = card_extra.read_text(encoding="utf-8") if card_extra else None
    done = bundle_model(model_dir, plugin_dir, variant, extra, overrides)
    if as_json:
        echo_json(done.to_json())
        return
    make_console().print(f"bundled {model_dir} into {done.target}")
    click.echo(done.declaration())


COMMANDS = (ensemble, logit_adjust, export_checkpoint, bundle)
