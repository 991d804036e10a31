"""Task-IL: the classes each task label may predict, and logits masked to them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SCENARIOS = ("class_il", "task_il")  # the config's `scenario`


def task_mask(bench: Any) -> torch.Tensor:
    """bool [n_tasks, n_classes]: the classes of each task label of `bench`'s training stream."""
    import torch  # here: `SCENARIOS` is read by the checks made before torch is imported (run/rules.py)

    mask = torch.zeros(bench.n_tasks, bench.n_classes, dtype=torch.bool)
    for e in bench.train_stream:
        mask[e.task_label, e.classes_in_this_experience] = True
    return mask


def masked(out: torch.Tensor, t: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    """`out` [B, C] with the classes outside each sample's task set to -inf; `mask` None
    (class-IL) leaves it as it is."""
    return out if mask is None or t is None else out.masked_fill(~mask[t], float("-inf"))
