# Shared by the bench scripts: build release binaries, start an emulator on a free loopback port,
# write a vodup config pointing at it. Source it; it sets BIN, WORK, EMU_PID, ENDPOINT, CONFIG.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vodup-bench.XXXXXX")"
SECRET_ID=AKIDbench
SECRET_KEY="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

build() {
    (cd "$ROOT" && cargo build --release --locked --bins >/dev/null 2>&1) || (cd "$ROOT" && cargo build --release --locked --bins)
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The emulator's storage: EMU_DATA if set (a script may put it on tmpfs), else under WORK.
start_emulator() {
    local port; port="$(free_port)"
    "$BIN/vod-emulator" --listen "127.0.0.1:$port" --data "${EMU_DATA:-$WORK/emulator}" \
        --secret-id "$SECRET_ID" --secret-key "$SECRET_KEY" "$@" >"$WORK/emulator.log" 2>&1 &
    EMU_PID=$!
    ENDPOINT="http://127.0.0.1:$port/v2/index.php"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/_admin/stats" >/dev/null && return 0
        sleep 0.1
    done
    echo "emulator did not start" >&2; cat "$WORK/emulator.log" >&2; exit 1
}

write_config() {
    CONFIG="$WORK/vodup.toml"
    cat >"$CONFIG" <<TOML
endpoint = "$ENDPOINT"
secret_id = "$SECRET_ID"
secret_key = "$SECRET_KEY"
ledger = "$WORK/ledger.db"
part_size = ${PART_SIZE:-1048576}
parts_in_flight = ${PARTS_IN_FLIGHT:-"\"auto\""}
$1
TOML
}

cleanup() {
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
    [ -n "${DAEMON_PID:-}" ] && kill "$DAEMON_PID" 2>/dev/null || true
    rm -rf "$WORK"
    [ -n "${EMU_DATA:-}" ] && rm -rf "$EMU_DATA"
    return 0
}
trap cleanup EXIT
