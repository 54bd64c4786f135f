"""`segtool qc INPUT SEG --qc DIR`: QC pictures and a report row for a mask made elsewhere."""

from __future__ import annotations

from pathlib import Path

import click

from segtool.commands.common import complete_task, get_app, parse_labels_option


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=True))
@click.argument("seg_path", metavar="SEG", type=click.Path(exists=True, dir_okay=False))
@click.option("--qc", "qc_dir", required=True, metavar="DIR", type=click.Path(file_okay=False), help="Report folder (DIR/index.html).")
@click.option("--task", "task_name", default=None, shell_complete=complete_task, help="Take label names from this task.")
@click.option("--labels", "labels_text", default=None, metavar="NAMES", help="Label names: 'gm,wm' or '1=gm,2=wm'.")
@click.option("--model", default="external", show_default=True, help="What made SEG (shown in the report).")
@click.option("--slices", default=5, show_default=True, type=click.IntRange(1, 20), help="Slices per 3D view.")
@click.option("--full-fov", is_flag=True, help="Show the whole field of view, not a crop around the segmentation.")
@click.pass_context
def qc(
    ctx: click.Context,
    input_path: str,
    seg_path: str,
    qc_dir: str,
    task_name: str | None,
    labels_text: str | None,
    model: str,
    slices: int,
    full_fov: bool,
) -> None:
    """Draw segmentation SEG over image INPUT and add them to the QC report in DIR.

    \b
    Examples:
      segtool qc t2s.nii.gz t2s_gm.nii.gz --qc qc/ --task spinal-gm
      segtool qc photo.jpg mask.png --qc qc/ --labels 1=person
    """
    from segtool.io import read_labels, read_volume
    from segtool.qc import qc_case
    from segtool.io.volume import GRID_ATOL, affine_difference

    label_names: dict[int, str] = {}
    task = None
    if task_name is not None:
        task = get_app(ctx).registry.get(task_name)
        label_names = dict(task.labels)
    if labels_text is not None:
        label_names = parse_labels_option(labels_text, bare_names=True)

    image = read_volume(input_path)
    seg = read_labels(seg_path)
    if image.ndim == 3 and getattr(seg, "affine", None) is not None:
        if affine_difference(image.affine, seg.affine) > GRID_ATOL:
            click.echo("segtool: warning: SEG's affine differs from INPUT's; drawing SEG on INPUT's grid", err=True)
    row = {
        "task": task.name if task is not None else "",
        "input": input_path,
        "output": seg_path,
        "model": model,
        "status": "ok",
    }
    qc_case(qc_dir, image, seg, label_names, row, n_slices=slices, full_fov=full_fov)
    click.echo(f"QC report: {Path(qc_dir) / 'index.html'}")
