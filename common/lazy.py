"""A package's public names, each loaded from its module on first use (PEP 562).

Importing one module of the package then never imports the others, so modules of different
packages may import each other's modules without a cycle through an `__init__`.
"""

from collections.abc import Callable
from importlib import import_module


def exports(package: str, names: dict[str, str]) -> tuple[list[str], Callable[[str], object]]:
    """`__all__` and a module `__getattr__` for `package`, from {public name: its module}."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{names[name]}"), name)

    return sorted(names), __getattr__
