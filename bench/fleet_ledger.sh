#!/usr/bin/env bash
# Issue 11's scale figures for one PostgreSQL ledger, on loopback, with durable commits (fsync
# and synchronous_commit on, as a production server runs):
#   writes/GiB  ledger transactions committed while `vodup upload` sends a file (default 1 GiB)
#               to the emulator, against the baseline of one write per 1 MiB part (what an
#               unbatched ledger makes); the ratio is the share of that a fleet's ledger carries
#   claims/s    with 3 and 12 nodes (examples/fleet_ledger.rs): each claim a whole claim → done →
#               disposed cycle, against the same server's one-row UPDATE rate with as many clients
# Usage: bench/fleet_ledger.sh [SIZE_MIB] [SECONDS]   (each claims run stops early once it drains its 20,000 files)   (root: PostgreSQL runs as its own user)
source "$(dirname "$0")/common.sh"
SIZE_MIB="${1:-1024}"
SECONDS_EACH="${2:-10}"
build
(cd "$ROOT" && cargo build --release --locked --example fleet_ledger >/dev/null 2>&1) ||
    (cd "$ROOT" && cargo build --release --locked --example fleet_ledger)
PG_DIR="$WORK/pg"
mkdir -p "$PG_DIR" && chmod 755 "$WORK"
SERVER=$("$ROOT/.ci/postgres" up "$PG_DIR")
trap '"$ROOT/.ci/postgres" down "$PG_DIR"; cleanup' EXIT
psql() { /usr/lib/postgresql/15/bin/psql -X -qAt "$@"; }
# .ci/postgres turns durability off for tests; a bench measures a real server's commits.
psql "$SERVER" -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
new_db() {
    local db="bench_$1"
    psql "$SERVER" -c "CREATE DATABASE $db" >/dev/null
    echo "${SERVER%/*}/$db"
}

# -- writes per uploaded GiB
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$WORK/big.mp4"
URL=$(new_db upload)
start_emulator
write_config "node = \"bench\""
sed -i "s|^ledger = .*|ledger = \"$URL\"|" "$CONFIG"
"$BIN/vodup" --config "$CONFIG" check-config >/dev/null  # migrates: not counted below
commits() { psql "$URL" -c "SELECT pg_stat_force_next_flush()" -c \
    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()" | tail -1; }
before=$(commits)
start=$(date +%s.%N)
"$BIN/vodup" --config "$CONFIG" upload --json "$WORK/big.mp4" >"$WORK/out.json" 2>"$WORK/upload.log"
secs=$(echo "$(date +%s.%N) - $start" | bc -l)
sleep 1 # the upload's sessions report their counts as they close
after=$(commits)
writes=$((after - before - 2)) # the two counting queries commit too
parts=$((SIZE_MIB))
per_gib=$(echo "$writes * 1024 / $SIZE_MIB" | bc -l)
printf '%-50s %s MiB in %.1f s\n' "uploaded" "$SIZE_MIB" "$secs"
printf '%-50s %d\n' "ledger transactions during the upload" "$writes"
printf '%-50s %.1f\n' "ledger transactions per GiB" "$per_gib"
printf '%-50s %d\n' "baseline: one write per 1 MiB part, per GiB" 1024
printf '%-50s %.4f\n' "ratio (transactions / part writes)" "$(echo "$writes / $parts" | bc -l)"

# -- claims per second
for nodes in 3 12; do
    URL=$(new_db "claims_$nodes")
    "$BIN/examples/fleet_ledger" "$URL" "$nodes" "$SECONDS_EACH" | sed 's/^/  /'
done
