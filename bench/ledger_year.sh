#!/usr/bin/env bash
# Issue 24's L1 figures: `vodup status` on a ledger a year old (ROWS done files, default
# 1,000,000, built directly in SQLite, plus 3 queued), against the same command on an empty
# ledger measured in the same run (the cost of starting and connecting: the baseline). Each
# command runs RUNS times (default 5); the median wall time and the peak RSS are printed, with
# the ratio of the big ledger's median to the empty one's. Goal: the default view within 0.2 s
# and 64 MiB at any ledger size; --json --all streams, so its memory stays flat too.
# Usage: bench/ledger_year.sh [ROWS] [RUNS]
source "$(dirname "$0")/common.sh"
ROWS="${1:-1000000}"
RUNS="${2:-5}"
build
ENDPOINT="http://127.0.0.1:9/v2/index.php"  # never called: status reads the ledger only
write_config "[[watch]]
path = \"$WORK/drop\""
mkdir -p "$WORK/drop"
EMPTY="$WORK/empty.toml"
sed "s|^ledger = .*|ledger = \"$WORK/empty.db\"|" "$CONFIG" >"$EMPTY"
"$BIN/vodup" --config "$CONFIG" status >/dev/null  # creates the schema
"$BIN/vodup" --config "$EMPTY" status >/dev/null
python3 - "$WORK/ledger.db" "$ROWS" "$WORK/drop" <<'PY'
import sqlite3, sys, time
db, rows, origin = sys.argv[1], int(sys.argv[2]), sys.argv[3]
now = int(time.time())
c = sqlite3.connect(db)
c.execute("BEGIN")
c.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
  INSERT INTO files (path, size, mtime_ns, part_size, state, file_sha, origin, processing, file_id,
                     url, instant, disposed, disposal, created_at, updated_at, finished_at)
  SELECT CAST('{origin}/old/take-' || i || '.mp4' AS BLOB), 5000000 + i, i, 1048576, 'done',
         printf('%040x', i), CAST('{origin}' AS BLOB), '{{}}', 'id' || i, 'http://vod.example/' || i,
         0, 1, 'moved', {now} - 86400 * 365 + i * 30, {now} - 86400 * 365 + i * 30,
         {now} - 86400 * 365 + i * 30 FROM n""")
for k in range(3):
    c.execute(f"""INSERT INTO files (path, size, mtime_ns, part_size, state, origin, processing,
                  created_at, updated_at) VALUES (CAST('{origin}/new-{k}.mp4' AS BLOB), 10, 1,
                  1048576, 'queued', CAST('{origin}' AS BLOB), '{{}}', {now}, {now})""")
c.execute("COMMIT")
PY
echo "ledger: $ROWS done files + 3 queued, $(du -m "$WORK/ledger.db" | cut -f1) MB"
# RUNS runs of a command: "median_seconds peak_rss_kib"
measure() {
    python3 - "$RUNS" "$@" <<'PY'
import resource, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
walls = []
for _ in range(runs):
    t = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    walls.append(time.monotonic() - t)
walls.sort()
print(f"{walls[len(walls) // 2]:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
}
printf '%-28s %10s %10s %12s %8s\n' "command" "empty s" "year s" "year RSS" "ratio"
for args in "status" "status --json" "status --json --all"; do
    read -r base _ <<<"$(measure "$BIN/vodup" --config "$EMPTY" $args)"
    read -r year rss <<<"$(measure "$BIN/vodup" --config "$CONFIG" $args)"
    ratio=$(python3 -c "print(f'{$year / $base:.1f}')")
    printf '%-28s %10s %10s %9s MiB %7sx\n' "vodup $args" "$base" "$year" "$((rss / 1024))" "$ratio"
done
