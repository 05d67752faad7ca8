#!/usr/bin/env bash
# Upload a 1 GiB file to the emulator on loopback with `vodup upload` and print: hashing time,
# total time, MB/s, peak RSS, and this machine's `openssl dgst -md5` time on the same file.
# Usage: bench/upload_1gib.sh [SIZE_MIB]     (needs /usr/bin/time: Debian package `time`)
source "$(dirname "$0")/common.sh"
SIZE_MIB="${1:-1024}"
build
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$WORK/big.mp4"
start_emulator
write_config ""
# Warm the page cache as a freshly written file would be.
cat "$WORK/big.mp4" >/dev/null

start=$(date +%s.%N)
/usr/bin/time -v -o "$WORK/time.txt" "$BIN/vodup" --config "$CONFIG" --log-format json \
    upload --json "$WORK/big.mp4" >"$WORK/out.json" 2>"$WORK/log.json"
end=$(date +%s.%N)

md5_start=$(date +%s.%N)
openssl dgst -md5 "$WORK/big.mp4" >/dev/null
md5_end=$(date +%s.%N)
sha1_start=$(date +%s.%N)
openssl dgst -sha1 "$WORK/big.mp4" >/dev/null
sha1_end=$(date +%s.%N)

hash_secs=$(grep -o '"secs":[0-9.e-]*' "$WORK/log.json" | head -1 | cut -d: -f2)
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
total=$(echo "$end - $start" | bc -l)
fetched=$(curl -s "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/out.json")" | sha1sum | cut -d' ' -f1)
source_sha=$(sha1sum "$WORK/big.mp4" | cut -d' ' -f1)

printf '%-34s %s\n' "file size" "${SIZE_MIB} MiB"
printf '%-34s %.2f s\n' "hashing (SHA-1 + part MD5s)" "$hash_secs"
printf '%-34s %.2f s\n' "total (hash + upload + finish)" "$total"
printf '%-34s %.1f MB/s\n' "throughput, total" "$(echo "$SIZE_MIB * 1.048576 / $total" | bc -l)"
printf '%-34s %.1f MB/s\n' "throughput, upload only" "$(echo "$SIZE_MIB * 1.048576 / ($total - $hash_secs)" | bc -l)"
printf '%-34s %.1f MiB\n' "peak RSS of vodup" "$(echo "$rss_kib / 1024" | bc -l)"
printf '%-34s %.2f s\n' "openssl dgst -md5, same file" "$(echo "$md5_end - $md5_start" | bc -l)"
printf '%-34s %.2f s\n' "openssl dgst -sha1, same file" "$(echo "$sha1_end - $sha1_start" | bc -l)"
printf '%-34s %s\n' "bytes served == source" "$([ "$fetched" = "$source_sha" ] && echo yes || echo NO)"
