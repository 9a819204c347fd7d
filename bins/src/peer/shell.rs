//! `peer shell`: an interactive menu (download a file, list local files, open a downloaded file, exit)
//! while the folder is served in the background.

use super::local::{local_entries, print_entries};
use super::signals::Signals;
use super::startup::{start_app, StartOptions};
use super::{one_line, App};
use enjambre_net::app::{human_bytes, GetRequest, ServeEvent, ServeOptions, ServeSink};
use enjambre_net::library::{self, LocalEntry};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Lines of stdin, read on a plain thread (a blocked read must not hold up shutdown); `None` at EOF.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line.trim().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        err!("warning: cannot read stdin: {e}");
    }
    rx
}

fn prompt(text: &str) {
    out_part!("{text}");
    let _ = std::io::stdout().flush();
}

/// What the user typed, or why there is nothing to read.
enum Input {
    Line(String),
    Eof,
    Signal(&'static str),
}

async fn read_input(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> Input {
    tokio::select! {
        line = lines.recv() => line.map_or(Input::Eof, Input::Line),
        sig = signals.recv() => Input::Signal(sig),
    }
}

/// The interactive menu (download, list, open, exit) while serving the folder in the background.
pub async fn shell(options: &StartOptions) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let dir = options.dir.as_path();
    let app = start_app(options).await?;
    out!("listening on {}", app.local_addr());
    let quiet: ServeSink = Arc::new(|event| match event {
        ServeEvent::Skipped { name, error } => err!("warning: not sharing {name}: {error}"),
        ServeEvent::PublishFailed { name, error } => {
            err!("warning: {name} not published to the catalog: {error}")
        }
        _ => {}
    });
    let options = ServeOptions::default();
    let served = tokio::select! {
        r = app.serve_folder(&options, quiet) => r,
        sig = signals.recv() => {
            err!("{sig}: stopping");
            app.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    match served {
        Ok(served) => out!(
            "sharing {} file(s) from {} in the background",
            served.len(),
            dir.display()
        ),
        Err(e) => err!("warning: cannot share {}: {e}", dir.display()),
    }
    let mut lines = stdin_lines();
    loop {
        out!();
        out!("1) download a file   2) list local files   3) open a downloaded file   4) exit");
        prompt("> ");
        let choice = match read_input(&mut lines, &mut signals).await {
            Input::Line(l) => l,
            Input::Eof => {
                out!();
                break;
            }
            Input::Signal(sig) => {
                err!("\n{sig}: stopping");
                break;
            }
        };
        let outcome = match choice.as_str() {
            "" => Ok(true),
            "1" => shell_download(&app, dir, &mut lines, &mut signals).await,
            "2" => local_entries(dir).map(|entries| {
                print_entries(&entries, false);
                true
            }),
            "3" => shell_open(dir, &mut lines, &mut signals).await,
            "4" | "q" | "quit" | "exit" => break,
            other => {
                out!("unknown choice {other:?}: type 1, 2, 3 or 4");
                Ok(true)
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => out!("error: {}", one_line(&e)),
        }
    }
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Menu 1: pick a catalog file and download it (it is then shared like the rest). `Ok(false)` = stop the shell.
async fn shell_download(
    app: &App,
    dir: &Path,
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let files = app.list_catalog().await?;
    if files.is_empty() {
        out!("the tracker's catalog is empty");
        return Ok(true);
    }
    for (i, f) in files.iter().enumerate() {
        out!(
            "{:>3}) {:<32} {:>10}  {} seeder(s)",
            i + 1,
            f.name,
            human_bytes(f.size),
            f.seeders
        );
    }
    prompt("file number or name (empty to cancel): ");
    let answer = match read_input(lines, signals).await {
        Input::Line(l) => l,
        Input::Eof | Input::Signal(_) => return Ok(false),
    };
    if answer.is_empty() {
        return Ok(true);
    }
    let name = match answer.parse::<usize>() {
        Ok(n) if (1..=files.len()).contains(&n) => files[n - 1].name.clone(),
        _ => answer,
    };
    let request = GetRequest {
        names: vec![name],
        ..GetRequest::default()
    };
    let hashes = app.get(&request).await?;
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let wait = app.wait_all(
        &hashes,
        Duration::from_millis(250),
        |stats| {
            if let Some(s) = stats.first() {
                let pct = library::percent(s.pieces_have, s.pieces_total);
                let line = format!(
                    "downloading {}: {pct:.1}% from {} source(s)",
                    s.name, s.peers
                );
                if tty {
                    out_part!("\r{line}   ");
                    let _ = std::io::stdout().flush();
                } else if line != last {
                    out!("{line}");
                }
                last = line;
            }
        },
        |_| {},
    );
    let reports = tokio::select! {
        r = wait => r?,
        sig = signals.recv() => {
            err!("\n{sig}: stopping (the download resumes next time)");
            return Ok(false);
        }
    };
    if tty {
        out!();
    }
    for r in &reports {
        out!("{}", r.summary_line());
        out!("saved as {}", dir.join(&r.name).display());
    }
    Ok(true)
}

/// The system's opener, if there is one on PATH.
fn opener() -> Option<&'static str> {
    let path = std::env::var_os("PATH")?;
    ["xdg-open", "open"].into_iter().find(|name| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(name)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// Menu 3: pick a complete local file and open it (or print its path). `Ok(false)` = stop the shell.
async fn shell_open(
    dir: &Path,
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let entries: Vec<LocalEntry> = local_entries(dir)?
        .into_iter()
        .filter(|e| e.complete)
        .collect();
    if entries.is_empty() {
        out!("no complete files yet");
        return Ok(true);
    }
    print_entries(&entries, true);
    prompt("file number (empty to cancel): ");
    let answer = match read_input(lines, signals).await {
        Input::Line(l) => l,
        Input::Eof | Input::Signal(_) => return Ok(false),
    };
    if answer.is_empty() {
        return Ok(true);
    }
    let entry = match answer.parse::<usize>() {
        Ok(n) if (1..=entries.len()).contains(&n) => &entries[n - 1],
        _ => match entries.iter().find(|e| e.name == answer) {
            Some(e) => e,
            None => {
                out!("no file {answer:?}");
                return Ok(true);
            }
        },
    };
    let path =
        std::fs::canonicalize(dir.join(&entry.name)).unwrap_or_else(|_| dir.join(&entry.name));
    match opener() {
        Some(cmd) => {
            let spawned = std::process::Command::new(cmd)
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(mut child) => {
                    // Reap it when it exits (xdg-open returns at once; `open` may linger).
                    std::thread::spawn(move || child.wait());
                    out!("opened {} with {cmd}", path.display());
                }
                Err(e) => out!("cannot run {cmd} ({e}); the file is {}", path.display()),
            }
        }
        None => out!("{}", path.display()),
    }
    Ok(true)
}
