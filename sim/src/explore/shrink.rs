//! Shrinking a failing story: try smaller versions (a peer fewer, a fault fewer, a fault kind off, a file
//! fewer, a file of a folder fewer, a folder as a plain file, files halved) and keep each one that still
//! breaks the same property, until none does.

use super::story::{Fault, Story};

/// Smaller variants of `story`, most radical first. Each keeps at least one honest seeder (a story whose
/// only source turns corrupt cannot complete, whatever the peer does) and one downloader.
pub fn candidates(story: &Story) -> Vec<Story> {
    let mut out = Vec::new();
    // Whole fault kinds off.
    for kind in story.kinds() {
        let mut s = story.clone();
        s.faults.retain(|f| f.kind() != kind);
        match kind {
            super::story::FaultKind::IoErrors => s.io_errors = 0.0,
            super::story::FaultKind::TornWrites => s.torn_writes = None,
            super::story::FaultKind::Writeback => s.writeback = 0.0,
            super::story::FaultKind::DelayedJoin => {
                for p in &mut s.peers {
                    p.join_ms = None;
                }
            }
            super::story::FaultKind::DiskFull => {
                s.capacity = None;
                for p in &mut s.peers {
                    p.disk_free = None;
                }
            }
            _ => {}
        }
        push_if_smaller(&mut out, story, s);
    }
    // One peer fewer (with the faults that name it).
    for i in 0..story.peers.len() {
        let mut s = story.clone();
        let gone = s.peers.remove(i);
        s.faults
            .retain(|f| !f.peers().contains(&gone.name.as_str()));
        if !s.has_honest_seeder() {
            continue;
        }
        if s.downloaders().is_empty() {
            continue;
        }
        unfill_disks_never_freed(&mut s);
        push_if_smaller(&mut out, story, s);
    }
    // One fault fewer.
    for i in 0..story.faults.len() {
        let mut s = story.clone();
        let gone = s.faults.remove(i);
        if let Fault::FreeDisk { peer, .. } = &gone {
            if let Some(p) = s.peers.iter_mut().find(|p| p.name == *peer) {
                p.disk_free = None;
            }
        }
        push_if_smaller(&mut out, story, s);
    }
    // One file fewer.
    if story.files.len() > 1 {
        for i in 0..story.files.len() {
            let mut s = story.clone();
            let gone = s.files.remove(i).name;
            for p in &mut s.peers {
                p.has.retain(|f| *f != gone);
                p.get.retain(|f| *f != gone);
            }
            // Faults that watch a peer's progress need it to download something still.
            let fetching: Vec<String> = s.downloaders().iter().map(|p| p.name.clone()).collect();
            s.faults.retain(|f| match f {
                Fault::Latency { .. } | Fault::TrackerDown { .. } => true,
                Fault::Corrupt { watch, .. } => fetching.contains(watch),
                _ => f.peers().iter().all(|p| fetching.iter().any(|n| n == p)),
            });
            unfill_disks_never_freed(&mut s);
            if s.downloaders().is_empty() || !s.has_honest_seeder() {
                continue;
            }
            push_if_smaller(&mut out, story, s);
        }
    }
    // A file of a folder fewer; a folder as one plain file of the same size.
    for (i, f) in story.files.iter().enumerate() {
        for j in 0..f.parts.len() {
            let mut s = story.clone();
            s.files[i].parts.remove(j);
            s.files[i].resize_to_parts();
            if s.files[i].size > 0 {
                push_if_smaller(&mut out, story, s);
            }
        }
        if !f.parts.is_empty() {
            let mut s = story.clone();
            s.files[i].parts.clear();
            push_if_smaller(&mut out, story, s);
        }
    }
    // Files halved (down to a piece; a folder's files each halved).
    let mut s = story.clone();
    for f in &mut s.files {
        if f.parts.is_empty() {
            f.size = (f.size / 2).max(f.piece_size.min(f.size));
        } else {
            for (_, n) in &mut f.parts {
                *n /= 2;
            }
            f.resize_to_parts();
            if f.size == 0 {
                f.parts[0].1 = 1;
                f.size = 1;
            }
        }
    }
    // A full disk stays as full relative to what the peer fetches.
    for p in &mut s.peers {
        if let Some(free) = &mut p.disk_free {
            *free /= 2;
        }
    }
    push_if_smaller(&mut out, story, s);
    // Peers joining at once, latency at its least.
    let mut s = story.clone();
    s.latency_ms = 1;
    push_if_smaller(&mut out, story, s);
    out
}

/// A peer's disk starts full only if a fault frees it later.
fn unfill_disks_never_freed(s: &mut Story) {
    let freed: Vec<String> = s
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::FreeDisk { peer, .. } => Some(peer.clone()),
            _ => None,
        })
        .collect();
    for p in &mut s.peers {
        if !freed.contains(&p.name) {
            p.disk_free = None;
        }
    }
}

fn push_if_smaller(out: &mut Vec<Story>, from: &Story, s: Story) {
    if s != *from {
        out.push(s);
    }
}

/// A measure of a story's size: peers, then events, then bytes.
pub fn size(story: &Story) -> (usize, usize, usize, u64) {
    (
        story.peers.len(),
        story.event_count(),
        story.kinds().len(),
        story.files.iter().map(|f| f.size).sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_shrinks_by_a_file_and_to_a_plain_file_of_its_size() {
        let story = (0..)
            .map(Story::generate)
            .find(|s| s.files.iter().any(|f| f.parts.len() >= 3))
            .expect("some seed has a folder of three files or more");
        let (i, folder) = story
            .files
            .iter()
            .enumerate()
            .find(|(_, f)| f.parts.len() >= 3)
            .expect("found above");
        let all = candidates(&story);
        let fewer: Vec<&Story> = all
            .iter()
            .filter(|s| s.files[i].parts.len() == folder.parts.len() - 1)
            .collect();
        assert!(!fewer.is_empty());
        for s in &fewer {
            let left: u64 = s.files[i].parts.iter().map(|(_, n)| n).sum();
            assert_eq!(s.files[i].size, left);
            assert!(s.files[i].parts.iter().all(|p| folder.parts.contains(p)));
        }
        assert!(all.iter().any(|s| s.files[i].parts.is_empty()
            && s.files[i].size == folder.size
            && s.files[i].name == folder.name));
        // Halving halves each file of the folder.
        assert!(all
            .iter()
            .any(|s| s.files[i].parts.len() == folder.parts.len()
                && s.files[i]
                    .parts
                    .iter()
                    .zip(&folder.parts)
                    .all(|(a, b)| a.0 == b.0 && a.1 == b.1 / 2)));
    }
}
