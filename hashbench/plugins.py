"""Plugins: methods, datasets, losses... defined outside the repo register themselves on import.

Three ways in, all ending in an ordinary import that runs ``@METHODS.register_module(...)``:
- ``plugins=my_module`` (or ``plugins=path/to/file.py``) on the command line;
- ``custom_imports = dict(imports=["my_module"])`` in a config file (mmengine imports it);
- an installed package declaring an entry point in the group ``hashbench.plugins``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from hashbench.errors import HashbenchError

ENTRY_POINT_GROUP = "hashbench.plugins"


def import_plugin(name: str):
    """Import a plugin given as a module name or a path to a ``.py`` file."""
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
        spec.loader.exec_module(module)
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
        ep.load()
        loaded.append(ep.name)
    return loaded
