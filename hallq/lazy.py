"""Names a package exports but imports on first use (PEP 562).

A package whose names pull in heavy modules (numpy, Pillow, a driver) lists where each name
lives and sets ``__getattr__ = lazy_names(__name__, homes)``: importing the package, or one
light submodule of it, then loads none of them, and a Pi or a coordinator's start pays only
for what it uses. Static type checkers see the names through ``if TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` that imports ``name`` from ``homes[name]`` (a module name,
    relative to ``module`` when it starts with a dot) and keeps it on the module: the next
    use is a plain attribute, and where a submodule has the name's own name (its import
    binds the submodule there), the name wins."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, module), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
