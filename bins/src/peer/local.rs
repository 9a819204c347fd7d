//! The local file listing (`peer ls`, and the shell's menus 2 and 3).

use anyhow::Context;
use enjambre_net::app::human_bytes;
use enjambre_net::library::{self, LocalEntry};
use enjambre_net::storage::StdStorage;
use std::path::Path;
use std::sync::Arc;

/// The entries of the folder `dir`.
pub fn local_entries(dir: &Path) -> anyhow::Result<Vec<LocalEntry>> {
    let lib = library::scan(Arc::new(StdStorage), dir)
        .with_context(|| format!("cannot list {}", dir.display()))?;
    Ok(lib.entries())
}

/// Print `entries` as a table (numbered for a menu), in one write.
pub fn print_entries(entries: &[LocalEntry], numbered: bool) {
    use std::fmt::Write as _;
    if entries.is_empty() {
        out!("(no files)");
        return;
    }
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = String::new();
    for (i, e) in entries.iter().enumerate() {
        let status = if e.complete {
            "complete".to_string()
        } else {
            format!("partial {:.1}%", e.percent)
        };
        let num = if numbered {
            format!("{:>3}) ", i + 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            text,
            "{num}{:<width$}  {:>10}  {status}",
            e.name,
            human_bytes(e.size)
        );
    }
    out_part!("{text}");
}
