"""`segtool tasks NAME` for people: the task as titled sections, not a dump of its fields.

Sections: the task, its input, labels, models (each variant with what its card
says about accuracy), preprocessing, postprocessing, output and the default
model's training facts.  Everything is plain text laid out by rich at most
``CARD_WIDTH`` columns wide; ``segtool tasks NAME --json`` keeps every field.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: The card is laid out at most this wide, on a terminal or a pipe.
CARD_WIDTH = 100


def print_card(spec, plugin: str, model: dict, file=None) -> None:
    """Write the task's card to ``file`` (stdout): at most ``CARD_WIDTH`` columns (narrower terminals
    keep their width), styled only on a terminal, no trailing blanks."""
    import shutil

    out = file or sys.stdout
    is_tty = hasattr(out, "isatty") and out.isatty()
    width = min(CARD_WIDTH, shutil.get_terminal_size((CARD_WIDTH, 24)).columns) if is_tty else CARD_WIDTH
    console = Console(file=out, highlight=False, width=width, force_terminal=is_tty, no_color=not is_tty)
    with console.capture() as capture:
        render_task(console, spec, plugin, model)
    out.write("\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n")


def render_task(console: Console, spec, plugin: str, model: dict) -> None:
    """Print ``spec`` as sections; ``model`` is the default model's facts (see ``tasks._model_info``)."""
    console.print(Text(f"task {spec.name}", style="bold"))
    console.print(Text(spec.description), width=console.width)
    meta = [f"plugin {plugin}", f"version {spec.version}"]
    if spec.licence:
        meta.append(f"licence {spec.licence}")
    console.print(" · ".join(meta))
    for title, rows in (
        ("Input", _input_rows(spec)),
        ("Labels", [(str(value), name) for value, name in spec.labels.items()]),
        (_models_title(spec), _model_rows(spec)),
        ("Preprocessing", _preprocessing_rows(spec)),
        ("Postprocessing", _postprocessing_rows(spec)),
        ("Output", [("mask", _output_text(spec))]),
        (_default_model_title(model), _default_model_rows(model)),
    ):
        if rows:
            _section(console, title, rows)
    if spec.citation:
        console.print()
        console.print(Text("Citation", style="bold underline"))
        console.print(Text(spec.citation))


def _section(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    console.print()
    console.print(Text(title, style="bold underline"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(Text("  " + key), Text(value))
    console.print(grid)


def _input_rows(spec) -> list[tuple[str, str]]:
    if spec.is_photo:
        image = "2D photo (colour)" if spec.normalization == "rgb" else "2D image"
    elif spec.ndim == 2:
        image = "2D image"
    elif spec.slice_axis is not None:
        image = f"3D volume, segmented slice by slice along axis {spec.slice_axis}"
    else:
        image = "3D volume"
    rows = [("modality", spec.modality)] if spec.modality else []
    rows.append(("image", image))
    if spec.files_per_case == 1 and spec.in_channels > 1:
        channels = f"{', '.join(spec.channels)} (one file)"
    else:
        channels = ", ".join(spec.channels) + (" (one file each, in this order)" if spec.in_channels > 1 else "")
    rows.append(("channels", channels))
    return rows


def _output_text(spec) -> str:
    if spec.ndim == 2:
        return f"<input>{spec.output_suffix}.png (.tif for .tif inputs), or -o NAME.png"
    return f"<input>{spec.output_suffix}.nii.gz, or -o NAME (.nii.gz, .mha, .nrrd, ...)"


def _models_title(spec) -> str:
    if not spec.models:
        return "Models"
    return f"Models (default: {spec.default_model}; choose with --model NAME)"


def _model_rows(spec) -> list[tuple[str, str]]:
    if not spec.models:
        return [("none yet", f"train one: segtool train {spec.name} DATA_DIR -o MODEL_DIR")]
    return [(name, f"{ref.description or 'no description'} [{ref.source}]") for name, ref in spec.models.items()]


def _preprocessing_rows(spec) -> list[tuple[str, str]]:
    rows = []
    if spec.orientation and not spec.is_photo:
        rows.append(("orientation", spec.orientation))
    if spec.target_spacing:
        rows.append(("spacing", spec.spacing_text))
    if spec.input_size:
        rows.append(("resized to", " x ".join(str(s) for s in spec.input_size) + " px"))
    rows.append(("normalization", spec.normalization))
    if spec.locate is not None:
        margin = " x ".join(f"{m:g}" for m in spec.locate.margin_mm)
        rows.append(("localised by", f"task {spec.locate.task}, cropped with a {margin} mm margin"))
    window = " x ".join(str(s) for s in spec.patch_size)
    rows.append(("windows", f"{window}, overlap {spec.overlap:g}, {spec.run_batch_size} per batch"))
    if spec.slice_context:
        rows.append(("slice context", f"{spec.slice_context} neighbouring slice(s) each side"))
    return rows


def _postprocessing_rows(spec) -> list[tuple[str, str]]:
    post = spec.postprocess
    rows = []
    if post.threshold is not None:
        rows.append(("threshold", f"{post.threshold:g} (foreground probability)"))
    rows.append(("keep largest", "yes, per label" if post.keep_largest else "no"))
    rows.append(("fill holes", "yes" if post.fill_holes else "no"))
    if post.min_size_mm3:
        rows.append(("min size", f"{post.min_size_mm3:g} mm³"))
    if post.relabel_by_position:
        rows.append(("relabel", f"by position ({post.relabel_by_position})"))
    if spec.regions:
        rows.append(("regions", "; ".join(f"{k} = labels {', '.join(map(str, v))}" for k, v in spec.regions.items())))
    return rows


def _default_model_title(model: dict) -> str:
    info = model.get("model")
    return f"Default model: {info['variant']}" if isinstance(info, dict) else "Default model"


def _default_model_rows(model: dict) -> list[tuple[str, str]]:
    info = model.get("model")
    if not isinstance(info, dict):
        return []
    if not info.get("available"):
        return [("not available", info.get("why", ""))]
    rows = [("network", _network_text(info, model.get("parameters"))), ("from", str(info["source"]))]
    trained, validated = info.get("trained_on"), info.get("validated_on")
    if trained:
        rows.append(("trained on", f"{len(trained)} cases" + (f", validated on {len(validated)}" if validated else "")))
    validation = info.get("validation")
    if isinstance(validation, dict) and validation.get("dice"):
        rows.append(("validation Dice", _scores(validation)))
    if info.get("minutes"):
        rows.append(("training time", f"{info['minutes']:.0f} min"))
    return rows


def _network_text(info: dict, parameters: Any) -> str:
    text = str(info.get("network"))
    if isinstance(parameters, int):
        text += f", {parameters:,} parameters"
    patch = info.get("patch_size")
    if patch:
        text += f", windows {' x '.join(str(s) for s in patch)}"
    return text


def _scores(validation: dict) -> str:
    dice = ", ".join(f"{name} {value:.3f}" for name, value in validation["dice"].items() if value is not None)
    cases = validation.get("cases")
    return dice + (f" ({cases} held-out cases during training)" if cases else "")
