"""``hallq provision``: every broker identity of a hall, and the Mosquitto config enforcing them.

For each client the hall file names (the coordinator, every agent, the supervisor consoles
of ``security.supervisor_clients``, and a read-only ``operator`` for ``hallq status``) it
writes a random password, hashed into a Mosquitto password file in the PBKDF2-SHA512 ``$7$``
format Mosquitto 2 reads (the same mosquitto_passwd writes), the ACL from the contract
(:mod:`hallq.acl`), a hall CA and a broker certificate for TLS on the hall LAN, and the
broker config: anonymous off, ``use_username_as_clientid`` (so a login can never take over
another client's id and session), TLS on the listener.

Run again, it keeps every existing identity, adds the new ones, drops those no longer in
the hall file, and rotates the password of the clients named with ``--rotate``. The layout::

    OUT/ca/ca.key, ca.crt             the hall CA (keep ca.key offline or at least private)
    OUT/broker/mosquitto.conf, passwd, acl, server.crt, server.key, ca.crt
    OUT/devices/<client>/password, ca.crt   what a Pi needs: copied to
                                      /etc/hallq/credentials/<client>/ (broker.credentials_dir)
    OUT/devices/<client>/client.crt, client.key   with --client-certs: the broker then
                                      also demands a certificate from the hall CA
"""

from __future__ import annotations

import base64
import grp
import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hallq.acl import OPERATOR, clients, hall_acl
from hallq.config import HallConfig

PBKDF2_ITERATIONS = 101  # Mosquitto 2's own default; the passwords are 192 random bits
CERT_DAYS = 825


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message says what to fix."""


@dataclass
class Provisioned:
    out: Path
    added: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    new_ca: bool = False
    new_server_cert: bool = False

    def summary(self) -> str:
        lines = [f"provisioned {self.out}:"]
        for name, items in (
            ("added", self.added),
            ("rotated", self.rotated),
            ("kept", self.kept),
            ("revoked", self.revoked),
        ):
            if items:
                lines.append(f"  {name} ({len(items)}): {', '.join(items)}")
        if self.new_ca:
            lines.append("  new hall CA: every device needs its ca.crt again")
        if self.new_server_cert:
            lines.append("  new broker certificate")
        return "\n".join(lines)


def password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """A Mosquitto 2 password-file hash (``$7$``: PBKDF2-HMAC-SHA512, 12-byte salt)."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _read_passwd(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            user, sep, hashed = line.partition(":")
            if sep and user and not user.startswith("#"):
                found[user] = hashed
    return found


def _write(path: Path, text: str, mode: int) -> None:
    """Write with the mode set before any byte lands (no window where a secret is 0644)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _broker_group() -> int | None:
    """Mosquitto started as root drops to user ``mosquitto``: its files must be readable by
    that group. Only root can hand files to it; anyone else runs the broker as themselves."""
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return None


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise ProvisionError(
            "the openssl command is needed for the hall CA (Debian: apt install openssl)"
        )
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProvisionError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def _ensure_ca(ca_dir: Path, hall: str) -> bool:
    if (ca_dir / "ca.key").exists() and (ca_dir / "ca.crt").exists():
        return False
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        f"/CN=hallq {hall} hall CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=ca_dir,
    )
    os.chmod(ca_dir / "ca.key", 0o600)
    return True


def _san(hosts: list[str]) -> str:
    names = []
    for host in dict.fromkeys(hosts):
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return "subjectAltName=" + ",".join(names)


def _issue_server_cert(ca_dir: Path, broker_dir: Path, hosts: list[str]) -> None:
    work = broker_dir
    (work / "san.ext").write_text(_san(hosts) + "\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        f"/CN={hosts[0]}",
        cwd=work,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        str(ca_dir / "ca.crt"),
        "-CAkey",
        str(ca_dir / "ca.key"),
        "-CAcreateserial",
        "-CAserial",
        str(ca_dir / "ca.srl"),
        "-out",
        "server.crt",
        "-days",
        str(CERT_DAYS),
        "-extfile",
        "san.ext",
        cwd=work,
    )
    (work / "server.csr").unlink()
    (work / "san.ext").unlink()
    os.chmod(work / "server.key", 0o600)


def _issue_client_cert(ca_dir: Path, device_dir: Path, client: str) -> None:
    """A key and certificate naming the client (CN = its id), for TLS client auth."""
    (device_dir / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        f"/CN={client}",
        cwd=device_dir,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        str(ca_dir / "ca.crt"),
        "-CAkey",
        str(ca_dir / "ca.key"),
        "-CAcreateserial",
        "-CAserial",
        str(ca_dir / "ca.srl"),
        "-out",
        "client.crt",
        "-days",
        str(CERT_DAYS),
        "-extfile",
        "client.ext",
        cwd=device_dir,
    )
    (device_dir / "client.csr").unlink()
    (device_dir / "client.ext").unlink()
    os.chmod(device_dir / "client.key", 0o600)


def mosquitto_conf(
    cfg: HallConfig,
    broker_dir: Path,
    *,
    port: int,
    bind: str | None,
    run_as: str | None,
    client_certs: bool = False,
) -> str:
    d = broker_dir.resolve()
    lines = [
        f"# hall {cfg.hall.id}: generated by `hallq provision` -- run it again rather than "
        "editing this file",
        "# Every client logs in with its own password; the login is its client id, so no",
        "# login can take over another client's id (and kick it off); the ACL lets each",
        "# publish only its own role's topics (see hallq/acl.py and SECURITY.md).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d}/passwd",
        f"acl_file {d}/acl",
        "# Nagle + delayed ACKs add ~44 ms per hop on a quiet LAN (measured: 88 ms vs 1 ms",
        "# for a request and its reply).",
        "set_tcp_nodelay true",
        "autosave_interval 60",
        "max_queued_messages 10000",
        "# every hallq message is at most 16 KiB (hallq.messages.MAX_PAYLOAD_BYTES): a client",
        "# sending a bigger packet is cut off here, before the coordinator reads it (one",
        "# login's 200 MB payloads cost it 540 MB and others their replies)",
        "max_packet_size 65536",
        "",
        "# the hall LAN, TLS only; certificate from the hall CA",
        f"listener {port}{f' {bind}' if bind else ''}",
        f"cafile {d}/ca.crt",
        f"certfile {d}/server.crt",
        f"keyfile {d}/server.key",
        "tls_version tlsv1.2",
        "# a listener option: placed before any listener it would open a default one on 1883",
        "use_username_as_clientid true",
    ]
    if client_certs:
        lines += [
            "# every client also shows a certificate from the hall CA (and its password)",
            "require_certificate true",
        ]
    if run_as:
        lines += ["", f"user {run_as}"]
    return "\n".join(lines) + "\n"


def provision(
    cfg: HallConfig,
    out: Path,
    *,
    rotate: tuple[str, ...] = (),
    port: int = 8883,
    bind: str | None = None,
    hosts: tuple[str, ...] = (),
    run_as: str | None = None,
    client_certs: bool = False,
    operators: tuple[str, ...] = (OPERATOR,),
) -> Provisioned:
    """Create or bring up to date the hall's broker identities under ``out``."""
    identities = clients(cfg, operators)
    unknown = [c for c in rotate if c not in identities]
    if unknown:
        raise ProvisionError(
            f"--rotate {', '.join(unknown)}: not a client of hall "
            f"{cfg.hall.id} (known: {', '.join(identities)})"
        )
    if len(identities) < len(cfg.agents) + len(cfg.security.supervisor_clients) + 2 + len(
        operators
    ):  # (+2: the coordinator and the city bridge)
        raise ProvisionError(
            f"an operator name ({', '.join(operators)}) is also a client id "
            "of the hall: choose another with --operator"
        )
    out.mkdir(parents=True, exist_ok=True)
    ca_dir, broker_dir, devices = out / "ca", out / "broker", out / "devices"
    for d in (broker_dir, devices):
        d.mkdir(mode=0o750, exist_ok=True)
    done = Provisioned(out)
    done.new_ca = _ensure_ca(ca_dir, cfg.hall.id)

    broker_host = cfg.broker.host
    names = [broker_host, *hosts, "localhost", "127.0.0.1"]
    if done.new_ca or not (broker_dir / "server.crt").exists():
        _issue_server_cert(ca_dir, broker_dir, names)
        done.new_server_cert = True
    shutil.copyfile(ca_dir / "ca.crt", broker_dir / "ca.crt")

    hashes = _read_passwd(broker_dir / "passwd")
    for client in identities:
        secret_path = devices / client / "password"
        renew = client in rotate or done.new_ca
        if client in hashes and secret_path.exists() and client not in rotate:
            done.kept.append(client)
        else:
            (devices / client).mkdir(mode=0o700, exist_ok=True)
            password = secrets.token_urlsafe(24)
            _write(secret_path, password + "\n", 0o600)
            hashes[client] = password_hash(password)
            (done.rotated if client in rotate else done.added).append(client)
            renew = True
        if client_certs and (renew or not (devices / client / "client.crt").exists()):
            _issue_client_cert(ca_dir, devices / client, client)
        shutil.copyfile(ca_dir / "ca.crt", devices / client / "ca.crt")
        os.chmod(devices / client / "ca.crt", 0o644)
    for client in [c for c in hashes if c not in identities]:
        del hashes[client]
        done.revoked.append(client)
        if (devices / client).is_dir():
            shutil.rmtree(devices / client)

    group = _broker_group()
    readable = 0o640 if group is not None else 0o600
    _write(
        broker_dir / "passwd", "".join(f"{u}:{h}\n" for u, h in sorted(hashes.items())), readable
    )
    _write(broker_dir / "acl", hall_acl(cfg, operators), readable)
    _write(
        broker_dir / "mosquitto.conf",
        mosquitto_conf(
            cfg, broker_dir, port=port, bind=bind, run_as=run_as, client_certs=client_certs
        ),
        0o644,
    )
    os.chmod(broker_dir / "server.key", readable)
    if group is not None:
        for path in (
            out,
            broker_dir,
            broker_dir / "passwd",
            broker_dir / "acl",
            broker_dir / "server.key",
        ):
            os.chown(path, -1, group)
        os.chmod(out, 0o750)
    return done
