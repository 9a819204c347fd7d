//! `[[group]]`: many alike peers in one table, so that a thousand peers do not need a thousand `[[peer]]`s.
//! On loading, a group becomes its members (`NAME-1` ... `NAME-N`, numbers zero-padded to the width of N)
//! plus the `start` events of its join pattern and the `leave` events of its departures. Everywhere a peer
//! is named (expectations, events, conditions, sources), `NAME` stands for every member and `NAME[i]` for
//! the i-th (from 1).

use crate::scenario::{
    Action, Condition, EventSpec, PeerSpec, Scenario, ScenarioError, Size, Span,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a group's members join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Join {
    /// All at the start of the story.
    #[default]
    Together,
    /// One after the other, evenly over `join_over`.
    Spread,
    /// Poisson arrivals: exponential gaps of mean `join_every`, drawn from the scenario's seed.
    Poisson,
}

/// A group of alike peers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Name of the group; members are `NAME-1` ... `NAME-N`.
    pub name: String,
    /// Members.
    pub count: usize,
    /// Files each member starts with.
    #[serde(default)]
    pub has: Vec<String>,
    /// Files each member fetches.
    #[serde(default)]
    pub get: Vec<String>,
    /// Upload rate of each member (its cap, and its link's upload capacity under the flow engine).
    #[serde(default)]
    pub upload_rate: Option<Size>,
    /// Download rate of each member (as `upload_rate`).
    #[serde(default)]
    pub download_rate: Option<Size>,
    /// Join pattern (`together`, `spread`, `poisson`).
    #[serde(default)]
    pub join: Join,
    /// When the first member joins.
    #[serde(default)]
    pub join_at: Option<Span>,
    /// `spread`: the time over which members join.
    #[serde(default)]
    pub join_over: Option<Span>,
    /// `poisson`: the mean gap between two arrivals.
    #[serde(default)]
    pub join_every: Option<Span>,
    /// Each member leaves this long after completing its downloads (stays when absent).
    #[serde(default)]
    pub leave_after: Option<Span>,
    /// Research knobs of every member (as a `[[peer]]`'s `knobs`).
    #[serde(default)]
    pub knobs: crate::scenario::Knobs,
    /// Every member gets its files from magnet links (as a `[[peer]]`'s `magnet`).
    #[serde(default)]
    pub magnet: bool,
    /// Peer exchange of every member (as a `[[peer]]`'s `pex`).
    #[serde(default)]
    pub pex: Option<bool>,
}

fn invalid(m: String) -> ScenarioError {
    ScenarioError::Invalid(m)
}

/// Names of the members of `g`.
pub fn member_names(g: &GroupSpec) -> Vec<String> {
    let width = g.count.to_string().len();
    (1..=g.count)
        .map(|i| format!("{}-{i:0width$}", g.name))
        .collect()
}

/// When each member joins (from the story's start).
fn join_times(g: &GroupSpec, seed: u64) -> Result<Vec<Duration>, ScenarioError> {
    let first = g.join_at.map_or(Duration::ZERO, |s| s.0);
    let n = g.count;
    Ok(match g.join {
        Join::Together => vec![first; n],
        Join::Spread => {
            let over = g
                .join_over
                .ok_or_else(|| invalid(format!("group {}: `spread` needs `join_over`", g.name)))?
                .0;
            (0..n)
                .map(|i| first + over.mul_f64(i as f64 / n.max(1) as f64))
                .collect()
        }
        Join::Poisson => {
            let mean = g
                .join_every
                .ok_or_else(|| invalid(format!("group {}: `poisson` needs `join_every`", g.name)))?
                .0;
            let d = Sha1::digest(format!("{seed}/join/{}", g.name).as_bytes());
            let mut key = [0u8; 32];
            key[..20].copy_from_slice(&d);
            let mut rng = ChaCha8Rng::from_seed(key);
            let mut t = first;
            (0..n)
                .map(|_| {
                    let at = t;
                    // Uniform in (0, 1]: never ln(0).
                    let u = (f64::from(rng.next_u32()) + 1.0) / 4_294_967_296.0;
                    t += mean.mul_f64(-u.ln());
                    at
                })
                .collect()
        }
    })
}

/// Replace every group of `s` by its members and their start and leave events, and resolve group names and
/// `NAME[i]` addresses wherever peers are named.
pub fn expand(s: &mut Scenario) -> Result<(), ScenarioError> {
    if s.groups.is_empty() {
        return Ok(());
    }
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in std::mem::take(&mut s.groups) {
        if g.count == 0 || g.count > crate::scenario::MAX_FLOW_PEERS {
            return Err(invalid(format!(
                "group {}: `count` must be from 1 to {}",
                g.name,
                crate::scenario::MAX_FLOW_PEERS
            )));
        }
        let names = member_names(&g);
        let times = join_times(&g, s.seed)?;
        for (name, at) in names.iter().zip(times) {
            let delayed = !at.is_zero();
            s.peers.push(PeerSpec {
                name: name.clone(),
                has: g.has.clone(),
                get: g.get.clone(),
                sources: Vec::new(),
                magnet: g.magnet,
                pex: g.pex,
                upload_rate: g.upload_rate,
                download_rate: g.download_rate,
                sequential: false,
                delayed,
                disk_latency: None,
                disk_free: None,
                knobs: g.knobs.clone(),
            });
            if delayed {
                s.events.push(event(Action::Start, name, Some(at), None));
            }
            if let Some(after) = g.leave_after {
                let when = Condition {
                    peer: name.clone(),
                    file: None,
                    pieces: None,
                    percent: None,
                    checkpoints: None,
                    complete: true,
                    disk_stalled: false,
                };
                let mut e = event(Action::Leave, name, None, Some(when));
                e.after = Some(after);
                s.events.push(e);
            }
        }
        if members.insert(g.name.clone(), names).is_some() {
            return Err(invalid(format!("group {} is declared twice", g.name)));
        }
    }
    resolve_names(s, &members)
}

fn event(action: Action, peer: &str, at: Option<Duration>, when: Option<Condition>) -> EventSpec {
    EventSpec {
        at: at.map(Span),
        when,
        after: None,
        after_previous: false,
        action,
        peer: Some(peer.to_string()),
        from: Vec::new(),
        latency: None,
    }
}

/// `NAME[i]` to the i-th member's name; `NAME` to every member; anything else as it is.
fn resolve(
    name: &str,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, ScenarioError> {
    if let Some(all) = members.get(name) {
        return Ok(all.clone());
    }
    if let Some((group, rest)) = name.split_once('[') {
        if let (Some(all), Some(index)) = (members.get(group), rest.strip_suffix(']')) {
            let i: usize = index
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{name:?}: the index must be a number")))?;
            return all
                .get(i.wrapping_sub(1))
                .cloned()
                .map(|m| vec![m])
                .ok_or_else(|| {
                    invalid(format!(
                        "{name:?}: group {group} has members 1 to {}",
                        all.len()
                    ))
                });
        }
    }
    Ok(vec![name.to_string()])
}

fn resolve_one(
    name: &str,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<String, ScenarioError> {
    match resolve(name, members)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(invalid(format!(
            "{name:?} names a whole group where one peer is needed (use {name}[i])"
        ))),
    }
}

fn resolve_list(
    list: &mut Vec<String>,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<(), ScenarioError> {
    let mut out = Vec::new();
    for n in list.iter() {
        out.extend(resolve(n, members)?);
    }
    *list = out;
    Ok(())
}

fn resolve_keys<V: Clone>(
    map: &mut BTreeMap<String, V>,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<(), ScenarioError> {
    let mut out = BTreeMap::new();
    for (k, v) in std::mem::take(map) {
        for m in resolve(&k, members)? {
            out.insert(m, v.clone());
        }
    }
    *map = out;
    Ok(())
}

fn resolve_names(
    s: &mut Scenario,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<(), ScenarioError> {
    let x = &mut s.expect;
    resolve_list(&mut x.complete, members)?;
    resolve_list(&mut x.incomplete, members)?;
    resolve_list(&mut x.disk_stalled, members)?;
    resolve_keys(&mut x.resume_at, members)?;
    resolve_keys(&mut x.resumed_at_least, members)?;
    resolve_keys(&mut x.max_upload_copies, members)?;
    resolve_keys(&mut x.min_sources, members)?;
    resolve_keys(&mut x.banned, members)?;
    for banned in x.banned.values_mut() {
        resolve_list(banned, members)?;
    }
    for p in &mut s.peers {
        resolve_list(&mut p.sources, members)?;
    }
    let mut events = Vec::new();
    for e in std::mem::take(&mut s.events) {
        let mut e = e;
        resolve_list(&mut e.from, members)?;
        if let Some(c) = &mut e.when {
            c.peer = resolve_one(&c.peer, members)?;
        }
        match e.peer.clone() {
            Some(p) if !e.after_previous => {
                for m in resolve(&p, members)? {
                    let mut one = e.clone();
                    one.peer = Some(m);
                    events.push(one);
                }
            }
            Some(p) => {
                e.peer = Some(resolve_one(&p, members)?);
                events.push(e);
            }
            None => events.push(e),
        }
    }
    s.events = events;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    const TEXT: &str = r#"
name = "g"
seed = 3
[network]
model = "flow"
[[file]]
name = "a.bin"
size = "1MiB"
[[peer]]
name = "seed"
has = ["a.bin"]
[[group]]
name = "early"
count = 3
get = ["a.bin"]
upload_rate = "1MB"
leave_after = "2s"
[[group]]
name = "late"
count = 12
get = ["a.bin"]
join = "poisson"
join_every = "1s"
[[event]]
at = "5s"
action = "corrupt"
peer = "early[2]"
[expect]
complete = ["early", "late[12]"]
max_upload_copies = { early = 2.0 }
"#;

    #[test]
    fn groups_expand_into_members_joins_and_leaves() {
        let s = Scenario::from_toml(TEXT).unwrap();
        assert_eq!(s.peers.len(), 16);
        assert_eq!(s.peers[1].name, "early-1");
        assert_eq!(s.peers[4].name, "late-01");
        assert_eq!(
            s.expect.complete,
            ["early-1", "early-2", "early-3", "late-12"]
        );
        assert_eq!(s.expect.max_upload_copies.len(), 3);
        assert_eq!(s.events[0].peer.as_deref(), Some("early-2"));
        let leaves = s
            .events
            .iter()
            .filter(|e| e.action.name() == "leave")
            .count();
        assert_eq!(leaves, 3);
        // Poisson: the first late member joins at once, the others later, in order, all different.
        let starts: Vec<f64> = s
            .events
            .iter()
            .filter(|e| e.action.name() == "start")
            .map(|e| e.at.unwrap().0.as_secs_f64())
            .collect();
        assert_eq!(starts.len(), 11);
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        let mean = starts.last().unwrap() / 11.0;
        assert!((0.3..3.0).contains(&mean), "mean gap {mean}");
        let other = Scenario::from_toml(&TEXT.replace("seed = 3", "seed = 4")).unwrap();
        let start_times = |s: &Scenario| -> Vec<_> {
            s.events
                .iter()
                .filter(|e| e.action.name() == "start")
                .map(|e| e.at)
                .collect()
        };
        assert_ne!(start_times(&other), start_times(&s));
        assert_eq!(
            start_times(&Scenario::from_toml(TEXT).unwrap()),
            start_times(&s)
        );
    }

    #[test]
    fn bad_addresses_are_named() {
        let e = Scenario::from_toml(&TEXT.replace("early[2]", "early[9]"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("members 1 to 3"), "{e}");
        let e = Scenario::from_toml(&TEXT.replace("join_every = \"1s\"", ""))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs `join_every`"), "{e}");
    }
}
