#!/usr/bin/python3
"""A lean libtorrent node for the benchmarks (Debian python3-libtorrent binds /usr/bin/python3 only).

    lt_node.py seed  --torrent T --dir D [--listen 127.0.0.1:0] [--default-settings]
    lt_node.py leech --torrent T --dir D --peer HOST:PORT... [--timeout S] [--default-settings]

The first stdout line is `listening on 127.0.0.1:PORT`. A seeder prints `seeding` once its data checked
complete and runs until SIGTERM/SIGINT; a leecher exits 0 when every piece is downloaded and hash-checked and
prints one JSON line {seconds, downloaded}. Unlike tests/interop/lt_peer.py (which counts every block through
alerts for the interop assertions), this one asks for no per-block alerts and polls every 20 ms, so that
libtorrent is measured, not the script. Settings: libtorrent's own `high_performance_seed()` pack (unless
--default-settings), no DHT/LSD/UPnP/NAT-PMP, TCP only (enjambre speaks TCP only), several connections per IP.
"""

import argparse
import json
import signal
import sys
import time

import libtorrent as lt


def session(listen, default_settings):
    settings = lt.default_settings() if default_settings else lt.high_performance_seed()
    settings.update(
        {
            "listen_interfaces": listen,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "allow_multiple_connections_per_ip": True,
            "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
        }
    )
    return lt.session(settings)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "leech"])
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--default-settings", action="store_true")
    a = ap.parse_args()

    stop = {"sig": False}

    def on_signal(_s, _f):
        stop["sig"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    ses = session(a.listen, a.default_settings)
    print("listening on %s:%d" % (a.listen.rsplit(":", 1)[0], ses.listen_port()), flush=True)
    ti = lt.torrent_info(a.torrent)
    flags = lt.torrent_flags.default_flags | lt.torrent_flags.disable_pex
    h = ses.add_torrent({"ti": ti, "save_path": a.dir, "flags": flags})
    for spec in a.peer:
        ip, port = spec.rsplit(":", 1)
        h.connect_peer((ip, int(port)))

    announced = False
    last_connect = time.monotonic()
    while not stop["sig"]:
        for alert in ses.pop_alerts():
            if alert.category() & lt.alert.category_t.error_notification:
                print("lt: %s: %s" % (alert.what(), alert.message()), file=sys.stderr, flush=True)
        s = h.status()
        if a.mode == "seed":
            if not announced and s.is_seeding:
                announced = True
                print("seeding", flush=True)
        elif s.is_seeding:
            print(
                json.dumps({"seconds": round(time.monotonic() - t0, 3), "downloaded": s.total_payload_download}),
                flush=True,
            )
            return 0
        if time.monotonic() - t0 > a.timeout:
            print("timeout", file=sys.stderr, flush=True)
            return 1
        if a.mode == "leech" and a.peer and s.num_peers < len(a.peer) and time.monotonic() - last_connect > 1:
            last_connect = time.monotonic()
            for spec in a.peer:
                ip, port = spec.rsplit(":", 1)
                h.connect_peer((ip, int(port)))
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main())
