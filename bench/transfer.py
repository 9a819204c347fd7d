"""transfer / swarm: N seeders -> 1 leecher on loopback, enjambre against libtorrent in the same run.

Each engine downloads from its own seeders (enjambre `peer serve` / libtorrent sessions with its
high-performance settings), started once and kept running; the leecher runs alternate between the engines
(E L, L E, E L, ...) so that a change in the machine's load hits both. A leecher run is the whole process:
start, connect, download, hash-check every piece, exit (enjambre also fsyncs data and checkpoint; libtorrent
does not sync). MB/s = file size / wall seconds of that process.
"""

import os
import subprocess
import sys

import common as c

ENJ, LT = "enjambre", "libtorrent"


def start_seeders(engine, n, data, torrent, want_hash):
    seeders = []
    for i in range(n):
        d = os.path.join(c.WORK, "seed-%s-%d-%d" % (engine, os.path.getsize(data), i))
        os.makedirs(d, exist_ok=True)
        link = os.path.join(d, os.path.basename(data))
        if not os.path.exists(link):
            os.link(data, link)  # same inode: one copy in the page cache
        if engine == ENJ:
            cmd = [c.PEER, "--dir", d, "--listen", "127.0.0.1:0", "serve"]
            s = c.Server(cmd, lambda l: l.startswith("seeding"), timeout=300, name="enjambre seeder")
            got = s.ready_line.split()[-1]
            if got != want_hash:
                s.stop()
                raise RuntimeError("enjambre seeder shares %s, the torrent is %s" % (got, want_hash))
        else:
            cmd = [c.SYS_PYTHON, c.LT_NODE, "seed", "--torrent", torrent, "--dir", d]
            s = c.Server(cmd, lambda l: l.startswith("seeding"), timeout=300, name="libtorrent seeder")
        port = next(l for l in s.lines if l.startswith("listening on")).split(":")[-1].strip()
        s.addr = "127.0.0.1:" + port
        seeders.append(s)
    return seeders


def leecher_cmd(engine, torrent, d, seeders, lt_default):
    peers = [s.addr for s in seeders]
    if engine == ENJ:
        cmd = [c.PEER, "--dir", d, "--listen", "127.0.0.1:0", "get", "--torrent", torrent, "--json"]
        for p in peers:
            cmd += ["--peer", p]
    else:
        cmd = [c.SYS_PYTHON, c.LT_NODE, "leech", "--torrent", torrent, "--dir", d]
        if lt_default:
            cmd.append("--default-settings")
        for p in peers:
            cmd += ["--peer", p]
    return cmd


def one_run(engine, torrent, data, seeders, lt_default, verify):
    d = c.fresh_dir(os.path.join(c.WORK, "leech-" + engine))
    c.settle()
    load = c.loadavg()
    before = [s.cpu() or 0 for s in seeders]
    cmd = leecher_cmd(engine, torrent, d, seeders, lt_default)
    r = c.run_measured(cmd, timeout=600)
    seed_cpu = sum((s.cpu() or 0) - b for s, b in zip(seeders, before))
    size = os.path.getsize(data)
    out = os.path.join(d, os.path.basename(data))
    ok = r["rc"] == 0 and os.path.exists(out) and os.path.getsize(out) == size
    if ok and verify:
        ok = subprocess.run(["cmp", "-s", data, out]).returncode == 0
    row = {
        "engine": engine,
        "ok": ok,
        "seconds": round(r["wall"], 3),
        "mb_s": round(size / r["wall"] / c.MB, 1),
        "leecher_cpu_s": round(r["cpu"], 2),
        "leecher_user_s": round(r["user"], 2),
        "leecher_sys_s": round(r["sys"], 2),
        "seeders_cpu_s": round(seed_cpu, 2),
        "cpu_s_per_gib": round((r["cpu"] + seed_cpu) / (size / (1 << 30)), 3),
        "peak_anon_mib": round(r["peak_anon_mib"], 1),
        "maxrss_mib": round(r["maxrss_mib"], 1),
        "loadavg": load,
        "command": " ".join(cmd),
    }
    if not ok:
        row["error"] = (r["stderr"] or r["stdout"])[-2000:]
    c.log(
        "  %-10s %6.1f MB/s  %5.2fs  cpu %5.2fs (seeders %5.2fs)  anon %6.1f MiB  maxrss %6.1f MiB  load %s%s"
        % (engine, row["mb_s"], row["seconds"], row["leecher_cpu_s"], row["seeders_cpu_s"], row["peak_anon_mib"],
           row["maxrss_mib"], load, "" if ok else "  FAILED")
    )
    shutil_rm(d)
    return row


def shutil_rm(d):
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def summarize(rows, engine):
    good = [r for r in rows if r["engine"] == engine and r["ok"]]
    if not good:
        return None
    return {
        k: c.median([r[k] for r in good])
        for k in ("mb_s", "seconds", "leecher_cpu_s", "seeders_cpu_s", "cpu_s_per_gib", "peak_anon_mib", "maxrss_mib")
    } | {"runs": len(good)}


def print_targets(result, e):
    """The issue-17 targets, met or not (the MB/s ratio means something only on an idle machine)."""
    print("targets (issue 17), load average now %s:" % c.loadavg())
    rows = []
    if result["ratio_mb_s"] is not None:
        rows.append((result["ratio_mb_s"] >= 2.0, "MB/s vs libtorrent", "x%.2f" % result["ratio_mb_s"], ">= x2.00"))
        rows.append((result["ratio_cpu_total"] <= 0.5, "leecher + seeder CPU per GiB vs libtorrent",
                     "x%.2f" % result["ratio_cpu_total"], "<= x0.50"))
    if e:
        rows.append((e["peak_anon_mib"] <= 64, "leecher peak RssAnon", "%.1f MiB" % e["peak_anon_mib"], "<= 64 MiB"))
    for ok, what, got, want in rows:
        print("  %-3s %-44s %-10s %s" % ("yes" if ok else "NO", what, got, want))


def main(name, n_seeders, argv):
    c.need(name, [(c.PEER, None), ("cmp", "diffutils")])
    c.need_libtorrent(name)
    size = c.arg_size(argv, 1 << 30)
    runs = c.arg_int(argv, "--runs", 3)
    lt_default = "--lt-default" in argv
    verify = "--no-verify" not in argv
    data, torrent = c.make_data(size)
    want = c.info_hash(torrent)
    c.warm(data)
    c.log("%s: %d MiB, %d seeder(s) -> 1 leecher, %d runs per engine, alternating; load %s"
          % (name, size >> 20, n_seeders, runs, c.loadavg()))
    seeders = {}
    try:
        seeders[ENJ] = start_seeders(ENJ, n_seeders, data, torrent, want)
        seeders[LT] = start_seeders(LT, n_seeders, data, torrent, want)
        rows = []
        for i in range(runs):
            order = (ENJ, LT) if i % 2 == 0 else (LT, ENJ)
            for engine in order:
                rows.append(one_run(engine, torrent, data, seeders[engine], lt_default, verify))
    finally:
        for group in seeders.values():
            for s in group:
                s.stop()
    e, l = summarize(rows, ENJ), summarize(rows, LT)
    result = {
        "size": size,
        "seeders": n_seeders,
        "runs": rows,
        ENJ: e,
        LT: l,
        "lt_settings": "default" if lt_default else "high_performance_seed",
        "ratio_mb_s": round(e["mb_s"] / l["mb_s"], 2) if e and l else None,
        "ratio_cpu": round(e["leecher_cpu_s"] / l["leecher_cpu_s"], 2) if e and l else None,
        # The CPU target: leecher + seeder(s) CPU seconds per GiB moved, against libtorrent's.
        "ratio_cpu_total": round(e["cpu_s_per_gib"] / l["cpu_s_per_gib"], 2) if e and l else None,
    }
    c.save(name, result)
    print("%s (%d MiB, %d seeder(s), median of %d runs each; MB = 10^6 bytes)" % (name, size >> 20, n_seeders, runs))
    print("  %-10s %8s %8s %10s %11s %12s %11s" % ("engine", "MB/s", "seconds", "cpu s", "seeders s", "anon MiB", "maxrss MiB"))
    for engine, s in ((ENJ, e), (LT, l)):
        if s:
            print("  %-10s %8.1f %8.2f %10.2f %11.2f %12.1f %11.1f" % (
                engine, s["mb_s"], s["seconds"], s["leecher_cpu_s"], s["seeders_cpu_s"], s["peak_anon_mib"], s["maxrss_mib"]))
        else:
            print("  %-10s   no successful run" % engine)
    if result["ratio_mb_s"] is not None:
        print("  enjambre/libtorrent: MB/s x%.2f, leecher CPU x%.2f, leecher + seeder CPU per GiB x%.2f (%.2f / %.2f s)"
              % (result["ratio_mb_s"], result["ratio_cpu"], result["ratio_cpu_total"], e["cpu_s_per_gib"],
                 l["cpu_s_per_gib"]))
    print_targets(result, e)
    return 0 if e and l and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main("transfer", 1, sys.argv))
