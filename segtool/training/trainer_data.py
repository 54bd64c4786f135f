"""The trainer's data: the output folder check, the labels map, the split and the preprocessed cache."""

from __future__ import annotations

import contextlib

from segtool.errors import OutputExistsError, SegtoolError, UsageError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME
from segtool.training import checkpoint, distributed
from segtool.labels_map import parse_labels_map
from segtool.training.datasets import Dataset, describe_map, discover, map_from_dataset_json, split_cases
from segtool.training.model_folder import LOG_FILENAME
from segtool.training.prepare import build_cache, open_cache


def resolve_labels_map(spec, dataset: Dataset, text: str | None, console) -> dict[int, int] | None:
    """The labels map a run uses: ``--labels-map`` (``none``: no map), else the task's, else dataset.json's names."""
    if text and text.strip().lower() == "none":
        return None  # the data already holds the task's values: no map, not even the task's default
    if text:
        return parse_labels_map(text, spec.labels)
    if spec.labels_map:
        console.print(f"labels merged by the task's default labels map ({len(spec.labels_map)} source "
                      "values; --labels-map none turns it off)")
        return dict(spec.labels_map)
    auto = map_from_dataset_json(dataset.info, spec.labels)
    if auto:
        console.print(f"labels renumbered by name from dataset.json: {describe_map(auto)}")
    return auto


class TrainerData:
    """`Trainer`'s set-up of its data (a mixin: it uses the trainer's spec, options, folders and console)."""

    def _check_output(self) -> dict | None:
        """Refuse to overwrite a model folder by accident; load the checkpoint when resuming."""
        if self.opts.resume:
            return checkpoint.load(checkpoint.checkpoint_path(self.model_dir))
        if self.model_dir.exists() and not self.model_dir.is_dir():
            raise OutputExistsError(f"-o {self.model_dir}: exists and is not a folder")
        existing = [n for n in (WEIGHTS_FILENAME, CONFIG_FILENAME, LOG_FILENAME, checkpoint.STATE_DIRNAME)
                    if (self.model_dir / n).exists()]
        if existing and not self.opts.overwrite:
            raise OutputExistsError(
                f"-o {self.model_dir} already holds a model ({', '.join(existing)}); "
                "use --resume to continue it or --overwrite to start again"
            )
        return None

    def _resolve_labels_map(self, dataset: Dataset, saved: dict | None) -> dict[int, int] | None:
        if saved is not None:
            return {int(k): int(v) for k, v in saved.items()} if saved else None
        return resolve_labels_map(self.spec, dataset, self.opts.labels_map, self.console)

    def _prepare_data(self, ckpt: dict | None):
        spec, opts = self.spec, self.opts
        dataset = discover(self.data_dir, spec.channels)
        if ckpt is not None:
            train_names, val_names = list(ckpt["split"]["train"]), list(ckpt["split"]["validation"])
            missing = sorted(set(train_names + val_names) - set(dataset.names))
            if missing:
                raise UsageError(f"--resume: case(s) {', '.join(missing[:5])} of the checkpoint are gone from {self.data_dir}")
            labels_map = self._resolve_labels_map(dataset, ckpt["labels_map"])
        else:
            train_names, val_names = split_cases(
                dataset.names, opts.seed, opts.val_fraction, opts.val_cases, group_by=opts.group_by
            )
            labels_map = self._resolve_labels_map(dataset, None)
        by_name = {c.name: c for c in dataset.cases}
        train_cases = [by_name[n] for n in train_names]
        val_cases = [by_name[n] for n in val_names]
        if dataset.ignored:
            self.console.print(f"[yellow]note:[/yellow] {len(dataset.ignored)} image(s) without a label ignored")
        self.console.print(
            f"[bold]{spec.name}[/bold]: {len(dataset.cases)} case(s) in {self.data_dir} ({dataset.layout} layout): "
            f"{len(train_cases)} train, {len(val_cases)} validation"
        )
        cache_dir = checkpoint.state_dir(self.model_dir) / "cache"
        failure: SegtoolError | None = None
        if self.dist.is_main:
            try:
                with self._progress("preprocessing", len(train_cases)) as advance:
                    build_cache(spec, train_cases, labels_map, cache_dir, on_case=lambda done, total: advance())
            except SegtoolError as exc:
                failure = exc
        shared = distributed.broadcast_object(
            self.dist, (failure.one_line(), failure.exit_code) if failure is not None else None
        )
        if failure is not None:
            raise failure
        if shared is not None:  # rank 0 failed: fail the same way here
            error = SegtoolError(shared[0])
            error.exit_code = shared[1]
            raise error
        prepared, manifest = open_cache(cache_dir)
        self.dataset, self.labels_map = dataset, labels_map
        self.train_cases, self.val_cases = train_cases, val_cases
        self.prepared, self.manifest = prepared, manifest

    @contextlib.contextmanager
    def _progress(self, description: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console, transient=True,
            disable=not self.console.is_terminal,
        ) as progress:
            task = progress.add_task(description, total=total, info="")

            def advance(info: str = "") -> None:
                progress.update(task, advance=1, info=info)

            yield advance
