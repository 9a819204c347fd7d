//! Sources that fail: one killed mid-download, one serving corrupt data. The download completes from the
//! honest, living sources, byte-identical, and the corrupt source is banned.

use enjambre_tests::bins::{get, parse_listening, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use enjambre_tests::proc::Proc;
use enjambre_tests::{read_checkpoint, wait_for};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// How a source fails in [`source_fails_midway`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// SIGKILL: its connections close at once.
    Killed,
    /// SIGSTOP: its connections stay open and go silent.
    Stalled,
}

/// Stop `pid` with SIGSTOP through the shell's `kill` builtin (no libc here).
fn sigstop(pid: u32) {
    let status = Command::new("sh")
        .args(["-c", "kill -STOP \"$0\"", &pid.to_string()])
        .status()
        .expect("run sh");
    assert!(status.success(), "kill -STOP {pid} failed");
}

#[test]
fn download_survives_a_source_killed_midway() {
    source_fails_midway(Failure::Killed);
}

#[test]
fn download_survives_a_source_stalled_midway() {
    source_fails_midway(Failure::Stalled);
}

/// Two capped seeders S1, S2 and a leecher L; S1 fails once L has a third of the file; L completes from S2.
fn source_fails_midway(failure: Failure) {
    const NAME: &str = "failover.bin";
    const SIZE: u64 = 24 * 1024 * 1024 + 3;
    let scratch = Scratch::new(&format!("failover-{failure:?}"));
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let s1_dir = scratch.dir("s1");
    let s2_dir = scratch.dir("s2");
    write_pattern_file(&s1_dir.join(NAME), SIZE, 31);
    write_pattern_file(&s2_dir.join(NAME), SIZE, 31);
    let mut s1 = serve(
        "S1",
        &scratch,
        &PeerArgs::new(Some(&tracker), &s1_dir).upload_rate("6MB"),
        &[NAME],
    );
    let s2 = serve(
        "S2",
        &scratch,
        &PeerArgs::new(Some(&tracker), &s2_dir).upload_rate("6MB"),
        &[NAME],
    );
    assert_eq!(
        s1.seeding[NAME], s2.seeding[NAME],
        "same file, same info hash"
    );
    let hash = s1.seeding[NAME].clone();
    for (label, s) in [("S1", &s1), ("S2", &s2)] {
        watch.watch(label, s.proc.pid());
        watch.claim(label, s.addr.port());
    }

    let l_dir = scratch.dir("l");
    let mut l = get(
        "L",
        &scratch,
        &PeerArgs::new(Some(&tracker), &l_dir),
        &[NAME],
        &[],
    );
    watch.watch("L", l.proc.pid());
    wait_for(
        "L to verify a third of the pieces",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || read_checkpoint(&l_dir, &hash).filter(|cp| cp.verified_count * 3 >= cp.piece_count),
    );
    match failure {
        Failure::Killed => s1.proc.kill(),
        Failure::Stalled => sigstop(s1.proc.pid()),
    }
    let at_kill = read_checkpoint(&l_dir, &hash).expect("checkpoint");
    assert!(
        !at_kill.complete,
        "finished before the kill: lower the caps"
    );
    println!(
        "{failure:?} S1 at {}/{} pieces",
        at_kill.verified_count, at_kill.piece_count
    );

    let r = l.reports(1, Duration::from_secs(90)).remove(0);
    assert_same_file(&s2_dir.join(NAME), &l_dir.join(NAME));
    let mut from: BTreeMap<String, u64> = BTreeMap::new();
    for (addr, bytes) in &r.sources {
        let owner = watch
            .owner(addr)
            .unwrap_or_else(|| panic!("bytes from unknown {addr}: {r:?} {:?}", watch.snapshot()));
        *from.entry(owner).or_default() += bytes;
    }
    println!(
        "{failure:?}: L's bytes by source: {from:?}, {:.2} s",
        r.seconds
    );
    if failure == Failure::Stalled {
        // The stalled requests must move on after the request timeout (10 s), not wait for the idle
        // timeout (45 s) to drop the silent connection.
        assert!(
            r.seconds < 35.0,
            "L took {:.1} s: the stall was not detected by the request timeout",
            r.seconds
        );
    }
    assert!(
        from.get("S1").is_some_and(|&n| n > 0),
        "S1 served nothing before it died: {from:?}"
    );
    assert!(from.get("S2").is_some_and(|&n| n > 0), "{from:?}");
    assert!(
        from.values().sum::<u64>() >= SIZE,
        "the sources do not account for the file: {from:?}"
    );
}

/// How the corrupt peer meets the leecher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meeting {
    /// Through the tracker (the leecher usually dials it).
    Tracker,
    /// The corrupt peer dials the leecher, which sees it only as an inbound connection.
    DialsIn,
}

#[test]
fn corrupt_source_is_banned_and_the_file_completes_from_honest_ones() {
    corrupt_source(Meeting::Tracker, false);
}

#[test]
fn corrupt_source_dialling_in_is_banned() {
    corrupt_source(Meeting::DialsIn, false);
}

/// A peer is identified by its address *and port*; for a peer that dialled in, that is the listening
/// address it sent in its extension handshake, not the ephemeral port of its connection.
#[test]
#[ignore = "known bug: a peer that dialled in is reported in `sources`/`banned` (and struck and banned) \
            under its connection's ephemeral port, not the listening address from its BEP 10 handshake"]
fn corrupt_source_dialling_in_is_banned_under_its_listening_address() {
    corrupt_source(Meeting::DialsIn, true);
}

/// A free loopback port (bound, read, released: the caller binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// An honest capped seeder H, a fast corrupt seeder X and a leecher L: L completes with the right bytes and
/// bans X (and only X); with `by_listen_address`, under X's listening address.
fn corrupt_source(meeting: Meeting, by_listen_address: bool) {
    const NAME: &str = "corrupt.bin";
    const SIZE: u64 = 8 * 1024 * 1024 + 1000;
    let scratch = Scratch::new(&format!("corrupt-{meeting:?}"));
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let h_dir = scratch.dir("honest");
    let x_dir = scratch.dir("corrupt");
    write_pattern_file(&h_dir.join(NAME), SIZE, 41);
    write_pattern_file(&x_dir.join(NAME), SIZE, 41);
    // The honest seeder is slow, the corrupt one fast: the leecher is sure to take pieces from both.
    let h = serve(
        "H",
        &scratch,
        &PeerArgs::new(Some(&tracker), &h_dir).upload_rate("3MB"),
        &[NAME],
    );
    watch.watch("H", h.proc.pid());
    watch.claim("H", h.addr.port());
    let l_dir = scratch.dir("l");
    let mut l_args = PeerArgs::new(Some(&tracker), &l_dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrupt_peer"));
    cmd.arg("--dir")
        .arg(&x_dir)
        .args(["--file", NAME, "--corrupt-every", "2"]);
    match meeting {
        Meeting::Tracker => {
            cmd.args(["--tracker", &tracker.url()]);
        }
        Meeting::DialsIn => {
            // X does not announce: L can only meet it by X dialling L's (known) listening port.
            l_args.listen = format!("127.0.0.1:{}", free_port());
            cmd.args(["--connect", &l_args.listen]);
        }
    }
    let start_l = || {
        let l = get("L", &scratch, &l_args, &[NAME], &[]);
        watch.watch("L", l.proc.pid());
        l
    };
    // Through the tracker, X must be seeding before L asks; dialling in, L must be listening before X dials.
    let early_l = (meeting == Meeting::DialsIn).then(start_l);
    let mut x = Proc::spawn("X", cmd, scratch.path());
    watch.watch("X", x.pid());
    let x_addr = x.wait_line("`listening on`", Duration::from_secs(20), parse_listening);
    let x_hash = x.wait_line("`seeding`", Duration::from_secs(20), |l| {
        l.strip_prefix("seeding ")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .map(str::to_string)
    });
    assert_eq!(
        x_hash, h.seeding[NAME],
        "the corrupt peer seeds the same torrent"
    );
    watch.claim("X", x_addr.port());
    let mut l = early_l.unwrap_or_else(start_l);
    let r = l.reports(1, Duration::from_secs(90)).remove(0);
    println!("leecher report: {r:?}");
    assert_same_file(&h_dir.join(NAME), &l_dir.join(NAME));
    assert!(
        r.bytes_wasted > 0,
        "corrupt pieces must count as wasted: {r:?}"
    );
    assert!(
        !r.banned.is_empty(),
        "the corrupt peer was not banned: {r:?}"
    );
    // X prints the local address of each connection it opens: those ports are X's for sure, however short
    // the connection was.
    for line in x.drain_lines() {
        let local = line
            .strip_prefix("connected ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        if let Some(local) = local {
            watch.claim("X", local.port());
        }
    }
    for addr in &r.banned {
        let owner = watch.owner(addr);
        let listening = watch.is_listening(addr.port());
        println!(
            "{meeting:?}: banned {addr}, {owner:?}'s {} address",
            if listening {
                "listening"
            } else {
                "connection's ephemeral"
            }
        );
        assert_eq!(
            owner.as_deref(),
            Some("X"),
            "banned {addr}, which is not the corrupt peer (ports: {:?})",
            watch.snapshot()
        );
        if by_listen_address {
            assert_eq!(
                *addr, x_addr,
                "the corrupt peer listens on {x_addr}, but was banned as {addr}"
            );
        }
    }
    let honest: u64 = r
        .sources
        .iter()
        .filter(|(a, _)| watch.owner(a).as_deref() == Some("H"))
        .map(|(_, b)| b)
        .sum();
    assert!(honest > 0, "nothing came from the honest seeder: {r:?}");
    assert!(x.is_running(), "the corrupt peer crashed");
    wait_for(
        "the checkpoint to say complete",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || read_checkpoint(&l_dir, &h.seeding[NAME]).filter(|cp| cp.complete),
    );
}

/// Invariant 1 across peers: L, fed half-corrupt data by X (which only L knows), passes on to M only pieces
/// it verified. M takes bytes from L and never sees a piece fail, nor bans anyone.
#[test]
fn corrupt_data_is_not_passed_on() {
    const NAME: &str = "relay.bin";
    const SIZE: u64 = 8 * 1024 * 1024 + 1000;
    const PIECE: u64 = 512 * 1024;
    let scratch = Scratch::new("relay");
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let h_dir = scratch.dir("honest");
    let x_dir = scratch.dir("corrupt");
    write_pattern_file(&h_dir.join(NAME), SIZE, 71);
    write_pattern_file(&x_dir.join(NAME), SIZE, 71);
    let h = serve(
        "H",
        &scratch,
        &PeerArgs::new(Some(&tracker), &h_dir).upload_rate("3MB"),
        &[NAME],
    );
    watch.watch("H", h.proc.pid());
    let hash = h.seeding[NAME].clone();

    let l_dir = scratch.dir("l");
    let mut l_args = PeerArgs::new(Some(&tracker), &l_dir);
    l_args.listen = format!("127.0.0.1:{}", free_port());
    let mut l = get("L", &scratch, &l_args, &[NAME], &["--seed"]);
    watch.watch("L", l.proc.pid());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrupt_peer"));
    cmd.arg("--dir").arg(&x_dir).args([
        "--file",
        NAME,
        "--corrupt-every",
        "2",
        "--connect",
        &l_args.listen,
    ]);
    let x = Proc::spawn("X", cmd, scratch.path());
    watch.watch("X", x.pid());

    // M joins once L holds a few verified pieces.
    wait_for(
        "L to verify 4 pieces",
        Duration::from_secs(30),
        Duration::from_millis(10),
        || read_checkpoint(&l_dir, &hash).filter(|cp| cp.verified_count >= 4),
    );
    let m_dir = scratch.dir("m");
    let mut m = get(
        "M",
        &scratch,
        &PeerArgs::new(Some(&tracker), &m_dir),
        &[NAME],
        &[],
    );
    watch.watch("M", m.proc.pid());
    let rm = m.reports(1, Duration::from_secs(90)).remove(0);
    let rl = l.read_reports(1, Duration::from_secs(90)).remove(0);
    println!("L: {rl:?}\nM: {rm:?}");
    assert_same_file(&h_dir.join(NAME), &l_dir.join(NAME));
    assert_same_file(&h_dir.join(NAME), &m_dir.join(NAME));
    assert!(
        rl.bytes_wasted >= PIECE,
        "X's corrupt pieces never reached L: {rl:?}"
    );
    let mut from: BTreeMap<String, u64> = BTreeMap::new();
    for (addr, bytes) in &rm.sources {
        let owner = watch
            .owner(addr)
            .unwrap_or_else(|| panic!("bytes from unknown {addr}: {:?}", watch.snapshot()));
        *from.entry(owner).or_default() += bytes;
    }
    println!("M's bytes by source: {from:?}");
    assert!(!from.contains_key("X"), "M met X: {from:?}");
    assert!(
        from.get("L").is_some_and(|&n| n > 0),
        "M took nothing from L: {from:?}"
    );
    assert!(rm.banned.is_empty(), "M banned someone: {rm:?}");
    // A failed piece is logged (at warn level, the default) as a `PieceFailed` event: L's log shows X's
    // corrupt pieces, M's must show none. (`bytes_wasted` cannot tell: it also counts endgame duplicates.)
    let failed = |p: &Proc| p.stderr_text().matches("PieceFailed").count();
    assert!(
        failed(&l.proc) > 0,
        "L logged no failed piece\n{}",
        l.proc.stderr_tail()
    );
    assert_eq!(
        failed(&m.proc),
        0,
        "a piece failed at M: L passed on unverified data?\n{}",
        m.proc.stderr_tail()
    );
}
