#!/bin/sh
# factory worker container: OpenClaw gateway on loopback + one `factory worker run`, started together.
#
#   0. a worker pinned to a conversation (FACTORY_CONVERSATION) prepares its agent first:
#      `factory worker prepare` restores the conversation's newest snapshot into the state
#      directory and writes the agent's workspace, before the gateway opens it,
#   1. write the gateway config (gateway_config.py; secrets stay in the environment),
#   2. start the gateway with only what it needs (gateway_config.py exec: its token and model key,
#      never the store token or other credentials the container holds; its console output to a
#      file: it prints reply text) and, at the same
#      time, the worker: the worker's start, its store connection and its registration overlap
#      the gateway's start, and it waits for the gateway's /readyz before its first claim
#      (FACTORY_GATEWAY_WAIT_S, default FACTORY_GATEWAY_READY_TIMEOUT_S = 120 s);
#   3. SIGTERM/SIGINT go to the worker, which finishes or fails its job within its grace period
#      and exits; a gateway that dies takes the worker down with it (TERM, so it drains);
#   4. stop the gateway and exit with the worker's status (0 after an idle or drained exit: Fly
#      then destroys the machine, or keeps it stopped for the warm pool; the droplet powers off).
#
# The gateway's compiled code comes from the Node compile cache warmed when the image was built
# (NODE_COMPILE_CACHE, warm-cache.sh). Every boot registers a worker of its own
# (FACTORY_WORKER_ID plus a per-boot suffix): a machine started again from the warm pool is a new
# worker on the same machine and launch.
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
. "$here/gateway_env.sh"
ready_timeout=${FACTORY_GATEWAY_READY_TIMEOUT_S:-120}
export FACTORY_GATEWAY_WAIT_S="${FACTORY_GATEWAY_WAIT_S:-$ready_timeout}"
# What the worker reads to reach the gateway.
export OPENCLAW_GATEWAY_URL="http://127.0.0.1:$port"
export OPENCLAW_GATEWAY_TOKEN="$FACTORY_OPENCLAW_GATEWAY_TOKEN"
boot=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
export FACTORY_WORKER_ID="${FACTORY_WORKER_ID:-worker}-$boot"

gateway_pid=""
worker_pid=""
stopping=0
gateway_gone=0

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

if [ -n "${FACTORY_CONVERSATION:-}" ]; then
    # Best effort: without a snapshot the worker seeds the session from the stored history.
    factory worker prepare || log "prepare failed; the agent starts without a snapshot"
fi
python "$here/gateway_config.py"
mkdir -p "$OPENCLAW_STATE_DIR/logs" "$OPENCLAW_HOME"

python "$here/gateway_config.py" exec \
    node "${OPENCLAW_ENTRY:-/opt/openclaw/node_modules/openclaw/openclaw.mjs}" gateway run \
    >>"$OPENCLAW_STATE_DIR/logs/gateway.out" 2>&1 &
gateway_pid=$!

# FACTORY_COMMAND=runtime: a Mission Control account's machine runs `factory runtime` (its agents'
# pinned workers inside it, ACCOUNT_ID / SERVICE_TOKEN from the env file) beside the gateway.
if [ "${FACTORY_COMMAND:-worker}" = "runtime" ]; then
    factory runtime "$@" &
else
    factory worker run "$@" &
fi
worker_pid=$!
log "gateway (pid $gateway_pid) and worker $FACTORY_WORKER_ID (pid $worker_pid) started"
if [ "$stopping" = 1 ]; then
    kill -TERM "$worker_pid" 2>/dev/null || true  # a stop that arrived while we started it
fi

ready() {
    python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://127.0.0.1:$port/readyz" 2>/dev/null
}

# Watch both until the worker has exited; `wait` on a short sleep returns at once for a signal.
gateway_ready=0
while kill -0 "$worker_pid" 2>/dev/null; do
    if [ "$gateway_gone" = 0 ] && ! kill -0 "$gateway_pid" 2>/dev/null; then
        gateway_gone=1
        if [ "$gateway_ready" = 0 ]; then
            log "the gateway exited before it was ready; stopping the worker. Last lines of its log:"
        else
            log "the gateway exited; stopping the worker. Last lines of its log:"
        fi
        tail -n 40 "$OPENCLAW_STATE_DIR/logs/gateway.out" >&2 || true
        kill -TERM "$worker_pid" 2>/dev/null || true
    elif [ "$gateway_ready" = 0 ] && ready; then
        gateway_ready=1
        log "gateway ready"
    fi
    sleep 1 &
    wait $! 2>/dev/null || true
done
set +e
wait "$worker_pid"
status=$?
set -e
log "worker exited with status $status"
stop_gateway
if [ "$gateway_gone" = 1 ]; then
    status=1  # the worker was stopped because its gateway died: the machine failed
fi
exit "$status"
