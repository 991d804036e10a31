"""Runs that differ only in their seed, trained side by side in one process (`hydra/launcher=batched`).

Each member is a whole single run in a thread of its own, with every object a single run has (its
data order, memory, generator, model and optimizer), so its rules are the single run's, stated
once. Only where the method calls the model do the members meet: each forward pass a member asks
for waits until every member still training waits too, then one `vmap`ped call of the model over
the members' stacked parameters computes all of them; a step's backward is one for all members,
after which each member's own optimizer steps its own parameters. A member's numbers are its
single run's up to the order of float sums inside the batched matrix products.

One member thread runs at a time: it holds the baton until it meets the others, then hands it on
(`Group._pass`). When every member still training waits at a meeting, the one handing the baton
on resolves what is pending: the forward passes first, then, once every member waits to descend,
the backward. A member that ends (done, or failed) leaves the group, so the others never wait for
it.

What cannot be batched (a method whose step does more with the model than call it, a model with
batch-norm statistics or dropout) takes turns: each member trains alone, one after another, still
in the one process (its start-up and imports paid once), with the global random state its single
run has.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from replaycli.run.cost import passed, uncounted


class Alone:
    """A run on its own: the method calls the model itself, and a step descends as usual."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    @contextlib.contextmanager
    def installed(self, method: Any) -> Iterator[None]:
        """While training and evaluating, the model the method calls (a member's: the group's)."""
        yield

    def descend(self, loss: torch.Tensor) -> None:
        """One step of gradient descent on `loss`."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def unbatchable(run: Any) -> str | None:
    """Why `run`'s members cannot share one batched model (None: they can)."""
    from replaycli.methods.base import Method

    method = type(run.method)
    for name in ("step", "predict"):  # what runs while the group's model is installed; Method's own only call it
        owner = next(c for c in method.__mro__ if name in c.__dict__)
        if owner is not Method and not owner.__dict__.get("batches", False):
            return f"the {name} of {owner.__name__} may do more with the model than call it"
    model = run.model
    if any(True for _ in model.buffers()):
        return f"its model ({type(model).__name__}) keeps running statistics (batch norm)"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return f"its model ({type(model).__name__}) has dropout, drawn from the global random state"
    return None


class Group:
    """`size` members: they join once built; when all have joined (or failed), the group trains
    them batched, or by turns when `unbatchable` says why (`why`)."""

    def __init__(self, size: int, batch: str = "auto"):
        self.size = size
        self.batch = batch  # true | false | auto: batched on CUDA only (on the CPU it does not pay, bench/RESULTS.md)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # the mode is decided
        self.turns: dict[int, threading.Condition] = {}  # each member waits for the baton on its own
        self.holder: int | None = None  # the member that runs now (the baton)
        self.build_lock = threading.Lock()  # building seeds the global random state: one member at a time
        self.members: dict[int, Member] = {}
        self.alive: set[int] = set()  # joined and not gone
        self.gone_before_joining = 0
        self.mode: str | None = None  # batched | turns, once every member has joined
        self.why: str | None = None  # turns: why not batched
        self.blocked: set[int] = set()  # members waiting at a meeting
        self.forwards: dict[int, tuple[torch.Tensor, bool, bool]] = {}
        self.descents: dict[int, torch.Tensor] = {}
        self.results: dict[int, Any] = {}
        self.template: nn.Module | None = None
        self.names: list[str] = []
        self.cache: tuple[Any, dict[str, torch.Tensor]] | None = None
        self.stopping = False  # Ctrl-C: every member raises KeyboardInterrupt where it next waits

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for turn in self.turns.values():
                turn.notify()

    # -- joining and leaving --------------------------------------------------------------
    def join(self, index: int, run: Any) -> Member:
        """Member `index` is built (`run`); returns once every member has joined and it is this
        member's turn to run."""
        member = Member(self, index, run)
        with self.lock:
            self.members[index] = member
            self.alive.add(index)
            self.turns[index] = threading.Condition(self.lock)
            if len(self.members) + self.gone_before_joining == self.size:
                self._decide()
            self._wait_turn(index)
        if self.mode == "turns":
            torch.set_rng_state(member.rng)  # as its single run left it once built
        return member

    def gone(self, index: int) -> None:
        """Member `index` ended (or failed before or after joining): nobody waits for it."""
        with self.lock:
            if index in self.members:
                self.alive.discard(index)
                if self.holder == index:
                    self._pass()
            else:
                self.gone_before_joining += 1
                if self.mode is None and len(self.members) + self.gone_before_joining == self.size:
                    self._decide()

    def _wait_turn(self, index: int) -> None:
        """Under the lock: until member `index` holds the baton (the one thread that runs)."""
        while self.holder != index:
            if self.stopping:
                raise KeyboardInterrupt
            self.turns[index].wait()

    def _pass(self) -> None:
        """Under the lock: the baton to the next member that can run (cyclically after the holder);
        when every member waits at a meeting, the meeting is resolved first. One thread runs at a
        time: members that run side by side hand the interpreter's lock back and forth at every
        torch call, each waiting out the other's time slice (measured: 4 members took 6x longer)."""
        ready = sorted(self.alive - self.blocked)
        if not ready and self.blocked:
            if self.forwards:
                self._forward()
            else:
                self._descend()
            ready = sorted(self.alive - self.blocked)
        if not ready:
            self.holder = None
            return
        after = [i for i in ready if self.holder is not None and i > self.holder]
        self.holder = (after or ready)[0]
        self.turns[self.holder].notify()

    def _decide(self) -> None:
        runs = [self.members[i].run for i in sorted(self.members)]
        self.cond.notify_all()  # the launcher's announcement waits for the mode
        if not runs:
            self.mode, self.why = "turns", "none of them could be built"
            return
        self.why = unbatchable(runs[0]) if len(runs) > 1 else "it has one member"
        if self.batch == "false":
            self.why = "hydra.launcher.batch=false"
        elif self.batch == "auto" and self.why is None and runs[0].device.type == "cpu":
            self.why = "on the CPU a batched model does not pay (bench/RESULTS.md); hydra.launcher.batch=true batches"
        shapes = {tuple((n, tuple(p.shape)) for n, p in r.model.named_parameters()) for r in runs}
        if self.why is None and len(shapes) > 1:
            self.why = "its members' models differ in shape"
        self.mode = "turns" if self.why else "batched"
        if self.mode == "batched":
            import copy

            model = runs[0].model
            self.template = uncounted(copy.deepcopy(model))  # each member counts its own passes (`Seat`)
            self.names = [n for n, _ in model.named_parameters()]
            template = self.template

            def one(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                return torch.func.functional_call(template, params, (x,))

            self.vmapped = torch.func.vmap(one)
        self._pass()

    # -- meeting ----------------------------------------------------------------------------
    def wait(self, index: int, kind: str, payload: Any) -> Any:
        """Member `index` asks for a forward pass or a descent; returns its share once resolved."""
        with self.lock:
            (self.forwards if kind == "forward" else self.descents)[index] = payload
            self.blocked.add(index)
            self._pass()
            self._wait_turn(index)
            result = self.results.pop(index)
        if isinstance(result, BaseException):
            raise result
        return result

    def _forward(self) -> None:
        requests, self.forwards = self.forwards, {}
        self.blocked -= set(requests)
        parts: dict[Any, list[int]] = defaultdict(list)
        for i in sorted(requests):
            x, training, grad = requests[i]
            parts[(tuple(x.shape), x.dtype, x.device, training, grad)].append(i)
        for (_, _, _, training, grad), idx in parts.items():
            try:
                with torch.set_grad_enabled(grad):
                    assert self.template is not None
                    self.template.train(training)
                    ys = self.vmapped(self._stacked(idx, grad), torch.stack([requests[i][0] for i in idx]))
                for j, i in enumerate(idx):
                    self.results[i] = ys[j]
            except Exception as e:  # noqa: BLE001 (the members' own error, raised in each member's thread)
                for i in idx:
                    self.results[i] = e

    def _stacked(self, idx: list[int], grad: bool) -> dict[str, torch.Tensor]:
        """The members' parameters stacked [len(idx), ...]: once per step (kept until a parameter
        changes, its version tells), so a method's second forward pass reuses them."""
        params = [list(self.members[i].run.model.parameters()) for i in idx]
        key = (tuple(idx), grad, tuple(p._version for ps in params for p in ps))
        if self.cache is not None and self.cache[0] == key:
            return self.cache[1]
        stacked = {name: torch.stack([ps[k] for ps in params]) for k, name in enumerate(self.names)}
        self.cache = (key, stacked)
        return stacked

    def _descend(self) -> None:
        losses, self.descents = self.descents, {}
        self.blocked -= set(losses)
        idx = sorted(losses)
        result: Any = None
        try:
            for i in idx:
                self.members[i].run.optimizer.zero_grad(set_to_none=True)
            torch.stack([losses[i] for i in idx]).sum().backward()  # each member's gradient is its own
            for i in idx:
                self.members[i].run.optimizer.step()
        except Exception as e:  # noqa: BLE001 (raised in each member's thread)
            result = e
        self.cache = None  # its graph is spent
        for i in idx:
            self.results[i] = result


class Seat:
    """What a member's method calls in place of its model while batched: the group's forward pass."""

    def __init__(self, member: Member):
        self.member = member

    @property
    def training(self) -> bool:
        return bool(self.member.run.model.training)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.member
        out = m.group.wait(m.index, "forward", (x, m.run.model.training, torch.is_grad_enabled()))
        passed(m.run.model, len(x), out)  # metrics: [cost]
        return out


class Member(Alone):
    """One run of a group."""

    def __init__(self, group: Group, index: int, run: Any):
        super().__init__(run.optimizer)
        self.group, self.index, self.run = group, index, run
        self.rng = torch.get_rng_state()  # the global random state as this member's build left it

    @contextlib.contextmanager
    def installed(self, method: Any) -> Iterator[None]:
        if self.group.mode != "batched":
            yield
            return
        model, method.model = method.model, Seat(self)
        try:
            yield
        finally:
            method.model = model

    def descend(self, loss: torch.Tensor) -> None:
        if self.group.mode != "batched":
            super().descend(loss)
        else:
            self.group.wait(self.index, "descend", loss)
