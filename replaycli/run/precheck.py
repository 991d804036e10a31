"""The checks of a shipped option's values, made before torch is imported.

A shipped class or function states the rule of each argument once, in its constructor, with the
helpers of `replaycli.errors`: `self.max_size = integer("max_size", max_size, 0)`. `replay run`
reads those calls from the source (Python's `ast`: nothing is imported) and runs them on the
config's values before it imports torch, so a value out of range (`buffer.max_size=-3`,
`groupby=clas`) is refused in a third of a second instead of after seconds of imports. The build
runs the same calls again, in the constructors, with every argument (run/build.py).

A call is taken when it stands in the constructor's own body, not under a condition nor after a
statement that may return or rebind its parameter, and its
arguments are the parameter and literals (or module constants that are literals); a subclass's
`super().__init__(...)` (or `Base.__init__(self, ...)`) is followed for the parameters it passes on
unchanged. Anything else is
left to the build. Only the targets replaycli ships (`replaycli.*`) are read.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from replaycli import errors
from replaycli.run import rules

HELPERS = {f: getattr(errors, f) for f in ("integer", "number", "flag", "choice", "batch", "fraction")}
PACKAGE = Path(errors.__file__).parent


@cache
def module_tree(module: str) -> ast.Module | None:
    """The parsed source of replaycli module `module` (None when it is no file of the package)."""
    parts = module.split(".")
    if parts[0] != "replaycli":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    return ast.parse(path.read_text(), str(path)) if path.is_file() else None


def definition(target: str) -> tuple[str, ast.AST] | None:
    """(module, the class or function node) of a dotted `target` of replaycli."""
    module, _, name = target.rpartition(".")
    tree = module_tree(module)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return module, node
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            real = next(a.name for a in node.names if (a.asname or a.name) == name)
            return definition(f"{node.module}.{real}")  # a name a module re-exports (replaycli.buffers)
    return None


def constructor(module: str, node: ast.AST) -> tuple[str, ast.FunctionDef, ast.ClassDef | None] | None:
    """The function that takes a target's arguments: a function itself, a class's own `__init__`,
    or the first base's, followed through the module's imports."""
    if isinstance(node, ast.FunctionDef):
        return module, node, None
    assert isinstance(node, ast.ClassDef)
    own = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if own is not None:
        return module, own, node
    base = base_of(module, node)
    return constructor(*base) if base is not None else None


def base_of(module: str, node: ast.ClassDef) -> tuple[str, ast.AST] | None:
    if not node.bases or not isinstance(node.bases[0], ast.Name):
        return None
    return definition(f"{module}.{node.bases[0].id}")


@cache
def constants(module: str) -> dict[str, Any]:
    """The module-level names of `module` bound to a literal (`SCHEDULES = ("constant", ...)`)."""
    tree = module_tree(module)
    found: dict[str, Any] = {}
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def literal(node: ast.AST, names: dict[str, Any]) -> tuple[bool, Any]:
    if isinstance(node, ast.Name) and node.id in names:
        return True, names[node.id]
    try:
        return True, ast.literal_eval(node)
    except ValueError:
        return False, None


def check_function(module: str, fn: ast.FunctionDef, cls: ast.ClassDef | None, values: dict[str, Any]) -> None:
    """Run the helper calls of `fn` on `values` (parameter -> the config's value), and follow a
    `super().__init__` for the values it passes on unchanged."""
    params = [a.arg for a in fn.args.args if a.arg != "self"] + [a.arg for a in fn.args.kwonlyargs]
    names = constants(module)
    conditional = (ast.If, ast.IfExp, ast.Lambda, ast.For, ast.While, ast.Try, ast.With)
    for statement in fn.body:
        if not any(isinstance(n, conditional) for n in ast.walk(statement)):  # under a condition: the build's
            for call in (n for n in ast.walk(statement) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Name) and call.func.id in HELPERS and len(call.args) >= 2:
                    run_helper(call, params, values, names)
                elif cls is not None:
                    follow_base(module, cls, call, values)
        for n in ast.walk(statement):  # a parameter bound anew: the constructor's later checks see another value
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id in params:
                params.remove(n.id)
        if any(isinstance(n, (ast.Return, ast.Yield)) for n in ast.walk(statement)):
            return  # what follows a return may never run for these values: the build's


def run_helper(call: ast.Call, params: list[str], values: dict[str, Any], names: dict[str, Any]) -> None:
    key, arg = call.args[0], call.args[1]
    if not (isinstance(key, ast.Constant) and isinstance(arg, ast.Name) and arg.id in params and arg.id in values):
        return
    rest = [literal(a, names) for a in call.args[2:]]
    kwargs = {k.arg: literal(k.value, names) for k in call.keywords if k.arg}
    if all(ok for ok, _ in rest) and all(ok for ok, _ in kwargs.values()):
        assert isinstance(call.func, ast.Name)
        HELPERS[call.func.id](
            key.value, values[arg.id], *(v for _, v in rest), **{k: v for k, (_, v) in kwargs.items()}
        )


def base_init(module: str, cls: ast.ClassDef, call: ast.Call) -> tuple[tuple[str, ast.AST] | None, list[ast.expr]]:
    """The class whose `__init__` `call` calls, and the arguments after `self`: `super().__init__(...)`
    (the first base) or `Base.__init__(self, ...)`; (None, []) for any other call."""
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr == "__init__"):
        return None, []
    if isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name) and f.value.func.id == "super":
        return base_of(module, cls), list(call.args)
    if isinstance(f.value, ast.Name) and call.args:
        return definition(f"{module}.{f.value.id}"), list(call.args[1:])
    return None, []


def follow_base(module: str, cls: ast.ClassDef, call: ast.Call, values: dict[str, Any]) -> None:
    """The base constructor `call` calls, on the values a subclass passes on unchanged."""
    base, args = base_init(module, cls, call)
    found = constructor(*base) if base is not None else None
    if found is None:
        return
    base_module, fn, base_cls = found
    params = [a.arg for a in fn.args.args if a.arg != "self"] + [a.arg for a in fn.args.kwonlyargs]
    passed: dict[str, Any] = {}
    for i, a in enumerate(args):
        if isinstance(a, ast.Name) and a.id in values and i < len(params):
            passed[params[i]] = values[a.id]
    for k in call.keywords:
        if k.arg and isinstance(k.value, ast.Name) and k.value.id in values:
            passed[k.arg] = values[k.value.id]
    if passed:
        check_function(base_module, fn, base_cls, passed)


def check_group(name: str, node: Any) -> None:
    """The helper calls of group `name`'s shipped target, on the values its node gives; a refusal
    names the key as typed (`buffer.max_size=-3`), as the build's does."""
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        return
    found = definition(str(node._target_))
    where = constructor(*found) if found is not None else None
    if where is None:
        return
    values = {
        str(k): v
        for k, v in node.items()
        if not str(k).startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))
    }
    try:
        check_function(*where, values)
    except errors.ConfigError as e:
        raise rules.named(name, node, e) from None


def check(cfg: DictConfig) -> None:
    """Every group of `cfg` (rules.INJECTED), before torch is imported."""
    for name in rules.INJECTED:
        check_group(name, cfg.get(name))
