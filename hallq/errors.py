"""One root exception for hallq; each leaf also inherits the builtin it resembles.

Callers catch ``HallqError`` to handle anything hallq raised on purpose, or the builtin
(``ValueError``, ``TimeoutError``…) when they do not care where it came from.
"""

from __future__ import annotations

from typing import Literal

# the ``code`` a PayloadError carries into an ErrorReport (hallq.messages.RejectCode)
PayloadErrorCode = Literal["oversize", "invalid_json", "invalid_payload"]


class HallqError(Exception):
    """Root of every error hallq raises deliberately."""


class ConfigError(HallqError, ValueError):
    """A hall configuration file is wrong; the message names the file and key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid hall configuration\n{lines}")


class TopicError(HallqError, ValueError):
    """A topic string or topic id does not fit the hallq topic tree."""


class PayloadError(HallqError, ValueError):
    """A payload failed validation; ``field`` is the dotted path of the first bad field."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        model: str | None = None,
        code: PayloadErrorCode = "invalid_payload",
    ) -> None:
        self.field = field
        self.model = model
        self.code = code
        super().__init__(message)


class BusError(HallqError):
    """Something went wrong talking to the MQTT broker."""


class NotConnected(BusError, ConnectionError):
    """A publish that may not be queued was made while the broker is unreachable."""


class RequestTimeout(BusError, TimeoutError):
    """No reply with the request's correlation id arrived in time."""


class NotKept(HallqError):
    """A handler could not keep what a message asked (its store failed). The session leaves
    the message unacknowledged, so the broker delivers it again on the next connection."""
