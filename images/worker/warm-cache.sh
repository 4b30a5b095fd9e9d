#!/bin/sh
# Run at image build: start the gateway once, as entrypoint.sh will, so that Node's compile cache
# (NODE_COMPILE_CACHE) holds its compiled code and every boot skips that work. The state it leaves
# is removed; only the cache stays. A build where this cannot run still works, only boots slower.
set -eu
here=$(dirname "$0")
state=$(mktemp -d)
export OPENCLAW_STATE_DIR="$state" OPENCLAW_GATEWAY_PORT=18799
export FACTORY_OPENCLAW_MODEL=warm-up FACTORY_OPENCLAW_MODEL_BASE_URL=http://127.0.0.1:9/v1
. "$here/gateway_env.sh"
python "$here/gateway_config.py"
mkdir -p "$OPENCLAW_STATE_DIR/logs" "$OPENCLAW_HOME"
node "$OPENCLAW_ENTRY" gateway run >"$state/gateway.out" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 300); do
    if python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://127.0.0.1:$OPENCLAW_GATEWAY_PORT/readyz" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [ "$ready" = 1 ]; then
    echo "warm-cache: compile cache at $NODE_COMPILE_CACHE: $(du -sh "$NODE_COMPILE_CACHE" | cut -f1)" >&2
else
    echo "warm-cache: the gateway did not get ready; the image boots without a warm compile cache" >&2
    tail -n 20 "$state/gateway.out" >&2 || true
fi
rm -rf "$state"
