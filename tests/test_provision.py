"""`hallq provision`: identities, the contract-derived ACL, the broker config, re-runs."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from hallq.acl import hall_acl
from hallq.config import HallConfig, parse_config
from hallq.contract import CLIENT_TOPICS
from hallq.errors import ConfigError
from hallq.topics import Role
from hallqctl.cli import main
from hallqctl.provision import ProvisionError, password_hash, provision

from .halls import small_hall_text

SUPERVISORS = '\n[security]\nsupervisor_clients = ["desk-1"]\n'


def hall(extra: str = "") -> HallConfig:
    return parse_config(small_hall_text() + SUPERVISORS + extra, "hall.toml")


def verify(hashed: str, password: str) -> bool:
    _, kind, rounds, salt, digest = hashed.split("$")
    assert kind == "7"
    mine = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds))
    return base64.b64encode(mine).decode() == digest


def passwd(out: Path) -> dict[str, str]:
    lines = (out / "broker" / "passwd").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines)


def test_every_client_gets_its_own_hashed_password_and_the_broker_its_config(
    tmp_path: Path,
) -> None:
    cfg = hall()
    done = provision(cfg, tmp_path, port=18883)
    clients = {"coordinator", "desk-1", "pi-w1", "pi-d1", "pi-b1", "operator", "city-bridge"}
    assert set(done.added) == clients
    assert done.new_ca
    hashes = passwd(tmp_path)
    assert set(hashes) == clients
    for client in clients:
        secret = (tmp_path / "devices" / client / "password").read_text().strip()
        assert len(secret) >= 32
        assert secret not in hashes[client]
        assert verify(hashes[client], secret)
        mode = stat.S_IMODE((tmp_path / "devices" / client / "password").stat().st_mode)
        assert mode == 0o600
        assert (tmp_path / "devices" / client / "ca.crt").read_text().startswith("-----BEGIN")
    conf = (tmp_path / "broker" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "listener 18883" in conf
    assert conf.index("use_username_as_clientid true") > conf.index("listener 18883"), (
        "before a listener line Mosquitto would open a default listener on 1883"
    )
    assert any(line.startswith("certfile ") for line in conf)
    assert (tmp_path / "broker" / "acl").read_text() == hall_acl(cfg)


def test_a_rerun_keeps_everyone_rotates_on_request_adds_and_revokes(tmp_path: Path) -> None:
    provision(hall(), tmp_path)
    first = passwd(tmp_path)
    w1 = (tmp_path / "devices" / "pi-w1" / "password").read_text()
    again = provision(hall(), tmp_path)
    assert not again.added
    assert not again.rotated
    assert not again.new_ca
    assert passwd(tmp_path) == first
    rotated = provision(hall(), tmp_path, rotate=("pi-w1",))
    assert rotated.rotated == ["pi-w1"]
    now = passwd(tmp_path)
    assert now["pi-w1"] != first["pi-w1"]
    assert (tmp_path / "devices" / "pi-w1" / "password").read_text() != w1
    assert {k: v for k, v in now.items() if k != "pi-w1"} == {
        k: v for k, v in first.items() if k != "pi-w1"
    }
    two_desks = parse_config(
        small_hall_text() + SUPERVISORS.replace('"desk-1"', '"desk-2"'), "hall.toml"
    )
    changed = provision(two_desks, tmp_path)
    assert changed.added == ["desk-2"]
    assert changed.revoked == ["desk-1"]
    assert "desk-1" not in passwd(tmp_path)
    assert not (tmp_path / "devices" / "desk-1").exists()
    with pytest.raises(ProvisionError, match="pi-w9"):
        provision(two_desks, tmp_path, rotate=("pi-w9",))


def test_the_acl_gives_each_role_exactly_what_the_contract_says_it_publishes() -> None:
    cfg = hall()
    blocks: dict[str, list[str]] = {}
    user = ""
    for line in hall_acl(cfg).splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            blocks[user] = []
        elif line.startswith("topic write "):
            blocks[user].append(line.split()[2])
    base = "hallq/v1/test-hall"
    for client, role in (
        ("pi-w1", Role.WINDOW),
        ("pi-d1", Role.DISPENSER),
        ("pi-b1", Role.BOARD),
        ("desk-1", Role.SUPERVISOR),
    ):
        wanted = {
            f"{base}/{role}/{client}/{action}"
            for action, spec in CLIENT_TOPICS.items()
            if role in spec.roles and not spec.by_coordinator
        }
        assert set(blocks[client]) == wanted
    assert f"{base}/window/pi-w1/cmd" in blocks["pi-w1"]
    assert not any("/cmd" in t or "/req" in t for t in blocks["pi-b1"])
    assert blocks["operator"] == []
    for client, writes in blocks.items():
        coordinator_only = [
            t
            for t in writes
            if "/state/" in t
            or "/event/" in t
            or t.startswith(f"{base}/coordinator/")
            or t.endswith("/reply")
        ]
        assert not coordinator_only or client == "coordinator", (client, coordinator_only)


def test_supervisor_consoles_need_their_own_identity() -> None:
    with pytest.raises(ConfigError, match="supervisor console needs its own broker identity"):
        parse_config(
            small_hall_text() + '\n[security]\nsupervisor_clients = ["pi-w1"]\n', "hall.toml"
        )
    with pytest.raises(ConfigError, match="duplicate supervisor client id"):
        parse_config(
            small_hall_text() + '\n[security]\nsupervisor_clients = ["a", "a"]\n', "hall.toml"
        )


def test_a_device_logs_in_as_itself_with_the_credentials_copied_to_it(tmp_path: Path) -> None:
    provision(hall(), tmp_path / "out")
    creds = tmp_path / "out" / "devices"
    cfg = parse_config(
        small_hall_text() + SUPERVISORS + f'\n[broker]\nurl = "mqtts://h:8883"'
        f'\ncredentials_dir = "{creds}"\n',
        "hall.toml",
    )
    broker = cfg.broker.for_client("pi-w1")
    assert broker.username == "pi-w1"
    assert broker.tls.ca_file == creds / "pi-w1" / "ca.crt"
    assert broker.password is not None
    assert broker.password.get_secret_value() == (creds / "pi-w1" / "password").read_text().strip()
    assert cfg.broker.for_client("pi-x9") is cfg.broker, "no directory: the config as it is"
    (creds / "pi-d1" / "password").unlink()
    with pytest.raises(ConfigError, match="cannot read the broker password of 'pi-d1'"):
        cfg.broker.for_client("pi-d1", creds / "pi-d1")


def test_the_hash_is_the_one_mosquitto_passwd_writes() -> None:
    # `mosquitto_passwd -c -b FILE user1 secret` (2.0.11) wrote this line's hash
    salt = base64.b64decode("GY85fcCLcLd/Qr9/")
    assert password_hash("secret", salt=salt) == (
        "$7$101$GY85fcCLcLd/Qr9/$LphAZiVMCdtvNOC1U8lkyddW0p3NeYRVJE7ByURHisqFPiaDJPEbvyAYT82/"
        "qrnymbTLxHExNwRgd854hZ9Mlg=="
    )


def test_the_command_line_reports_what_it_did(tmp_path: Path) -> None:
    (tmp_path / "hall.toml").write_text(small_hall_text() + SUPERVISORS)
    args = ["provision", "--config", str(tmp_path / "hall.toml"), "--out", str(tmp_path / "o")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "added (7)" in first.output  # with the city bridge's login
    assert "credentials_dir" in first.output
    again = CliRunner().invoke(main, [*args, "--rotate", "pi-d1"])
    assert "rotated (1): pi-d1" in again.output
    assert "kept (6)" in again.output
    bad = CliRunner().invoke(main, [*args, "--rotate", "nobody"])
    assert bad.exit_code == 1
    assert "not a client of hall" in bad.output


def test_provision_takes_a_relative_out_and_names_one_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new user: `--out prov/out1` failed in openssl (run in the directory it
    fills, given paths relative to where the command started) and left half a CA behind;
    a file or an unwritable place for --out was a traceback."""
    (tmp_path / "hall.toml").write_text(small_hall_text() + SUPERVISORS)
    monkeypatch.chdir(tmp_path)
    args = ["provision", "--config", "hall.toml", "--out"]
    first = CliRunner().invoke(main, [*args, "prov/out1", "--client-certs"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "prov/out1/devices/pi-d1/client.crt").exists()
    assert f"install {tmp_path}/prov/out1/broker/mosquitto.conf" in first.output
    onto_a_file = CliRunner().invoke(main, [*args, "hall.toml"])
    assert onto_a_file.exit_code == 2
    assert "Directory" in onto_a_file.output
    assert "is a file" in onto_a_file.output
    nowhere = CliRunner().invoke(main, [*args, "/proc/nope"])
    assert nowhere.exit_code == 2, nowhere.output
    assert "cannot write /proc/nope" in nowhere.output


def test_the_broker_listens_on_the_hall_file_s_port_and_a_rerun_keeps_it(tmp_path: Path) -> None:
    """Found following the field guide: with broker.url on port 28883, provision wrote
    `listener 8883` and told every Pi to change its hall file to 8883; the guide's
    --rotate rerun then reset a hand-set port. Both take the hall file's port now."""
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(
        small_hall_text() + SUPERVISORS + '\n[broker]\nurl = "mqtts://hall-server:28883"\n'
    )
    args = ["provision", "--config", str(hall_file), "--out", str(tmp_path / "o")]
    conf = tmp_path / "o" / "broker" / "mosquitto.conf"
    for extra in ([], ["--rotate", "pi-d1"]):
        done = CliRunner().invoke(main, [*args, *extra])
        assert done.exit_code == 0, done.output
        assert "listener 28883\n" in conf.read_text()
        assert 'broker.url = "mqtts://hall-server:28883"' in done.output
    done = CliRunner().invoke(main, [*args, "--listen", "8884"])  # said: it wins
    assert "listener 8884\n" in conf.read_text()


@pytest.mark.broker
async def test_with_client_certs_the_broker_wants_the_certificate_and_the_password(
    tmp_path: Path,
) -> None:
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from hallq.bus import Session
    from hallqctl.mosquitto import Mosquitto, free_port

    port, out = free_port(), tmp_path / "out"
    cfg = parse_config(
        small_hall_text() + SUPERVISORS + f"\n[broker]\nurl = "
        f'"mqtts://127.0.0.1:{port}"\ncredentials_dir = "{out}/devices"\n',
        "hall.toml",
    )
    provision(cfg, out, port=port, bind="127.0.0.1", run_as="root", client_certs=True)
    device = out / "devices" / "pi-w1"
    assert (device / "client.crt").exists()
    assert stat.S_IMODE((device / "client.key").stat().st_mode) == 0o600
    assert "require_certificate true" in (out / "broker" / "mosquitto.conf").read_text()
    broker_cfg = cfg.broker.for_client("pi-w1")
    assert broker_cfg.tls.cert_file == device / "client.crt"
    (tmp_path / "run").mkdir()
    broker = Mosquitto(tmp_path / "run", config=out / "broker" / "mosquitto.conf", port=port)
    broker.start()
    try:
        async with Session(
            broker_cfg, hall="test-hall", role="window", client_id="pi-w1", state_dir=tmp_path / "s"
        ) as session:
            await session.wait_connected(10)
        bare = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pi-w1")
        bare.username_pw_set("pi-w1", (device / "password").read_text().strip())
        bare.tls_set(ca_certs=str(device / "ca.crt"))
        accepted: list[int] = []
        bare.on_connect = lambda c, u, f, rc, p: accepted.append(rc.value)
        try:  # no certificate: the broker ends the TLS session before any CONNACK
            bare.connect("127.0.0.1", port, keepalive=5)
            for _ in range(20):
                bare.loop(0.1)
        except (ssl.SSLError, OSError):
            pass
        assert 0 not in accepted
    finally:
        broker.kill()
    again = provision(cfg, out, port=port, rotate=("pi-w1",), client_certs=True)
    assert again.rotated == ["pi-w1"]
