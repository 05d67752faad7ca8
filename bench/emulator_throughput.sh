#!/usr/bin/env bash
# Throughput of the release vod-emulator receiving parts over loopback.
#
# Starts target/release/vod-emulator on 127.0.0.1:0 with a temporary data directory, then runs the
# examples/emulator_load generator (reqwest, bodies sent from memory) at several concurrencies and
# prints one table row per run. Upload MB/s covers every UploadPartEx (body transfer, MD5, write
# to disk, rename); finish MB/s covers the SHA-1 check over the parts and publishing them.
# Note: on a small machine the generator shares the CPU with the emulator.
#
# Usage: bench/emulator_throughput.sh [FILES] [FILE_MIB] [PART_SIZE] [CONCURRENCIES...]
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-4}
file_mib=${2:-64}
part_size=${3:-1048576}
shift $(( $# < 3 ? $# : 3 ))
if [ $# -gt 0 ]; then concurrencies=("$@"); else concurrencies=(1 4 8 16); fi

cargo build --release --quiet --bin vod-emulator --example emulator_load

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export VOD_EMULATOR_SECRET_KEY=bench-secret-key
RUST_LOG=warn target/release/vod-emulator --listen 127.0.0.1:0 --data "$work/data" \
  --secret-id AKIDbench >"$work/ready" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$work/ready" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.1
done
endpoint=$(sed -n 's/^vod-emulator listening on //p' "$work/ready")
[ -n "$endpoint" ] || { echo "emulator did not start" >&2; cat "$work/log" >&2; exit 1; }

echo "vod-emulator throughput on loopback ($(nproc) cores), endpoint $endpoint"
echo "| files | MiB/file | part bytes | in flight | upload s | upload MB/s | upload MiB/s | finish s | finish MB/s |"
echo "|------:|---------:|-----------:|----------:|---------:|------------:|-------------:|---------:|------------:|"
for c in "${concurrencies[@]}"; do
  target/release/examples/emulator_load --endpoint "$endpoint" --secret-id AKIDbench \
    --files "$files" --file-mib "$file_mib" --part-size "$part_size" --concurrency "$c"
done
