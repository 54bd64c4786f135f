"""`segtool run TASK INPUT...`: segment images and write masks on the inputs' grids."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from segtool.commands import run_extras
from segtool.commands.common import complete_model, complete_task, echo_json, get_app
from segtool.errors import EXIT_CASE_FAILED, EXIT_OK, UsageError, WeightsUnavailableError
from segtool.run_checks import EXIT_STATUS


@click.command(context_settings={"show_default": True}, epilog=EXIT_STATUS)
@click.argument("task", shell_complete=complete_task)
@click.argument("inputs", nargs=-1, type=click.Path(), metavar="INPUTS...")
@click.option("-i", "--input", "input_options", multiple=True, type=click.Path(),
              help="An INPUT given as an option (SCT's habit); repeat it for several. Taken before the positional "
                   "INPUTS, in order.")
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output file (one case only); its suffix picks the format (.nii.gz, .mha, .nrrd, .png, ...). "
                   "A folder (an existing one, or a name ending in '/') means --output-dir.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write <input stem>_seg.* here instead of beside each input.")
@click.option("--format", "output_format", type=click.Choice(["nifti", "dicom-seg"]),
              help="Output format of default names: dicom-seg writes <series>_seg.dcm, a DICOM SEG referencing "
                   "the input series (DICOM series inputs only; also chosen by -o NAME.dcm). [default: NIfTI]")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (inputs are never overwritten).")
@click.option("--skip-existing", is_flag=True,
              help="Skip cases whose output already exists (with --stack: patients whose masks all exist; "
                   "a patient with only some is refused).")
@click.option("--model", "variant", shell_complete=complete_model,
              help="Model variant of the task (see `segtool models list`).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this .safetensors file (config.json beside it).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Use a model folder written by `segtool train`.")
@click.option("--locator-model-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Tasks that localise first (spinal-gm): use this model folder for the localiser task.")
@click.option("--offline", is_flag=True, help="Never touch the network (also HF_HUB_OFFLINE=1).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Weights cache directory.")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per forward pass (default: the task's).")
@click.option("--overlap", type=click.FloatRange(0.0, 0.95), help="Sliding-window overlap (default: the task's).")
@click.option("--tta/--no-tta", default=None,
              help="Average predictions over axis flips (default: as the model's config.json says; off).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              help="Numeric precision: auto is fp16 on CUDA, bf16 on CPUs with native bfloat16, else fp32.")
@click.option("--no-amp", is_flag=True, help="Same as --precision fp32.")
@click.option("--prob", "probabilities", is_flag=True, help="Also write per-class probabilities (<stem>_prob.nii.gz).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Binary tasks: foreground probability cut-off.")
@click.option("--keep-largest/--no-keep-largest", default=None,
              help="Keep each label's largest component. --no-keep-largest also keeps every component of a "
                   "task's one object (brain-tumour: several tumour foci).")
@click.option("--fill-holes/--no-fill-holes", default=None, help="Fill holes inside each label.")
@click.option("--min-size", "min_size_mm3", type=click.FloatRange(min=0.0), help="Remove components smaller than this (mm³).")
@click.option("--allow-uneven", is_flag=True,
              help="DICOM series with missing slices or uneven spacing: resample onto an even grid "
                   "(with a warning) instead of refusing.")
@click.option("--stack", is_flag=True,
              help="2D tasks: each INPUT folder (or the INPUT files of one folder) is one patient: its slices, "
                   "in slice-number order, are segmented as one batch and postprocessed as one volume; "
                   "one mask per slice. Files named *_mask.* or *_seg.* in a folder are left out.")
@click.option("--combine", is_flag=True,
              help="Single-channel 3D tasks (brain-tissue): the INPUTS are one subject's images of different "
                   "contrasts (T1, T2, ...) on one grid; each is segmented and their class probabilities are "
                   "averaged into one mask, named after the first INPUT.")
@click.option("--shard", help="I/N: process every N-th case starting at case I (0-based), for job arrays.")
@click.option("--overlay", is_flag=True,
              help="2D tasks: also write <stem>_overlay.png, the image with the classes blended in and a legend.")
@click.option("--regions", is_flag=True,
              help="Tasks with nested regions (brain-tumour: whole tumour, core, enhancing): write them as one "
                   "map instead of the labels, 1 = outermost region only ... N = innermost.")
@click.option("--qc", "qc_dir", type=click.Path(file_okay=False, path_type=Path), help="Write QC pictures and an HTML report here.")
@click.option("--qc-full-fov", is_flag=True,
              help="With --qc: show the whole field of view, not a crop around the segmented structure.")
@click.option("--statistics", is_flag=True,
              help="Also write <stem>_statistics.json and .csv beside each mask: per label, voxel count, volume "
                   "(mm³; px for photos) and mean input intensity (per channel), as TotalSegmentator's statistics.json.")
@click.option("--stats", "stats_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every case's label statistics (see --statistics) to this one .json or .csv file.")
@click.option("--bids", "bids_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Inputs named in BIDS: write a BIDS derivatives dataset, BIDS_DIR/segtool/sub-*/[ses-*/]anat/"
                   "<entities>_desc-<task>_dseg.nii.gz with JSON sidecars (sources, model sha256, command), "
                   "the label table and dataset_description.json.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per case instead of output paths.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or logs on stderr.")
@click.pass_context
def run(ctx: click.Context, task: str, inputs: tuple[str, ...], **opts) -> None:
    """Segment INPUTS with TASK.

    Multi-channel tasks take their channel files in order, one case after
    another (`segtool run brain-tumour flair.nii.gz t1c.nii.gz`). An INPUT of
    `-` reads paths from stdin, one per line. Each written output path is
    printed on stdout; progress and logs go to stderr. A multi-channel 2D
    task takes one file holding all channels or one file per channel. With
    --stack, 2D slices are segmented patient by patient as volumes.

    Inputs, existing outputs and output folders are checked before the model
    loads. A patient some of whose slices have masks (from a run of a slice
    alone: same names) is refused by --stack unless --overwrite.
    """
    inputs = _all_inputs(ctx, inputs, opts)
    _output_folder_as_output_dir(opts)
    app = get_app(ctx)
    spec = app.registry.get(task)
    stacks = _plan_stacks(spec, inputs, opts) if opts["stack"] else None
    cases = _plan_cases(spec, inputs, opts) if stacks is None else [c for s in stacks for c in s.cases]
    if opts["combine"]:
        cases = _combined_case(spec, cases, opts)
    if opts["output"] is not None and len(cases) != 1:
        raise UsageError(f"-o/--output takes one case, got {len(cases)}; write each case's mask into one folder "
                         "with --output-dir DIR instead of -o")
    _check_options(spec, opts)
    from segtool.run_checks import check_inputs, check_outputs
    from segtool.output_checks import check_plan

    plan = _output_plan(spec, opts)
    check_inputs(cases, spec)  # missing, not a file, a photo for a 3D task: before any work
    check_plan(cases, plan, spec)  # output names, collisions, inputs: before any work
    check_outputs(cases, plan, stacks, opts["qc_dir"])  # outputs that exist, folders that take no file: same
    if not spec.models and opts["weights_path"] is None and opts["model_dir"] is None:
        raise WeightsUnavailableError(
            f"task {spec.name!r} has no trained weights yet; train a model with "
            f"`segtool train {spec.name} DATA_DIR -o MODEL_DIR`, then run it with --model-dir MODEL_DIR, "
            "or install a plugin version that ships weights"
        )

    from segtool.console import library_output, make_console

    console = make_console(quiet=opts["quiet"])
    with library_output(console, quiet=opts["quiet"]):
        links = run_extras.prepare_bids(spec, cases, plan, opts)  # dataset_description.json: before the model loads
        segmenter, model_name = _load_segmenter(spec, app, opts, console)
        spec = segmenter.spec  # the task as the model runs it: its folder's grid, patch and postprocessing
        results = _run_with_progress(spec, segmenter, model_name, cases, plan, opts, console, stacks, links)
    failed = [r for r in results if r.status == "failed"]
    if failed and not opts["as_json"]:
        for r in failed:
            click.echo(f"segtool: error: {r.error}", err=True)
    ctx.exit(EXIT_CASE_FAILED if failed else EXIT_OK)


def _check_options(spec, opts) -> None:
    """Usage errors in the options alone (exit 2)."""
    if opts["weights_path"] is not None and opts["model_dir"] is not None:
        raise UsageError("give --weights or --model-dir, not both")
    if opts["qc_full_fov"] and not opts["qc_dir"]:
        raise UsageError("--qc-full-fov needs --qc DIR")
    if opts["overlay"] and spec.ndim != 2:
        raise UsageError(f"--overlay: task {spec.name!r} is {spec.ndim}D; overlays are for 2D tasks (use --qc)")
    if opts["regions"]:
        from segtool.regions import nested_regions

        if opts["stack"]:
            raise UsageError("--regions and --stack cannot be combined (--stack writes the labels of each slice)")
        try:
            nested_regions(spec.regions)
        except ValueError as exc:
            raise UsageError(f"--regions: task {spec.name!r}: {exc}") from None
    for name in ("threshold", "overlap", "min_size_mm3"):  # click's FloatRange lets nan through
        value = opts[name]
        if value is not None and not math.isfinite(value):
            flag = {"min_size_mm3": "min-size"}.get(name, name)
            raise UsageError(f"--{flag} must be a finite number, got {value}")


def _all_inputs(ctx: click.Context, inputs: tuple[str, ...], opts) -> tuple[str, ...]:
    """-i/--input values (in order), then the positional INPUTS; at least one."""
    given = tuple(opts.pop("input_options")) + tuple(inputs)
    if not given:
        param = next(p for p in ctx.command.params if p.name == "inputs")
        raise click.MissingParameter(ctx=ctx, param=param)
    return given


def _plan_cases(spec, inputs, opts):
    from segtool.runner import expand_inputs, group_cases, parse_shard, shard_cases

    paths = expand_inputs(inputs, lambda: sys.stdin)
    return shard_cases(group_cases(paths, spec), parse_shard(opts["shard"]))


def _combined_case(spec, cases, opts):
    """--combine: the inputs (one file each) as the contrasts of one case."""
    from segtool.cases import Case

    if opts["stack"] or opts["shard"]:
        raise UsageError("--combine makes one case of all INPUTS; it cannot be used with --stack or --shard")
    if spec.ndim != 3 or spec.in_channels != 1:
        raise UsageError(
            f"--combine: task {spec.name!r} takes {spec.in_channels}-channel {spec.ndim}D images; it combines "
            "contrasts for single-channel 3D tasks (multi-channel tasks take their channels as files already)"
        )
    if len(cases) < 2:
        raise UsageError("--combine needs two or more INPUTS: the same subject's images of different contrasts")
    return [Case(tuple(p for case in cases for p in case.inputs))]


def _plan_stacks(spec, inputs, opts):
    from segtool.cases import output_suffix
    from segtool.runner import expand_inputs, parse_shard, shard_cases
    from segtool.stacking import plan_stacks

    paths = expand_inputs(inputs, lambda: sys.stdin)
    return shard_cases(plan_stacks(paths, spec, output_suffix(spec)), parse_shard(opts["shard"]))


def _load_segmenter(spec, app, opts, console):
    from segtool.segmenter import Segmenter

    segmenter = Segmenter.from_task(
        spec.name,
        opts["model_dir"],
        variant=opts["variant"],
        weights_path=opts["weights_path"],
        locator_model_dir=opts["locator_model_dir"],
        offline=opts["offline"],
        cache_dir=opts["cache_dir"],
        device=opts["device"],
        precision="fp32" if opts["no_amp"] else opts["precision"],
        batch_size=opts["batch_size"],
        overlap=opts["overlap"],
        tta=opts["tta"],
        threshold=opts["threshold"],
        keep_largest=opts["keep_largest"],
        fill_holes=opts["fill_holes"],
        min_size_mm3=opts["min_size_mm3"],
        warn=lambda m: console.print(f"[yellow]warning:[/yellow] {m}"),
        app=app,
    )
    resolved = segmenter.resolved
    extras = [name for name, on in (("test-time flips", segmenter.options.tta),
                                    ("logit offsets", resolved.config.logit_offsets is not None)) if on]
    with_extras = f" ({', '.join(extras)})" if extras else ""
    named = f"{resolved.variant} ({resolved.source})" if resolved.variant else resolved.source
    console.print(f"[bold]{spec.name}[/bold]: model {named} on {segmenter.device}{with_extras}")
    return segmenter, resolved.variant or resolved.source


def _output_folder_as_output_dir(opts) -> None:
    """``-o out/`` (a name ending in a separator, or an existing folder) is ``--output-dir out``."""
    import os

    given = opts["output"]
    if given is None:
        return
    if given.endswith(("/", os.sep)) or Path(given).is_dir():
        if opts["output_dir"] is not None:
            raise UsageError(f"-o {given}: a folder; give it or --output-dir, not both")
        opts["output"], opts["output_dir"] = None, Path(given)
    else:
        opts["output"] = Path(given)


def _output_plan(spec, opts):
    from segtool.cases import OutputPlan, output_suffix

    run_extras.check_extra_outputs(spec, opts)
    return OutputPlan(
        output=opts["output"],
        output_dir=opts["output_dir"],
        overwrite=opts["overwrite"],
        skip_existing=opts["skip_existing"],
        probabilities=opts["probabilities"],
        suffix=output_suffix(spec),
        format=opts["output_format"],
        overlay=opts["overlay"],
        regions=opts["regions"],
        bids=run_extras.bids_layout(spec, opts),
    )


def _run_with_progress(spec, segmenter, model_name, cases, plan, opts, console, stacks=None, links=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from segtool.cases import RunRequest
    from segtool.runner import run_cases

    qc = _qc_writer(opts["qc_dir"], spec, opts["qc_full_fov"]) if opts["qc_dir"] else None

    def warn(message):
        console.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)

    extras = run_extras.extra_writers(spec, cases, opts, segmenter, links)
    by_name = {case.name: case for case in cases}

    def on_result(result):
        run_extras.after_result(extras, by_name.get(result.input), result)
        if opts["as_json"]:
            echo_json(result.to_json())
        elif result.status == "done":
            click.echo(result.output)
        progress.advance(cases_task)
        if result.status == "done":
            console.print(f"[green]done[/green] {result.input} -> {result.output} ({result.seconds:.1f} s)")
        elif result.status == "skipped":
            console.print(f"[dim]skipped[/dim] {result.input}: {result.output} exists")

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        cases_task = progress.add_task("cases", total=len(cases))
        windows_task = progress.add_task("windows", total=None)

        def on_case_start(case):
            progress.update(windows_task, completed=0, total=None, description=f"{Path(case.name).name}")

        def on_batch(done, total):
            progress.update(windows_task, completed=done, total=total)

        request = RunRequest(spec, segmenter, model_name, plan, on_result, on_batch, on_case_start, qc,
                             allow_uneven=opts["allow_uneven"], warn=warn, combine=opts["combine"])
        if stacks is not None:
            from segtool.stacking import run_stacks

            return run_stacks(request, stacks)
        return run_cases(request, cases)


def _qc_writer(qc_dir: Path, spec, full_fov: bool = False):
    from segtool.qc import qc_case

    def write(volume, labels, result):
        row = result.to_json()
        row["volumes"] = row.pop("volumes_mm3")
        if volume is None:  # a failed case: a row marked failed, no pictures
            from segtool.qc.report import QcReport

            row.pop("volumes")
            QcReport(qc_dir).add_case(row)
            return
        qc_case(qc_dir, volume, labels, dict(spec.labels), row, colours=spec.label_colours(), full_fov=full_fov)

    return write
