"""`segtool train TASK DATA_DIR -o MODEL_DIR`: train a task's model into a model folder."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
from click.core import ParameterSource

from segtool.commands.common import complete_task, echo_json, get_app
from segtool.errors import UsageError
from segtool.spec import MAX_SLICE_CONTEXT


def _patch_size(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not sizes like 64,64,32") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r} is not sizes like 64,64,32")
    return sizes


def _names(ctx, param, values: tuple[str, ...]):
    """Names, comma-separated or repeated; ``@FILE`` reads them from FILE (one per line or comma-separated, # comments)."""
    out = []
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise click.BadParameter(f"{value}: cannot read ({exc.__class__.__name__}: {exc})") from None
            lines = (line.split("#", 1)[0] for line in text.splitlines())
            names = [n.strip() for line in lines for n in line.split(",") if n.strip()]
            if not names:
                raise click.BadParameter(f"{value}: the file names no cases")
            out.extend(names)
        else:
            out.extend(n.strip() for n in value.split(",") if n.strip())
    return tuple(out)


@click.command(context_settings={"show_default": True})
@click.argument("task", shell_complete=complete_task)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (model.safetensors, config.json, README.md, train_log.jsonl).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, help="Epochs to train.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=250, help="Optimiser steps per epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Patches per step and process (default: the task's).")
@click.option("--patch-size", callback=_patch_size, help="Training patch, e.g. 128,128,64 (default: the task's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, help="AdamW peak learning rate.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, help="AdamW weight decay.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2,
              help="Fraction of cases held out for validation (seeded split by case).")
@click.option("--val-cases", multiple=True, callback=_names, help="Validate on these cases (comma-separated or repeated; @FILE: "
              "names from FILE, one per line).")
@click.option("--val-every", type=click.IntRange(min=1), default=1, help="Validate every N epochs (and after the last).")
@click.option("--labels-map", help="Merge source labels into the task's: 3:1,42:2 (SRC may be a range 4-7, TARGET a "
              "label name) or a JSON file. Unlisted source labels become background. Default: the task's own map "
              "(e.g. clothing: CCP's 59 tags to its 14 classes), if it has one; 'none' turns that off.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed for the split, initialisation and patches.")
@click.option("--resume", is_flag=True, help="Continue the stopped run in MODEL_DIR (its split, seed and labels map).")
@click.option("--overwrite", is_flag=True, help="Start again even if MODEL_DIR holds a model.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop training after this long, then validate and save the best model.")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (under torchrun: cuda:LOCAL_RANK).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, help="DataLoader worker processes for patches.")
@click.option("--foreground-fraction", type=click.FloatRange(0.0, 1.0), default=0.33,
              help="Share of each batch centred on a labelled voxel.")
@click.option("--augment/--no-augment", default=True, help="On-the-fly augmentation.")
@click.option("--elastic", is_flag=True, help="Add elastic deformation to the augmentation.")
@click.option("--region-dice", is_flag=True,
              help="Take the Dice term over the task's regions (brain-tumour: whole tumour, core, enhancing; "
                   "each the sum of its labels' probabilities) instead of over each label.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              help="auto: fp16 on CUDA, bf16 on CPUs with native bfloat16, else fp32.")
@click.option("--no-amp", is_flag=True, help="Same as --precision fp32.")
@click.option("--network", "network_family", help="Train another network family than the task's "
              "(unet, attention_unet, res_se_unet, deeplabv3plus, dilated_gm); recorded in the model folder.")
@click.option("--network-args", help='The family\'s own arguments as JSON, e.g. \'{"features": [16, 32, 64]}\' '
              "(default: the task's when the family is the task's, else the family's defaults).")
@click.option("--slice-context", type=click.IntRange(0, MAX_SLICE_CONTEXT),
              help="2.5D, for slice-wise tasks: the network also sees this many neighbouring slices on each side "
                   "as extra input channels (default: the task's); recorded in the model folder.")
@click.option("--group-by", help="Regex whose first group names a case's subject: the split keeps subjects whole "
                                  "(e.g. '^(sub-[^_]+)'), and validation scores subjects, their cases pooled "
                                  "(the Dice of a patient's stacked slices).")
@click.option("--init-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Start from the weights of this model folder (fine-tuning): the same task, network and "
                   "architecture; recorded in the model folder. A resumed run keeps its own.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0.1), default=5.0,
              help="Save the resume checkpoint at least this often.")
@click.option("--licence", "--license", "licence", help="Model card licence, e.g. apache-2.0 (default: the task's).")
@click.option("--dataset", "datasets", multiple=True, help="Hub dataset id for the model card (repeatable).")
@click.option("--budget", help="Wall time for the whole run on this machine (30m, 1h30m, 90s): the plan sizes the network, "
              "patch and steps to it by measuring candidates on the device. With --folds, per fold model.")
@click.option("--plan", "planning", type=click.Choice(["auto", "off"]),
              help="auto: plan the recipe from the data and --budget (the default for a task whose recipe is "
                   "'planned', e.g. a new plugin), ignoring a built-in task's hand-set spacing, patch, normalisation, "
                   "network and threshold; off: the task's declared recipe (the default for built-in tasks).")
@click.option("--plan-only", is_flag=True, help="Fingerprint the data, plan, print the plan (with --json: as JSON) and stop.")
@click.option("--folds", type=click.IntRange(min=2), help="Cross-validation: train K fold models (split by --group-by or "
              "by case), score every case by the fold that held it out, then write --final into MODEL_DIR.")
@click.option("--final", "final_model", type=click.Choice(["ensemble", "all-data"]), default="ensemble",
              help="With --folds: the runnable model in MODEL_DIR is the fold models' ensemble, or one model "
                   "trained on all cases with the same recipe (one more budget).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or logs on stderr.")
@click.pass_context
def train(ctx: click.Context, task: str, data_dir: Path, model_dir: Path, **opts) -> None:
    """Train TASK on the labelled cases in DATA_DIR and write the model folder MODEL_DIR.

    \b
    DATA_DIR layouts:
      nnU-Net  imagesTr/CASE_0000.nii.gz (one file per channel), labelsTr/CASE.nii.gz, dataset.json
      simple   CASE.nii.gz + CASE_seg.nii.gz, photo.jpg + photo_seg.png,
               CASE_0000.nii.gz, CASE_0001.nii.gz, ... + CASE_seg.nii.gz for several channels

    The images get the same preprocessing as `segtool run`. Use the result with
    `segtool run TASK --model-dir MODEL_DIR IMAGE`. Under
    `torchrun --nproc_per_node N -m segtool train ...` training is distributed
    (DistributedDataParallel). See docs/training.md.
    """
    app = get_app(ctx)
    spec = app.registry.get(task)
    if opts["resume"] and opts["overwrite"]:
        raise UsageError("give --resume or --overwrite, not both")

    from segtool.commands.train_plan import plan_if_asked
    from segtool.console import make_console
    from segtool.training.loop import train as run_training

    console = make_console(quiet=opts["quiet"])
    planned = plan_if_asked(ctx, spec, data_dir, model_dir, opts, console)
    if planned is not None and planned.stop:
        return
    if planned is not None:
        spec = planned.plan.apply_to_spec(spec)
    spec = _with_network(spec, opts.pop("network_family"), opts.pop("network_args"))
    spec = _with_slice_context(spec, opts.pop("slice_context"))
    options = _train_options(ctx, opts, planned)
    if opts["folds"]:
        from segtool.training.cross_validation import run_folds

        summary = run_folds(spec, data_dir, model_dir, options, opts["folds"], opts["final_model"], console,
                            app.plugin_manager, run_training)
        _report(summary, model_dir, opts["as_json"])
        return
    result = run_training(spec, data_dir, model_dir, options, console, app.plugin_manager)
    if result.rank != 0:
        return
    _report(result.to_json(), model_dir, opts["as_json"])


def _report(summary: dict, model_dir: Path, as_json: bool) -> None:
    """The run's JSON summary on stdout with --json, else the model folder's path."""
    if as_json:
        echo_json(summary)
    else:
        click.echo(str(model_dir))


def _train_options(ctx: click.Context, opts: dict, planned):
    """The TrainOptions of the command line, with the plan's recipe when training was planned."""
    from segtool.training.loop import TrainOptions

    options = TrainOptions(
        epochs=opts["epochs"],
        steps_per_epoch=opts["steps_per_epoch"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        weight_decay=opts["weight_decay"],
        val_fraction=opts["val_fraction"],
        val_cases=opts["val_cases"],
        val_every=opts["val_every"],
        labels_map=opts["labels_map"],
        seed=opts["seed"],
        resume=opts["resume"],
        overwrite=opts["overwrite"],
        max_minutes=opts["max_minutes"],
        device=opts["device"],
        patch_size=opts["patch_size"],
        num_workers=opts["num_workers"],
        foreground_fraction=opts["foreground_fraction"],
        augment=opts["augment"],
        elastic=opts["elastic"],
        region_dice=opts["region_dice"],
        precision="fp32" if opts["no_amp"] else opts["precision"],
        group_by=opts["group_by"],
        checkpoint_minutes=opts["checkpoint_minutes"],
        licence=opts["licence"],
        datasets=opts["datasets"],
        init_weights=str(opts["init_weights"]) if opts["init_weights"] else None,
        command=command_line(ctx),
    )
    if planned is not None:
        from dataclasses import replace

        options = replace(planned.plan.apply_to_options(options), plan=planned.plan.to_json(), schedule_by_time=True)
    return options


_NOT_RECORDED = {"as_json", "quiet", "resume", "overwrite", "plan_only"}


def command_line(ctx: click.Context) -> str:
    """The command as given (options the user set, plus the seed), for the model card."""
    words = ["segtool", "train"]
    params = ctx.params
    for param in ctx.command.params:
        name, value = param.name, params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        if name in _NOT_RECORDED or value is None:
            continue
        if ctx.get_parameter_source(name) == ParameterSource.DEFAULT and name != "seed":
            continue
        flag = param.opts[0]
        if isinstance(param, click.Option) and param.is_flag:
            if param.secondary_opts:
                words.append(flag if value else param.secondary_opts[0])
            elif value:
                words.append(flag)
            continue
        if name == "patch_size":
            value = ",".join(map(str, value))
        for item in value if isinstance(value, tuple) else (value,):
            words += [flag, str(item)]
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        nodes = world // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world) or world))
        launcher = ["torchrun", "--nproc_per_node", os.environ.get("LOCAL_WORLD_SIZE", str(world))]
        if nodes > 1:
            launcher += ["--nnodes", str(nodes)]
        words = launcher + ["-m"] + words
    return shlex.join(words)


def _with_slice_context(spec, context: int | None):
    """The task with ``--slice-context`` neighbouring slices as channels (slice-wise tasks only)."""
    from dataclasses import replace

    from segtool.errors import InvalidSpecError

    if context is None or context == spec.slice_context:
        return spec
    try:
        return replace(spec, slice_context=context)
    except InvalidSpecError:
        raise UsageError(f"--slice-context: task {spec.name!r} does not run slice by slice "
                         "(only slice-wise 3D tasks have neighbouring slices)") from None


def _with_network(spec, family: str | None, arguments: str | None):
    """The task with another network family and/or arguments (what `--network`/`--network-args` ask for)."""
    import json
    from dataclasses import replace

    from segtool.errors import InvalidSpecError

    if family is None and arguments is None:
        return spec
    if family == "ensemble":
        raise UsageError("--network ensemble: an ensemble is made from trained model folders "
                         "(segtool models ensemble OUT_DIR MODEL_DIR MODEL_DIR ...), not trained")
    kwargs = dict(spec.model_kwargs) if family in (None, spec.network) else {}
    if arguments is not None:
        try:
            kwargs = json.loads(arguments)
        except ValueError as exc:
            raise UsageError(f"--network-args: not JSON ({exc})") from None
        if not isinstance(kwargs, dict):
            raise UsageError("--network-args: expected a JSON object of the family's arguments")
    try:
        return replace(spec, network=family or spec.network, model_factory=None if family else spec.model_factory,
                       model_kwargs=kwargs)
    except InvalidSpecError as exc:
        raise UsageError(f"--network: {exc}") from None
