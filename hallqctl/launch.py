"""The ``hallq`` command's entry point: a Pi's ``hallq agent`` starts without the whole CLI.

Every Pi runs one command line, ``hallq agent --config FILE --device ID`` (systemd's
``hallq-agent@.service``). Loading the operator CLI for it (click and every command's
options and help) cost ~2.4 MB of an agent's resident memory and ~15 ms of its start, so
that one line is read here; anything else (another command, ``--help``, an option this
reader does not know, a mistake to report) goes to :mod:`hallqctl.cli` as before, which
reads the same line with the same meaning and reports errors its usual way.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hallq.config import HallConfig

__all__ = ["agent_line", "main", "run_agent_process"]

_VALUED = {"--config": "config_file", "--device": "agent_id", "--sim-dir": "sim_dir"}


def agent_line(argv: list[str]) -> dict[str, str | bool] | None:
    """``agent --config F --device ID [--sim-dir D] [--simulate-all]`` as its values, or
    None for any other command line (the click CLI then handles it)."""
    if not argv or argv[0] != "agent":
        return None
    found: dict[str, str | bool] = {"simulate_all": False}
    rest = iter(argv[1:])
    for arg in rest:
        name, eq, value = arg.partition("=")
        if name in _VALUED and _VALUED[name] not in found:
            if not eq:
                value = next(rest, "")
            if not value or value.startswith("-"):
                return None
            found[_VALUED[name]] = value
        elif arg == "--simulate-all" and not found["simulate_all"]:
            found["simulate_all"] = True
        else:
            return None
    if "config_file" not in found or "agent_id" not in found:
        return None
    if found["simulate_all"] and "sim_dir" not in found:
        return None
    return found


def run_agent_process(
    cfg: HallConfig, agent_id: str, sim_dir: Path | None, simulate_all: bool
) -> None:
    """Serve one agent until SIGTERM/SIGINT (``hallq agent``, either way it was read)."""
    from edge.agent import run_agent
    from hallq.logsetup import setup_logging
    from hallqctl.runner import run_bounded

    setup_logging(cfg.runtime.log_level)
    run_bounded(lambda: run_agent(cfg, agent_id, sim_dir=sim_dir, simulate_all=simulate_all))


def skip_pydantic_plugins() -> None:
    """An agent uses no pydantic plugin; looking for them reads every installed package's
    metadata before the first model is built (a few ms and ~0.2 MB). An operator's own
    ``PYDANTIC_DISABLE_PLUGINS`` wins. Must run before the first model is built (the
    hall file's models are built when ``hallq.config`` is imported).

    With every plugin off, pydantic's plugin loader still imports ``importlib.metadata``
    (and with it ``email``, ``zipfile``, ``csv``...: ~0.8 MB of an agent) only to return
    no plugins; it is replaced by one that returns none without importing anything."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if (
        os.environ["PYDANTIC_DISABLE_PLUGINS"] in _ALL_PLUGINS_OFF
        and _PLUGIN_LOADER not in sys.modules
    ):
        loader = ModuleType(_PLUGIN_LOADER, "pydantic's plugin loader with every plugin off")
        loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
        sys.modules[_PLUGIN_LOADER] = loader


def defer_unused_stdlib() -> None:
    """paho imports ``urllib.request`` (and with it ``http.client``, ``email``, ``tempfile``:
    ~2.5 MB of an agent's resident memory) for one thing: reading proxy settings when
    PySocks is installed, which a Pi does not have. Until then the module is a stand-in
    that imports the real one at the first attribute asked of it (PEP 562), so whatever
    does use it gets the whole module, as before. (``importlib.util.LazyLoader`` would
    not do: the import statement itself reads ``__spec__``, which loads the module.)"""
    if _LAZY_STDLIB in sys.modules:
        return
    import importlib
    import importlib.util
    import urllib

    spec = importlib.util.find_spec(_LAZY_STDLIB)
    if spec is None:
        return
    stand_in = ModuleType(_LAZY_STDLIB, "urllib.request, imported on first use")

    def load(name: str) -> object:
        if sys.modules.get(_LAZY_STDLIB) is stand_in:
            del sys.modules[_LAZY_STDLIB]
        real = importlib.import_module(_LAZY_STDLIB)  # and the parent's attribute
        stand_in.__dict__.update(real.__dict__)
        return getattr(real, name)

    stand_in.__spec__ = spec
    stand_in.__getattr__ = load  # type: ignore[method-assign]
    sys.modules[_LAZY_STDLIB] = stand_in
    urllib.request = stand_in  # what `import urllib.request` sets


def defer_idna_codec() -> None:
    """Each connection to the broker resolves its host with ``getaddrinfo``, which encodes
    a ``str`` host with the ``idna`` codec; the codec's module imports ``stringprep`` and
    ``unicodedata`` with its Unicode 3.2 tables (~0.4 MB of an agent's resident memory) for
    the internationalised names a hall's broker does not have. Until a name needs them, the
    ``idna`` codec is found here first: a valid ASCII name (every label 1-63 characters)
    encodes as the real codec's own fast path does, to the same bytes; anything else
    (another name, decoding, incremental and stream use, another error handler) goes to
    ``encodings.idna``, imported then. Importing ``encodings.idna`` itself is untouched."""
    if "encodings.idna" in sys.modules:
        return
    import codecs
    import encodings

    codecs.unregister(encodings.search_function)  # (3.10+) the encodings' after this one
    codecs.register(_idna_search)
    codecs.register(encodings.search_function)


def _real_idna() -> ModuleType:
    import encodings.idna

    return encodings.idna


def _idna_encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    if errors == "strict" and isinstance(text, str) and text.isascii():
        *inner, last = text.split(".")
        if len(last) < 64 and all(0 < len(label) < 64 for label in inner):
            return text.encode("ascii"), len(text)
    encoded: tuple[bytes, int] = _real_idna().Codec().encode(text, errors)
    return encoded


def _idna_decode(data: Any, errors: str = "strict") -> tuple[str, int]:
    decoded: tuple[str, int] = _real_idna().Codec().decode(data, errors)
    return decoded


def _real_idna_factory(name: str) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real_idna(), name)(*args, **kwargs)

    return make


def _idna_search(name: str) -> codecs.CodecInfo | None:
    if name != "idna":
        return None
    return codecs.CodecInfo(
        name="idna",
        encode=_idna_encode,
        decode=_idna_decode,
        incrementalencoder=_real_idna_factory("IncrementalEncoder"),
        incrementaldecoder=_real_idna_factory("IncrementalDecoder"),
        streamwriter=_real_idna_factory("StreamWriter"),
        streamreader=_real_idna_factory("StreamReader"),
    )


_LAZY_STDLIB = "urllib.request"
_PLUGIN_LOADER = "pydantic.plugin._loader"
_ALL_PLUGINS_OFF = ("__all__", "1", "true")  # pydantic's own reading of the variable


def _no_plugins() -> tuple[()]:
    return ()


def _fast_agent(line: dict[str, str | bool]) -> bool:
    """Run the agent; False when the line has a mistake for the CLI to report."""
    skip_pydantic_plugins()
    defer_unused_stdlib()
    defer_idna_codec()
    from hallq.config import load_config
    from hallq.errors import ConfigError

    try:
        cfg = load_config(Path(str(line["config_file"])))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None
    agent_id = str(line["agent_id"])
    try:
        cfg.agent(agent_id)
    except KeyError:
        return False
    sim_dir = line.get("sim_dir")
    simulate_all = line["simulate_all"] is True
    run_agent_process(cfg, agent_id, Path(str(sim_dir)) if sim_dir else None, simulate_all)
    return True


def main() -> None:
    line = agent_line(sys.argv[1:])
    if line is not None and _fast_agent(line):
        return
    from hallqctl.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
