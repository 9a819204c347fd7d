#!/usr/bin/python3
"""A libtorrent peer for enjambre's interop tests (python3-libtorrent, Debian's binds /usr/bin/python3).

    lt_peer.py info T.torrent...
        Load each torrent with lt.torrent_info and print one JSON line per torrent: name, info hash, piece
        length and count, total size, files (path below the save folder, size). Exits 0; 1 if one fails.

    lt_peer.py create PATH -o OUT.torrent --piece-size N [--tracker URL]
        Make a v1 torrent of a file or folder with libtorrent's own creator (lt.create_torrent), e.g. for the
        16 KiB pieces mktorrent 1.1 refuses. Prints the "info" JSON line of the result.

    lt_peer.py run --dir DIR [--seed T]... [--leech T]... [options]
        One libtorrent session on loopback with every torrent added (data in DIR). The first stdout line is
        `listening on 127.0.0.1:PORT`; then one JSON line per event, each with an "event" key:
          {"event": "ready", ...torrent...}      a torrent finished checking its files
          {"event": "complete", ...torrent...}   a --leech torrent is complete (every piece hash-checked)
          {"event": "final", "ok": bool, "reason": ..., "torrents": [...]}   the last line, then exit
        A torrent object: name, info_hash, role (seed/leech), progress, is_seeding, state, downloaded,
        uploaded (payload bytes), and peers: one entry per peer id it exchanged a handshake with: its client
        kind (enjambre, aria2, libtorrent, other, from the peer id), the peer id, the client name, the
        addresses seen, how the connection came about ("outgoing": libtorrent dialled it; "incoming"; plus
        libtorrent's peer sources such as "tracker") and the payload bytes received from / sent to it
        (exact: counted block by block from alerts).
        It stops and prints "final" when every --leech torrent is complete (unless --linger), on --check-only
        once every torrent is checked, on SIGTERM/SIGINT, or at --timeout (ok=false if a leech is
        incomplete). A --seed torrent whose data does not check complete is an error (ok=false, exit 1).
        Exit status: 0 when ok, 1 otherwise.

Options of run:
    --magnet URI         download a magnet link (repeatable): the metadata comes from peers (BEP 9)
    --listen HOST:PORT   default 127.0.0.1:0 (a free port)
    --tracker URL        announce to URL only, instead of the torrent's own announce URLs
    --peer HOST:PORT     connect to this peer directly (repeatable)
    --upload-rate N      session upload cap, bytes/s (0 = none)
    --timeout S          give up after S seconds (default 60)
    --linger             keep running after the leeches complete (until signalled or the timeout)
    --check-only         stop once every torrent has checked its files (no peers needed)
    --pex                exchange peers (BEP 11 ut_pex) instead of the isolated default
    --no-utp             TCP only (enjambre and aria2 speak TCP only; libtorrent otherwise tries uTP first)
    --peer-log           log every message libtorrent sends and receives (stderr), for debugging
    --dht                run libtorrent's DHT node (BEP 5) on the listen port (UDP), with no bootstrap node
    --dht-bootstrap HOST:PORT   join the DHT through this node (repeatable; implies --dht)
    --dht-announce-interval S   announce every torrent to the DHT about every S seconds (default 2)

The session is isolated: no DHT (unless asked for), local service discovery, UPnP, NAT-PMP or peer
exchange, so a peer can only be found through the tracker, a --peer, the DHT, or by connecting in.
With the DHT, libtorrent's defaults that assume one node per internet address are lifted, since every
test node shares 127.0.0.1: dht_restrict_routing_ips and dht_restrict_search_ips (one routing table entry
and one search result per /24) off, dht_prefer_verified_node_ids and dht_enforce_node_id (BEP 42 node ids
derived from the address) off, dht_ignore_dark_internet off, dht_block_ratelimit (5 messages a second
from one address, then a 5-minute block) raised to 10000, and dht_upload_rate_limit raised to 10 MB/s.
Each torrent is also announced to the DHT as soon as the node has joined (force_dht_announce). Several connections from 127.0.0.1 are
allowed (every test peer shares that address), and loopback peers are treated as internet peers (rate
limits and unchoke slots apply to them, which libtorrent waives for local peers by default).
"""

import argparse
import json
import signal
import sys
import time

import libtorrent as lt

KINDS = [(b"-EJ", "enjambre"), (b"A2-", "aria2"), (b"-LT", "libtorrent")]
SOURCES = [
    (lt.peer_info.tracker, "tracker"),
    (lt.peer_info.dht, "dht"),
    (lt.peer_info.pex, "pex"),
    (lt.peer_info.lsd, "lsd"),
    (lt.peer_info.resume_data, "resume"),
    (0x20, "incoming"),
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def hex_hash(ti):
    try:
        return str(ti.info_hashes().v1)
    except AttributeError:
        return str(ti.info_hash())


def describe(ti):
    fs = ti.files()
    return {
        "name": ti.name(),
        "info_hash": hex_hash(ti),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(),
        "files": [
            {"path": fs.file_path(i).replace("\\", "/"), "size": fs.file_size(i)}
            for i in range(fs.num_files())
            if not fs.file_flags(i) & lt.file_storage.flag_pad_file
        ],
        "trackers": [t.url for t in ti.trackers()],
    }


def cmd_info(paths):
    ok = True
    for path in paths:
        try:
            emit(dict(describe(lt.torrent_info(path)), event="info", torrent=path))
        except Exception as e:  # noqa: BLE001 - report any load failure as data
            emit({"event": "info", "torrent": path, "error": str(e)})
            ok = False
    return 0 if ok else 1


def cmd_create(a):
    import os

    path = os.path.abspath(a.path)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        log("no files in", path)
        return 1
    ct = lt.create_torrent(fs, a.piece_size, flags=lt.create_torrent.v1_only)
    if a.tracker:
        ct.add_tracker(a.tracker)
    ct.set_creator("lt_peer.py (libtorrent %s)" % lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    with open(a.output, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    return cmd_info([a.output])


def hex_of_handle(h):
    try:
        return str(h.info_hashes().v1)
    except AttributeError:
        return str(h.info_hash())


def kind_of(pid):
    for prefix, kind in KINDS:
        if pid.startswith(prefix):
            return kind
    return "other"


def pid_bytes(pid):
    return bytes(pid.to_bytes()) if hasattr(pid, "to_bytes") else bytes(pid)


def endpoint(ep):
    return "%s:%d" % (ep[0], ep[1])


class Tracked:
    """One torrent in the session and everything seen about its peers.

    Payload per peer is counted exactly from block alerts (a block received from / sent to a peer id), so a
    connection that lives for a few milliseconds still counts. Who a peer is and how it was found come from
    connect alerts (`outgoing`: libtorrent dialled it, so it had the address from a tracker or --peer;
    `incoming`) and from sampling the peer list every 100 ms (client name, libtorrent's own peer-source
    flags such as `tracker`).
    """

    def __init__(self, handle, ti, role, info_hash=None):
        self.h = handle
        self.ti = ti  # None for a magnet until its metadata arrives
        self.hash = info_hash or hex_hash(ti)
        self.role = role
        self.ready = False
        self.complete_sent = False
        self.peers = {}  # peer id -> {"addrs", "sources", "client", "downloaded", "uploaded"}
        self.direction = {}  # remote endpoint -> "outgoing" / "incoming" (from connect alerts)

    def peer(self, pid):
        return self.peers.setdefault(
            pid, {"addrs": set(), "sources": set(), "client": "", "downloaded": 0, "uploaded": 0}
        )

    def block_len(self, piece, block):
        ti = self.ti or self.h.torrent_file()
        if ti is None:
            return 0
        return max(0, min(16384, ti.piece_size(piece) - block * 16384))

    def on_alert(self, alert):
        """Account a peer alert of this torrent."""
        ep = endpoint(alert.endpoint)
        if isinstance(alert, lt.peer_connect_alert):
            self.direction[ep] = "outgoing" if "outgoing" in alert.message() else "incoming"
        pid = pid_bytes(alert.pid)
        if pid == bytes(20):
            return  # no handshake yet
        entry = self.peer(pid)
        entry["addrs"].add(ep)
        if ep in self.direction:
            entry["sources"].add(self.direction[ep])
        if isinstance(alert, lt.block_finished_alert):
            entry["downloaded"] += self.block_len(alert.piece_index, alert.block_index)
        elif isinstance(alert, lt.block_uploaded_alert):
            entry["uploaded"] += self.block_len(alert.piece_index, alert.block_index)

    def sample_peers(self):
        for p in self.h.get_peer_info():
            pid = pid_bytes(p.pid)
            if pid == bytes(20):
                continue
            entry = self.peer(pid)
            ep = endpoint(p.ip)
            entry["addrs"].add(ep)
            if ep in self.direction:
                entry["sources"].add(self.direction[ep])
            entry["sources"].add("outgoing" if p.flags & lt.peer_info.local_connection else "incoming")
            for bit, name in SOURCES:
                if p.source & bit:
                    entry["sources"].add(name)
            client = p.client.decode("utf-8", "replace") if isinstance(p.client, bytes) else p.client
            if client:
                entry["client"] = client

    def report(self):
        s = self.h.status()
        if self.ti is None and s.has_metadata:
            self.ti = self.h.torrent_file()
        out = []
        for pid, e in sorted(self.peers.items()):
            out.append(
                {
                    "kind": kind_of(pid),
                    "peer_id": pid.decode("latin-1"),
                    "client": e["client"],
                    "addrs": sorted(e["addrs"]),
                    "sources": sorted(e["sources"]),
                    "downloaded": e["downloaded"],
                    "uploaded": e["uploaded"],
                }
            )
        described = describe(self.ti) if self.ti is not None else {"name": s.name, "info_hash": self.hash}
        return dict(
            described,
            role=self.role,
            progress=s.progress,
            is_seeding=s.is_seeding,
            state=str(s.state),
            downloaded=s.total_payload_download,
            uploaded=s.total_payload_upload,
            error=s.errc.message() if s.errc and s.errc.value() != 0 else "",
            peers=out,
        )


def cmd_run(a):
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = {
        "listen_interfaces": a.listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        # Test timing, not protocol: follow the test tracker's short interval and retry peers quickly.
        "min_announce_interval": 1,
        "min_reconnect_time": 1,
        # Check and run every torrent at once (by default one is checked at a time, 5 seed).
        "active_checking": 64,
        "active_seeds": 1000,
        "active_downloads": 1000,
        "active_limit": 2000,
        "upload_rate_limit": a.upload_rate,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.block_progress_notification
        | lt.alert.category_t.upload_notification,
        # Every block is an alert: room for a whole test's worth between two polls.
        "alert_queue_size": 1000000,
    }
    if a.peer_log:
        settings["alert_mask"] |= lt.alert.category_t.peer_log_notification
    if a.no_utp:
        settings.update({"enable_outgoing_utp": False, "enable_incoming_utp": False})
    dht = a.dht or bool(a.dht_bootstrap)
    if dht:
        settings.update(
            {
                "enable_dht": True,
                "dht_bootstrap_nodes": ",".join(a.dht_bootstrap),
                "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False,
                "dht_prefer_verified_node_ids": False,
                "dht_enforce_node_id": False,
                "dht_ignore_dark_internet": False,
                "dht_block_ratelimit": 10000,
                "dht_upload_rate_limit": 10000000,
                "dht_announce_interval": max(1, int(a.dht_announce_interval)),
            }
        )
        settings["alert_mask"] |= lt.alert.category_t.dht_notification
    ses = lt.session(settings)
    # libtorrent puts loopback and LAN peers in a "local" class that ignores rate limits and unchoke
    # slots. Every test peer is on 127.0.0.1: treat them all as internet peers instead.
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    everyone.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(everyone)
    host = a.listen.rsplit(":", 1)[0]
    port = ses.listen_port()
    print("listening on %s:%d" % (host, port), flush=True)

    tracked = []
    for role, paths in (("seed", a.seed), ("leech", a.leech)):
        for path in paths:
            ti = lt.torrent_info(path)
            # No peer exchange (nor local discovery): peers come from the tracker, a --peer, the DHT
            # when it runs, or by dialling in.
            flags = lt.torrent_flags.default_flags
            if not a.pex:
                flags |= lt.torrent_flags.disable_pex
            params = {"ti": ti, "save_path": a.dir, "flags": flags}
            h = ses.add_torrent(params)
            if a.tracker:
                h.replace_trackers([lt.announce_entry(a.tracker)])
            tracked.append(Tracked(h, ti, role))
    for uri in a.magnet:
        params = lt.parse_magnet_uri(uri)
        params.save_path = a.dir
        params.flags = lt.torrent_flags.default_flags
        if not a.pex:
            params.flags |= lt.torrent_flags.disable_pex
        h = ses.add_torrent(params)
        if a.tracker:
            h.replace_trackers([lt.announce_entry(a.tracker)])
        tracked.append(Tracked(h, None, "leech", hex_of_handle(h)))
    by_hash = {t.hash: t for t in tracked}

    def drain_alerts():
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.dht_bootstrap_alert):
                for t in tracked:
                    t.h.force_dht_announce()
            if isinstance(alert, lt.peer_alert):
                t = by_hash.get(hex_of_handle(alert.handle))
                if t is not None:
                    t.on_alert(alert)
            if not alert.what().startswith("block_"):
                log("lt:", alert.what(), alert.message())

    for spec in a.peer:
        ip, p = spec.rsplit(":", 1)
        for t in tracked:
            t.h.connect_peer((ip, int(p)))

    t0 = time.time()
    ok, reason = True, ""
    while True:
        drain_alerts()
        for t in tracked:
            t.sample_peers()
            s = t.h.status()
            checking = s.state in (
                lt.torrent_status.states.checking_files,
                lt.torrent_status.states.checking_resume_data,
            )
            if not t.ready and not checking and s.has_metadata:
                t.ready = True
                if t.ti is None:
                    t.ti = t.h.torrent_file()
                emit(dict(t.report(), event="ready"))
                if t.role == "seed" and not s.is_seeding:
                    ok, reason = False, "seed data of %s checks %.1f%% complete" % (t.ti.name(), s.progress * 100)
            if t.role == "leech" and s.is_seeding and not t.complete_sent:
                t.complete_sent = True
                drain_alerts()
                emit(dict(t.report(), event="complete", seconds=round(time.time() - t0, 3)))
        if not ok:
            break
        if stop["signal"]:
            reason = stop["signal"]
            break
        if a.check_only and all(t.ready for t in tracked):
            reason = "checked"
            break
        leeches = [t for t in tracked if t.role == "leech"]
        if leeches and not a.linger and all(t.complete_sent for t in leeches):
            reason = "complete"
            break
        if time.time() - t0 > a.timeout:
            reason = "timeout"
            if any(not t.complete_sent for t in leeches):
                ok = False
            break
        time.sleep(0.1)
    drain_alerts()
    for t in tracked:
        t.sample_peers()
    emit(
        {
            "event": "final",
            "ok": ok,
            "reason": reason,
            "seconds": round(time.time() - t0, 3),
            "listen_port": port,
            "torrents": [t.report() for t in tracked],
        }
    )
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info")
    info.add_argument("torrents", nargs="+")
    create = sub.add_parser("create")
    create.add_argument("path")
    create.add_argument("-o", "--output", required=True)
    create.add_argument("--piece-size", type=int, required=True)
    create.add_argument("--tracker")
    run = sub.add_parser("run")
    run.add_argument("--dir", required=True)
    run.add_argument("--seed", action="append", default=[])
    run.add_argument("--leech", action="append", default=[])
    run.add_argument("--magnet", action="append", default=[])
    run.add_argument("--listen", default="127.0.0.1:0")
    run.add_argument("--tracker")
    run.add_argument("--peer", action="append", default=[])
    run.add_argument("--upload-rate", type=int, default=0)
    run.add_argument("--timeout", type=float, default=60.0)
    run.add_argument("--linger", action="store_true")
    run.add_argument("--check-only", action="store_true")
    run.add_argument("--no-utp", action="store_true")
    run.add_argument("--pex", action="store_true")
    run.add_argument("--peer-log", action="store_true")
    run.add_argument("--dht", action="store_true")
    run.add_argument("--dht-bootstrap", action="append", default=[])
    run.add_argument("--dht-announce-interval", type=float, default=2.0)
    a = ap.parse_args()
    if a.cmd == "info":
        return cmd_info(a.torrents)
    if a.cmd == "create":
        return cmd_create(a)
    if not a.seed and not a.leech and not a.magnet:
        ap.error("run needs at least one --seed, --leech or --magnet torrent")
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
