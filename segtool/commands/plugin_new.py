"""`segtool plugin new NAME`: write a pip-installable task plugin package to start from.

The package registers one task (a small U-Net, the `unet` family of `segtool.networks`)
through the ``segtool`` entry point, and comes with a test and a README that walks
through training it. Templates are strings here (no package data to ship).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

import click

from segtool.errors import OutputExistsError, UsageError
from segtool.spec import TASK_NAME

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = $description_toml
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["segtool>=$segtool_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is what makes segtool find the plugin once it is installed.
[project.entry-points.segtool]
$name = "$module"

[tool.setuptools]
packages = ["$module"]
''')

MODULE = Template('''\
"""The $name task (a segtool plugin)."""

from segtool.hookspecs import hookimpl
from segtool.spec import TaskSpec

TASK = TaskSpec(
    name="$name",
    description=$description_py,
    modality="$modality",
    channels=$channels,
    ndim=$ndim,
    labels=$labels,  # 0 is background
    regions=$regions,  # named unions of labels (e.g. whole tumour); two or more train a Dice over regions
    # "planned": `segtool train` plans the spacing, patch, network, normalisation, augmentation and
    # schedule from the data and --budget (see `segtool train NAME DATA -o MODEL --plan-only`), and
    # records them in the model folder, which `segtool run` follows. The values below are only the
    # defaults of the untrained task; "declared" trains them as written instead.
    recipe="planned",
    orientation=$orientation,
    target_spacing=$spacing,
    patch_size=$patch,
    batch_size=2,
    normalization="$normalization",  # zscore, zscore-nonzero, zscore-foreground, percentile, rgb or none
    # A network family of segtool.networks and its own knobs; the core supplies the
    # dimensions and the channels in ($in_channels) and out ($out_channels: background + each label).
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128)},
    citation="",
    licence="apache-2.0",
    # After `segtool models push MODEL_DIR OWNER/NAME`, paste the WeightsRef it prints here:
    # models={"default": WeightsRef(repo_id=..., revision=..., weights=WeightsFile(...), config=WeightsFile(...))},
)


@hookimpl
def segtool_register_tasks(register):
    register(TASK)
''')

TEST = Template('''\
"""Checks that the $name task registers and that its network fits its patch size."""

import $module
from segtool.plugins import make_plugin_manager
from segtool.registry import collect_tasks


def test_task_registers():
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register($module, name="$name")
    problems = []
    registry = collect_tasks(pm, problems.append)
    assert not problems
    assert registry.get("$name") is $module.TASK


def test_model_output_matches_the_patch():
    import torch

    spec = $module.TASK
    model = spec.build_network().eval()
    with torch.no_grad():
        out = model(torch.zeros(1, spec.network_in_channels, *spec.patch_size))
    assert tuple(out.shape) == (1, spec.num_classes, *spec.patch_size)
''')

README = Template('''\
# $dist

A segtool plugin with one task, `$name`: $description

## Install

```bash
pip install -e .          # from this folder; segtool finds the task through its entry point
segtool tasks $name       # shows the task
pytest tests              # the plugin's own checks
```

## Train your own model

Put the labelled cases in one folder, an image and its label map side by side:

```text
data/
  case01$ext       case01_seg$label_ext
  case02$ext       case02_seg$label_ext
  ...
```

Label maps hold 0 for background and $label_values for $label_names. Several
channels per case go in `case01_0000$ext`, `case01_0001$ext`, ... (in the order of
the task's channels: $channel_names). nnU-Net's `imagesTr/` + `labelsTr/` layout
works too.

```bash
segtool train $name data/ -o models/$name --plan-only      # what it will do, and why
segtool train $name data/ -o models/$name --budget 30m     # plans for 30 minutes of this machine, then trains
segtool run $name --model-dir models/$name new_image$ext -o new_image_seg$label_ext
segtool evaluate new_image_seg$label_ext new_image_truth$label_ext --task $name
```

`models/$name` holds `model.safetensors`, `config.json`, `README.md` (the model card
with the validation scores) and `train_log.jsonl`. Share it with
`segtool models push models/$name OWNER/NAME`, then paste the printed `WeightsRef`
into `models=` in `$module/__init__.py` so that `segtool run $name` finds it.

Edit `$module/__init__.py` to change the channels, labels, spacing, patch size or
network.
''')


def _tuple(items) -> str:
    items = list(items)
    return "(" + ", ".join(repr(i) for i in items) + ("," if len(items) == 1 else "") + ")"


def _split(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"--{what} needs distinct comma-separated names, got {text!r}")
    for n in names:
        if not re.match(r"^[A-Za-z0-9_.-]+$", n):
            raise UsageError(f"--{what}: {n!r} should be letters, digits, '_', '-' or '.'")
    return names


def render(name: str, ndim: int, channels: list[str], labels: list[str], description: str,
           regions: dict[str, list[int]] | None = None) -> dict[str, str]:
    """The plugin package's files: relative path -> text."""
    from segtool.version import __version__

    module = "segtool_" + name.replace("-", "_")
    dist = f"segtool-{name}"
    photo = ndim == 2 and [c.lower() for c in channels] in (["red", "green", "blue"], ["r", "g", "b"])
    values = dict(
        name=name,
        dist=dist,
        module=module,
        description=description,
        description_py=repr(description),
        description_toml=json.dumps(f"segtool plugin: {description}"),
        segtool_version=__version__,
        modality="photo (RGB)" if photo else ("image" if ndim == 2 else "MRI"),
        channels=_tuple(channels),
        channel_names=", ".join(channels),
        ndim=ndim,
        orientation='"RAS"' if ndim == 3 else "None",
        spacing="(1.0, 1.0, 1.0)" if ndim == 3 else "None",
        patch="(64, 64, 64)" if ndim == 3 else "(256, 256)",
        normalization="rgb" if photo else "zscore",
        labels="{" + ", ".join(f"{i}: {n!r}" for i, n in enumerate(labels, start=1)) + "}",
        regions="{" + ", ".join(f"{k!r}: {_tuple(v)}" for k, v in (regions or {}).items()) + "}",
        label_values=", ".join(str(i) for i in range(1, len(labels) + 1)),
        label_names=", ".join(labels),
        in_channels=len(channels),
        out_channels=len(labels) + 1,
        ext=".nii.gz" if ndim == 3 else ".png",
        label_ext=".nii.gz" if ndim == 3 else ".png",
    )
    if photo:
        values["ext"] = ".jpg"
    test_name = name.replace("-", "_")
    return {
        "pyproject.toml": PYPROJECT.substitute(values),
        f"{module}/__init__.py": MODULE.substitute(values),
        f"tests/test_{test_name}.py": TEST.substitute(values),
        "README.md": README.substitute(values),
    }


@click.group()
def plugin() -> None:
    """Create segtool plugins."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to create (default: ./segtool-NAME).")
@click.option("--ndim", type=click.Choice(["2", "3"]), default="3", show_default=True, help="2D images or 3D volumes.")
@click.option("--channels", help="Input channel names, comma-separated (default: image for 3D, red,green,blue for 2D).")
@click.option("--labels", "labels_text", default="foreground", show_default=True,
              help="Label names for values 1, 2, ..., comma-separated.")
@click.option("--description", help="One line saying what the task segments.")
@click.option("--from", "data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read the channels, labels, regions and 2D/3D from this training folder (nnU-Net's dataset.json, "
                   "else the files); options given by hand win.")
@click.pass_context
def new(ctx: click.Context, name: str, directory: Path | None, ndim: str, channels: str | None, labels_text: str,
        description: str | None, data: Path | None) -> None:
    """Write a pip-installable plugin package registering task NAME with a small U-Net.

    \b
    Then:
      pip install -e segtool-NAME
      segtool tasks NAME
      segtool train NAME DATA_DIR -o MODEL_DIR
    """
    if not TASK_NAME.match(name):
        raise UsageError(f"task name {name!r}: use lowercase letters, digits and dashes (e.g. knee-cartilage)")
    dims = int(ndim)
    regions: dict[str, list[int]] = {}
    if data is not None:
        from click.core import ParameterSource

        from segtool.training.data_declarations import read_declarations

        found = read_declarations(data)
        given = {p: ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE for p in ("ndim", "labels_text")}
        dims = dims if given["ndim"] else found.ndim
        channels = channels or ",".join(found.channels)
        labels_text = labels_text if given["labels_text"] else ",".join(found.labels)
        regions = found.regions
        description = description or found.description or None
        click.echo(f"from {found.source} of {data}: {dims}D, channels {', '.join(found.channels)}, labels "
                   f"{', '.join(found.labels)}" + (f", regions {', '.join(regions)}" if regions else ""), err=True)
    channel_names = _split(channels or ("image" if dims == 3 else "red,green,blue"), "channels")
    label_names = _split(labels_text, "labels")
    description = description or f"Segmentation of {', '.join(label_names)} ({dims}D)."
    target = directory or Path(f"segtool-{name}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputExistsError(f"{target} already exists and is not empty")
    files = render(name, dims, channel_names, label_names, description, regions)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    click.echo(str(target))
    click.echo(
        f"created plugin package {target} for task {name!r}; next: pip install -e {target}", err=True
    )
