//! A small HTTP/1.1 over any `AsyncRead + AsyncWrite` stream: just enough for a tracker and its clients.
//!
//! Server side: [`read_request`] reads one request (request line, headers, `Content-Length` body) within
//! [`HttpLimits`], and [`write_response`] answers and closes (`Connection: close`). A server that keeps
//! connections open reads with a [`RequestReader`] (its buffer, with any pipelined bytes, lives from one
//! request to the next) and answers with [`write_response_keep_alive`]. Client side: [`get`] and
//! [`post`] send one request on a fresh stream and read the response (`Content-Length`, chunked, or
//! until end of stream), returning `(status, body)`. Every read is bounded in size and time.
//!
//! Heads (start line and headers) and chunk sizes are parsed by `httparse`; this module keeps only the
//! framing around it (limits, deadlines, `Content-Length`, chunked bodies, absolute-form targets).
//!
//! Why not hyper: the simulators replay a story byte for byte, and how many writes an answer takes moves
//! turmoil's random stream (one write fewer once changed a scenario's verdict), so the writes must stay ours;
//! and hyper would bring nine crates the workspace does not have (hyper, hyper-util, http, http-body,
//! http-body-util, httpdate, want, try-lock, atomic-waker: `cargo tree`, 2026-11-30) for ~630 lines kept here.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size and time limits of one HTTP exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most bytes in the start line plus headers.
    pub max_header_bytes: usize,
    /// Most bytes in a body.
    pub max_body_bytes: usize,
    /// Deadline for reading a whole message (and, for clients, for the whole exchange).
    pub timeout: Duration,
}

impl Default for HttpLimits {
    /// 8 KiB of headers, 4 MiB of body, 10 s.
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 8 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why an HTTP message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// The stream ended before any byte of a message.
    #[error("connection closed")]
    Closed,
    /// The stream ended in the middle of a message.
    #[error("connection closed mid-message")]
    Truncated,
    /// Start line plus headers exceed the limit.
    #[error("headers exceed {max} bytes")]
    HeadersTooLarge {
        /// The limit.
        max: usize,
    },
    /// More header lines than [`MAX_HEADERS`].
    #[error("more than {max} header lines")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The body exceeds the limit.
    #[error("body exceeds {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// The message is not valid HTTP; says which part.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// A request with a `Transfer-Encoding` (request bodies must use `Content-Length`).
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The status a server should answer this error with, or `None` if the connection should just be
    /// dropped (closed, I/O failure).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Io(_) | HttpError::Closed | HttpError::Truncated => None,
            HttpError::Timeout => Some(408),
            HttpError::HeadersTooLarge { .. } | HttpError::TooManyHeaders { .. } => Some(431),
            HttpError::BodyTooLarge { .. } => Some(413),
            HttpError::Malformed(_) => Some(400),
            HttpError::UnsupportedVersion => Some(505),
            HttpError::UnsupportedTransferEncoding => Some(501),
        }
    }
}

/// One HTTP request as read by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target in origin form (`/path?query`); an absolute-form target is reduced to it.
    pub target: String,
    /// Header (name, value) pairs in order; names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
}

impl Request {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The target's query (after `?`), empty if none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the client lets the connection stay open after the answer: HTTP/1.1 unless it says
    /// `Connection: close`, HTTP/1.0 only if it says `Connection: keep-alive`.
    pub fn wants_keep_alive(&self) -> bool {
        let has_token = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if has_token("close") {
            return false;
        }
        self.minor_version >= 1 || has_token("keep-alive")
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Headers besides `Content-Type`, `Content-Length` and `Connection` (e.g. CORS).
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A response with the given status, content type and body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            extra_headers: Vec::new(),
        }
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }
}

/// The standard reason phrase of a status code (`""` for ones this crate does not use).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Most header lines in one message (more is answered `431`).
pub const MAX_HEADERS: usize = 64;

/// Owned header (name, value) pairs, in order.
type Headers = Vec<(String, String)>;

/// What a head parser makes of a buffer: the head's length and what it parsed (`None`: incomplete yet).
type HeadParse<T> = Result<Option<(usize, T)>, HttpError>;

/// Buffered reading of HTTP framing from a stream.
struct Reader<'a, S> {
    stream: &'a mut S,
    buf: Vec<u8>,
}

/// Bytes asked of the stream per read: a whole tracker request fits in one, and a connection that sends
/// nothing more costs no more than this.
const READ_CHUNK: usize = 1024;

impl<'a, S: AsyncRead + Unpin> Reader<'a, S> {
    fn new(stream: &'a mut S) -> Self {
        Reader::with_buffer(stream, Vec::new())
    }

    /// A reader that starts with bytes already read from `stream`.
    fn with_buffer(stream: &'a mut S, buf: Vec<u8>) -> Self {
        Reader { stream, buf }
    }

    /// Read at most `max` more bytes into the buffer (at most what it holds already, or [`READ_CHUNK`]:
    /// a buffer grows only as fast as the client fills it); `false` at end of stream.
    async fn fill(&mut self, max: usize) -> Result<bool, HttpError> {
        let want = max.clamp(1, self.buf.len().max(READ_CHUNK));
        self.buf.reserve(want);
        let n = self
            .stream
            .read_buf(&mut (&mut self.buf).limit(want))
            .await?;
        Ok(n > 0)
    }

    /// Read until `parse` recognizes a complete head of at most `max` bytes at the start of the buffer;
    /// `parse` returns the head's length and what it parsed, or `None` while the head is incomplete.
    async fn head<T>(
        &mut self,
        max: usize,
        mut parse: impl FnMut(&[u8]) -> HeadParse<T>,
    ) -> Result<T, HttpError> {
        loop {
            if !self.buf.is_empty() {
                if let Some((len, head)) = parse(&self.buf)? {
                    if len > max {
                        return Err(HttpError::HeadersTooLarge { max });
                    }
                    self.buf.drain(..len);
                    return Ok(head);
                }
            }
            if self.buf.len() >= max {
                return Err(HttpError::HeadersTooLarge { max });
            }
            if !self.fill(max - self.buf.len()).await? {
                return Err(if self.buf.is_empty() {
                    HttpError::Closed
                } else {
                    HttpError::Truncated
                });
            }
        }
    }

    /// Read exactly `n` body bytes.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        if self.buf.len() >= n {
            return Ok(self.buf.drain(..n).collect());
        }
        let mut out = std::mem::take(&mut self.buf);
        let have = out.len();
        out.resize(n, 0);
        let rest = out.get_mut(have..).unwrap_or_default();
        match self.stream.read_exact(rest).await {
            Ok(_) => Ok(out),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(HttpError::Truncated),
            Err(e) => Err(e.into()),
        }
    }

    /// Read one CRLF- or LF-terminated line of at most `max` bytes (chunked framing).
    async fn line(&mut self, max: usize) -> Result<String, HttpError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > max {
                return Err(HttpError::Malformed("chunk line too long"));
            }
            if !self.fill(usize::MAX).await? {
                return Err(HttpError::Truncated);
            }
        }
    }

    /// Read until the end of the stream, at most `max` bytes.
    async fn read_to_limit(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        loop {
            if self.buf.len() > max {
                return Err(HttpError::BodyTooLarge { max });
            }
            if !self.fill(usize::MAX).await? {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }

    /// Read a chunked body, at most `max` bytes of payload.
    async fn chunked(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let size = self
                .head(1024, |buf| match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((len, size))) => Ok(Some((len, size))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(_) => Err(HttpError::Malformed("chunk size")),
                })
                .await
                .map_err(|e| match e {
                    HttpError::HeadersTooLarge { .. } => {
                        HttpError::Malformed("chunk line too long")
                    }
                    HttpError::Closed => HttpError::Truncated,
                    e => e,
                })?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !self.line(8 * 1024).await?.is_empty() {}
                return Ok(body);
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if body.len().saturating_add(size) > max {
                return Err(HttpError::BodyTooLarge { max });
            }
            body.extend_from_slice(&self.exact(size).await?);
            if !self.line(2).await?.is_empty() {
                return Err(HttpError::Malformed("chunk terminator"));
            }
        }
    }
}

/// Owned (name, value) pairs of parsed headers; values are trimmed, and read as UTF-8 with replacement.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Headers {
    headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            (h.name.to_string(), value)
        })
        .collect()
}

/// What went wrong in a head `httparse` refused. A version it does not know is `505` only if it still
/// reads as HTTP (`HTTP/2`); `first_line` is the start line, for that check.
fn head_error(e: httparse::Error, first_line: &[u8], version_at_end: bool) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders { max: MAX_HEADERS },
        httparse::Error::Version => {
            let line = first_line.split(|&b| b == b'\n').next().unwrap_or_default();
            let mut words = line.split(|&b| b == b' ');
            let version = if version_at_end {
                words.nth(2)
            } else {
                words.next()
            };
            if version.is_some_and(|v| v.starts_with(b"HTTP/")) {
                HttpError::UnsupportedVersion
            } else {
                HttpError::Malformed("HTTP version")
            }
        }
        httparse::Error::Status => HttpError::Malformed("status code"),
        httparse::Error::HeaderName | httparse::Error::HeaderValue => {
            HttpError::Malformed("header line")
        }
        httparse::Error::Token | httparse::Error::NewLine => HttpError::Malformed("request line"),
    }
}

/// The body length announced by `Content-Length` (0 if absent); conflicting values are malformed.
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, HttpError> {
    let mut found: Option<usize> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Malformed("Content-Length"));
        }
        // Overflowing digits are simply a huge length.
        let n = v.parse::<usize>().unwrap_or(usize::MAX);
        if found.is_some_and(|f| f != n) {
            return Err(HttpError::Malformed("conflicting Content-Length"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Reduce an absolute-form target (`http://host/path`) to origin form (`/path`).
fn origin_form(target: &str) -> Result<String, HttpError> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("http://") {
        let rest = target.get(7..).unwrap_or_default();
        return Ok(match rest.find(['/', '?']) {
            Some(i) if rest.get(i..).is_some_and(|r| r.starts_with('/')) => {
                rest.get(i..).unwrap_or("/").to_string()
            }
            Some(i) => format!("/{}", rest.get(i..).unwrap_or_default()),
            None => "/".to_string(),
        });
    }
    Err(HttpError::Malformed("request target"))
}

/// What a request head holds: method, target, headers and minor HTTP version.
type RequestHead = (String, String, Headers, u8);

/// The start line and headers of a request, parsed from the start of `buf` (`None`: not complete yet).
fn parse_request_head(buf: &[u8]) -> HeadParse<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(head_error(e, buf, true)),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpError::Malformed("request line"));
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    let target = origin_form(target)?;
    let minor_version = req.version.unwrap_or(1);
    Ok(Some((
        len,
        (
            method.to_string(),
            target,
            owned_headers(req.headers),
            minor_version,
        ),
    )))
}

/// Reads the requests of one connection in turn, keeping the bytes read past a request (the start of a
/// pipelined next one) for the next call. It holds at most about `max_header_bytes` between requests.
#[derive(Debug, Default)]
pub struct RequestReader {
    buf: Vec<u8>,
}

impl RequestReader {
    /// A reader with nothing buffered, for a new connection.
    pub fn new() -> Self {
        RequestReader::default()
    }

    /// Bytes read from the stream but not yet part of a returned request.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Read the next request from `stream` within the size `limits`; the caller bounds it in time. After
    /// an error (or if the call is cancelled) the connection must be closed: the framing is lost.
    pub async fn next_untimed<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        limits: &HttpLimits,
    ) -> Result<Request, HttpError> {
        let mut reader = Reader::with_buffer(stream, std::mem::take(&mut self.buf));
        let (method, target, headers, minor_version) = reader
            .head(limits.max_header_bytes, parse_request_head)
            .await?;
        if header(&headers, "transfer-encoding").is_some() {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        let len = content_length(&headers)?.unwrap_or(0);
        if len > limits.max_body_bytes {
            return Err(HttpError::BodyTooLarge {
                max: limits.max_body_bytes,
            });
        }
        let body = reader.exact(len).await?;
        self.buf = reader.buf;
        Ok(Request {
            method,
            target,
            headers,
            body,
            minor_version,
        })
    }
}

/// Read one request from `stream` within the size `limits` (bytes past it are dropped); the caller
/// bounds it in time (see [`read_request`]).
pub async fn read_request_untimed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &HttpLimits,
) -> Result<Request, HttpError> {
    RequestReader::new().next_untimed(stream, limits).await
}

/// Read one request from `stream` within `limits` (size and deadline).
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &HttpLimits,
) -> Result<Request, HttpError> {
    tokio::time::timeout(limits.timeout, read_request_untimed(stream, limits))
        .await
        .map_err(|_| HttpError::Timeout)?
}

/// Write `resp` with `Connection: close`, flush and shut the write side down (for a caller that still
/// reads from the stream afterwards, e.g. to linger before closing).
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
) -> io::Result<()> {
    write_response_keep_alive(stream, resp, false).await
}

/// Write `resp` and flush; with `keep_alive` it says `Connection: keep-alive` and leaves the stream open
/// for the next request, else it says `Connection: close` and shuts the write side down.
pub async fn write_response_keep_alive<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    // One vectored write where the stream takes one (a socket: one system call, one segment, where two
    // writes cost the tracker ~11% more CPU, bench/RESULTS.md); streams that write one buffer at a time
    // (turmoil's, the flow engine's) still get head and body as two writes, as the simulator's scenarios
    // were recorded (turmoil draws its RNG per segment: one write fewer moves flaky-disk's faults).
    let head = response_head(resp, keep_alive);
    let mut message = Buf::chain(head.as_bytes(), resp.body.as_slice());
    stream.write_all_buf(&mut message).await?;
    stream.flush().await?;
    if keep_alive {
        return Ok(());
    }
    stream.shutdown().await
}

/// The status line and headers of `resp`, with the blank line that ends them.
fn response_head(resp: &Response, keep_alive: bool) -> String {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(128);
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        resp.status,
        reason_phrase(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.extra_headers {
        // A header value never carries a line break: that would split the head.
        let value: String = value
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect();
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The status and headers of a response, parsed from the start of `buf` (`None`: not complete yet).
fn parse_response_head(buf: &[u8]) -> HeadParse<(u16, Headers)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.ok_or(HttpError::Malformed("status code"))?;
            Ok(Some((len, (status, owned_headers(resp.headers)))))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(head_error(e, buf, false)),
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    target: &str,
    body: Option<(&str, &[u8])>,
    limits: &HttpLimits,
) -> Result<(u16, Vec<u8>), HttpError> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept-Encoding: identity\r\n");
    if let Some((content_type, data)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            data.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if let Some((_, data)) = body {
        stream.write_all(data).await?;
    }
    stream.flush().await?;

    let mut reader = Reader::new(stream);
    let (status, headers) = reader
        .head(limits.max_header_bytes, parse_response_head)
        .await?;
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        reader.chunked(limits.max_body_bytes).await?
    } else if let Some(len) = content_length(&headers)? {
        if len > limits.max_body_bytes {
            return Err(HttpError::BodyTooLarge {
                max: limits.max_body_bytes,
            });
        }
        reader.exact(len).await?
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        reader.read_to_limit(limits.max_body_bytes).await?
    };
    Ok((status, body))
}

/// Send `GET target` (with `Host: host`) on a fresh stream and read the response within `limits`.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    target: &str,
    limits: &HttpLimits,
) -> Result<(u16, Vec<u8>), HttpError> {
    tokio::time::timeout(
        limits.timeout,
        exchange(stream, "GET", host, target, None, limits),
    )
    .await
    .map_err(|_| HttpError::Timeout)?
}

/// Send `POST target` with `body` of `content_type` on a fresh stream and read the response within `limits`.
pub async fn post<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
    limits: &HttpLimits,
) -> Result<(u16, Vec<u8>), HttpError> {
    let exchange = exchange(
        stream,
        "POST",
        host,
        target,
        Some((content_type, body)),
        limits,
    );
    tokio::time::timeout(limits.timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncWriteExt};

    fn limits() -> HttpLimits {
        HttpLimits {
            max_header_bytes: 256,
            max_body_bytes: 64,
            timeout: Duration::from_secs(2),
        }
    }

    /// Feed `input` (then end of stream) to `read_request`.
    async fn parse(input: &[u8]) -> Result<Request, HttpError> {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(input).await.expect("write");
        client.shutdown().await.expect("shutdown");
        read_request(&mut server, &limits()).await
    }

    #[tokio::test]
    async fn reads_requests() {
        let req =
            parse(b"POST /files?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloEXTRA")
                .await
                .expect("ok");
        assert_eq!(
            (req.method.as_str(), req.path(), req.query()),
            ("POST", "/files", "x=1")
        );
        assert_eq!(req.header("host"), Some("a"));
        assert_eq!(req.body, b"hello");
        let req = parse(b"GET /scrape HTTP/1.0\n\n").await.expect("bare LF");
        assert_eq!(
            (req.path(), req.query(), req.body.len()),
            ("/scrape", "", 0)
        );
        let req = parse(b"GET http://tracker:6969/announce?a=b HTTP/1.1\r\n\r\n")
            .await
            .expect("absolute");
        assert_eq!(req.target, "/announce?a=b");
        let req = parse(b"GET http://tracker:6969?a=b HTTP/1.1\r\n\r\n")
            .await
            .expect("absolute");
        assert_eq!(req.target, "/?a=b");
    }

    #[tokio::test]
    async fn refuses_bad_requests() {
        assert!(matches!(parse(b"").await, Err(HttpError::Closed)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost").await,
            Err(HttpError::Truncated)
        ));
        assert!(matches!(
            parse(b"\x00\x01\x02\r\n\r\n").await,
            Err(HttpError::Malformed("request line"))
        ));
        assert!(matches!(
            parse(b"get / HTTP/1.1\r\n\r\n").await,
            Err(HttpError::Malformed("method"))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/2\r\n\r\n").await,
            Err(HttpError::UnsupportedVersion)
        ));
        assert!(matches!(
            parse(b"GET / FTP/1\r\n\r\n").await,
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET nope HTTP/1.1\r\n\r\n").await,
            Err(HttpError::Malformed("request target"))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n").await,
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n").await,
            Err(HttpError::Malformed(_))
        ));
        let conflict = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(matches!(
            parse(conflict).await,
            Err(HttpError::Malformed("conflicting Content-Length"))
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").await,
            Err(HttpError::Malformed("Content-Length"))
        ));
        let big = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(
            parse(big).await,
            Err(HttpError::BodyTooLarge { max: 64 })
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").await,
            Err(HttpError::Truncated)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await,
            Err(HttpError::UnsupportedTransferEncoding)
        ));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 1000));
        assert!(matches!(
            parse(&huge).await,
            Err(HttpError::HeadersTooLarge { max: 256 })
        ));
        huge.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse(&huge).await,
            Err(HttpError::HeadersTooLarge { max: 256 })
        ));
        assert_eq!(HttpError::HeadersTooLarge { max: 1 }.status(), Some(431));
    }

    #[tokio::test]
    async fn a_request_reader_keeps_pipelined_bytes() {
        let (mut client, mut server) = duplex(64 * 1024);
        client
            .write_all(b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nxyGET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\nGET")
            .await
            .expect("write");
        client.shutdown().await.expect("shutdown");
        let mut reader = RequestReader::new();
        let a = reader
            .next_untimed(&mut server, &limits())
            .await
            .expect("a");
        assert_eq!((a.target.as_str(), a.body.as_slice()), ("/a", &b"xy"[..]));
        assert!(a.wants_keep_alive(), "HTTP/1.1 by default");
        let b = reader
            .next_untimed(&mut server, &limits())
            .await
            .expect("b");
        assert_eq!((b.target.as_str(), b.minor_version), ("/b", 0));
        assert!(b.wants_keep_alive(), "HTTP/1.0 asking for it");
        let c = reader
            .next_untimed(&mut server, &limits())
            .await
            .expect("c");
        assert_eq!(c.target, "/c");
        assert!(!c.wants_keep_alive(), "Connection: close");
        assert!(matches!(
            reader.next_untimed(&mut server, &limits()).await,
            Err(HttpError::Truncated)
        ));
        let plain_1_0 = parse(b"GET / HTTP/1.0\r\n\r\n").await.expect("1.0");
        assert!(!plain_1_0.wants_keep_alive());
    }

    #[tokio::test]
    async fn read_times_out() {
        let (_client, mut server) = duplex(1024);
        let l = HttpLimits {
            timeout: Duration::from_millis(50),
            ..limits()
        };
        assert!(matches!(
            read_request(&mut server, &l).await,
            Err(HttpError::Timeout)
        ));
    }

    /// Run a client call against a canned response.
    async fn client_with(response: &'static [u8]) -> (Result<(u16, Vec<u8>), HttpError>, Vec<u8>) {
        let (mut client, mut server) = duplex(64 * 1024);
        let srv = tokio::spawn(async move {
            let req = read_request(&mut server, &limits()).await;
            server.write_all(response).await.expect("write");
            server.shutdown().await.expect("shutdown");
            req.map(|r| (r.method, r.target, r.body))
        });
        let result = post(
            &mut client,
            "h:1",
            "/files",
            "application/x-bittorrent",
            b"meta",
            &limits(),
        )
        .await;
        let seen = srv.await.expect("join").expect("server parsed request");
        assert_eq!((seen.0.as_str(), seen.1.as_str()), ("POST", "/files"));
        (result, seen.2)
    }

    #[tokio::test]
    async fn client_reads_responses() {
        let (r, sent) = client_with(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK").await;
        assert_eq!(sent, b"meta");
        assert_eq!(r.expect("ok"), (200, b"ok".to_vec()));
        let (r, _) = client_with(b"HTTP/1.0 404 Not Found\r\n\r\nuntil eof").await;
        assert_eq!(r.expect("ok"), (404, b"until eof".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n";
        let (r, _) = client_with(chunked).await;
        assert_eq!(r.expect("ok"), (200, b"abcde".to_vec()));
        let (r, _) =
            client_with(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n").await;
        assert!(matches!(r, Err(HttpError::BodyTooLarge { max: 64 })));
        let (r, _) = client_with(b"HTTP/1.1 2000 OK\r\n\r\n").await;
        assert!(matches!(r, Err(HttpError::Malformed("status code"))));
        let (r, _) = client_with(b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n").await;
        assert!(matches!(r, Err(HttpError::BodyTooLarge { max: 64 })));
        let (r, _) = client_with(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").await;
        assert!(matches!(r, Err(HttpError::Truncated)));
    }

    #[tokio::test]
    async fn response_is_framed() {
        let (mut a, mut b) = duplex(1024);
        write_response(&mut a, &Response::text(404, "nope"))
            .await
            .expect("write");
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut out)
            .await
            .expect("read");
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
        );
        let (mut a, mut b) = duplex(1024);
        let resp = Response::text(200, "").with_header("Access-Control-Allow-Origin", "*\r\nX: y");
        write_response(&mut a, &resp).await.expect("write");
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut out)
            .await
            .expect("read");
        assert!(out.ends_with(b"Connection: close\r\nAccess-Control-Allow-Origin: *X: y\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_kept_alive_response_leaves_the_stream_open() {
        let (mut a, mut b) = duplex(1024);
        write_response_keep_alive(&mut a, &Response::text(200, "ok"), true)
            .await
            .expect("write");
        a.write_all(b"more").await.expect("still open");
        drop(a);
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut out)
            .await
            .expect("read");
        assert!(out.ends_with(b"Connection: keep-alive\r\n\r\nokmore"));
    }
}
