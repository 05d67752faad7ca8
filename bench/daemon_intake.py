#!/usr/bin/env python3
"""Measure the daemon's intake against the emulator on loopback.

1. Latency from a file's last write to its upload start (the emulator's first InitUploadEx for
   it), for several files, with the configured settle time; median and spread.
2. Files/s for N small files dropped at once (moved in from a staging folder with one rename
   each), from the drop to the last finish the emulator confirms and to the last move; then the
   daemon's resident memory (VmRSS) once everything is moved, and its peak (VmHWM).

Usage: bench/daemon_intake.py [--files 1000] [--settle 1s] [--file-kib 64]
Builds the release binaries first; prints a table.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_admin/stats") as r:
        return json.load(r)


def wait(cond, timeout, what, every=0.005):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(every)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--settle", default="1s")
    ap.add_argument("--file-kib", type=int, default=64)
    ap.add_argument("--latency-samples", type=int, default=7)
    ap.add_argument("--files-in-flight", type=int, default=8)
    ap.add_argument("--vodup", help="run this vodup binary instead of the release build (a baseline "
                    "build of another commit); the emulator stays this tree's")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="vodup-bench-")
    # The emulator stands in for a remote service: its storage goes on tmpfs where there is one,
    # so its thousands of small files (a record and a part per upload) do not make this host's
    # disk the bottleneck. The drop and done folders and the ledger stay on disk, as on a real
    # media host.
    service = tempfile.mkdtemp(prefix="vodup-bench-emu-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    procs = []
    try:
        drop, done, staging = (os.path.join(work, d) for d in ("drop", "done", "staging"))
        for d in (drop, done, staging):
            os.makedirs(d)
        port = free_port()
        key = os.urandom(8).hex()
        procs.append(subprocess.Popen([os.path.join(BIN, "vod-emulator"), "--listen", f"127.0.0.1:{port}",
                                       "--data", service, "--secret-id", "AKIDbench",
                                       "--secret-key", key], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait(lambda: _up(port), 10, "the emulator")
        config = os.path.join(work, "vodup.toml")
        with open(config, "w") as f:
            f.write(f'endpoint = "http://127.0.0.1:{port}/v2/index.php"\nsecret_id = "AKIDbench"\n'
                    f'secret_key = "{key}"\nledger = "{work}/ledger.db"\nfiles_in_flight = {args.files_in_flight}\n'
                    f'[[watch]]\npath = "{drop}"\nafter_upload = "move"\ndone_dir = "{done}"\n'
                    f'settle = "{args.settle}"\n')
        vodup = args.vodup or os.path.join(BIN, "vodup")
        procs.append(subprocess.Popen([vodup, "--config", config, "run"],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w")))
        time.sleep(1.0)

        latencies = []
        for i in range(args.latency_samples):
            before = sum(stats(port)["inits"].values())
            path = os.path.join(drop, f"latency-{i}.mp4")
            with open(path, "wb") as f:
                f.write(os.urandom(256 * 1024))
            last_write = time.monotonic()
            wait(lambda: sum(stats(port)["inits"].values()) > before, 60, "the upload start")
            latencies.append(time.monotonic() - last_write)
            wait(lambda: os.path.exists(os.path.join(done, f"latency-{i}.mp4")), 60, "the move")

        finishes = stats(port)["finishes"]
        for i in range(args.files):
            with open(os.path.join(staging, f"f{i:05}.mp4"), "wb") as f:
                f.write(os.urandom(args.file_kib * 1024))
        cpu_before = [_cpu(p.pid) for p in procs]
        start = time.monotonic()
        for name in os.listdir(staging):
            os.rename(os.path.join(staging, name), os.path.join(drop, name))
        # A file's job ends with its after-upload action, so the last move is the end. The done
        # folder is watched rather than the emulator's stats, whose per-file counters make each
        # poll cost the emulator (and this script) time that the daemon under test then lacks.
        # Listing a folder of thousands of names costs this script CPU that the daemon then
        # lacks: look rarely until the end is near, then often.
        target = args.files + args.latency_samples
        while (count := len(os.listdir(done))) < target:
            if time.monotonic() - start > 600:
                sys.exit("timed out waiting for every move")
            time.sleep(0.1 if count < target * 0.9 else 0.005)
        elapsed = time.monotonic() - start
        finished = stats(port)["finishes"] - finishes
        moved = len([n for n in os.listdir(done) if n.startswith("f")])
        rss, hwm = _memory(procs[-1].pid)
        emulator_cpu, vodup_cpu = (_cpu(p.pid) - b for p, b in zip(procs, cpu_before))

        print(f"{'settle':<44} {args.settle}")
        print(f"{'last write -> upload start, median':<44} {statistics.median(latencies):.3f} s")
        print(f"{'last write -> upload start, min / max':<44} {min(latencies):.3f} / {max(latencies):.3f} s "
              f"({len(latencies)} files)")
        print(f"{'small files dropped at once':<44} {args.files} x {args.file_kib} KiB")
        print(f"{'drop -> last move':<44} {elapsed:.2f} s")
        print(f"{'files/s':<44} {args.files / elapsed:.1f}")
        print(f"{'files/s excluding one settle period':<44} {args.files / max(elapsed - _secs(args.settle), 1e-9):.1f}")
        print(f"{'moved to done / finished at the emulator':<44} {moved} / {finished} (all must be)")
        print(f"{'CPU per file, vodup / emulator':<44} {vodup_cpu / args.files * 1e3:.2f} / "
              f"{emulator_cpu / args.files * 1e3:.2f} ms")
        print(f"{'vodup RSS after the last move / peak':<44} {rss / 1024:.1f} / {hwm / 1024:.1f} MiB")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(service, ignore_errors=True)


def _secs(text):
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


def _cpu(pid):
    """User and system CPU seconds of a running process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory(pid):
    """VmRSS and VmHWM of a running process, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _up(port):
    try:
        stats(port)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
