//! A child process owned by a test: killed (SIGKILL) and reaped on drop, so that no process outlives its
//! test, even one that panicked. Its stdout is read line by line on a thread; its stderr goes to a log file
//! whose tail is printed when the test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How much of a stderr log is shown when a test fails.
const STDERR_TAIL: usize = 4000;

/// What [`Proc::next_line`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line of stdout (without its newline).
    Text(String),
    /// Stdout is closed.
    End,
    /// Nothing arrived in time.
    Timeout,
}

/// A running child process.
pub struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stderr_log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Start `cmd` with stdin closed, stdout piped and stderr appended to `LOG_DIR/NAME.stderr`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let stderr_log = log_dir.join(format!("{name}.stderr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_log.display()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn stdout reader");
        Proc {
            name: name.to_string(),
            child,
            lines,
            stderr_log,
            exited: None,
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, the end of the output, or nothing within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Line {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Line::Text(line),
            Err(RecvTimeoutError::Disconnected) => Line::End,
            Err(RecvTimeoutError::Timeout) => Line::Timeout,
        }
    }

    /// Every stdout line already received, without waiting.
    pub fn drain_lines(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Read stdout lines until `pick` returns `Some`; panic (with the stderr tail) on end of output or after
    /// `timeout`. Lines not picked are dropped (and shown if it panics).
    pub fn wait_line<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Line::Text(line) => {
                    if let Some(v) = pick(&line) {
                        return v;
                    }
                    seen.push(line);
                }
                Line::End => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    panic!(
                        "{}: stdout ended ({status:?}) before {what}; stdout was {seen:#?}\n{}",
                        self.name,
                        self.stderr_tail()
                    );
                }
                Line::Timeout => panic!(
                    "{}: no {what} within {timeout:?}; stdout was {seen:#?}\n{}",
                    self.name,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Wait for the process to exit on its own; panic after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                if let Some(status) = self.exited {
                    return status;
                }
                panic!("{}: cannot get its exit status", self.name);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send signal `name` (`TERM`, `INT`...) to the process, with the shell's `kill` builtin (no libc here).
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args([
                "-c",
                &format!("kill -{name} \"$0\""),
                &self.pid().to_string(),
            ])
            .status()
            .expect("run sh");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Kill the process with SIGKILL (what `Child::kill` sends on Unix) and reap it.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited = Some(status);
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read(&self.stderr_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last few KiB of the process's stderr, labelled, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!(
            "--- stderr of {} ({}) ---\n{}--- end ---",
            self.name,
            self.stderr_log.display(),
            &text[start..]
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
    }
}
