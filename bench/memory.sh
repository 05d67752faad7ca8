#!/usr/bin/env bash
# P4 of the speed issue: vodup's peak RSS (VmHWM from /proc/PID/status, sampled while it runs:
# getrusage of a child forked from a big parent overstates it) uploading a file (default 4 GiB)
# to the emulator on loopback, at several parts_in_flight, against a baseline measured in the
# same run: the peak RSS of `openssl dgst -md5` on the same file (a process that streams it).
# Usage: bench/memory.sh [SIZE_MIB] [PARTS_IN_FLIGHT...]     (default: 4096 8 64)
source "$(dirname "$0")/common.sh"
SIZE_MIB="${1:-4096}"
shift || true
LEVELS=("${@:-8 64}")
build
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$WORK/big.mp4"

peak_kib() { # COMMAND...: run it, print its VmHWM in KiB
    "$@" >/dev/null 2>&1 &
    local pid=$! hwm=0 now
    while kill -0 "$pid" 2>/dev/null; do
        now=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$now" ] && [ "$now" -gt "$hwm" ] && hwm=$now
        sleep 0.05
    done
    wait "$pid" || { echo "command failed: $*" >&2; exit 1; }
    echo "$hwm"
}

base=$(peak_kib openssl dgst -md5 "$WORK/big.mp4")
printf '%-44s %.1f MiB\n' "openssl dgst -md5, peak RSS (baseline)" "$(echo "$base / 1024" | bc -l)"
for level in ${LEVELS[*]}; do
    rm -rf "$WORK/emulator" "$WORK/ledger.db"*
    start_emulator
    PARTS_IN_FLIGHT=$level write_config ""
    kib=$(peak_kib "$BIN/vodup" --config "$CONFIG" upload "$WORK/big.mp4")
    kill "$EMU_PID"; wait "$EMU_PID" 2>/dev/null || true
    printf '%-44s %.1f MiB  (%.1fx the baseline; goal <= 48 MiB)\n' \
        "P4 vodup, parts_in_flight = $level, peak RSS" "$(echo "$kib / 1024" | bc -l)" \
        "$(echo "$kib / $base" | bc -l)"
done
