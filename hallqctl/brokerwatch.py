"""The hall broker's watchdog: a broker that accepts connections but never answers them.

Mosquitto 2.0.11 (Debian 12's) was seen spinning for good in its keepalive check after
its own city bridge reconnected over a flapping link (BENCHMARKS.md, "Faults without
lies"). The city bridge has since moved out of the broker (``hallq bridge``, its own
process), so that path no longer runs there; this stays the guard against any hang. A hung
broker has neither failed nor exited, so systemd's ``Restart=`` never fires, and
every device of the hall is cut off. This probes the broker as any client would meet it:
TCP (and TLS) up, then an MQTT CONNECT that a live broker answers with a CONNACK, even one
refusing the login. No credentials are sent or needed, so the probe can take no one's
session over. A refused TCP connection is a stopped broker, which is systemd's to restart;
only a broker that stays silent ``misses`` times in a row counts as hung.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from hallq.config import BrokerConfig

__all__ = ["HUNG_EXIT", "Probe", "probe", "watch"]

log = logging.getLogger("hallq.brokerwatch")

HUNG_EXIT = 3  # the unit's ExecStopPost restarts the broker on this exit status
CONNACK = 0x20


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, no login: every broker version answers it."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


@dataclass(frozen=True)
class Probe:
    answered: bool
    reason: str  # what happened, for the log: "CONNACK", "refused: ...", "no CONNACK ..."
    hung: bool  # accepted (or stuck connecting) but silent: what a restart cures


async def probe(
    broker: BrokerConfig, answer_within: float, tls: ssl.SSLContext | None = None
) -> Probe:
    """One CONNECT; ``tls``: the context to reach an mqtts listener with."""
    try:
        async with asyncio.timeout(answer_within):
            reader, writer = await asyncio.open_connection(broker.host, broker.port, ssl=tls)
    except TimeoutError:
        return Probe(False, f"no TCP/TLS connection within {answer_within:g} s", True)
    except OSError as exc:
        return Probe(False, f"refused: {exc}", False)
    try:
        writer.write(connect_packet(f"hallq-watch-{os.getpid()}"))
        async with asyncio.timeout(answer_within):
            await writer.drain()
            head = await reader.read(1)
    except TimeoutError:
        return Probe(False, f"no CONNACK within {answer_within:g} s", True)
    except OSError as exc:
        return Probe(False, f"connection lost before the CONNACK: {exc}", False)
    finally:
        writer.close()
    if head and head[0] == CONNACK:
        return Probe(True, "CONNACK", False)
    return Probe(False, f"closed without a CONNACK ({head!r})", False)


async def watch(
    broker: BrokerConfig,
    *,
    every: float,
    answer_within: float,
    misses: int,
    tls: ssl.SSLContext | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> str:
    """Probe every ``every`` seconds; returns why the broker counts as hung once it stayed
    silent ``misses`` times in a row (a refusal or an answer starts the count again)."""
    silent = 0
    while True:
        result = await probe(broker, answer_within, tls)
        if on_probe is not None:
            on_probe(result)
        if result.hung:
            silent += 1
            log.warning("broker %s: %s (%d of %d)", broker.url, result.reason, silent, misses)
            if silent >= misses:
                return (
                    f"broker {broker.url} accepted no MQTT session {misses} times in a row "
                    f"({result.reason}): hung"
                )
        else:
            if silent or not result.answered:
                log.info("broker %s: %s", broker.url, result.reason)
            silent = 0
        await asyncio.sleep(every)
