"""Payload layouts and what each driver makes of a device's event bytes (no port needed)."""

from __future__ import annotations

import pytest

from firmware_bridge.devices import (
    RATING_LABELS,
    CallPad,
    IdCard,
    IdCardRejected,
    IdReader,
    Keypad,
    LedController,
    PadKey,
    PadKeyPress,
    Rating,
    RatingPad,
    Scan,
    Scanner,
    ServiceKey,
    TransferTarget,
    hash_id_number,
)
from firmware_bridge.display_text import DisplayFlag, decode_display, encode_display
from firmware_bridge.errors import FrameError
from firmware_bridge.frame import MAX_PAYLOAD
from firmware_bridge.led_frames import CHUNK_DATA, Bitmap, ChunkRejected, LedAssembler, led_chunks
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import (
    DeviceStatus,
    EventType,
    Identity,
    NackReason,
    StatusFlag,
    key_event,
    split_event,
)

KEY = "a-deployment-key-of-32-bytes-xx"
ID_NUMBER = "440103199001011236"  # check digit valid


@pytest.fixture
def link() -> SerialLink:
    return SerialLink("/dev/ttyUSB-not-opened")


def key_data(code: int, argument: str = "") -> bytes:
    kind, data = split_event(key_event(code, argument))
    assert kind == EventType.KEY
    return data


# --- payloads --------------------------------------------------------------------------------


def test_identity_and_status_round_trip() -> None:
    ident = Identity(5, (2, 13), 0x1234, "IDR-200")
    assert ident.encode() == bytes([5, 2, 13, 0x34, 0x12]) + b"IDR-200"
    assert Identity.decode(ident.encode()) == ident
    assert ident.kind_name == "id_reader"
    status = DeviceStatus(StatusFlag.KEY_STUCK | StatusFlag.LOW_VOLTAGE, 86400, 3)
    assert status.encode() == bytes([0x05]) + (86400).to_bytes(4, "little") + b"\x03\x00"
    assert DeviceStatus.decode(status.encode()) == status
    assert not status.ok
    with pytest.raises(FrameError):
        DeviceStatus.decode(b"\x00")


def test_nack_reasons_are_named() -> None:
    assert NackReason.describe(b"\x04") == "out_of_order"
    assert NackReason.describe(b"\x63") == "reason code 99"
    assert NackReason.describe(b"") == "no reason given"


def test_display_text_is_gb18030_within_32_columns() -> None:
    payload = encode_display("请A023号到15号窗口", beep=True)
    assert payload == b"\x01" + "请A023号到15号窗口".encode("gb18030")
    assert len(payload) - 1 == 18  # 6 Chinese characters x 2 + 6 ASCII
    assert decode_display(payload) == ("请A023号到15号窗口", DisplayFlag.BEEP)
    assert encode_display("A023\n暂停服务") == b"\x00A023\n" + "暂停服务".encode("gb18030")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("请" * 17, "34 columns"),
        ("a\tb", "control character"),
        ("\U00020000", "outside the pad's GBK font"),  # a CJK Extension B character: 4 bytes
    ],
)
def test_display_text_the_pad_cannot_show_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(FrameError, match=complaint):
        encode_display(text)


def art(width: int, height: int) -> Bitmap:
    return Bitmap.from_art(
        [
            "".join("#" if (x * 7 + y * 3) % 5 == 0 else "." for x in range(width))
            for y in range(height)
        ]
    )


def test_bitmap_is_packed_msb_first_and_padded() -> None:
    image = Bitmap.from_art(["#.........#", "..#"])
    assert image.stride == 2
    assert image.rows == bytes([0x80, 0x20, 0x20, 0x00])
    assert image.to_art()[0] == "#.........#"
    assert repr(image) == "Bitmap(11x2)"
    with pytest.raises(FrameError):
        Bitmap(8, 2, b"\x00")


class FakeImage:
    mode = "1"
    size = (16, 1)

    def tobytes(self) -> bytes:
        return b"\xf0\x0f"


def test_bitmap_from_a_mode_1_image() -> None:
    assert Bitmap.from_image(FakeImage()).to_art() == ["####........####"]


def test_a_strip_image_takes_two_chunks_and_reassembles() -> None:
    image = art(128, 16)
    chunks = led_chunks(image, 7)
    assert len(chunks) == 2
    assert all(len(c) <= MAX_PAYLOAD for c in chunks)
    assert chunks[1][:7] == bytes([7, 128, 0, 16, 0]) + CHUNK_DATA.to_bytes(2, "little")
    assembler = LedAssembler()
    assert assembler.feed(chunks[0]) is None
    assert assembler.feed(chunks[0]) is None  # resent after a lost ACK: taken once
    assert assembler.feed(chunks[1]) == image
    assert assembler.feed(chunks[1]) is None  # the last chunk resent: not shown twice


def test_an_out_of_order_chunk_is_refused() -> None:
    image = art(256, 16)
    chunks = led_chunks(image, 1)
    assembler = LedAssembler()
    assembler.feed(chunks[0])
    with pytest.raises(ChunkRejected) as caught:
        assembler.feed(chunks[2])
    assert caught.value.reason == NackReason.OUT_OF_ORDER
    with pytest.raises(ChunkRejected) as caught:
        assembler.feed(bytes([1, 8, 0, 1, 0, 5, 0, 0xFF]))  # past the end of an 8x1 image
    assert caught.value.reason == NackReason.BAD_PAYLOAD


# --- drivers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(PadKey))
def test_call_pad_keys(link: SerialLink, key: PadKey) -> None:
    pad = CallPad(link, 1, window=15, device="pad-15")
    argument = "W7" if key == PadKey.TRANSFER else ""
    event = pad.decode_event(EventType.KEY, key_data(key, argument))
    assert event == PadKeyPress(
        "pad-15", 1, 15, key, TransferTarget("window", 7) if argument else None
    )


def test_call_pad_transfer_to_a_service(link: SerialLink) -> None:
    pad = CallPad(link, 1, window=15)
    event = pad.decode_event(EventType.KEY, key_data(PadKey.TRANSFER, "S3"))
    assert event.target == TransferTarget("service", 3)
    assert TransferTarget("service", 3).encode() == "S3"


@pytest.mark.parametrize(
    ("event", "data"),
    [
        (EventType.KEY, bytes([0x42])),  # no such key
        (EventType.KEY, bytes([PadKey.TRANSFER])),  # transfer without target
        (EventType.KEY, bytes([PadKey.TRANSFER]) + b"X9"),
        (EventType.KEY, bytes([PadKey.CALL]) + b"12"),  # CALL takes no argument
        (EventType.KEY, b""),
        (EventType.SCAN, b"APPT"),
    ],
)
def test_call_pad_refuses_what_a_pad_never_sends(
    link: SerialLink, event: EventType, data: bytes
) -> None:
    with pytest.raises(FrameError):
        CallPad(link, 1).decode_event(event, data)


def test_rating_pad(link: SerialLink) -> None:
    pad = RatingPad(link, 11, window=1, device="rate-01")
    ratings = [pad.decode_event(EventType.RATING, bytes([s])) for s in (4, 3, 2, 1)]
    assert [r.label for r in ratings] == ["非常满意", "满意", "基本满意", "不满意"]
    assert ratings[0] == Rating("rate-01", 11, 1, 4)
    assert RATING_LABELS[1] == "不满意"
    for bad in (b"\x05", b"\x00", b"\x04\x04"):
        with pytest.raises(FrameError):
            pad.decode_event(EventType.RATING, bad)


def test_keypad_maps_keys_to_services(link: SerialLink) -> None:
    keypad = Keypad(link, 2, services=["tax", "invoice", "social"], device="keys-1")
    assert keypad.decode_event(EventType.KEY, key_data(2)) == ServiceKey("keys-1", 2, 2, "invoice")
    for index in (0, 4):
        with pytest.raises(FrameError, match="has no service"):
            keypad.decode_event(EventType.KEY, key_data(index))


def test_scanner_strips_line_ends(link: SerialLink) -> None:
    scanner = Scanner(link, 3, device="scan-1")
    assert scanner.decode_event(EventType.SCAN, b"APPT1234\r\n") == Scan("scan-1", 3, "APPT1234")
    for bad in (b"\r\n", b"\xff\xfe", b"A\x00B"):
        with pytest.raises(FrameError):
            scanner.decode_event(EventType.SCAN, bad)


def test_attaching_two_drivers_at_one_address_fails(link: SerialLink) -> None:
    CallPad(link, 1, device="pad-a")
    with pytest.raises(ValueError, match="already used by 'pad-a'"):
        LedController(link, 1, width=128, height=16)


# --- the ID reader --------------------------------------------------------------------------


def test_id_reader_reports_only_the_keyed_hash(link: SerialLink) -> None:
    reader = IdReader(link, 5, key=KEY, device="idr-1")
    event = reader.decode_event(EventType.ID_CARD, ID_NUMBER.encode())
    assert isinstance(event, IdCard)
    assert event.id_hash == hash_id_number(ID_NUMBER, KEY)
    assert len(event.id_hash) == 64
    for text in (repr(event), str(event), repr(reader)):
        assert ID_NUMBER not in text
        assert KEY not in text


def test_id_hash_depends_on_the_key_and_ignores_case(link: SerialLink) -> None:
    number = "11010519491231002X"
    assert hash_id_number(number, KEY) == hash_id_number(number.lower(), KEY)
    assert hash_id_number(number, KEY) != hash_id_number(number, KEY + "2")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"44010319900101123X", "check digit"),  # one digit off
        (b"4401031990010112", "not an 18-character"),
        (b"\xff" * 18, "not ASCII"),
    ],
)
def test_id_reader_rejects_misreads_without_quoting_them(
    link: SerialLink, data: bytes, reason: str
) -> None:
    event = IdReader(link, 5, key=KEY).decode_event(EventType.ID_CARD, data)
    assert isinstance(event, IdCardRejected)
    assert reason in event.reason
    assert data.decode("latin-1") not in repr(event)


def test_id_reader_needs_a_long_key(link: SerialLink) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        IdReader(link, 5, key="short")
