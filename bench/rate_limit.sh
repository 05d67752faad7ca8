#!/usr/bin/env bash
# Check the upload rate limit: upload a file with max_upload_rate set and print the time the
# upload took against the time the limit implies (the issue's target: 200 MiB at 20 MiB/s in
# 10 s ± 10%). Hashing is timed apart (it is not rate limited).
# Usage: bench/rate_limit.sh [SIZE_MIB=200] [RATE_MIB=20]
source "$(dirname "$0")/common.sh"
SIZE_MIB="${1:-200}"
RATE_MIB="${2:-20}"
build
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$WORK/limited.mp4"
start_emulator
write_config "max_upload_rate = \"${RATE_MIB}MiB\""

start=$(date +%s.%N)
"$BIN/vodup" --config "$CONFIG" --log-format json upload --json "$WORK/limited.mp4" >"$WORK/out.json" 2>"$WORK/log.json"
end=$(date +%s.%N)
hash_secs=$(grep -o '"secs":[0-9.e-]*' "$WORK/log.json" | head -1 | cut -d: -f2)
total=$(echo "$end - $start" | bc -l)
upload=$(echo "$total - $hash_secs" | bc -l)
expected=$(echo "$SIZE_MIB / $RATE_MIB" | bc -l)
printf '%-32s %s MiB at %s MiB/s\n' "file, limit" "$SIZE_MIB" "$RATE_MIB"
printf '%-32s %.2f s\n' "expected upload time" "$expected"
printf '%-32s %.2f s\n' "measured upload time" "$upload"
printf '%-32s %+.1f %%\n' "deviation" "$(echo "($upload - $expected) * 100 / $expected" | bc -l)"
printf '%-32s %.2f s (hashing %.2f s)\n' "total" "$total" "$hash_secs"
printf '%-32s %.1f MiB/s\n' "achieved rate" "$(echo "$SIZE_MIB / $upload" | bc -l)"
