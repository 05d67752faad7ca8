#!/usr/bin/env bash
# P3 of the speed issue: vodup's goodput over an emulated WAN link with default settings, against
# `iperf3 -P 8` on the same link in the same run. The link comes from
# ../shared/tools/wanlink/wanlink.sh (two network namespaces; this kernel has no netem): the
# emulator listens in wanA (10.99.0.1), vodup uploads from wanB. Goodput = file size / (upload
# wall time - hashing pass), so TCP ramp-up and the finish count as they do for a user. LOSS_PCT
# drops that share of packets at random, each way (P3L). The window's own log (each step and
# why) is kept for each row and summed up under it.
# Usage (root): bench/wan.sh [DELAY_MS_EACH_WAY RATE_MBIT SIZE_MIB LOSS_PCT]...
#   (default: the P3 row and the two P3L rows: 25 200 256 0  75 300 256 0.1  75 300 256 1)
# VODUP=PATH runs another vodup binary (an older build, say) on the same links; LOGS=DIR keeps
# each row's vodup log there.
source "$(dirname "$0")/common.sh"
WANLINK="$ROOT/../shared/tools/wanlink/wanlink.sh"
[ "$(id -u)" = 0 ] || { echo "bench/wan.sh needs root (network namespaces)" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "needs iperf3 (apt-get install iperf3)" >&2; exit 2; }
[ $(($# % 4)) -eq 0 ] || { echo "usage: bench/wan.sh [DELAY_MS RATE_MBIT SIZE_MIB LOSS_PCT]..." >&2; exit 2; }
[ $# -ge 4 ] || set -- 25 200 256 0  75 300 256 0.1  75 300 256 1
build
trap 'cleanup; "$WANLINK" down >/dev/null 2>&1 || true' EXIT

while [ $# -ge 4 ]; do
    delay=$1 rate=$2 size=$3 loss=$4; shift 4
    "$WANLINK" up "$delay" "$rate" "$loss" >/dev/null
    head -c "$((size * 1048576))" /dev/urandom >"$WORK/wan.mp4"
    # The emulator stands in for a remote service: its storage goes on tmpfs, so its disk writes
    # do not take this host's CPU from vodup and the link emulator.
    service="$(mktemp -d /dev/shm/vodup-wan-emu.XXXXXX 2>/dev/null || mktemp -d "$WORK/emulator.XXXXXX")"
    EMU_DATA="$service" # removed by common.sh's cleanup if this run stops early
    rm -rf "$WORK/ledger.db"*
    port=18080
    ip netns exec wanA "$BIN/vod-emulator" --listen "10.99.0.1:$port" --data "$service" \
        --secret-id "$SECRET_ID" --secret-key "$SECRET_KEY" >"$WORK/emulator.log" 2>&1 &
    EMU_PID=$!
    ENDPOINT="http://10.99.0.1:$port/v2/index.php"
    for _ in $(seq 100); do
        ip netns exec wanB curl -sf "http://10.99.0.1:$port/_admin/stats" >/dev/null && break
        sleep 0.1
    done
    # Default settings: no parts_in_flight in the config.
    CONFIG="$WORK/vodup.toml"
    printf 'endpoint = "%s"\nsecret_id = "%s"\nsecret_key = "%s"\nledger = "%s"\n' \
        "$ENDPOINT" "$SECRET_ID" "$SECRET_KEY" "$WORK/ledger.db" >"$CONFIG"
    start=$(date +%s.%N)
    ip netns exec wanB "${VODUP:-$BIN/vodup}" --config "$CONFIG" -v --log-format json upload --json "$WORK/wan.mp4" \
        >"$WORK/out.json" 2>"$WORK/log.json"
    end=$(date +%s.%N)
    kill "$EMU_PID"; wait "$EMU_PID" 2>/dev/null || true
    rm -rf "$service"
    hash_secs=$(grep -o '"secs":[0-9.e-]*' "$WORK/log.json" | head -1 | cut -d: -f2)
    grep -q '"fileId"' "$WORK/out.json" || { echo "upload failed:" >&2; cat "$WORK/out.json" >&2; exit 1; }
    vodup_mbit=$(echo "$size * 1048576 * 8 / ($end - $start - $hash_secs) / 1000000" | bc -l)

    ip netns exec wanA iperf3 -s -1 >/dev/null 2>&1 &
    sleep 0.5
    iperf_mbit=$(ip netns exec wanB iperf3 -c 10.99.0.1 -P 8 -t 10 -J |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6)')
    wait || true
    "$WANLINK" down >/dev/null
    printf '%-58s %7.1f Mbit/s\n' "link ${delay} ms each way, ${rate} Mbit/s, ${loss}% loss: iperf3 -P 8 (baseline)" "$iperf_mbit"
    printf '%-58s %7.1f Mbit/s\n' "vodup upload of ${size} MiB, default settings, goodput" "$vodup_mbit"
    printf '%-58s %7.2fx  (goal >= 0.95)\n' "P3 vodup / iperf3" "$(echo "$vodup_mbit / $iperf_mbit" | bc -l)"
    [ -n "${LOGS:-}" ] && cp "$WORK/log.json" "$LOGS/wan-$delay-$rate-$loss.json"
    # The window's steps: where it went and why.
    python3 - "$WORK/log.json" <<'PY'
import json, sys
# Consecutive holds at one width are summed up as one entry.
steps = []
for line in open(sys.argv[1]):
    try:
        f = json.loads(line)
    except ValueError:
        continue
    f = f.get("fields", f)
    if "parts_in_flight" not in f:
        continue
    width, why, inflation = f["parts_in_flight"], f.get("message", ""), f.get("inflation")
    if steps and why == "window holds" and steps[-1][:2] == [width, why]:
        steps[-1][2].append(inflation)
    else:
        steps.append([width, why, [inflation] if inflation is not None else []])
def shown(width, why, inflations):
    if not inflations:
        return f"{width} ({why})"
    lo, hi = min(inflations), max(inflations)
    span = f"{lo:.2f}" if len(inflations) == 1 else f"{lo:.2f}-{hi:.2f}"
    times = f" x{len(inflations)}" if len(inflations) > 1 else ""
    return f"{width} ({why}{times}, inflation {span})"
print("  window:", " -> ".join(shown(*s) for s in steps) if steps else "no step (stayed at its start)")
PY
done
