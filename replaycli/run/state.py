"""The state of a method, a buffer policy or a selection strategy, captured without its author
writing `state_dict`: every attribute, at any depth, becomes a plain tree that a checkpoint keeps
(tensors, numbers, strings, containers; loadable with `torch.load(weights_only=True)`), and is put
back into the freshly built object of a resumed run.

- An object the run shares (the model, the optimizer, the run's generator, the task mask, the
  pools, the buffer, ...) is kept as its name and restored as the resumed run's own object.
- A tensor is kept on the CPU with the kind of device it lived on; it comes back on the CPU or
  on the run's device. Devices are handled here, nowhere else.
- A module or optimizer of the object's own keeps its `state_dict()`; a module made later (the
  previous model of the distillation methods) is rebuilt as a copy of the run's model.
- An instance of a plain class keeps its attributes the same way; callables and classes are
  code, not state, and must be the same when the run is resumed.

What cannot be kept (an open file, a data loader, a lambda made at run time) is refused with a
ConfigError naming the attribute, when the run is built and at every checkpoint: never a resume
that silently diverges.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import numpy as np
import torch

from replaycli.errors import ConfigError

KIND = "__state__"  # the key that marks a node of the tree that is not a plain value
PLAIN = (type(None), bool, int, float, str)
CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType)  # code, not state: the same on resume


class Refs:
    """The run's shared objects by name: `name(obj)` when `obj` is one of them, `get(name)`."""

    def __init__(self, objects: dict[str, Any], device: torch.device, model: torch.nn.Module | None = None):
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.names = {id(v): k for k, v in self.objects.items()}
        self.device = device
        self.model = model

    def name(self, obj: Any) -> str | None:
        return self.names.get(id(obj))

    def get(self, name: str) -> Any:
        if name not in self.objects:
            raise ValueError(f"the run has no {name}")
        return self.objects[name]


def capture(obj: Any, refs: Refs, where: str) -> Any:
    """The state of `obj` as a plain tree; `where` names it in an error (`strategy.old_model`)."""
    ref = refs.name(obj)
    if ref is not None:
        return {KIND: "ref", "name": ref}
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return {KIND: "tensor", "value": obj.detach().cpu(), "cuda": obj.is_cuda, "grad": obj.requires_grad}
    if isinstance(obj, np.ndarray):
        return {KIND: "ndarray", "value": torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple: its class, then its fields
        fields = [capture(v, refs, f"{where}.{f}") for f, v in zip(obj._fields, obj, strict=True)]
        return {KIND: "namedtuple", "type": qualname(type(obj)), "items": fields}
    if isinstance(obj, (list, tuple, set, frozenset)):
        kind = next(k for k in (list, tuple, set, frozenset) if isinstance(obj, k)).__name__  # a subclass: its base
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return {KIND: kind, "items": [capture(v, refs, f"{where}[{i}]") for i, v in enumerate(items)]}
    if isinstance(obj, dict):
        keys = list(obj)
        return {
            KIND: "dict",
            "keys": [capture(k, refs, f"{where} key") for k in keys],
            "values": [capture(obj[k], refs, f"{where}[{k!r}]") for k in keys],
        }
    if isinstance(obj, torch.nn.Module):
        state = {k: v.detach().cpu() for k, v in obj.state_dict().items()}
        return {
            KIND: "module",
            "type": qualname(type(obj)),
            "state": state,
            "training": obj.training,
            "grad": [p.requires_grad for p in obj.parameters()],
        }
    if isinstance(obj, torch.optim.Optimizer):
        return {KIND: "optimizer", "state": capture(obj.state_dict(), refs, where)}
    if isinstance(obj, torch.Generator):
        return {KIND: "generator", "state": obj.get_state()}
    if isinstance(obj, torch.device):
        return {KIND: "device", "cuda": obj.type == "cuda"}
    if isinstance(obj, torch.dtype):
        return {KIND: "dtype", "name": str(obj).removeprefix("torch.")}
    if isinstance(obj, (type, *CODE)):
        return {KIND: "code", "name": qualname(obj)}
    if hasattr(obj, "__dict__") and not slots(type(obj)):
        attrs = vars(obj)
        return {
            KIND: "object",
            "type": qualname(type(obj)),
            "attrs": {k: capture(v, refs, f"{where}.{k}") for k, v in attrs.items()},
        }
    raise ConfigError(
        f"{where} holds a {type(obj).__name__}, which a checkpoint cannot keep; allowed: tensors, "
        "modules, numbers, strings, containers of them, or objects made of these"
    )


def restore(tree: Any, current: Any, refs: Refs, where: str) -> Any:
    """The value `tree` (from `capture`) stands for, put back into `current` (the freshly built
    value at the same place) where it is an object, a module or an optimizer."""
    if not isinstance(tree, dict) or KIND not in tree:
        if not isinstance(tree, PLAIN):
            raise ValueError(f"{where}: a {type(tree).__name__} where a plain value was saved")
        return tree
    kind = tree[KIND]
    if kind == "ref":
        return refs.get(tree["name"])
    if kind == "tensor":
        value = tree["value"].to(refs.device if tree["cuda"] else "cpu")
        return value.requires_grad_(bool(tree["grad"])) if value.is_floating_point() else value
    if kind == "ndarray":
        return tree["value"].numpy()
    if kind in ("list", "tuple", "set", "frozenset"):
        before = list(current) if isinstance(current, (list, tuple)) else []
        items = [
            restore(v, before[i] if i < len(before) else None, refs, f"{where}[{i}]")
            for i, v in enumerate(tree["items"])
        ]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "namedtuple":
        cls = loaded_class(str(tree["type"]))
        if cls is None:
            raise ValueError(f"{where}: class {tree['type']} is not loaded")
        return cls(*(restore(v, None, refs, f"{where}[{i}]") for i, v in enumerate(tree["items"])))
    if kind == "dict":
        old = current if isinstance(current, dict) else {}
        keys = [restore(k, None, refs, f"{where} key") for k in tree["keys"]]
        out = copy.copy(old)  # the rebuilt dict's own kind (a defaultdict keeps its factory, an OrderedDict its order)
        out.clear()
        out.update(
            {k: restore(v, old.get(k), refs, f"{where}[{k!r}]") for k, v in zip(keys, tree["values"], strict=True)}
        )
        return out
    if kind == "module":
        return restore_module(tree, current, refs, where)
    if kind == "optimizer":
        if not isinstance(current, torch.optim.Optimizer):
            raise ValueError(f"{where}: an optimizer was saved, but the rebuilt run has none there")
        current.load_state_dict(restore(tree["state"], None, refs, where))
        return current
    if kind == "generator":
        gen = current if isinstance(current, torch.Generator) else torch.Generator()
        gen.set_state(tree["state"])
        return gen
    if kind == "device":
        return refs.device if tree["cuda"] else torch.device("cpu")
    if kind == "dtype":
        return getattr(torch, str(tree["name"]))
    if kind == "code":
        if current is None or qualname(current) != tree["name"]:
            raise ValueError(f"{where} was {tree['name']} when saved, and is {qualname(current)} now")
        return current
    if kind == "object":
        return restore_object(tree, current, refs, where)
    raise ValueError(f"{where}: unknown kind {kind!r}")


def restore_object(tree: dict[str, Any], current: Any, refs: Refs, where: str) -> Any:
    """An instance of a plain class: its attributes restored into the rebuilt one; one made
    after the build is made anew without running its constructor, of a class already imported
    (a checkpoint never makes Python import code)."""
    if current is None:
        cls = loaded_class(str(tree["type"]))
        if cls is None:
            raise ValueError(f"{where}: class {tree['type']} is not loaded; make the object in __init__")
        current = object.__new__(cls)
    elif qualname(type(current)) != tree["type"]:
        raise ValueError(f"{where} was a {tree['type']} when saved, and is a {qualname(type(current))} now")
    attrs = vars(current)
    for k, v in tree["attrs"].items():
        attrs[k] = restore(v, attrs.get(k), refs, f"{where}.{k}")
    return current


def restore_module(tree: dict[str, Any], current: Any, refs: Refs, where: str) -> torch.nn.Module:
    """A module of the object's own: its weights into the rebuilt one, or, made after the build,
    a copy of the run's model with them (the shape of every frozen previous model)."""
    state = tree["state"]
    if isinstance(current, torch.nn.Module) and qualname(type(current)) == tree["type"]:
        module = current
    elif (
        refs.model is not None
        and qualname(type(refs.model)) == tree["type"]
        and state.keys() == refs.model.state_dict().keys()
    ):
        module = copy.deepcopy(refs.model)
    else:
        raise ValueError(
            f"{where}: a {tree['type']} made after the run was built, and not a copy of its model; make it in __init__"
        )
    module.load_state_dict(state)
    module.train(bool(tree["training"]))
    for p, grad in zip(module.parameters(), tree["grad"], strict=True):
        p.requires_grad_(bool(grad))
    return module


def round_trip(obj: Any, into: Any, refs: Refs) -> None:
    """Put the state of `obj` into `into` through a checkpoint's bytes (what resume does)."""
    import io

    saved = io.BytesIO()
    torch.save(capture_attrs(obj, refs, type(obj).__name__), saved)
    saved.seek(0)
    restore_attrs(into, torch.load(saved, weights_only=True), refs, type(obj).__name__)


def capture_attrs(obj: Any, refs: Refs, where: str) -> dict[str, Any]:
    """Every attribute of `obj` (a method, a buffer, a selection strategy) as a plain tree."""
    return {k: capture(v, refs, f"{where}.{k}") for k, v in vars(obj).items()}


def restore_attrs(obj: Any, state: dict[str, Any], refs: Refs, where: str) -> None:
    """Put `state` (from `capture_attrs`) back into `obj`, rebuilt from the same config."""
    attrs = vars(obj)
    for k, v in state.items():
        attrs[k] = restore(v, attrs.get(k), refs, f"{where}.{k}")


def first_difference(a: Any, b: Any, where: str) -> str | None:
    """Where two checkpoint trees first differ (tensors to the bit, NaN equal to NaN), or None."""
    if type(a) is not type(b):
        return where
    if isinstance(a, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return None if same else where
    if isinstance(a, dict):
        if list(a) != list(b):
            return where
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return where
        return next(
            (d for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := first_difference(x, y, f"{where}[{i}]"))),
            None,
        )
    return None if a == b or (a != a and b != b) else where


def slots(cls: type) -> list[str]:
    """The slot attributes of `cls` (kept outside `__dict__`: not captured, so refused)."""
    names = [getattr(c, "__slots__", ()) for c in cls.__mro__]
    return [n for group in names for n in ([group] if isinstance(group, str) else group) if not n.startswith("__")]


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def loaded_class(name: str) -> type | None:
    """The class `module.Qual.Name` if its module is imported already (never imports one)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            obj: Any = module
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            return obj if isinstance(obj, type) else None
    return None
