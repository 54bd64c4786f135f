"""`segtool train`: from a folder of labelled cases to a model folder that `segtool run` uses.

One job per module:

- ``datasets``: find cases (nnU-Net or simple layout), labels maps, the seeded split.
- ``prepare``: read and preprocess cases with `segtool.preprocess` (the same code as
  `segtool run`), cache them on disk, intensity statistics.
- ``sampling``: patches with foreground oversampling, one seed per step.
- ``augment``: on-the-fly torch augmentation (flips, rotation/scaling, elastic, intensity).
- ``loss``: Dice + cross-entropy.
- ``validate``: whole-case validation through `segtool.segmenter.Segmenter`.
- ``distributed``: DistributedDataParallel under torchrun.
- ``checkpoint``: the local resume checkpoint.
- ``model_folder``: model.safetensors, config.json, README.md, train_log.jsonl.
- ``options``: ``TrainOptions`` (what to do) and ``TrainResult`` (what was done).
- ``batches``: the seeded batch of each optimiser step, and the choice of augmentation.
- ``trainer_data``: the trainer's output check, labels map, split and preprocessed cache.
- ``trainer_records``: the trainer's validation, log, best weights, checkpoints and model files.
- ``loop``: the trainer that ties them together (model, optimiser, the loop itself).

Nothing here is imported by `segtool --help`; modules that need torch import it.
"""
