//! A raw HTTP/1.1 exchange over TCP: send exact bytes, read the whole answer (the tracker closes after one
//! response), split it into status, headers and body.
//!
//! Raw on purpose, not a client crate: the tests send malformed and hostile requests byte for byte, which a
//! client would refuse to write. The response head is parsed by `httparse`, as in net's own client.
//! Not net's client (`enjambre_net::http::get`) even for well-formed GETs: it is async, and these tests are
//! blocking (they drive processes and std sockets); a runtime per call would buy nothing this does not do.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, `Name: value`.
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

/// Most header lines read from a response.
const MAX_HEADERS: usize = 64;

/// Split raw response bytes: the head is parsed by `httparse`, the body cut at its `Content-Length`.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut slots);
    let end = match head.parse(raw) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => {
            return Err(format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(raw)
            ))
        }
        Err(e) => {
            return Err(format!(
                "not an HTTP response ({e}): {:?}",
                String::from_utf8_lossy(raw)
            ))
        }
    };
    let status = head.code.ok_or("no status code")?;
    let headers: Vec<String> = head
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, String::from_utf8_lossy(h.value)))
        .collect();
    let mut body = raw[end..].to_vec();
    let content_length = head.headers.iter().find_map(|h| {
        h.name.eq_ignore_ascii_case("content-length").then(|| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_split_and_cut_at_their_length() {
        let r =
            parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef")
                .expect("parses");
        assert_eq!(r.status, 404);
        assert_eq!(r.headers, ["Content-Length: 3", "X-A: b"]);
        assert_eq!(r.body, b"abc");
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nall of it").expect("parses");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"all of it"[..]));
        for (raw, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"[..],
                "truncated",
            ),
            (b"HTTP/1.1 200 OK\r\nX: y\r\n", "no end of headers"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
        ] {
            let err = parse_response(raw).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }
}
