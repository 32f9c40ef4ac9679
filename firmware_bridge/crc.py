"""CRC-16/MODBUS, the check every frame carries.

Chosen because RS-485 device firmware and bus analysers already implement it, so a field
engineer can verify a captured frame with any Modbus tool.
"""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_TABLE = _table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """Reflected poly 0xA001, init 0xFFFF; sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc
