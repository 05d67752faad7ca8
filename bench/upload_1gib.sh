#!/usr/bin/env bash
# P1, P2, P2c of the speed issue: upload a file (default 1 GiB) to the emulator on loopback with
# `vodup upload`, ROUNDS times (default 3), each against a fresh emulator and ledger, alternating
# with the baselines on the same file: `openssl dgst -sha1` (the SHA-1 floor) and `openssl dgst
# -md5`. Prints medians and the ratios the issue asks for:
#   P1  vodup's hashing pass (SHA-1 + every part MD5) / openssl sha1, wall
#   P2  vodup's whole upload (hash + parts + finish)  / openssl md5, wall
#   P2c vodup's CPU seconds (user+sys)                 / openssl md5's CPU seconds
# Usage: bench/upload_1gib.sh [SIZE_MIB] [ROUNDS]   (needs /usr/bin/time: Debian package `time`)
source "$(dirname "$0")/common.sh"
SIZE_MIB="${1:-1024}"
ROUNDS="${2:-3}"
build
# The emulator stands in for a remote service: its storage goes on tmpfs where there is one, so
# writing the parts it receives does not take this host's disk and CPU from vodup.
if [ -d /dev/shm ]; then EMU_DATA="$(mktemp -d /dev/shm/vodup-bench-emu.XXXXXX)"; fi
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$WORK/big.mp4"
cat "$WORK/big.mp4" >/dev/null # warm the page cache as a freshly written file would be
source_sha=$(sha1sum "$WORK/big.mp4" | cut -d' ' -f1)

timed() { # OUT_FILE COMMAND...: wall and cpu seconds of COMMAND into OUT_FILE
    local out="$1"; shift
    /usr/bin/time -f '%e %U %S %M' -o "$out" "$@"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # PID: its user+sys CPU, in clock ticks
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$WORK/rows"
for round in $(seq "$ROUNDS"); do
    rm -rf "${EMU_DATA:-$WORK/emulator}" "$WORK/ledger.db"*
    start_emulator
    write_config ""
    emu_before=$(cpu_ticks "$EMU_PID")
    timed "$WORK/vodup.t" "$BIN/vodup" --config "$CONFIG" --log-format json \
        upload --json "$WORK/big.mp4" >"$WORK/out.json" 2>"$WORK/log.json"
    emu_secs=$(echo "($(cpu_ticks "$EMU_PID") - $emu_before) / $(getconf CLK_TCK)" | bc -l)
    kill "$EMU_PID"; wait "$EMU_PID" 2>/dev/null || true
    timed "$WORK/sha1.t" openssl dgst -sha1 "$WORK/big.mp4" >/dev/null
    timed "$WORK/md5.t" openssl dgst -md5 "$WORK/big.mp4" >/dev/null
    fetched=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fileSha"])' "$WORK/out.json")
    [ "$fetched" = "$source_sha" ] || { echo "round $round: fileSha differs from the source" >&2; exit 1; }
    hash_secs=$(grep -o '"secs":[0-9.e-]*' "$WORK/log.json" | head -1 | cut -d: -f2)
    read -r v_wall v_user v_sys v_rss <"$WORK/vodup.t"
    read -r s_wall _ _ _ <"$WORK/sha1.t"
    read -r m_wall m_user m_sys _ <"$WORK/md5.t"
    echo "$hash_secs $v_wall $(echo "$v_user + $v_sys" | bc -l) $v_rss $s_wall $m_wall $(echo "$m_user + $m_sys" | bc -l) $emu_secs" >>"$WORK/rows"
done

col() { awk -v c="$1" '{print $c}' "$WORK/rows" | median; }
ratio() { awk -v c1="$1" -v c2="$2" '{printf "%.4f\n", $c1 / $c2}' "$WORK/rows" | median; }
printf '%-52s %s\n' "file size, rounds" "${SIZE_MIB} MiB, ${ROUNDS}"
printf '%-52s %.2f s\n' "vodup hashing pass (median)" "$(col 1)"
printf '%-52s %.2f s\n' "openssl dgst -sha1 (median)" "$(col 5)"
printf '%-52s %.2f s\n' "vodup upload, wall (median)" "$(col 2)"
printf '%-52s %.2f s\n' "openssl dgst -md5, wall (median)" "$(col 6)"
printf '%-52s %.2f s\n' "vodup upload, CPU user+sys (median)" "$(col 3)"
printf '%-52s %.2f s\n' "openssl dgst -md5, CPU user+sys (median)" "$(col 7)"
printf '%-52s %.2f s\n' "the emulator's CPU during the upload (median)" "$(col 8)"
printf '%-52s %.1f MiB\n' "vodup peak RSS (median)" "$(echo "$(col 4) / 1024" | bc -l)"
printf '%-52s %.2fx  (goal <= 1.0)\n' "P1  hashing / openssl sha1, wall (median of ratios)" "$(ratio 1 5)"
printf '%-52s %.2fx  (goal <= 1.5)\n' "P2  upload / openssl md5, wall (median of ratios)" "$(ratio 2 6)"
printf '%-52s %.2fx  (goal <= 0.8)\n' "P2c upload CPU / openssl md5 CPU (median of ratios)" "$(ratio 3 7)"
