#!/usr/bin/env bash
# Install or update hallq on a Raspberry Pi (Raspberry Pi OS bookworm). Safe to run again.
#
#   sudo deploy/install-pi.sh --source /path/to/hallq [--server] [--agent ID]... [--no-start]
#
#   --source DIR   hallq source tree (or a wheel file) to pip install into /opt/hallq/venv
#   --server       this Pi is the hall server: install Mosquitto and the coordinator unit
#   --agent ID     enable hallq-agent@ID (repeat for several; ID = agent id in hall.toml)
#   --no-start     install and enable, but do not (re)start services now
#
# Afterwards: put the hall file at /etc/hallq/hall.toml and secrets in /etc/hallq/hallq.env,
# then run `sudo -u hallq /opt/hallq/venv/bin/hallq doctor --config /etc/hallq/hall.toml`.
set -euo pipefail

PREFIX=/opt/hallq
VENV="$PREFIX/venv"
ETC=/etc/hallq
PROVISION=/etc/mosquitto/hallq  # hallq provision --out: CA, broker files, every device's login
UNIT_DIR=/etc/systemd/system
SERVICE_USER=hallq
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

source_path=""
server=0
start=1
agents=()

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

log() { printf '==> %s\n' "$*"; }
die() { printf 'install-pi: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --source) source_path="${2:?--source needs a path}"; shift 2 ;;
        --server) server=1; shift ;;
        --agent) agents+=("${2:?--agent needs an agent id}"); shift 2 ;;
        --no-start) start=0; shift ;;
        -h | --help) usage 0 ;;
        *) printf 'unknown option: %s\n' "$1" >&2; usage 2 ;;
    esac
done

[[ $EUID -eq 0 ]] || die "run as root (sudo)"
[[ -n "$source_path" ]] || die "--source is required"
[[ -e "$source_path" ]] || die "--source $source_path does not exist"
for id in "${agents[@]}"; do
    [[ "$id" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]] || die "bad agent id: $id"
done

log "apt packages"
packages=(python3-venv python3-dev build-essential fonts-unifont espeak-ng alsa-utils liblgpio-dev)
if ((server)); then
    packages+=(mosquitto mosquitto-clients)
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

log "user $SERVICE_USER and its groups"
for group in dialout gpio spi audio; do
    getent group "$group" >/dev/null || groupadd --system "$group"
done
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \
        --user-group "$SERVICE_USER"
fi
usermod -aG dialout,gpio,spi,audio "$SERVICE_USER"

log "virtualenv $VENV"
install -d -m 0755 "$PREFIX"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
# Only what this Pi runs: agents get the agent role; the hall server the coordinator too,
# and only there is the dispatch core compiled (setup.py honours HALLQ_NO_CYTHON=1).
extras="agent,pi"
if ((server)); then
    extras="coordinator,agent,pi"
else
    export HALLQ_NO_CYTHON=1
fi
if [[ -d "$source_path" ]]; then
    target="$(cd "$source_path" && pwd)[$extras]"
else
    target="${source_path}[$extras]"
fi
# the same versions on every Pi of the hall
"$VENV/bin/pip" install --quiet --upgrade -c "$HERE/deploy/constraints.txt" "$target"
install -d -m 0755 "$PREFIX/docs"
if [[ -f "$HERE/docs/field-guide.md" ]]; then
    install -m 0644 "$HERE/docs/field-guide.md" "$PREFIX/docs/field-guide.md"
fi

log "config directory $ETC"
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
if [[ ! -e "$ETC/hallq.env" ]]; then
    install -m 0640 -o root -g "$SERVICE_USER" /dev/null "$ETC/hallq.env"
    printf '# HALLQ_ID_HASH_KEY= (the server, and a Pi with an ID card reader)\n' >"$ETC/hallq.env"
fi
[[ -f "$ETC/hall.toml" ]] || log "NOTE: copy the hall file to $ETC/hall.toml before starting"

log "systemd units"
install -m 0644 "$HERE/systemd/hallq-agent@.service" "$UNIT_DIR/hallq-agent@.service"
if ((server)); then
    install -m 0644 "$HERE/systemd/hallq-coordinator.service" "$UNIT_DIR/hallq-coordinator.service"
    install -m 0644 "$HERE/systemd/hallq-broker-watch.service" "$UNIT_DIR/hallq-broker-watch.service"
    # the city level (docs/city.md): installed, not enabled; the hall serves without them
    install -m 0644 "$HERE/systemd/hallq-bridge.service" "$UNIT_DIR/hallq-bridge.service"
    install -m 0644 "$HERE/systemd/hallq-ship.service" "$UNIT_DIR/hallq-ship.service"
    install -d -m 0755 "$UNIT_DIR/mosquitto.service.d" /etc/mosquitto/conf.d
    install -m 0644 "$HERE/systemd/mosquitto.service.d/hallq.conf" \
        "$UNIT_DIR/mosquitto.service.d/hallq.conf"
    if [[ -f "$ETC/hall.toml" ]]; then
        # every identity, the ACL, the hall CA and the broker config; a re-run keeps the
        # existing identities and adds new ones (docs/field-guide.md, SECURITY.md)
        "$VENV/bin/hallq" provision --config "$ETC/hall.toml" --out "$PROVISION"
        install -m 0644 "$PROVISION/broker/mosquitto.conf" /etc/mosquitto/conf.d/hallq.conf
        # this server's own clients: the coordinator, the operator (hallq status), the city
        # bridge (its login on the hall broker), its agents
        for id in coordinator operator city-bridge "${agents[@]}"; do
            [[ -d "$PROVISION/devices/$id" ]] || continue
            install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC/credentials/$id"
            for file in password ca.crt client.crt client.key; do
                [[ -f "$PROVISION/devices/$id/$file" ]] || continue
                install -m 0640 -o root -g "$SERVICE_USER" "$PROVISION/devices/$id/$file" \
                    "$ETC/credentials/$id/"
            done
        done
    else
        log "NOTE: no $ETC/hall.toml: the hall broker is not configured; run again after copying it"
    fi
fi
systemctl daemon-reload

log "enable services"
if ((server)); then
    systemctl enable mosquitto.service hallq-coordinator.service hallq-broker-watch.service
fi
for id in "${agents[@]}"; do
    systemctl enable "hallq-agent@$id.service"
done

if ((start)) && [[ -f "$ETC/hall.toml" ]]; then
    log "(re)start services"
    if ((server)); then
        systemctl restart mosquitto.service
        systemctl restart hallq-coordinator.service hallq-broker-watch.service
    fi
    for id in "${agents[@]}"; do
        systemctl restart "hallq-agent@$id.service"
    done
fi

log "done; check with: sudo -u $SERVICE_USER $VENV/bin/hallq doctor --config $ETC/hall.toml"
if ((server)); then
    log "device credentials: $PROVISION/devices/ID/ -> $ETC/credentials/ID/ on each Pi"
    log "city level (optional, docs/city.md): edit --city/--cafile in hallq-bridge.service and"
    log "  the city settings in $ETC/hallq.env, then: systemctl enable --now hallq-bridge hallq-ship"
fi
