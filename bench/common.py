"""Shared helpers of the enjambre benchmarks (stdlib only; any python3 >= 3.8).

Processes are measured from outside:
  * CPU seconds: user + system from the kernel's rusage of the exited child (os.wait4), or deltas of
    /proc/PID/stat utime+stime for a server that keeps running;
  * peak anonymous RSS: /proc/PID/status `RssAnon` sampled every 10 ms (heap, stacks, anonymous maps; file pages
    mapped by an mmap-based engine such as libtorrent 2.0 are *not* counted), next to the kernel's `VmHWM`
    (peak of all resident pages, file-backed included) for reference.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OUT = os.path.join(BENCH, "out")
RELEASE = os.path.join(ROOT, "target", "release")
PEER = os.path.join(RELEASE, "peer")
TRACKER = os.path.join(RELEASE, "tracker")
SIM = os.path.join(RELEASE, "sim")
SYS_PYTHON = "/usr/bin/python3"  # Debian's python3-libtorrent binds this interpreter only
LT_NODE = os.path.join(BENCH, "lt_node.py")
WORK = os.environ.get("BENCH_WORK", "/tmp/enjambre-bench")
MB = 1e6  # throughput is in MB/s = 10^6 bytes per second; sizes in MiB


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def skip(name, why, apt=None):
    """Print a clear skip message (and the apt line that fixes it), record it, and exit 0."""
    print("SKIP %s: %s" % (name, why), flush=True)
    if apt:
        print("  install with: sudo apt-get install -y %s" % " ".join(apt), flush=True)
    save(name, {"skipped": why})
    sys.exit(0)


def need(name, tools):
    """`tools`: list of (path-or-command, apt package or None). Skip the benchmark if one is missing."""
    missing, apt = [], []
    for tool, pkg in tools:
        found = os.access(tool, os.X_OK) if os.sep in tool else shutil.which(tool)
        if not found:
            missing.append(tool)
            if pkg:
                apt.append(pkg)
    if missing:
        hint = ""
        if any(t.startswith(RELEASE) for t in missing):
            hint = " (build them: cargo build --release --bins)"
        skip(name, "missing " + ", ".join(missing) + hint, apt or None)


def need_libtorrent(name):
    need(name, [(SYS_PYTHON, "python3")])
    r = subprocess.run([SYS_PYTHON, "-c", "import libtorrent"], capture_output=True)
    if r.returncode != 0:
        skip(name, "libtorrent is not importable by %s" % SYS_PYTHON, ["python3-libtorrent"])


def save(name, result):
    os.makedirs(OUT, exist_ok=True)
    result = dict(result, benchmark=name, at=time.strftime("%Y-%m-%d %H:%M:%S"), machine=machine())
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem, 1),
        "kernel": os.uname().release,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def proc_status(pid):
    """Fields of /proc/PID/status in KiB (RssAnon, RssFile, VmRSS, VmHWM); {} once the process is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return out


def proc_cpu(pid):
    """utime + stime of a live process in seconds (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_run_time(pid):
    """CPU time of a live process's threads in seconds, from the scheduler's own clock (the first field of each
    /proc/PID/task/TID/schedstat, in ns); None if gone. Unlike utime + stime, which charge whole clock ticks to
    whoever runs when a tick fires, it is exact for a process that wakes briefly and often (an idle peer's
    timers land on ticks: measured 85% by ticks where `perf stat -e task-clock` said 7.5%). Threads that exited
    are not counted: use it over windows in which the threads live on."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return None
    return total / 1e9


class Sampler:
    """Samples a process's /proc/PID/status every `period` seconds; keeps the peaks (KiB)."""

    def __init__(self, pid, period=0.01):
        self.pid, self.period = pid, period
        self.peak_anon = 0
        self.peak_hwm = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            s = proc_status(self.pid)
            if s:
                self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
                self.peak_hwm = max(self.peak_hwm, s.get("VmHWM", 0))
            self.stop.wait(self.period)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak_anon, self.peak_hwm


def run_measured(cmd, timeout, env=None, on_line=None, cwd=None):
    """Run `cmd` to exit, measuring it. Returns dict: rc, wall, cpu (user+sys, children included), user, sys,
    peak_anon_mib, maxrss_mib (kernel peak RSS incl. file pages), stdout (text), stderr (text).
    `on_line(stream, line, t)` sees every output line as it arrives (t: seconds since start)."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True, bufsize=1
    )
    sampler = Sampler(p.pid)
    chunks = {"stdout": [], "stderr": []}

    def pump(name, stream):
        for line in stream:
            chunks[name].append(line)
            if on_line:
                on_line(name, line, time.monotonic() - t0)

    pumps = [threading.Thread(target=pump, args=(n, s), daemon=True) for n, s in (("stdout", p.stdout), ("stderr", p.stderr))]
    for t in pumps:
        t.start()
    deadline = t0 + timeout
    status = None
    while status is None:
        pid, st, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            status = (st, ru)
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, st, ru = os.wait4(p.pid, 0)
            status = (st, ru)
            break
        time.sleep(0.005)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status[0]) if hasattr(os, "waitstatus_to_exitcode") else status[0]
    anon, _hwm = sampler.finish()
    for t in pumps:
        t.join(timeout=5)
    ru = status[1]
    return {
        "rc": p.returncode,
        "timed_out": wall >= timeout,
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "user": ru.ru_utime,
        "sys": ru.ru_stime,
        "peak_anon_mib": anon / 1024,
        "maxrss_mib": ru.ru_maxrss / 1024,
        "stdout": "".join(chunks["stdout"]),
        "stderr": "".join(chunks["stderr"]),
    }


class Server:
    """A long-running process (seeder, tracker) whose stdout is watched for a readiness line."""

    def __init__(self, cmd, ready, timeout=120, env=None, cwd=None, name="server"):
        self.name = name
        self.cmd = cmd
        self.lines = []
        self.p = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self.ready_line = None
        deadline = time.monotonic() + timeout
        got = threading.Event()

        def pump():
            for line in self.p.stdout:
                self.lines.append(line)
                if self.ready_line is None and ready(line):
                    self.ready_line = line
                    got.set()
            got.set()

        threading.Thread(target=pump, daemon=True).start()
        while not got.wait(0.1):
            if time.monotonic() > deadline:
                break
        if self.ready_line is None:
            self.stop()
            raise RuntimeError("%s did not start: %s\n%s" % (name, " ".join(cmd), "".join(self.lines[-20:])))

    @property
    def pid(self):
        return self.p.pid

    def cpu(self):
        return proc_cpu(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def make_data(size, name="data.bin"):
    """A file of `size` random bytes and its torrent (512 KiB pieces, made by `peer create`), in WORK/data/.
    Reused when already there with that size. Returns (data path, torrent path)."""
    d = os.path.join(WORK, "data-%d" % size)
    os.makedirs(d, exist_ok=True)
    data = os.path.join(d, name)
    torrent = os.path.join(d, name + ".torrent")
    if not (os.path.exists(data) and os.path.getsize(data) == size and os.path.exists(torrent)):
        log("making %s (%d MiB of random bytes)" % (data, size >> 20))
        with open("/dev/urandom", "rb") as src, open(data + ".tmp", "wb") as dst:
            left = size
            while left:
                chunk = src.read(min(left, 1 << 24))
                dst.write(chunk)
                left -= len(chunk)
        os.replace(data + ".tmp", data)
        subprocess.run([PEER, "create", data, "-o", torrent, "--piece-size", "512KiB"], check=True, stdout=subprocess.DEVNULL)
    return data, torrent


def warm(path):
    """Read a file once so that its pages are in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def info_hash(torrent):
    """Hex SHA-1 of the raw `info` value of a torrent file."""
    import hashlib

    raw = open(torrent, "rb").read()

    def skip_value(i):
        c = raw[i : i + 1]
        if c == b"i":
            return raw.index(b"e", i) + 1
        if c in (b"l", b"d"):
            i += 1
            while raw[i : i + 1] != b"e":
                i = skip_value(i)
            return i + 1
        colon = raw.index(b":", i)
        return colon + 1 + int(raw[i:colon])

    i = 1
    while raw[i : i + 1] != b"e":
        key_end = skip_value(i)
        key = raw[raw.index(b":", i) + 1 : key_end]
        end = skip_value(key_end)
        if key == b"info":
            return hashlib.sha1(raw[key_end:end]).hexdigest()
        i = end
    raise ValueError("no info in " + torrent)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def settle():
    """Flush dirty pages of the previous run so that its writeback does not land in the next one."""
    os.sync()
    time.sleep(1)


def arg_size(argv, default):
    """`--size N[MiB|GiB]` from argv (for quick runs), else `default` bytes; BENCH_SIZE works too."""
    text = os.environ.get("BENCH_SIZE")
    if "--size" in argv:
        text = argv[argv.index("--size") + 1]
    if not text:
        return default
    units = {"gib": 2**30, "g": 2**30, "mib": 2**20, "m": 2**20, "kib": 1024, "k": 1024}
    t = text.lower()
    for u, m in units.items():
        if t.endswith(u):
            return int(float(t[: -len(u)]) * m)
    return int(t)


def arg_int(argv, flag, default):
    if flag in argv:
        return int(argv[argv.index(flag) + 1])
    return default
