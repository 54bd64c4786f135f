"""`segtool run`'s extra outputs beside the masks: --statistics, --stats and --bids (checks, set-up, writers)."""

from __future__ import annotations

import sys

from segtool.errors import UsageError


def check_extra_outputs(spec, opts) -> None:
    """--statistics, --stats and --bids: usage errors before any work."""
    dicom_seg = opts["output_format"] == "dicom-seg" or str(opts["output"] or "").lower().endswith(".dcm")
    if (opts["statistics"] or opts["stats_file"]) and dicom_seg:
        raise UsageError("--statistics/--stats read the written masks back; write NIfTI masks, not DICOM SEG")
    if opts["stats_file"] is not None:
        from segtool.statistics import check_stats_file

        check_stats_file(opts["stats_file"], opts["overwrite"])
    if opts["bids_dir"] is None:
        return
    clashes = [flag for flag, key in (("-o", "output"), ("--output-dir", "output_dir"), ("--prob", "probabilities"),
                                      ("--overlay", "overlay"), ("--format", "output_format")) if opts[key]]
    if clashes:
        raise UsageError(f"--bids names every output itself; it cannot be used with {clashes[0]}")


def bids_layout(spec, opts):
    if opts["bids_dir"] is None:
        return None
    from segtool.bids import BidsLayout

    return BidsLayout.create(opts["bids_dir"], spec.name, opts["regions"])


def prepare_bids(spec, cases, plan, opts):
    """--bids: dataset_description.json and the label table written; the raw datasets' link names."""
    if plan.bids is None:
        return None
    from segtool.version import __version__
    from segtool.bids import prepare_dataset
    from segtool.statistics import written_label_names

    inputs = [p for case in cases for p in case.inputs]
    ignore = ("*_statistics.json", "*_statistics.csv") if opts["statistics"] else ()
    return prepare_dataset(plan.bids, inputs, written_label_names(spec, opts["regions"]), __version__, ignore)


def extra_writers(spec, cases, opts, segmenter, links) -> list:
    """What each case's result adds after its mask: statistics, BIDS sidecars."""
    import shlex

    writers: list = []
    if opts["statistics"] or opts["stats_file"]:
        from segtool.statistics import StatisticsWriter, written_label_names

        writers.append(StatisticsWriter(written_label_names(spec, opts["regions"]), spec.channels,
                                        opts["statistics"], opts["stats_file"], opts["allow_uneven"]))
    if links is not None:
        from segtool.version import __version__
        from segtool.bids import BidsWriter, model_record

        command = shlex.join(["segtool", *sys.argv[1:]])
        writers.append(BidsWriter(links, spec.name, model_record(segmenter), command, __version__))
    return writers


def after_result(extras, case, result) -> None:
    """Run each extra writer on a result; one that fails marks the case failed, with one line."""
    from segtool.cases import failure_message

    for writer in extras:
        if case is None or result.status == "failed":
            return
        try:
            writer.after(case, result)
        except Exception as exc:  # noqa: BLE001 - the case fails, the others go on
            result.status, result.error = "failed", f"{writer.what}: {failure_message(exc, result.input)}"
