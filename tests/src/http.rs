//! A raw HTTP/1.1 exchange over TCP: send exact bytes, read the whole answer (the tracker closes after one
//! response), split it into status, headers and body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, as sent.
    pub headers: Vec<String>,
    /// The body (everything after the blank line).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `request` as is and read until the server closes (at most `timeout` in all). `Err` carries what
/// went wrong, including a response that is not HTTP.
pub fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before reading everything we send; a failed write is not an error
    // as long as a response arrives.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(format!("read: {e}")),
            // A reset after the response (the server closing with unread input) still leaves a response.
            Err(_) => break,
        }
    }
    parse_response(&raw)
}

/// `GET path` with a Host header.
pub fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes(), Duration::from_secs(10))
}

/// Split raw response bytes.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("headers not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<String> = lines.map(str::to_string).collect();
    let mut body = raw[end + 4..].to_vec();
    let content_length = headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(len) = content_length {
        if body.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", body.len()));
        }
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
