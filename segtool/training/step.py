"""One optimisation step: forward under autocast, loss in float32, backward, clipped update.

The same function trains (`loop.Trainer`), is timed by the planner (`plan_measure`) and by
`benchmarks/train_throughput.py`, so that what the planner measures is what training does.
"""

from __future__ import annotations


def optimisation_step(model, optimizer, loss_fn, images, labels, device, precision: str, scaler=None,
                      grad_clip: float | None = None):
    """One step of ``model`` on ``images``/``labels``; returns the loss (a detached tensor).

    ``scaler``: a ``torch.amp.GradScaler`` (float16 on CUDA), or None; ``grad_clip``: the largest gradient
    norm, or None for none.
    """
    import torch

    from segtool.precision import autocast

    with autocast(device, precision):
        logits = model(images)
    loss = loss_fn(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss.detach()
