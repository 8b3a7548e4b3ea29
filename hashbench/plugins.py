"""Plugins: methods, datasets, losses... defined outside the repo register themselves on import.

Three ways in, all ending in an ordinary import that runs ``@METHODS.register_module(...)``:
- ``plugins=my_module`` (or ``plugins=path/to/file.py``) on the command line;
- ``custom_imports = dict(imports=["my_module"])`` in a config file (mmengine imports it);
- an installed package declaring an entry point in the group ``hashbench.plugins``.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

from hashbench.errors import HashbenchError

ENTRY_POINT_GROUP = "hashbench.plugins"


def import_plugin(name: str):
    """Import a plugin given as a module name or a path to a ``.py`` file.

    The built-in entries are registered first, so a plugin that registers a name already taken
    (``lsh``) is refused in one line naming both definitions, whatever was imported before.
    """
    return _registering(repr(name), lambda: _import(name))


def _registering(plugin: str, load):
    """``load()`` with the built-in entries registered first; a name it registers twice becomes
    a one-line error naming both definitions (mmengine raises a ``KeyError``)."""
    from hashbench.registry import REGISTRIES, entries

    for registry in REGISTRIES.values():
        entries(registry)
    try:
        return load()
    except KeyError as e:
        message = str(e.args[0]) if e.args else ""
        if "is already registered in" not in message:
            raise
        raise HashbenchError(_clash(plugin, message, e.__traceback__)) from None


def _clash(plugin: str, message: str, tb) -> str:
    """'plugin X registers method 'lsh' at file:line, already defined at file:line; ...'."""
    from hashbench.registry import REGISTRIES

    taken, _, kind = message.partition(" is already registered in ")
    kind = kind.split(" at ")[0].strip()
    frames = [f for f in traceback.extract_tb(tb) if "mmengine" not in f.filename]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else plugin
    variable, registry = next(((k.upper(), r) for k, r in REGISTRIES.items() if r.name == kind), (None, None))
    existing = registry.module_dict.get(taken) if registry is not None else None
    try:
        first = f"{inspect.getsourcefile(existing)}:{inspect.getsourcelines(existing)[1]}"
    except (TypeError, OSError):
        first = getattr(existing, "__module__", "another module")
    return (f"plugin {plugin} registers {kind} {taken!r} at {where}, but {taken!r} is already defined at "
            f"{first}; register it under another name (e.g. @{variable or kind.upper()}.register_module(name='my_{taken}'))")


def _import(name: str):
    path = Path(name)
    if name.endswith(".py"):
        if not path.is_file():
            raise HashbenchError(f"plugin file {name!r} does not exist")
        mod_name = f"hashbench_plugin_{path.stem}"
        if mod_name in sys.modules:  # already imported: importing twice would register twice
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]  # half a plugin must not count as imported
            raise
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise HashbenchError(
                f"cannot import plugin {name!r}: no module named {e.name!r} on the Python path "
                "(install it, add its folder to PYTHONPATH, or pass plugins=path/to/file.py)") from None
        raise


def load_entry_points() -> list[str]:
    """Import every installed ``hashbench.plugins`` entry point; returns their names."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _registering(f"entry point {ep.name!r}", ep.load)
        loaded.append(ep.name)
    return loaded
