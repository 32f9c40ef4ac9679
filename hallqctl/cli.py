"""The ``hallq`` command: every subcommand wires components together here, nowhere else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hallq import __version__
from hallq.errors import ConfigError

if TYPE_CHECKING:
    import datetime as dt

    from hallq.config import Agent, HallConfig


def _version_text() -> str:
    from coordinator.dispatch import active_kind

    try:
        kind = active_kind()
    except (ImportError, ValueError):
        kind = "unavailable"
    return f"hallq {__version__} (dispatch core: {kind})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the active dispatch core.",
)
def main() -> None:
    """hallq: queue management for public service halls."""


@main.group()
def config() -> None:
    """Check hall configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE (with HALLQ_* overrides applied) and summarise the hall it describes."""
    from rich.console import Console

    from hallqctl.config_summary import render_summary

    Console().print(render_summary(_load(file)))


def _load(file: Path) -> HallConfig:
    from hallq.config import load_config

    try:
        return load_config(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None


config_option = click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(path_type=Path),
    help="the hall's TOML file",
)
# Options several commands share, defined once so their names and help cannot drift apart.
example_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="the hall's TOML file (default: the example Liwan hall)",
)
sim_dir_option = click.option(
    "--sim-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="directory of simulated serial ports (ports named sim or sim:NAME)",
)
seed_option = click.option("--seed", type=int, default=1, show_default=True)
OUT_FILE = click.Path(path_type=Path, dir_okay=False)  # a file a command writes


@contextlib.contextmanager
def _writing(option: str) -> Iterator[None]:
    """An output the command cannot write (no such directory, no permission) is one line
    naming it, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.BadParameter(
            f"cannot write {where}{exc.strerror or exc}", param_hint=option
        ) from None


def _stack(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


day_options = _stack(
    click.option(
        "--volume",
        type=click.FloatRange(min=1),
        default=None,
        help="arrivals on an average filing-period day (default: the calibrated volume)",
    ),
    click.option(
        "--day",
        "day_of_month",
        type=click.IntRange(1, 31),
        default=None,
        help="day of the month (filing-period factor); default: the average day",
    ),
)
history_options = _stack(
    click.option(
        "--history",
        type=click.Path(path_type=Path),
        default=None,
        metavar="EVENT_LOG",
        help="the hall's event log: learn the service mix, counter times and arrival "
        "profile from it (the seed hall's figures where it holds too little)",
    ),
    click.option(
        "--history-since",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="learn only from business days from this date on (default: the whole log)",
    ),
)


def _agent(cfg: HallConfig, agent_id: str) -> Agent:
    """The agent's section of the hall file, or a usage error naming --device."""
    try:
        return cfg.agent(agent_id)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--device") from None


@main.command()
@config_option
def topics(config_file: Path) -> None:
    """List the hall's MQTT topics: who publishes each, QoS, retained, payload."""
    from rich.console import Console
    from rich.table import Table

    from hallq.contract import ALL_TOPICS

    hall = _load(config_file).hall.id
    table = Table(title=f"MQTT topics of hall {hall} (details: mqtt_topics.md)")
    table.add_column("topic", no_wrap=True)
    for column in ("publisher", "subscribers", "QoS", "retained", "payload"):
        table.add_column(column)
    for spec in ALL_TOPICS:
        table.add_row(
            spec.pattern.replace("{hall}", hall),
            spec.publisher,
            spec.subscribers,
            str(spec.qos),
            "yes" if spec.retained else "no",
            spec.payload_name,
        )
    console = Console()
    console.print(table)
    console.print(f"watch everything: mosquitto_sub -v -t 'hallq/v1/{hall}/#'")


@main.command()
@config_option
@click.option(
    "--operator",
    "operators",
    multiple=True,
    default=["operator"],
    show_default=True,
    help="read-only broker user(s) for hallq status / doctor",
)
def acl(config_file: Path, operators: tuple[str, ...]) -> None:
    """Print the hall broker's acl_file: each login publishes only its own role's topics."""
    from hallq.acl import hall_acl
    from hallq.errors import TopicError

    try:
        click.echo(hall_acl(_load(config_file), tuple(operators)), nl=False)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="--operator") from None


@main.command()
@config_option
@click.option(
    "--out",
    "out",
    required=True,
    # absolute: openssl runs in the directories it fills, and was given paths relative
    # to where the command started
    type=click.Path(path_type=Path, file_okay=False, resolve_path=True),
    help="directory for the CA, the broker's files and each device's credentials",
)
@click.option(
    "--rotate",
    multiple=True,
    metavar="CLIENT",
    help="give this client a new password (repeatable); the others are kept",
)
@click.option(
    "--listen",
    "port",
    default=None,
    type=int,
    help="the broker's TLS port on the hall LAN [default: broker.url's port where it is "
    "mqtts://, else 8883]",
)
@click.option("--bind", default=None, help="the address the broker listens on (default: all)")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="another name or address of the broker for its certificate (repeatable; "
    "broker.url's host, localhost and 127.0.0.1 are always in)",
)
@click.option(
    "--run-as", default=None, help="the user Mosquitto runs as (its `user` option; test rigs only)"
)
@click.option(
    "--client-certs",
    is_flag=True,
    help="also a certificate per client from the hall CA, which the broker demands",
)
@click.option(
    "--operator",
    "operators",
    multiple=True,
    default=["operator"],
    show_default=True,
    help="read-only broker user(s) for hallq status / doctor",
)
def provision(
    config_file: Path,
    out: Path,
    rotate: tuple[str, ...],
    port: int | None,
    bind: str | None,
    hosts: tuple[str, ...],
    run_as: str | None,
    client_certs: bool,
    operators: tuple[str, ...],
) -> None:
    """Credentials for every client of the hall, the ACL and the broker config (TLS, no
    anonymous access, login bound to client id). Run again to add or --rotate clients."""
    from hallqctl.provision import ProvisionError
    from hallqctl.provision import provision as run

    cfg = _load(config_file)
    if port is None:  # the hall file's port, where it names a TLS one: a rerun keeps it
        port = cfg.broker.port if cfg.broker.url.startswith("mqtts://") else 8883
    try:
        with _writing("--out"):
            done = run(
                cfg,
                out,
                rotate=rotate,
                port=port,
                bind=bind,
                hosts=hosts,
                run_as=run_as,
                client_certs=client_certs,
                operators=operators,
            )
    except ProvisionError as exc:
        click.echo(f"hallq provision: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(done.summary())
    click.echo(
        f"next: broker  -> install {out}/broker/mosquitto.conf as "
        "/etc/mosquitto/conf.d/hallq.conf, then `systemctl restart mosquitto` (a new "
        "listener needs a restart; after --rotate alone, `reload` will do)\n"
        f"      each Pi -> copy {out}/devices/<id>/ to /etc/hallq/credentials/<id>/ and set "
        f'broker.url = "mqtts://{cfg.broker.host}:{port}", '
        'broker.credentials_dir = "/etc/hallq/credentials" in the hall file'
    )


def _need_role(extra: str, *modules: str, installed: tuple[str, ...] = ()) -> None:
    """A role's command on a machine installed without that role: say which extra to add.
    ``installed``: packages only looked for, not imported (what a service imports after
    it is serving, so its start does not wait for them)."""
    import importlib
    import importlib.util

    missing = next((name for name in installed if importlib.util.find_spec(name) is None), None)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = exc.name
            break
    if missing is not None:
        click.echo(
            f"this needs hallq's `{extra}` role, and {missing} is not installed: "
            f"pip install 'hallq[{extra}]'",
            err=True,
        )
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    from hallq.logsetup import setup_logging

    setup_logging(level)


def _run_until_signalled(coro_factory: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run the service; SIGTERM/SIGINT cancel it so it shuts down cleanly (offline status),
    within a bounded time (hallqctl.runner)."""
    from hallqctl.runner import run_bounded

    run_bounded(coro_factory)


@main.command()
@config_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path),
    default=None,
    help="event log (SQLite); default: coordinator.log_path or the state dir",
)
@click.option(
    "--dispatch",
    type=click.Choice(["auto", "compiled", "pure"]),
    default=None,
    help="dispatch core to use (default: HALLQ_DISPATCH or auto)",
)
def coordinator(config_file: Path, log_path: Path | None, dispatch: str | None) -> None:
    """Run the hall's queue coordinator (the only writer of its queue state)."""
    import os

    _need_role("coordinator", "coordinator.service", installed=("aiohttp",))
    from coordinator.eventlog import LogInUse, LogUnwritable
    from coordinator.service import serve

    cfg = _load(config_file)
    _setup_logging(cfg.runtime.log_level)
    kind = dispatch or os.environ.get("HALLQ_DISPATCH", "auto")
    try:
        _run_until_signalled(lambda: serve(cfg, log_path=log_path, dispatch=kind))
    except (LogInUse, LogUnwritable) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def user() -> None:
    """Supervisor desk users: argon2id hashes in the hall's users file, never a password."""


def _users_file(cfg: HallConfig) -> Path:
    path = cfg.web.users_file
    if path is None:  # only when the config came from text, never from `--config`
        raise click.UsageError("set [web] users_file in the hall file")
    return path


# a hall's users file (--config) or one of its own (the bureau's dashboard has no hall file)
users_target = _stack(
    click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        default=None,
        help="the hall's TOML file: its [web] users_file",
    ),
    click.option(
        "--users-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="a users file of its own instead of a hall's (e.g. `hallq bureau --users`)",
    ),
)


def _target(config_file: Path | None, users_file: Path | None) -> tuple[Path, list[Any], str, Any]:
    """The users file, the users the hall file itself defines, where those live, and the
    hall (None with --users-file)."""
    if (config_file is None) == (users_file is None):
        raise click.UsageError("give --config (a hall's desk users) or --users-file")
    if users_file is not None:
        return users_file, [], "", None
    assert config_file is not None
    cfg = _load(config_file)
    return _users_file(cfg), list(cfg.web.users), str(config_file), cfg


def _read_password(stdin: bool) -> str:
    import sys

    from coordinator.web.users import MIN_PASSWORD

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise click.UsageError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def _save_user(
    target: tuple[Path, list[Any], str, Any],
    name: str,
    role: str | None,
    stdin: bool,
    must_exist: bool,
) -> None:
    from coordinator.web.users import (
        User,
        UsersFileError,
        hash_password,
        read_users_file,
        write_users_file,
    )
    from hallq.errors import TopicError
    from hallq.topics import check_id

    try:
        check_id(name, "user name")
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    path, defined, where, cfg = target
    taken = cfg.device_login(name) if cfg is not None else None
    if taken is not None:  # such a user is not loaded (Directory): a new password is no use
        then = (
            f"the desk ignores this user: `hallq user remove {name}`, then add them under "
            "another name"
            if must_exist
            else "choose another name"
        )
        raise click.BadParameter(f"{name!r} {taken}; {then}", param_hint="NAME")
    if any(u.name == name for u in defined):
        raise click.UsageError(
            f"user {name!r} is defined in {where} ([[web.users]]); change it there"
        )
    try:
        users = read_users_file(path)
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    old = next((u for u in users if u.name == name), None)
    if must_exist and old is None:
        raise click.UsageError(f"no user {name!r} in {path}")
    if not must_exist and old is not None:
        raise click.UsageError(
            f"user {name!r} already exists in {path}; "
            f"`hallq user passwd {name}` sets a new password"
        )
    new_role = role or (old.role if old else "viewer")
    user = User(name, new_role, hash_password(_read_password(stdin)))
    write_users_file(path, [u for u in users if u.name != name] + [user])
    click.echo(
        f"{'updated' if old else 'added'} {name} ({new_role}) in {path}; it counts from the "
        "next login (no restart)"
    )


password_stdin = click.option(
    "--password-stdin",
    "stdin",
    is_flag=True,
    help="read the password from one line of standard input",
)


@user.command("add")
@users_target
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["supervisor", "viewer"]),
    required=True,
    help="supervisor: may act; viewer: may only look",
)
@password_stdin
def user_add(
    config_file: Path | None, users_file: Path | None, name: str, role: str, stdin: bool
) -> None:
    """Add user NAME to the users file (asks for the password twice)."""
    _save_user(_target(config_file, users_file), name, role, stdin, must_exist=False)


@user.command("passwd")
@users_target
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["supervisor", "viewer"]), default=None, help="change the role too"
)
@password_stdin
def user_passwd(
    config_file: Path | None, users_file: Path | None, name: str, role: str | None, stdin: bool
) -> None:
    """Set a new password for NAME (their open sessions end if the role changes)."""
    _save_user(_target(config_file, users_file), name, role, stdin, must_exist=True)


@user.command("remove")
@users_target
@click.argument("name")
def user_remove(config_file: Path | None, users_file: Path | None, name: str) -> None:
    """Remove NAME from the users file; their sessions end at their next request."""
    from coordinator.web.users import UsersFileError, read_users_file, write_users_file

    path = _target(config_file, users_file)[0]
    try:
        users = read_users_file(path)
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not any(u.name == name for u in users):
        raise click.UsageError(f"no user {name!r} in {path}")
    write_users_file(path, [u for u in users if u.name != name])
    click.echo(f"removed {name} from {path}")


@user.command("list")
@users_target
def user_list(config_file: Path | None, users_file: Path | None) -> None:
    """Every user, their role and where they are defined (never a hash)."""
    from coordinator.web.users import UsersFileError, read_users_file

    path, defined, where, _ = _target(config_file, users_file)
    for u in defined:
        click.echo(f"{u.name}\t{u.role}\t{where}")
    try:
        for fu in read_users_file(path):
            click.echo(f"{fu.name}\t{fu.role}\t{path}")
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@config_option
@click.option("--device", "agent_id", required=True, help="the agent id from the hall file")
@sim_dir_option
@click.option(
    "--simulate-all",
    is_flag=True,
    help="treat every serial port as simulated (the demo; needs --sim-dir)",
)
def agent(config_file: Path, agent_id: str, sim_dir: Path | None, simulate_all: bool) -> None:
    """Run the agent of one Pi: its devices, wired to the hall's bus."""
    from hallqctl.launch import run_agent_process, skip_pydantic_plugins

    skip_pydantic_plugins()
    cfg = _load(config_file)
    _agent(cfg, agent_id)
    from hallq.config import ID_KEY_FIX

    if (missing := cfg.missing_id_key(agent_id)) is not None:
        raise click.ClickException(f"{missing}: {ID_KEY_FIX}")  # not ten tracebacks
    if simulate_all and sim_dir is None:
        raise click.BadParameter("--simulate-all needs --sim-dir", param_hint="--sim-dir")
    run_agent_process(cfg, agent_id, sim_dir, simulate_all)


@main.command("sim-devices")
@config_option
@click.option("--device", "agent_id", required=True, help="the agent id from the hall file")
@click.option(
    "--sim-dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="where the pty links are made (the agent's --sim-dir)",
)
def sim_devices(config_file: Path, agent_id: str, sim_dir: Path) -> None:
    """Simulate one agent's serial devices on ptys; type commands to press keys (help)."""
    import asyncio

    from edge.hall_devices import serial_devices
    from firmware_bridge.sim.__main__ import serve
    from firmware_bridge.sim.hall import simulate_devices

    cfg = _load(config_file)
    agent = _agent(cfg, agent_id)
    try:
        hall = simulate_devices(serial_devices(agent.devices), sim_dir)
    except OSError as exc:
        raise click.ClickException(f"--sim-dir {sim_dir}: {exc.strerror or exc}") from None
    if not hall.buses and not hall.printers:
        kinds = ", ".join(sorted({d.kind for d in agent.devices})) or "none"
        click.echo(f"{agent_id} has no serial device to simulate (its devices: {kinds})")
        return
    try:
        asyncio.run(serve(hall))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


@main.command()
@example_config_option
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=3600),
    default=60.0,
    show_default=True,
    help="hall clock runs this many times faster than real time",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="stop after this many seconds of wall time and print the KPIs",
)
@click.option(
    "--volume",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="taxpayers arriving over the day (default: the calibrated filing-period day)",
)
@click.option(
    "--broker",
    "broker_url",
    default=None,
    help="join this MQTT broker on purpose (default: a private one the demo starts: "
    "Mosquitto if installed, else an embedded broker; never the hall file's)",
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="the dashboard's port (default: the hall file's, or a free one when that is "
    "taken; 0 turns it off)",
)
@click.option(
    "--start",
    "after_open_min",
    type=click.FloatRange(-60, 600),
    default=60.0,
    show_default=True,
    help="minutes after the hall opens when the demo's day begins (10:00 in the example "
    "hall: its hour runs into the morning peak of a filing-period day)",
)
def demo(
    config_file: Path | None,
    speed: float,
    duration: float | None,
    volume: int | None,
    broker_url: str | None,
    http_port: int | None,
    after_open_min: float,
) -> None:
    """A whole hall, simulated on this machine: coordinator, agents, devices, traffic."""
    import logging

    _need_role("demo", "coordinator.service", "coordinator.web.server", "edge.agent", "edge.panels")
    from hallq.examples import example_hall
    from hallqctl.demo import DemoError, run_demo

    path = config_file or example_hall()
    _load(path)  # a bad file fails here with its message, before anything starts
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    extra: dict[str, Any] = {} if volume is None else {"volume": volume}
    try:
        _run_until_signalled(
            lambda: run_demo(
                path,
                speed=speed,
                duration=duration,
                broker_url=broker_url,
                http_port=http_port,
                after_open_min=after_open_min,
                **extra,
            )
        )
    except DemoError as exc:
        if not exc.reported:
            click.echo(f"hallq demo: error: {exc}", err=True)
        raise SystemExit(1) from None


@main.command()
@config_option
@click.option(
    "--device",
    "agent_id",
    default=None,
    help="check this agent's hardware (default: the agents whose host is this machine)",
)
@sim_dir_option
def doctor(config_file: Path, agent_id: str | None, sim_dir: Path | None) -> None:
    """Check this machine for what the hall needs: ports, devices, broker, clock, disk."""
    import asyncio

    from hallqctl.doctor import exit_code, render_checks, run_doctor

    cfg = _load(config_file)
    if agent_id is not None:
        _agent(cfg, agent_id)
    checks = asyncio.run(run_doctor(cfg, agent_id, sim_dir=sim_dir))
    render_checks(checks)
    raise SystemExit(exit_code(checks))


@main.command()
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.2, max=60),
    default=2.0,
    show_default=True,
    help="seconds to collect retained presence and health",
)
def status(config_file: Path, timeout: float) -> None:
    """Every device's presence, health and last seen, from the broker's retained topics."""
    import asyncio

    from hallqctl.status import (
        StatusUnavailable,
        city_link_line,
        collect_status,
        render_status,
        status_advice,
        status_caveat,
        status_exit_code,
    )

    cfg = _load(config_file)
    city = city_link_line(cfg)
    try:
        rows = asyncio.run(collect_status(cfg, timeout=timeout))
    except StatusUnavailable as exc:
        click.echo(str(exc), err=True)
        if city:
            click.echo(city, err=True)
        raise SystemExit(2) from None
    if note := status_caveat(cfg):
        click.echo(note, err=True)
    render_status(rows, tz=cfg.hall.tzinfo)
    for line in status_advice(rows):
        click.echo(line, err=True)
    if city:
        click.echo(city)
    raise SystemExit(status_exit_code(rows))


@main.command()
@example_config_option
@day_options
@click.option("--replications", "-r", type=click.IntRange(1, 1000), default=10, show_default=True)
@seed_option
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(["fifo", "hallq", "pool"]),
    help="policies to compare (default: all three)",
)
@click.option(
    "--dispatch", type=click.Choice(["auto", "compiled", "pure"]), default="auto", show_default=True
)
@click.option(
    "--no-show",
    type=click.FloatRange(0, 0.5),
    default=0.0,
    show_default=True,
    help="share of taxpayers who leave before being called",
)
@click.option(
    "--transfer",
    type=click.FloatRange(0, 0.5),
    default=0.0,
    show_default=True,
    help="share of taxpayers the first window sends on to another service",
)
@click.option(
    "--appointments",
    type=click.FloatRange(0, 0.5),
    default=0.0,
    show_default=True,
    help="share of taxpayers who booked a half-hour slot",
)
@click.option(
    "--engine",
    "through_engine",
    is_flag=True,
    help="play every step through the engine's commands (the reference; ~400x "
    "slower than the compiled day loop, same waits)",
)
@click.option(
    "--chart",
    type=OUT_FILE,
    default=None,
    help="write a PNG of queue length and wait over the day here",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@history_options
def simulate(
    config_file: Path | None,
    volume: float | None,
    day_of_month: int | None,
    replications: int,
    seed: int,
    policies: tuple[str, ...],
    dispatch: str,
    no_show: float,
    transfer: float,
    appointments: float,
    through_engine: bool,
    chart: Path | None,
    as_json: bool,
    history: Path | None,
    history_since: Any,
) -> None:
    """Simulate hall days on the real engine and compare staffing policies."""
    from rich.console import Console
    from rich.progress import Progress

    from coordinator.simulation import (
        CALIBRATED_VOLUME,
        POLICIES,
        render_report,
        run_simulation,
        save_chart,
    )
    from hallq.examples import example_hall

    cfg = _load(config_file or example_hall())
    console = Console(stderr=as_json)
    if history_since is not None and history is None:
        raise click.BadParameter("needs --history", param_hint="--history-since")
    demand = _learned_demand(cfg, history, history_since, dispatch, console)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating hall days", total=None)
        report = run_simulation(
            cfg,
            volume=volume or CALIBRATED_VOLUME,
            day_of_month=day_of_month,
            replications=replications,
            seed=seed,
            policies=policies or POLICIES,
            core_kind=dispatch,
            no_show=no_show,
            transfer=transfer,
            appointments=appointments,
            demand=demand,
            engine=through_engine,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if chart is not None:
        with _writing("--chart"):
            save_chart(report, chart)
        console.print(f"chart: {chart}")
    if as_json:
        click.echo(report.to_json())
    else:
        console.print(render_report(report))


@main.command()
@example_config_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="the coordinator's event log; a generated history when not given or short",
)
@click.option(
    "--months",
    type=click.IntRange(2, 60),
    default=6,
    show_default=True,
    help="length of a generated history",
)
@seed_option
@click.option("--days", type=click.IntRange(1, 92), default=30, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="first forecast day (default: today)",
)
@click.option(
    "--evaluate",
    "holdout",
    type=click.IntRange(0, 12),
    default=0,
    help="score the last N months of the history against seasonal-naive",
)
@click.option("--csv", "csv_path", type=OUT_FILE, default=None)
@click.option("--png", "png_path", type=OUT_FILE, default=None)
def forecast(
    config_file: Path | None,
    log_path: Path | None,
    months: int,
    seed: int,
    days: int,
    start: Any,
    holdout: int,
    csv_path: Path | None,
    png_path: Path | None,
) -> None:
    """办税舒适度指数: forecast arrivals by hour and class them 较少 / 适中 / 较多."""
    import datetime as dt
    import sqlite3

    from rich.console import Console

    from coordinator.forecast import (
        arrival_counts,
        build_forecast,
        evaluate,
        export_csv,
        export_png,
        generate_history,
        render_forecast,
    )
    from hallq.examples import example_hall

    cfg = _load(config_file or example_hall())
    console = Console()
    try:
        fc = build_forecast(
            cfg,
            log_path=log_path,
            months_synthetic=months,
            seed=seed,
            days=days,
            start=start.date() if start else None,
        )
        history = (
            arrival_counts(log_path, cfg)
            if holdout and log_path is not None and fc.source.startswith("event log")
            else None
        )
    except sqlite3.DatabaseError as exc:  # as simulate --history says it
        raise click.BadParameter(
            f"{log_path}: not a hallq event log ({exc})", param_hint="--log"
        ) from None
    console.print(render_forecast(fc))
    if holdout:
        if history is None:
            history = generate_history(cfg, months, seed, end=fc.start - dt.timedelta(days=1))
        for line in evaluate(cfg, history, holdout_months=holdout).lines():
            console.print(line)
    if csv_path is not None:
        with _writing("--csv"):
            console.print(f"wrote {export_csv(fc, csv_path)}")
    if png_path is not None:
        with _writing("--png"):
            console.print(f"wrote {export_png(fc, png_path)}")


dsn_option = click.option(
    "--dsn",
    envvar="HALLQ_CITY_DSN",
    required=True,
    help="the city PostgreSQL (libpq connection string or URL; or HALLQ_CITY_DSN). Keep the "
    "password out of it: PGPASSWORD or ~/.pgpass",
)


@main.command()
@config_option
@dsn_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path),
    default=None,
    help="event log (SQLite); default: coordinator.log_path or the state dir",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=5000,
    show_default=True,
    help="most entries per COPY transaction",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(min=1),
    default=None,
    help="most entries per second while catching up (default: no limit)",
)
def ship(
    config_file: Path, dsn: str, log_path: Path | None, batch: int, max_rate: float | None
) -> None:
    """Ship the hall's event log to the city's PostgreSQL (its own process; the hall keeps
    serving whatever happens to the city link)."""
    import signal
    import threading

    from city.ship import Shipper, import_psycopg
    from coordinator.service import default_log_path

    import_psycopg()
    cfg = _load(config_file)
    _setup_logging(cfg.runtime.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from hallq.sdnotify import Notifier

    shipper = Shipper(
        cfg.hall.id, log_path or default_log_path(cfg), dsn, batch=batch, max_rate=max_rate
    )
    try:
        shipper.run(stop, notifier=Notifier.from_env())
    except Exception as exc:
        from city.migrate import MigrationError

        if isinstance(exc, MigrationError):
            click.echo(str(exc), err=True)
            raise SystemExit(2) from None
        raise
    finally:
        shipper.close()


@main.command("broker-watch")
@config_option
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="seconds between probes",
)
@click.option(
    "--timeout",
    "probe_timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="seconds a probe waits for the CONNACK",
)
@click.option(
    "--misses",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="silent probes in a row that make the broker count as hung",
)
def broker_watch(config_file: Path, every: float, probe_timeout: float, misses: int) -> None:
    """Watch the hall's broker for a hang (connections accepted, never answered) and exit
    with status 3 when it is hung, for systemd to restart it (hallq-broker-watch.service)."""
    import asyncio

    from hallq.bus import broker_tls_context
    from hallq.sdnotify import Notifier, watchdog
    from hallqctl.brokerwatch import HUNG_EXIT, Probe, watch

    cfg = _load(config_file)
    _setup_logging(cfg.runtime.log_level)
    notifier = Notifier.from_env()

    def seen(result: Probe) -> None:
        notifier.status(f"broker {cfg.broker.url}: {result.reason}")

    async def run() -> str:
        notifier.ready(f"watching {cfg.broker.url}")
        pings = asyncio.create_task(watchdog(notifier))
        try:
            return await watch(
                cfg.broker,
                every=every,
                answer_within=probe_timeout,
                misses=misses,
                tls=broker_tls_context(cfg.broker),
                on_probe=seen,
            )
        finally:
            pings.cancel()

    try:
        verdict = asyncio.run(run())
    except KeyboardInterrupt:
        return
    notifier.stopping(verdict)
    click.echo(verdict, err=True)
    raise SystemExit(HUNG_EXIT)


@main.command()
@config_option
@click.option(
    "--city",
    "city_nodes",
    envvar="HALLQ_CITY_BROKERS",
    required=True,
    help="the city broker's nodes, host:port,host:port,... (MQTT over TLS)",
)
@click.option(
    "--cafile",
    type=click.Path(path_type=Path),
    default=None,
    help="the CA certificate that signed the city nodes' certificates",
)
@click.option("--username", default=None, help="this hall's city user (default hall-<hall id>)")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="file holding this hall's city password (or HALLQ_CITY_BRIDGE_PASSWORD)",
)
@click.option(
    "--certfile",
    type=click.Path(path_type=Path),
    default=None,
    help="client certificate, where the city asks for one",
)
@click.option("--keyfile", type=click.Path(path_type=Path), default=None)
@click.option(
    "--nats-user",
    "password_hash",
    default=None,
    metavar="BCRYPT_HASH",
    help="print instead the city NATS server's user entry for this hall, with this password hash",
)
def bridge(
    config_file: Path,
    city_nodes: str,
    cafile: Path | None,
    username: str | None,
    password_file: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    password_hash: str | None,
) -> None:
    """Run the hall's bridge to the city broker (its own process, login `city-bridge` on
    the hall broker): the hall's public summaries (queues, waits, KPIs, comfort, windows)
    outbound only, never commands or identities; the nearby halls' queues in."""
    import asyncio
    import os
    import signal

    from city.bridge import BridgeError, CityBridge, city_broker, nats_user

    cfg = _load(config_file)
    user = username or f"hall-{cfg.hall.id}"
    nearby = [n.hall for n in cfg.city.nearby]
    if password_hash is not None:
        click.echo(nats_user(cfg.hall.id, user, password_hash, nearby))
        return
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get("HALLQ_CITY_BRIDGE_PASSWORD", "")
    try:
        city = city_broker(
            city_nodes,
            cafile=cafile,
            username=user,
            password=password,
            certfile=certfile,
            keyfile=keyfile,
        )
    except BridgeError as exc:
        click.echo(f"hallq bridge: {exc}", err=True)
        raise SystemExit(2) from None
    _setup_logging(cfg.runtime.log_level)

    from hallq.sdnotify import Notifier

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        notifier = Notifier.from_env()

        async def watchdog() -> None:  # from the event loop: a stuck loop stops the pings
            while True:
                notifier.ping()
                await asyncio.sleep(20)

        notifier.ready("bridging to the city")  # at once: nothing waits for the city
        pinging = asyncio.create_task(watchdog())
        try:
            await CityBridge(cfg.hall.id, cfg.broker, city, nearby).run(stop)
        finally:
            pinging.cancel()
            notifier.stopping()

    asyncio.run(serve())


@main.group()
def city() -> None:
    """The city level: the central PostgreSQL the halls ship to."""


@city.command("migrate")
@dsn_option
def city_migrate(dsn: str) -> None:
    """Bring the city database's schema up to this hallq's (numbered SQL files, in order)."""
    from city.migrate import MigrationError, migrate
    from city.ship import import_psycopg

    psycopg = import_psycopg()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            done = migrate(conn)
    except (psycopg.Error, MigrationError) as exc:
        click.echo(f"city migrate: {exc}", err=True)
        raise SystemExit(2) from None
    for m in done:
        click.echo(f"applied {m.version:04d}_{m.name}")
    if not done:
        click.echo("the city database is current")


@city.command("add-hall")
@dsn_option
@click.argument("hall_id", metavar="HALL")
@click.option("--role", default=None, help="its login role (default: hall_<HALL>)")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="set this password on the role (or HALLQ_CITY_HALL_PASSWORD; none: certificate "
    "or pg_hba authentication only)",
)
def city_add_hall(dsn: str, hall_id: str, role: str | None, password_file: Path | None) -> None:
    """Make HALL's shipper login: a role that may write only HALL's events and cursor."""
    import os

    from city.migrate import MigrationError, add_hall
    from city.ship import import_psycopg
    from hallq.errors import TopicError

    psycopg = import_psycopg()
    name = role or f"hall_{hall_id.replace('-', '_')}"
    password = (
        password_file.read_text(encoding="utf-8").strip()
        if password_file
        else os.environ.get("HALLQ_CITY_HALL_PASSWORD")
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            made = add_hall(conn, hall_id, name, password)
    except (psycopg.Error, MigrationError, TopicError) as exc:
        click.echo(f"city add-hall: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(
        f"{'made' if made else 'updated'} role {name}: it may ship hall {hall_id} only "
        f'(HALLQ_CITY_DSN="... user={name}" hallq ship ...)'
    )


@city.command("rollup")
@dsn_option
@click.option(
    "--day",
    "days",
    multiple=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="business day to (re)compute; default: yesterday and today",
)
@click.option(
    "--tz",
    default="Asia/Shanghai",
    show_default=True,
    help="the halls' time zone, for the hour of the day",
)
def city_rollup(dsn: str, days: tuple[dt.datetime, ...], tz: str) -> None:
    """Roll the shipped events of a day up into the bureau's hourly KPIs (idempotent)."""
    import datetime as dt_
    from zoneinfo import ZoneInfo

    from city.ship import import_psycopg

    psycopg = import_psycopg()
    today = dt_.datetime.now(ZoneInfo(tz)).date()
    wanted = [d.date() for d in days] or [today - dt_.timedelta(days=1), today]
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for day in wanted:
                row = conn.execute("SELECT hallq_rollup_day(%s, %s)", (day, tz)).fetchone()
                click.echo(f"{day}: {row[0] if row else 0} hourly row(s)")
    except psycopg.Error as exc:
        click.echo(f"city rollup: {exc}", err=True)
        raise SystemExit(2) from None


@main.command()
@click.option(
    "--dsn",
    envvar="HALLQ_CITY_DSN",
    default=None,
    help="the city PostgreSQL, for KPIs and the comfort index (or HALLQ_CITY_DSN)",
)
@click.option(
    "--city",
    "city_nodes",
    envvar="HALLQ_CITY_BROKERS",
    default="",
    help="the city broker's nodes, host:port,... for the live view",
)
@click.option(
    "--cafile",
    type=click.Path(path_type=Path),
    default=None,
    help="CA of the city broker's TLS certificates (none: plain MQTT)",
)
@click.option("--username", default="bureau", show_default=True)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the bureau user's password (or HALLQ_CITY_BUREAU_PASSWORD)",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True)
@click.option(
    "--halls",
    "city_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="the city file: [[halls]] id, name, district, grid = [column, row] (the map's cells)",
)
@click.option(
    "--users",
    "users_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="who may log in: [[users]] name, role, password_hash (argon2id, as `hallq user add` "
    "writes); without it the dashboard is open",
)
def bureau(
    dsn: str | None,
    city_nodes: str,
    cafile: Path | None,
    username: str,
    password_file: Path | None,
    host: str,
    port: int,
    city_file: Path | None,
    users_file: Path | None,
) -> None:
    """The city dashboard: every hall's live load, the quietest hall per service, KPIs
    by hall/day/service/hour and the monthly comfort index (CSV, PNG)."""
    import asyncio
    import os

    from city.bureau import CityBrokerLink, CityMapError, load_city_map, serve

    try:
        places = load_city_map(city_file) if city_file is not None else None
    except CityMapError as exc:
        raise click.BadParameter(str(exc), param_hint="--halls") from None

    password = (
        password_file.read_text(encoding="utf-8").strip()
        if password_file
        else os.environ.get("HALLQ_CITY_BUREAU_PASSWORD")
    )
    links = []
    for node in filter(None, (n.strip() for n in city_nodes.split(","))):
        h, _, p = node.rpartition(":")
        if not h or not p.isdigit():
            raise click.BadParameter(f"{node!r}: give each node as host:port", param_hint="--city")
        links.append(CityBrokerLink(h, int(p), username, password, cafile))
    _setup_logging("INFO")
    click.echo(f"bureau dashboard on http://{host}:{port}/")

    async def run() -> None:
        await serve(host, port, links, dsn, asyncio.Event(), places, users_file)

    _run_until_signalled(run)


@main.command()
@click.argument("config_arg", metavar="[CONFIG]", required=False, type=click.Path(path_type=Path))
@example_config_option
@day_options
@click.option(
    "--staff-limit",
    type=click.IntRange(min=1),
    default=None,
    help="windows open at the most (default: every configured window)",
)
@click.option("--replications", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--search-days",
    type=click.IntRange(min=1),
    default=None,
    help="days, drawn apart from the reported ones, each candidate is played on",
)
@click.option(
    "--rounds", type=click.IntRange(min=0), default=6, show_default=True, help="moves kept at most"
)
@seed_option
@click.option(
    "--core",
    type=click.Choice(["auto", "compiled", "pure"]),
    default="auto",
    show_default=True,
    help="dispatch core the simulated days run on",
)
@click.option("--no-live", is_flag=True, help="skip the live-advice variant")
@history_options
@click.option("--json", "as_json", is_flag=True, help="print the plan and bar as JSON")
@click.option("--verbose", is_flag=True, help="log the search's steps to stderr")
def advise(
    config_arg: Path | None,
    config_file: Path | None,
    volume: float | None,
    day_of_month: int | None,
    staff_limit: int | None,
    replications: int,
    search_days: int | None,
    rounds: int,
    seed: int,
    core: str,
    no_live: bool,
    history: Path | None,
    history_since: Any,
    as_json: bool,
    verbose: bool,
) -> None:
    """快速办理专窗: plan express-window staffing for a day of CONFIG's hall (or --config's;
    default the example Liwan hall), and measure it (with live advice) against per-service
    FIFO on the same simulated days."""
    import json
    import time
    from dataclasses import asdict

    from rich.console import Console

    from coordinator.advice.bar import bar_rows
    from coordinator.advice.plan import SEARCH_DAYS, plan_day
    from coordinator.simulation.profile import CALIBRATED_VOLUME
    from hallq.examples import example_hall

    started = time.perf_counter()
    if config_arg is not None and config_file is not None and config_arg != config_file:
        raise click.UsageError("give the hall file once: CONFIG or --config")
    cfg = _load(config_arg or config_file or example_hall())
    if history_since is not None and history is None:
        raise click.BadParameter("needs --history", param_hint="--history-since")
    console = Console(stderr=True)
    demand = _learned_demand(cfg, history, history_since, core, console)
    # a spinner where nobody reads the steps (they scroll past under --verbose)
    planning = contextlib.nullcontext() if verbose else console.status("planning the day…")
    with planning:
        plan = plan_day(
            cfg,
            volume=volume or CALIBRATED_VOLUME,
            day_of_month=day_of_month,
            staff_limit=staff_limit,
            replications=replications,
            seed=seed,
            core_kind=core,
            rounds=rounds,
            search_days=search_days or SEARCH_DAYS,
            live=not no_live,
            demand=demand,
            log=(lambda line: click.echo(line, err=True)) if verbose else None,
        )
    rows = bar_rows(plan)
    judged = rows[-1]  # the last variant: "advised" when live, else "planned"
    if as_json:
        click.echo(
            json.dumps(
                {
                    **plan.to_dict(),
                    "bar": [asdict(r) for r in rows],
                    "bar_variant": judged.variant,
                    "bar_met": judged.passes,
                    "wall_s": round(time.perf_counter() - started, 1),
                },
                ensure_ascii=False,
                default=lambda x: None,
            )
        )
        return
    click.echo(plan.render())
    click.echo("\n| variant | mean min | p95 min | green mean min | mean vs FIFO | p95 vs FIFO |")
    click.echo("|---|---|---|---|---|---|")
    for r in rows:
        click.echo(r.markdown())
    click.echo(
        f"\nbar (mean -25%, p95 -35%, green < 1 min) for {judged.name}: "
        f"{'met' if judged.passes else 'NOT met'}; {time.perf_counter() - started:.0f} s"
    )
    if len(cfg.sites) > 1:  # (hallq simulate and the forecast play each building apart)
        click.echo(
            f"note: this hall has {len(cfg.sites)} 办税点 ({', '.join(cfg.sites)}); the day "
            "plan plays them as one hall's queues, so its waits are those of a hall whose "
            "windows serve either building: `hallq simulate` gives each building's own (the "
            "live advice on the desk weighs each building's queue by its own windows)",
            err=True,
        )


def _learned_demand(
    cfg: HallConfig, history: Path | None, since: Any, core: str, console: Any
) -> Any:
    """``--history``: the demand learned from the event log (shown on ``console``), or None;
    a log that cannot be learned from is one line and exit 2."""
    if history is None:
        return None
    from coordinator.simulation.learn import LearnError, learn_demand, render_learned

    try:
        learned = learn_demand(history, cfg, core_kind=core, since=since.date() if since else None)
    except LearnError as exc:
        click.echo(f"--history: {exc}", err=True)
        raise SystemExit(2) from None
    console.print(render_learned(learned))
    return learned.demand


if __name__ == "__main__":
    main()
