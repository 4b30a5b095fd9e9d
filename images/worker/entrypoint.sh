#!/bin/sh
# factory worker container: OpenClaw gateway on loopback + one `factory worker run`.
#
#   1. write the gateway config (gateway_config.py; secrets stay in the environment),
#   2. start the gateway with only what it needs (gateway_config.py exec: its token and model key,
#      never the store token or other credentials the container holds), its console output to a
#      file (it prints reply text),
#   3. wait for GET /readyz = 200 (FACTORY_GATEWAY_READY_TIMEOUT_S, default 120 s),
#   4. run the worker; SIGTERM/SIGINT go to the worker, which finishes or fails its job
#      within its grace period and exits; we wait for it, then stop the gateway,
#   5. exit with the worker's status (0 after an idle or drained exit: Fly then destroys the
#      machine, the droplet powers off).
#
# The platform's stop timeout (Fly stop_config / kill_timeout, systemd TimeoutStopSec) must exceed
# the worker's grace period, or the job is killed mid-flight.
set -eu
# Everything this container writes (gateway config, state, logs with conversation text) is private.
umask 077

# fly.toml's [processes] passes the process name as the command: "worker" (the default) or
# "serve", the front door (`factory serve`: no gateway, just the webhook and the app API).
if [ "${1:-}" = "serve" ]; then
    shift
    exec factory serve --host "${FACTORY_SERVE_HOST:-0.0.0.0}" "$@"
fi
if [ "${1:-}" = "worker" ]; then
    shift
fi

here=$(dirname "$0")
port=${OPENCLAW_GATEWAY_PORT:-18789}
ready_timeout=${FACTORY_GATEWAY_READY_TIMEOUT_S:-120}
export OPENCLAW_GATEWAY_PORT="$port"
export OPENCLAW_STATE_DIR="${OPENCLAW_STATE_DIR:-/data/openclaw}"
export OPENCLAW_CONFIG_PATH="${OPENCLAW_CONFIG_PATH:-$OPENCLAW_STATE_DIR/openclaw.json}"
export OPENCLAW_HOME="${OPENCLAW_HOME:-$OPENCLAW_STATE_DIR/home}"
# No mDNS, no self-update, no helper downloads: a worker talks to the model provider and the store only.
export OPENCLAW_OFFLINE=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1
# Without a heap cap the gateway's RSS keeps growing under load (lazy GC); 512 MB plateaus near 1.3 GB.
export NODE_OPTIONS="${NODE_OPTIONS:---max-old-space-size=512}"
# Loopback only, so a per-boot random token is enough; the generated config refers to it by name.
if [ -z "${FACTORY_OPENCLAW_GATEWAY_TOKEN:-}" ]; then
    FACTORY_OPENCLAW_GATEWAY_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(24))')
fi
export FACTORY_OPENCLAW_GATEWAY_TOKEN
# What the worker reads to reach the gateway.
export OPENCLAW_GATEWAY_URL="http://127.0.0.1:$port"
export OPENCLAW_GATEWAY_TOKEN="$FACTORY_OPENCLAW_GATEWAY_TOKEN"

gateway_pid=""
worker_pid=""
stopping=0

log() { echo "entrypoint: $*" >&2; }

on_signal() {
    stopping=1
    if [ -n "$worker_pid" ]; then
        log "stop requested: asking the worker to finish"
        kill -TERM "$worker_pid" 2>/dev/null || true
    fi
}
trap on_signal TERM INT

stop_gateway() {
    if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
}

python "$here/gateway_config.py"
mkdir -p "$OPENCLAW_STATE_DIR/logs" "$OPENCLAW_HOME"

python "$here/gateway_config.py" exec \
    node "${OPENCLAW_ENTRY:-/opt/openclaw/node_modules/openclaw/openclaw.mjs}" gateway run \
    >>"$OPENCLAW_STATE_DIR/logs/gateway.out" 2>&1 &
gateway_pid=$!

log "waiting for the gateway on port $port"
waited=0
until python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    if [ "$stopping" = 1 ]; then
        stop_gateway
        exit 143
    fi
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
        log "the gateway exited before it was ready; last lines of its log:"
        tail -n 40 "$OPENCLAW_STATE_DIR/logs/gateway.out" >&2 || true
        exit 1
    fi
    if [ "$waited" -ge "$ready_timeout" ]; then
        log "the gateway was not ready within ${ready_timeout}s"
        stop_gateway
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
log "gateway ready"

factory worker run "$@" &
worker_pid=$!
if [ "$stopping" = 1 ]; then
    kill -TERM "$worker_pid" 2>/dev/null || true  # a stop that arrived while we started it
fi

# `wait` returns early when a trapped signal arrives; keep waiting until the worker has exited.
status=0
while :; do
    set +e
    wait "$worker_pid"
    status=$?
    set -e
    kill -0 "$worker_pid" 2>/dev/null || break
done
log "worker exited with status $status"
stop_gateway
exit "$status"
