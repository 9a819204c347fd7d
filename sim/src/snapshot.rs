//! Snapshot files for users' own scenario folders (`sim check DIR --snapshots`): each scenario's summary is
//! kept beside it as `NAME.snap`, in insta's file format (a small header between `---` lines, then the
//! body), so `cargo insta review` can accept a changed one (`NAME.snap.new`) too. The body is the summary as
//! pretty JSON: deterministic (every map is ordered) and without wall-clock numbers.

use crate::report::Report;
use std::io;
use std::path::{Path, PathBuf};

/// What comparing a run with its snapshot found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Same as the snapshot.
    Matched,
    /// No snapshot existed: one was written.
    Created(PathBuf),
    /// It differed and was replaced (`--update`).
    Updated(PathBuf),
    /// It differs: the new one is in `NAME.snap.new`, and `diff` shows the change (`-` old, `+` new).
    Differs {
        /// A unified diff of the bodies.
        diff: String,
        /// Where the new snapshot was written.
        pending: PathBuf,
    },
}

/// The snapshot file of a scenario file (`x.toml` -> `x.snap`).
pub fn snapshot_path(scenario: &Path) -> PathBuf {
    scenario.with_extension("snap")
}

/// The body of a report's snapshot.
pub fn body(report: &Report) -> String {
    serde_json::to_string_pretty(&report.summary()).unwrap_or_default()
}

/// The whole snapshot file: insta's header, then the body.
pub fn render(scenario: &Path, body: &str) -> String {
    let source = scenario
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!("---\nsource: {source}\nexpression: report.summary()\n---\n{body}\n")
}

/// The body of a snapshot file (what follows its header), if it has the format.
pub fn parse_body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    Some(&rest[end + 5..])
}

/// Compare a run of `scenario` with its snapshot; with `update`, accept the new one.
pub fn compare(scenario: &Path, report: &Report, update: bool) -> io::Result<SnapshotOutcome> {
    let path = snapshot_path(scenario);
    let pending = path.with_extension("snap.new");
    let new_body = body(report);
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let Some(old) = old else {
        std::fs::write(&path, render(scenario, &new_body))?;
        return Ok(SnapshotOutcome::Created(path));
    };
    let old_body = parse_body(&old).unwrap_or(&old);
    if old_body.trim_end() == new_body.trim_end() {
        if pending.exists() {
            std::fs::remove_file(&pending)?;
        }
        return Ok(SnapshotOutcome::Matched);
    }
    if update {
        std::fs::write(&path, render(scenario, &new_body))?;
        if pending.exists() {
            std::fs::remove_file(&pending)?;
        }
        return Ok(SnapshotOutcome::Updated(path));
    }
    std::fs::write(&pending, render(scenario, &new_body))?;
    let diff = similar::TextDiff::from_lines(old_body.trim_end(), new_body.trim_end())
        .unified_diff()
        .context_radius(2)
        .header("snapshot", "this run")
        .to_string();
    Ok(SnapshotOutcome::Differs { diff, pending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_snapshot_reads_back_to_its_body() {
        let text = render(Path::new("dir/story.toml"), "{\n  \"a\": 1\n}");
        assert!(text.starts_with("---\nsource: story.toml\n"));
        assert_eq!(parse_body(&text), Some("{\n  \"a\": 1\n}\n"));
        assert_eq!(parse_body("no header"), None);
    }
}
