"""`segtool evaluate PRED GT`: Dice, IoU, HD95, ASSD, NSD, ... per label and region."""

from __future__ import annotations

import math
from pathlib import Path

import click

from segtool.commands.common import complete_task, echo_json, get_app, parse_labels_option
from segtool.errors import EXIT_CASE_FAILED, UsageError


@click.command()
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("gt", type=click.Path(path_type=Path))
@click.option("--task", "task_name", metavar="NAME", shell_complete=complete_task,
              help="Take label names and regions from this task.")
@click.option("--labels", "labels_text", metavar="LIST",
              help="Labels to report: 1,2,3 or 1=csf,2=gm (default: all found); one label also names "
                   "0/1 and 0/255 masks (1=tumour or 255=tumour).")
@click.option("--labels-map", "labels_map_text", metavar="MAP",
              help="Renumber GT's own values to the labels scored, as `segtool train --labels-map`: "
                   "SRC:TARGET pairs, e.g. 4:csf,43:csf,2:wm (SRC may be a range 4-7, TARGET a label name), or a "
                   "JSON file; values not named are background. Needs --task or --labels.")
@click.option("--tolerance", type=float, default=1.0, show_default=True, metavar="MM",
              help="Tolerance of the normalised surface Dice (pixels for photos).")
@click.option("--empty-distance", type=float, default=None, metavar="MM",
              help="Report this distance instead of inf when exactly one mask is empty.")
@click.option("--surface", type=click.Choice(["voxel", "surfel"]), default="voxel", show_default=True,
              help="Surface definition: boundary voxels (as MONAI) or surfels (as DeepMind surface-distance).")
@click.option("--resample-pred", is_flag=True,
              help="Map PRED onto the GT grid (nearest neighbour) instead of refusing different grids.")
@click.option("--qc", "qc_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write prediction-vs-ground-truth pictures and an HTML report here.")
@click.option("--qc-image", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="With --qc and one pair: draw the masks on this image (default: on black).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of tables.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write every metric, one row per case and label, to FILE.")
@click.pass_context
def evaluate(
    ctx: click.Context,
    pred: Path,
    gt: Path,
    task_name: str | None,
    labels_text: str | None,
    labels_map_text: str | None,
    tolerance: float,
    empty_distance: float | None,
    surface: str,
    resample_pred: bool,
    qc_dir: Path | None,
    qc_image: Path | None,
    as_json: bool,
    csv_path: Path | None,
) -> None:
    """Compare a prediction with the ground truth: overlap, volume and surface distances.

    PRED and GT are label images (NIfTI, MHA, NRRD, PNG, ...) on the same grid, or two
    folders whose files are paired by case name (nnU-Net names, and BIDS derivatives
    such as `_seg`, `_gmseg-manual`, `desc-<x>_dseg` in `sub-*` folders; --task picks
    the task's suffix; unmatched files are listed). Masks in 0/1, 0/255 or boolean
    are one label (or the one label of --task / --labels 255=NAME). Distances are in
    mm (pixels for photos); see docs/metrics.md for every definition.

    \b
    Examples:
      segtool evaluate pred.nii.gz gt.nii.gz
      segtool evaluate pred.nii.gz gt.nii.gz --task brain-tumour --json
      segtool evaluate preds/ labelsTs/ --csv metrics.csv --tolerance 2
      segtool evaluate seg.nii.gz synthseg.nii.gz --task brain-tissue --labels-map 4:1,43:1,3:2,42:2,2:3,41:3
    """
    from segtool.console import library_output, make_console
    from segtool import evaluation as ev

    _check_arguments(pred, gt, tolerance, empty_distance, csv_path, qc_image)
    options, role = _options(
        ctx, task_name, labels_text, labels_map_text, tolerance=tolerance, surface=surface, empty_distance=empty_distance,
        resample_pred=resample_pred,
    )
    if qc_image is not None and (qc_dir is None or pred.is_dir()):
        raise UsageError("--qc-image needs --qc and a single PRED/GT pair")
    on_case = ev.qc_writer(qc_dir, options.labels, qc_image) if qc_dir is not None else None

    err = make_console()
    with library_output(err):
        if not pred.is_dir():
            _evaluate_pair(pred, gt, options, on_case, csv_path, as_json)
            return
        pairing = _pairing(pred, gt, role, err)
        cases, failures = _evaluate_folders(pairing, pred, gt, options, on_case, qc_dir, csv_path, as_json)
    _report_failures(ctx, cases, failures)


def _check_arguments(pred: Path, gt: Path, tolerance: float, empty_distance: float | None,
                     csv_path: Path | None, qc_image: Path | None) -> None:
    """The numbers in range, PRED and GT both there and of one kind, --csv somewhere safe."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UsageError(f"--tolerance must be a finite number >= 0, got {tolerance}")
    if empty_distance is not None and (not math.isfinite(empty_distance) or empty_distance < 0):
        raise UsageError(f"--empty-distance must be a finite number >= 0, got {empty_distance}")
    for path, what in ((pred, "PRED"), (gt, "GT")):
        if not path.exists():
            raise UsageError(f"{what} {path}: no such file or directory")
    if pred.is_dir() != gt.is_dir():
        raise UsageError("PRED and GT must both be files or both be folders")
    if csv_path is not None:
        _check_csv_path(csv_path, pred, gt, qc_image)


def _evaluate_pair(pred: Path, gt: Path, options, on_case, csv_path: Path | None, as_json: bool) -> None:
    """Score one PRED/GT pair; a table (or JSON) on stdout, a row in --csv."""
    from segtool import evaluation as ev
    from segtool.console import stdout_console

    case = ev.evaluate_pair(pred, gt, options, on_case=on_case)
    if csv_path is not None:
        ev.write_csv(csv_path, [case], options=options)
    if as_json:
        echo_json(ev.pair_report(case, options))
    else:
        stdout_console().print(ev.pair_table(case, options))


def _evaluate_folders(pairing, pred: Path, gt: Path, options, on_case, qc_dir: Path | None,
                      csv_path: Path | None, as_json: bool):
    """Score every pair of two folders and report them; returns (cases scored, cases that failed)."""
    from segtool import evaluation as ev
    from segtool.console import stdout_console

    failures: list[ev.FailedCase] = []
    cases = ev.evaluate_folders(pairing, options, on_case=on_case, failures=failures)
    if qc_dir is not None:
        _qc_failed_rows(qc_dir, failures)
    summary = ev.aggregate(cases)
    if csv_path is not None and cases:
        ev.write_csv(csv_path, cases, summary, options)
    if as_json:
        echo_json(ev.folder_report(cases, summary, pairing, options, pred, gt, failures))
    elif cases:
        out = stdout_console()
        out.print(ev.cases_table(cases, options))
        out.print(ev.summary_table(summary, cases[0].unit, len(cases), len(failures)))
    return cases, failures


def _report_failures(ctx: click.Context, cases, failures) -> None:
    """One error line per case that could not be scored, a closing line and the exit code."""
    for failure in failures:
        click.echo(f"segtool: error: {failure.error}", err=True)
    if failures:
        n_pairs = len(failures) + len(cases)
        click.echo(
            f"segtool: {len(failures)} of {n_pairs} cases could not be scored; "
            f"the summary is over the other {len(cases)} only", err=True,
        )
        ctx.exit(EXIT_CASE_FAILED)


def _options(ctx: click.Context, task_name: str | None, labels_text: str | None, labels_map_text: str | None,
             **settings):
    """(EvalOptions, the task's output suffix or None) from --task, --labels and --labels-map."""
    from segtool.evaluation import EvalOptions
    from segtool.labels_map import parse_labels_map

    labels = parse_labels_option(labels_text) if labels_text else None
    regions: dict[str, tuple[int, ...]] = {}
    strict, source, role = False, "--labels", None
    if task_name:
        spec = get_app(ctx).registry.get(task_name)
        if labels is None:
            labels = dict(spec.labels)
            strict, source = True, f"task {spec.name!r}"
        else:
            labels = {k: (spec.labels.get(k, v) if v == str(k) else v) for k, v in labels.items()}
        regions = {name: tuple(m) for name, m in spec.regions.items() if set(m) <= set(labels)}
        role = spec.output_suffix
    gt_map = None
    if labels_map_text is not None:
        if labels is None:
            raise UsageError("--labels-map needs --task or --labels: the labels it maps the reference's values to")
        gt_map = parse_labels_map(labels_map_text, labels)
    options = EvalOptions(labels=labels, regions=regions, strict_labels=strict, labels_source=source,
                          gt_labels_map=gt_map, **settings)
    return options, role


def _pairing(pred: Path, gt: Path, role: str | None, err):
    """The folders' pairs; unmatched files warned about, no pair at all an error."""
    from segtool.evaluation import pair_folders

    pairing = pair_folders(pred, gt, role=role)
    for side, paths in (("PRED", pairing.unmatched_pred), ("GT", pairing.unmatched_gt)):
        if paths:
            names = ", ".join(p.name for p in paths)
            err.print(f"segtool: warning: {len(paths)} {side} file(s) without a partner: {names}", markup=False)
    if not pairing.pairs:
        bids = [d / "derivatives" for d in (gt, pred) if (d / "derivatives").is_dir()]
        hint = f"; the labels of a BIDS dataset are under {bids[0]}/<pipeline>" if bids else ""
        raise UsageError(
            f"no file in {pred} pairs with a file in {gt} (files pair by case name; see docs/metrics.md){hint}"
        )
    return pairing


def _check_csv_path(csv_path: Path, pred: Path, gt: Path, qc_image: Path | None) -> None:
    """--csv must go into an existing folder and never onto an input (even through links)."""
    from segtool.io.atomic import is_same_file

    parent = csv_path.parent if str(csv_path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--csv {csv_path}: folder {parent} does not exist")
    if csv_path.exists() and not csv_path.is_file():
        raise UsageError(f"--csv {csv_path}: not a regular file")
    inputs = [pred, gt] + ([qc_image] if qc_image is not None else [])
    for path in list(inputs):
        if path.is_dir():
            inputs.extend(q for q in path.iterdir() if q.is_file())
    for path in inputs:
        if is_same_file(csv_path, path):
            raise UsageError(f"--csv {csv_path}: refusing to overwrite an input ({path})")


def _qc_failed_rows(qc_dir: Path, failures) -> None:
    from segtool.qc.report import QcReport

    for f in failures:
        QcReport(qc_dir).add_case(
            {"task": "evaluate", "input": str(f.pred), "output": str(f.gt), "status": "failed", "error": f.error}
        )
