"""Datasets, one file each, registered in ``hashbench.registry.DATASETS`` by name.

Importing this package imports every module in it, which is how the registry finds them.
"""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
