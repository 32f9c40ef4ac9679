"""Logging for every hallq process: JSON lines for journald, readable text on a terminal.

Under systemd, stderr goes to the journal; one JSON object per line keeps fields (logger,
level, exception) machine-readable for ``journalctl -o cat | jq``, and each line starts
with the kernel-style priority prefix (``<3>`` error .. ``<7>`` debug) journald reads, so
``journalctl -p warning`` shows the warnings and errors instead of treating every line as
info. The prefix is written only when stderr really is the journal stream
(``$JOURNAL_STREAM`` names its device and inode), never on a terminal or into a file.
On a terminal a field engineer wants plain text. Control characters in a message
(a newline or terminal escape inside a device's payload) are escaped, so one record is
one line and cannot forge another. Either way a filter masks anything
shaped like a Chinese resident ID-card number (18 characters: 17 digits and a digit or X),
because a log line must never leak one even if some code formats a raw card read into a
message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

__all__ = [
    "LEVEL_ENV",
    "IdCardRedactor",
    "JournalPriority",
    "JsonFormatter",
    "TextFormatter",
    "escape_controls",
    "redact",
    "running_under_systemd",
    "setup_logging",
]

LEVEL_ENV = "HALLQ_LOG_LEVEL"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Not part of a longer digit run, so order numbers and timestamps are left alone; also as
# people write it, grouped 6-8-4 by spaces or hyphens ("110101 19900307 123X").
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}|\d{6}[ -]\d{8}[ -]\d{3})[\dXx](?![0-9A-Za-z])")
_MASK = "[id-redacted]"
_HANDLER_NAME = "hallq-root"


# C0 and C1 controls, DEL, and the Unicode line/paragraph separators a terminal or a log
# viewer may break a line on
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def redact(text: str) -> str:
    return _ID_CARD.sub(_MASK, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` on one line: control characters shown as ``\\n``, ``\\e``, ``\\x07``..."""
    if keep_newlines:
        return "\n".join(_CONTROLS.sub(_escaped, line) for line in text.split("\n"))
    return _CONTROLS.sub(_escaped, text)


class IdCardRedactor(logging.Filter):
    """Rewrites the record's message (arguments merged in) with ID-card numbers masked and
    control characters escaped, so every formatter writes one line per record. A traceback
    keeps its own line breaks; anything else in it is escaped the same way."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: the handler reports it
            return True
        clean = escape_controls(redact(message))
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape_controls(redact(record.exc_text), keep_newlines=True)
        return True


class TextFormatter(logging.Formatter):
    """Plain text for a terminal. The message is one line already (the filter escaped it);
    a traceback's lines are marked ``| `` so that nothing in one -- an exception message
    quoting a device's text -- can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).split("\n")
        return "\n".join([first, *(f"| {line}" for line in rest)])


class JsonFormatter(logging.Formatter):
    """One JSON object per line; journald adds host and unit, so they are not repeated."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class JournalPriority(logging.Formatter):
    """Prefixes another formatter's line with its syslog priority, for journald."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{self.inner.format(record)}"


def syslog_priority(levelno: int) -> int:
    """crit 2, err 3, warning 4, info 6, debug 7 (sd-daemon(3)'s SD_* prefixes)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal socket systemd connected (``$JOURNAL_STREAM`` is
    its ``device:inode``); a unit that redirects stderr to a file gets no prefixes."""
    env = os.environ if environ is None else environ
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO and closed streams
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def running_under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def _level(level: str, environ: Mapping[str, str]) -> int:
    """``$HALLQ_LOG_LEVEL`` beats the config (an engineer debugging one unit sets it there)."""
    wanted = (environ.get(LEVEL_ENV) or level or "INFO").strip().upper()
    if wanted not in _LEVELS:
        wanted = "INFO"
    return int(getattr(logging, wanted))


def setup_logging(
    level: str = "INFO",
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    json_lines: bool | None = None,
    priorities: bool | None = None,
) -> None:
    """Configure the root logger once per process (calling again replaces our handler).

    ``level`` is ``cfg.runtime.log_level``; ``json_lines`` defaults to "under systemd",
    ``priorities`` (the ``<N>`` prefixes) to "the stream is the journal".
    """
    env = os.environ if environ is None else environ
    out = stream if stream is not None else sys.stderr
    use_json = running_under_systemd(env) if json_lines is None else json_lines
    prefix = stream_is_journal(out, env) if priorities is None else priorities
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(IdCardRedactor())
    formatter = (
        JsonFormatter()
        if use_json
        else TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.setFormatter(JournalPriority(formatter) if prefix else formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_level(level, env))
    # aiomqtt/paho at DEBUG log every packet; keep them at INFO unless asked for DEBUG.
    if root.level > logging.DEBUG:
        logging.getLogger("hallq.mqtt").setLevel(max(root.level, logging.INFO))
