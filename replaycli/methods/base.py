"""What a replay method is: one `step(batch, memory) -> (loss, logits)` (Mammoth's `observe`
in spirit), a hook at the start and one at the end of each experience, the classifier evaluation
uses (`predict`: the model's logits unless the method has its own, e.g. iCaRL's nearest mean), and
class attributes that say what it needs, which the loop and `run/rules.py` read. The loop owns the update protocol
(`after_experience` / `every_batch`): it feeds the batches, hands the memory to the step, and
offers samples (with their logits when `stores_logits`) to the buffer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from replaycli.data.dataset import StreamDataset
from replaycli.errors import ConfigError
from replaycli.memory.buffer import Buffer
from replaycli.run.cost import charge
from replaycli.scenario import masked


@dataclass(frozen=True)
class Setting:
    """What the run tells its method once built, before the first experience (`Method.setting`):
    a method asks instead of re-deriving it."""

    num_classes: int  # logits per sample: the stream's classes
    input_shape: tuple[int, ...]  # one sample's shape, e.g. (1, 28, 28) or (64,)
    n_experiences: int  # experiences in the training stream
    generator: torch.Generator  # the run's generator: draws from it are seeded and resume exactly
    device: torch.device  # where the model, the data and the memory live


class Batch(NamedTuple):
    x: torch.Tensor  # [B, ...] current samples, training transforms applied
    y: torch.Tensor  # [B] class labels
    t: torch.Tensor  # [B] task labels
    experience: int  # index of the experience being trained


@dataclass
class Memory:
    """The live buffer as a step sees it: `sample()` draws `batch_size` stored samples."""

    buffer: Buffer
    batch_size: int
    generator: torch.Generator | None = None

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(x, y, t, extras) of `batch_size` samples drawn uniformly without replacement."""
        return self.buffer.sample(self.batch_size, self.generator)

    def sample_indexed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(positions in the store, x, y, t, extras): `sample` with where each sample is stored."""
        return self.buffer.sample_indexed(self.batch_size, self.generator)


@torch.no_grad()
def logits_of(
    model: torch.nn.Module,
    data: StreamDataset,
    batch_size: int,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The model's logits [n, C] on `data` (evaluation mode and transforms), or `fn`'s outputs
    (e.g. features) with the model in evaluation mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    data = data.eval()
    device = data.ids.device
    outs = [
        (fn or model)(data.batch(torch.arange(s, min(s + batch_size, len(data)), device=device))[0])
        for s in range(0, len(data), batch_size)
    ]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def per_sample_grads(
    model: torch.nn.Module, loss: Callable[..., torch.Tensor], x: torch.Tensor, *rest: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each sample's gradient of `loss(logits [1, C], its rows of rest...)` w.r.t. the trainable
    parameters, {name: [n, ...]}, in one `vmap` (GSS's scores, oEWC's Fisher), the model in
    evaluation mode (restored after: no dropout, batch-norm statistics as they stand). The
    transform hides its batch from the cost counter, so it is charged here."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, *ri: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), *(r.unsqueeze(0) for r in ri))

    was_training = model.training
    model.eval()
    try:
        grads = vmap(grad(one), in_dims=(None, 0, *[0] * len(rest)))(params, x, *rest)
        charge(model, forward=len(x), backward=len(x))
    finally:
        model.train(was_training)
    return grads


def require_images(sample_shape: tuple[int, ...], what: str, instead: str) -> None:
    """The one rule of the methods that augment images [C, H, W]: `what` (`strategy=rar augments`)
    refuses other samples, offering `instead`."""
    if len(sample_shape) != 3:
        raise ConfigError(
            f"{what} images [B, C, H, W]; this benchmark's samples have shape {tuple(sample_shape)}; "
            f"allowed: an image benchmark, or {instead}"
        )


def frozen_copy(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """A copy of `model` in evaluation mode that takes no gradients (the previous model of the
    distillation methods), with `state` loaded when given (a checkpoint's)."""
    old = copy.deepcopy(model).eval()
    if state:
        old.load_state_dict(state)
    for p in old.parameters():
        p.requires_grad_(False)
    return old


class Method:
    """The base of every method: plain cross-entropy on the current batch."""

    needs_memory = True  # refused with buffer=none
    protocols: tuple[str, ...] = ("after_experience", "every_batch")  # the update protocols it is defined under
    joins_memory = False  # after_experience: the loader joins memory samples into each batch
    stores_logits = False  # the buffer keeps each sample's logits (extras["logits"])
    trains_on_memory = False  # the memory takes each experience first and is all it trains on
    memory_groupby: str | None = None  # the grouping its buffer must have (None: any)
    holds_everything = False  # the buffer must keep every training sample of the stream (joint training)
    batches = False  # the class's own `step` (and `predict`) use the model only by calling it: seeds train as
    # one batched model (run/together.py); declared by the class that defines them, so a subclass's new step is not
    setting: Setting | None = None  # the stream's classes, input shape, generator, device: set by the run once built

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, mask: torch.Tensor | None = None):
        self.model = model
        self.optimizer = optimizer
        self.mask = mask  # task-IL: bool [n_tasks, n_classes]; None: class-IL

    def check_input(self, sample_shape: tuple[int, ...]) -> None:
        """Refuse (ConfigError) samples of this shape; called once the run is built, before anything
        is written. Every shape is accepted by default."""

    def ce(self, out: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(masked(out, t, self.mask), y)

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and the logits [B, C] its training accuracy is read from. `memory` is
        None while the buffer is empty, or when the loader already joined it into `batch`."""
        out = self.model(batch.x)
        return self.ce(out, batch.y, batch.t), out

    def flat_grad(self, loss: torch.Tensor, retain: bool = False) -> torch.Tensor:
        """d loss / d parameters, flattened into one vector [P] (the gradient methods' currency)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=retain)])

    def with_gradient(self, loss: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """A loss whose value is `loss` and whose gradient is `g` (a linear term in the
        parameters, then its value taken out): the loop's backward() then applies `g`."""
        params = torch.cat([p.flatten() for p in self.model.parameters() if p.requires_grad])
        linear = torch.dot(params, g.detach())
        return loss.detach() + linear - linear.detach()

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        """Called before training each experience on `data` (its training samples): what to train
        on (BiC holds a part out)."""
        return data

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        """Called once the experience is trained and the memory has taken it, before evaluation."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [B, C] the evaluation takes the argmax of: the model's logits by default."""
        return self.model(x)
