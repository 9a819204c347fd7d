//! The `peer` binary's front end beyond its command line: output that never panics, startup (port hunting,
//! status and metrics endpoints), signals, progress display and the interactive shell. The application flows
//! themselves live in `enjambre_net::app`; this crate only talks to a terminal.

// Output that never panics: a closed stdout or stderr (e.g. `peer ls | head -1`) is ignored.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
#[macro_export]
macro_rules! out_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($t)*);
        let _ = o.flush();
    }};
}
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
#[macro_export]
macro_rules! err_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

pub mod peer;
