"""``segtool run --bids DERIVATIVES_DIR``: masks written as a BIDS derivatives dataset.

Layout (BIDS 1.10 "Discrete Segmentations", validated by the schema's derivative rules)::

    DERIVATIVES_DIR/segtool/
        dataset_description.json        BIDSVersion, DatasetType "derivative", GeneratedBy segtool,
                                        DatasetLinks naming the raw datasets the Sources point into
        desc-<task>_dseg.tsv            the label table (index, name), inherited by every mask
        sub-<label>/[ses-<label>/]anat/
            <source entities>_desc-<task>_dseg.nii.gz
            <source entities>_desc-<task>_dseg.json   Sources, the model and its sha256, the command

The source entities are the input's (``sub-01_ses-02_acq-ax_T2starw.nii.gz`` gives
``sub-01_ses-02_acq-ax_desc-spinalgm_dseg.nii.gz``); its suffix (``T2starw``) is
dropped, as BIDS derivatives do. ``<task>`` is the task name without its
non-alphanumeric characters (BIDS labels are alphanumeric: ``spinal-gm`` ->
``spinalgm``); with ``--regions`` it ends in ``regions``. SCT's ``_gmseg`` names are
not BIDS (the validator rejects them), so every task writes ``_dseg``.

Only NIfTI inputs named in BIDS are accepted (``sub-<label>[_<key>-<label>...]_<suffix>.nii[.gz]``);
anything else is a usage error found before any model loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from segtool.errors import UsageError

BIDS_VERSION = "1.10.0"
PIPELINE = "segtool"

#: ``sub-<label>[_<key>-<label>]..._<suffix>.nii[.gz]``; labels and suffixes alphanumeric.
BIDS_NAME = re.compile(
    r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[a-zA-Z]+-[A-Za-z0-9]+)*)_(?P<suffix>[A-Za-z0-9]+)(?P<ext>\.nii(?:\.gz)?)$"
)
EXAMPLE = "sub-01[_ses-01][_acq-x]_T1w.nii.gz"


@dataclass(frozen=True)
class BidsName:
    entities: tuple[tuple[str, str], ...]  # (key, label) in the file's order, ``sub`` first
    suffix: str
    extension: str

    def entity(self, key: str) -> str | None:
        return dict(self.entities).get(key)


def parse_bids_name(name: str) -> BidsName | None:
    """The entities, suffix and extension of a BIDS image file name; None when it is not one."""
    match = BIDS_NAME.match(name)
    if match is None:
        return None
    pairs = tuple(tuple(part.split("-", 1)) for part in match["entities"].split("_"))
    return BidsName(pairs, match["suffix"], match["ext"])


def desc_label(task: str, regions: bool = False) -> str:
    """The ``desc-`` label of a task's masks: its name's letters and digits (+ ``regions``)."""
    return re.sub(r"[^A-Za-z0-9]", "", task) + ("regions" if regions else "")


@dataclass(frozen=True)
class BidsLayout:
    """Where ``--bids`` puts a case's outputs: ``root`` is ``DERIVATIVES_DIR/segtool``."""

    root: Path
    desc: str

    @classmethod
    def create(cls, derivatives_dir: Path, task: str, regions: bool = False) -> "BidsLayout":
        return cls(Path(derivatives_dir).expanduser() / PIPELINE, desc_label(task, regions))

    def labels_path(self, input_path: Path, kind: str) -> Path:
        """``root/sub-X/[ses-Y/]anat/<entities>_desc-<task>_dseg.nii.gz``; UsageError for photos and non-BIDS names."""
        path = Path(input_path)
        if kind == "photo":
            raise UsageError(f"{path}: --bids writes BIDS derivatives of NIfTI volumes; "
                             "photos and 2D slices have no BIDS segmentation layout (use --output-dir)")
        name = parse_bids_name(path.name)
        if name is None:
            raise UsageError(f"{path}: --bids needs inputs named in BIDS ({EXAMPLE}); "
                             "rename it or use --output-dir")
        entities = [(k, v) for k, v in name.entities if k != "desc"] + [("desc", self.desc)]
        folder = self.root / f"sub-{name.entity('sub')}"
        if name.entity("ses") is not None:
            folder = folder / f"ses-{name.entity('ses')}"
        stem = "_".join(f"{k}-{v}" for k, v in entities)
        return folder / "anat" / f"{stem}_dseg.nii.gz"

    def label_table_path(self) -> Path:
        return self.root / f"desc-{self.desc}_dseg.tsv"

    def description_path(self) -> Path:
        return self.root / "dataset_description.json"


def sidecar_path(labels_path: Path) -> Path:
    """``x_dseg.nii.gz`` -> ``x_dseg.json``."""
    name = Path(labels_path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(labels_path).with_name(name[: -len(ext)] + ".json")
    raise ValueError(f"{labels_path}: not a NIfTI name")


def raw_root(input_path: Path) -> Path:
    """The BIDS dataset an input lies in (the folder above ``sub-X/[ses-Y/]<datatype>/``), else its folder."""
    path = Path(input_path).resolve()
    parents = list(path.parents)
    for i, parent in enumerate(parents[:3]):
        if parent.name.startswith("sub-") and i + 1 < len(parents):
            return parents[i + 1]
    return path.parent


def _read_description(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it as JSON ({exc}); remove it or choose another --bids folder") from None
    if not isinstance(data, dict) or data.get("DatasetType") != "derivative":
        raise UsageError(f"{path}: not a derivative dataset's description (DatasetType is not \"derivative\"); "
                         "choose another --bids folder")
    return data


def prepare_dataset(layout: BidsLayout, inputs: Sequence[Path], label_names: Mapping[int, str],
                    version: str, ignore: Sequence[str] = ()) -> dict[str, str]:
    """Write (or update) ``dataset_description.json`` and the label table; returns {raw root URI: link name}.

    ``ignore``: name patterns added to ``.bidsignore`` (segtool's own non-BIDS files, such as
    ``*_statistics.json``). Called before any model loads, so an unwritable folder is found before the work.
    """
    from segtool.io.atomic import write_text_atomic

    path = layout.description_path()
    description = _read_description(path) if path.exists() else {
        "Name": "segtool segmentations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": PIPELINE, "Version": version,
                         "Description": "segtool run: deep-learning segmentation"}],
    }
    links: dict = dict(description.get("DatasetLinks") or {})
    names = {uri: name for name, uri in links.items()}
    for root in dict.fromkeys(raw_root(p) for p in inputs):
        uri = root.as_uri()
        if uri not in names:
            name = "raw" if "raw" not in links else next(f"raw{i}" for i in range(2, 10_000) if f"raw{i}" not in links)
            links[name], names[uri] = uri, name
    description["DatasetLinks"] = links
    sources = description.setdefault("SourceDatasets", [])
    for uri in links.values():
        if {"URL": uri} not in sources:
            sources.append({"URL": uri})
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(description, indent=2) + "\n")
        table = "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(label_names.items()))
        write_text_atomic(layout.label_table_path(), table)
        _add_ignored(layout.root / ".bidsignore", ignore)
    except OSError as exc:
        raise UsageError(f"--bids {layout.root}: cannot write there ({exc.strerror or exc})") from None
    return names


def _add_ignored(path: Path, patterns: Sequence[str]) -> None:
    from segtool.io.atomic import write_text_atomic

    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    missing = [p for p in patterns if p not in lines]
    if missing:
        write_text_atomic(path, "".join(f"{line}\n" for line in lines + missing))


def source_uri(input_path: Path, links: Mapping[str, str]) -> str:
    """``bids:<link>:<path in that dataset>`` for an input (a BIDS URI, as BIDS 1.9+ writes Sources)."""
    path = Path(input_path).resolve()
    root = raw_root(path)
    return f"bids:{links[root.as_uri()]}:{path.relative_to(root).as_posix()}"


def write_sidecar(labels_path: Path, inputs: Sequence[Path], links: Mapping[str, str], task: str,
                  model: Mapping[str, object], command: str, version: str) -> Path:
    """The JSON sidecar of one mask: what it is, its Sources, the model (with sha256) and the command."""
    from segtool.io.atomic import write_text_atomic

    sidecar = {
        "Description": f"Automatic segmentation by segtool task {task!r}",
        "Sources": [source_uri(p, links) for p in inputs],
        "SegtoolTask": task,
        "SegtoolVersion": version,
        "Model": dict(model),
        "Command": command,
    }
    return write_text_atomic(sidecar_path(labels_path), json.dumps(sidecar, indent=2) + "\n")


def model_record(segmenter) -> dict:
    """The sidecar's ``Model``: the model's name and source and its files' sha256 (and the localiser's)."""
    def record(resolved) -> dict:
        return {"Name": resolved.variant or resolved.source, "Source": resolved.source,
                "WeightsSHA256": resolved.weights_sha256, "ConfigSHA256": resolved.config_sha256,
                "Pinned": resolved.pinned}

    out = record(segmenter.resolved) if segmenter.resolved is not None else {"Name": "unknown"}
    locator = getattr(segmenter, "locator", None)
    if locator is not None and locator.resolved is not None:
        out["Localiser"] = {"Task": locator.spec.name, **record(locator.resolved)}
    return out


class BidsWriter:
    """Writes each done case's JSON sidecar (``after(case, result)``) in a prepared layout."""

    what = "BIDS sidecar"

    def __init__(self, links: Mapping[str, str], task: str, model: Mapping[str, object], command: str,
                 version: str):
        self.links, self.task, self.model = dict(links), task, dict(model)
        self.command, self.version = command, version

    def after(self, case, result) -> None:
        if result.status == "done" and result.output is not None:
            write_sidecar(Path(result.output), case.inputs, self.links, self.task, self.model, self.command,
                          self.version)
