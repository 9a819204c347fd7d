//! Helpers shared by this crate's unit tests.

use std::path::PathBuf;

/// A fresh folder under the system temp folder, unique to this process, `module` and `name`, removed when
/// dropped.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(module: &str, name: &str) -> Scratch {
        let d =
            std::env::temp_dir().join(format!("enjambre-{module}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create a scratch folder");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
