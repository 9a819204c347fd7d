//! Pieces of the `peer` binary, one job each: [`startup`] (bind, port hunting, endpoints), [`signals`],
//! [`progress`] (what `serve` and `get` print while they work), [`local`] (the local file listing) and
//! [`shell`] (the interactive menu).

pub mod local;
pub mod progress;
pub mod shell;
pub mod signals;
pub mod startup;

use enjambre_net::app::PeerApp;
use enjambre_net::storage::ThreadPool;
use enjambre_net::transport::TokioTransport;
use std::io::IsTerminal;

/// The peer application on the real world's seams.
pub type App = PeerApp<TokioTransport, ThreadPool>;

/// Whether stderr is a terminal (progress is drawn in place there).
pub fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// The error and its causes on one line, skipping causes its message already includes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
