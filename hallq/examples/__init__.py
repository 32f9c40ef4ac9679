"""The seed hall (Guangzhou Liwan, 47 windows) shipped inside the package.

A wheel install has no ``examples/`` folder, yet ``hallq demo``, ``simulate`` and
``forecast`` run on this hall when given no ``--config``; so the file travels as package
data (in the source tree ``hallq/examples/liwan.toml`` links to ``examples/liwan.toml``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["example_hall"]


def example_hall() -> Path:
    """The example hall file as a path ``load_config`` can open."""
    return Path(str(files(__name__).joinpath("liwan.toml")))
