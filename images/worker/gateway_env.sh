# The OpenClaw gateway's environment in the worker image; sourced by entrypoint.sh and warm-cache.sh,
# so the gateway warmed at build time runs exactly as it will at boot (the compile cache is only
# used by a node started with the same flags).

port=${OPENCLAW_GATEWAY_PORT:-18789}
export OPENCLAW_GATEWAY_PORT="$port"
export OPENCLAW_STATE_DIR="${OPENCLAW_STATE_DIR:-/data/openclaw}"
export OPENCLAW_CONFIG_PATH="${OPENCLAW_CONFIG_PATH:-$OPENCLAW_STATE_DIR/openclaw.json}"
export OPENCLAW_HOME="${OPENCLAW_HOME:-$OPENCLAW_STATE_DIR/home}"
# No mDNS, no self-update, no helper downloads: a worker talks to the model provider and the store only.
export OPENCLAW_OFFLINE=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1
# Replies go out through the worker's channels, not OpenClaw's; restarts stay in-process.
export OPENCLAW_SKIP_CHANNELS=1 OPENCLAW_NO_RESPAWN=1
# The compile cache is used where it is (NODE_COMPILE_CACHE): without this, openclaw.mjs re-executes
# itself to move it into a folder of its own, and a ~75 MB launcher stays as the gateway's parent
# (gateway.config's COMPILE_CACHE_IN_PLACE). Set for warm-cache.sh too, so both use one folder.
export OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED=1
# Without a heap cap the gateway's RSS keeps growing under load (lazy GC); 512 MB plateaus near 1.3 GB.
export NODE_OPTIONS="${NODE_OPTIONS:---max-old-space-size=512}"
# A compatible endpoint on a private host needs no key, but the config names one: give it a value
# (without one every turn fails with SECRET_SURFACE_UNAVAILABLE).
if [ -n "${FACTORY_OPENCLAW_MODEL_BASE_URL:-}" ] && [ -z "${FACTORY_OPENCLAW_MODEL_API_KEY:-}" ]; then
    export FACTORY_OPENCLAW_MODEL_API_KEY=unused-private-host
fi
# Loopback only, so a per-boot random token is enough; the generated config refers to it by name.
if [ -z "${FACTORY_OPENCLAW_GATEWAY_TOKEN:-}" ]; then
    FACTORY_OPENCLAW_GATEWAY_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
fi
export FACTORY_OPENCLAW_GATEWAY_TOKEN
