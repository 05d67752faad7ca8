#!/usr/bin/env bash
# Issue 24's L1 figures: `vodup status` on a ledger a year old (ROWS done files, default
# 1,000,000, built directly in SQLite, plus 3 queued), against the same command on an empty
# ledger measured in the same run (the cost of starting and connecting: the baseline). Each
# command runs RUNS times (default 5); the median wall time and the peak RSS are printed, with
# the ratio of the big ledger's median to the empty one's. Goal: the default view within 0.2 s
# and 64 MiB at any ledger size; --json --all streams, so its memory stays flat too.
# L2, retention: the daemon with forget_after = "90d" on a copy of that ledger (every done row
# moved a year ago) forgets them while a file dropped meanwhile uploads; printed: how long the
# forgetting took, the ledger's size before and after (a new ledger gives its pages back), and
# the dropped file's time from drop to done against the same drop on the daemon without
# retention, same ledger, same run.
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

# L2: retention, against the same daemon without it.
start_emulator
cp "$WORK/ledger.db" "$WORK/keep.db"
for mode in keep forget; do
    db="$WORK/$mode.db"
    [ "$mode" = forget ] && cp "$WORK/ledger.db" "$db" && forget='forget_after = "90d"' || forget=""
    write_config "$forget
[[watch]]
path = \"$WORK/drop-$mode\"
after_upload = \"move\"
done_dir = \"$WORK/done-$mode\"
settle = \"1s\""
    sed -i "s|^ledger = .*|ledger = \"$db\"|" "$CONFIG"
    mkdir -p "$WORK/drop-$mode" "$WORK/done-$mode"
    before=$(du -m "$db" | cut -f1)
    "$BIN/vodup" --config "$CONFIG" run >"$WORK/daemon-$mode.log" 2>&1 &
    DAEMON_PID=$!
    read -r done_s forgot_s forgotten left <<<"$(python3 - "$db" "$WORK/drop-$mode/fresh.mp4" "$mode" "$((ROWS + 3))" <<'PY'
import os, sqlite3, sys, time
db, path, mode, rows = sys.argv[1:]
rows = int(rows)
c = sqlite3.connect(db, timeout=30)
# What retention must forget: done rows moved away more than 90 days ago.
old = c.execute("SELECT COUNT(*) FROM files WHERE state = 'done' AND disposal = 'moved' "
                "AND updated_at < strftime('%s', 'now') - 90 * 86400").fetchone()[0]
t0 = time.monotonic()
with open(path + ".tmp", "wb") as f:
    f.write(os.urandom(5 * 1048576))
os.rename(path + ".tmp", path)
done = forgot = None
while time.monotonic() - t0 < 600:
    if done is None and c.execute("SELECT 1 FROM files WHERE CAST(path AS TEXT) = ? AND state = 'done'", (path,)).fetchone():
        done = time.monotonic() - t0
    left = c.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    if forgot is None and left <= rows + 1 - old:
        forgot = time.monotonic() - t0
    if done is not None and (mode == "keep" or forgot is not None):
        break
    time.sleep(0.1)
# Then the freed pages given back.
while mode == "forget" and time.monotonic() - t0 < 600:
    if c.execute("PRAGMA freelist_count").fetchone()[0] == 0:
        break
    time.sleep(0.2)
print(f"{done or -1:.2f} {forgot or -1:.1f} {rows + 1 - left} {left}")
PY
)"
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
    after=$(du -m "$db" | cut -f1)   # the daemon's last checkpoint truncated it
    if [ "$mode" = keep ]; then
        base_done=$done_s
        echo "without retention: a file dropped is done in $done_s s; $left rows, $before MB -> $after MB"
    else
        ratio=$(python3 -c "print(f'{$done_s / $base_done:.2f}')")
        echo "forget_after = 90d: $forgotten rows (those older than 90 days) forgotten in $forgot_s s from the start; $left rows, $before MB -> $after MB"
        echo "  a file dropped meanwhile is done in $done_s s (${ratio}x the daemon without retention)"
    fi
done
