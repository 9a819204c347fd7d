//! The tracker client: announce and scrape over HTTP, plus the catalog calls (list, fetch, publish, swarm),
//! over any [`Transport`]. Every call runs under a deadline ([`ClientOptions::limits`]`.timeout`), covering
//! the connect and the whole exchange.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::proto::{
    announce_query, parse_announce_reply, parse_scrape_reply, percent_encode, AnnounceParams,
    AnnounceReply, TrackerProtoError,
};
use enjambre_core::tracker::registry::{FileSummary, ScrapeStats, SwarmView};

use url::{Host, ParseError, Url};

use crate::http::{self, HttpError, HttpLimits};
use crate::transport::Transport;

/// Why a tracker call failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerClientError {
    /// The URL is not a usable `http://host[:port]/path` URL.
    #[error("bad tracker URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting failed.
    #[error("cannot connect to tracker: {0}")]
    Connect(io::Error),
    /// The call did not finish in time.
    #[error("tracker call timed out")]
    Timeout,
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(HttpError),
    /// The tracker answered with an error status; `message` is its `error` field or body text.
    #[error("tracker answered {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The error message.
        message: String,
    },
    /// The announce or scrape response is unusable, or a `failure reason`.
    #[error(transparent)]
    Proto(#[from] TrackerProtoError),
    /// A UDP tracker's answer is malformed (BEP 15).
    #[error("bad UDP tracker answer: {0}")]
    Udp(#[from] enjambre_core::tracker::udp::UdpPacketError),
    /// A UDP tracker answered with the wrong kind of packet (named) for the request.
    #[error("UDP tracker answered with an unexpected {0} packet")]
    UdpUnexpected(&'static str),
    /// A catalog response is not the expected JSON.
    #[error("bad JSON from tracker: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<HttpError> for TrackerClientError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Timeout => TrackerClientError::Timeout,
            e => TrackerClientError::Http(e),
        }
    }
}

/// Options of a tracker call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Size limits and the deadline of each call.
    pub limits: HttpLimits,
}

/// A parsed `http://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 if not given).
    pub port: u16,
    /// Path starting with `/`.
    pub path: String,
    /// Query without `?`, if any.
    pub query: Option<String>,
}

/// A URL parsed by the `url` crate, checked against what a tracker URL may be: the scheme `scheme` (else
/// `wrong_scheme`), a host, no credentials, no port 0. A `#fragment` is dropped.
fn parse_url(
    url: &str,
    scheme: &str,
    wrong_scheme: &'static str,
) -> Result<Url, TrackerClientError> {
    let bad = |reason| TrackerClientError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| {
        bad(match e {
            ParseError::RelativeUrlWithoutBase => "missing scheme",
            ParseError::EmptyHost => "missing host",
            ParseError::InvalidPort => "bad port",
            ParseError::InvalidIpv6Address => "bad IPv6 address",
            _ => "not a URL",
        })
    })?;
    if parsed.scheme() != scheme {
        return Err(bad(wrong_scheme));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials in URL are not supported"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if parsed.port() == Some(0) {
        return Err(bad("bad port"));
    }
    Ok(parsed)
}

/// The host of a URL that has one, IPv6 without brackets.
fn host_of(url: &Url) -> String {
    match url.host() {
        Some(Host::Ipv6(ip)) => ip.to_string(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Domain(name)) => name.to_string(),
        None => String::new(),
    }
}

/// A parsed `udp://host:port[/path]` tracker URL (BEP 15; the port is required, the path ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl UdpUrl {
    /// Parse a `udp://` URL.
    pub fn parse(url: &str) -> Result<UdpUrl, TrackerClientError> {
        let parsed = parse_url(url, "udp", "not a udp:// URL")?;
        let port = parsed.port().ok_or_else(|| TrackerClientError::BadUrl {
            url: url.to_string(),
            reason: "a udp:// tracker URL needs a port",
        })?;
        Ok(UdpUrl {
            host: host_of(&parsed),
            port,
        })
    }
}

impl HttpUrl {
    /// Parse an `http://` URL. `https` and other schemes are refused; a `#fragment` is dropped.
    pub fn parse(url: &str) -> Result<HttpUrl, TrackerClientError> {
        let parsed = parse_url(url, "http", "only http:// is supported")?;
        Ok(HttpUrl {
            host: host_of(&parsed),
            port: parsed.port_or_known_default().unwrap_or(80),
            path: parsed.path().to_string(),
            query: parsed.query().map(str::to_string),
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Path plus `extra` query appended with `?` or `&` after any existing query.
    pub fn target_with_query(&self, extra: &str) -> String {
        match &self.query {
            Some(q) if !q.is_empty() => format!("{}?{q}&{extra}", self.path),
            _ => format!("{}?{extra}", self.path),
        }
    }

    /// The catalog base URL: `http://host[:port]` and the [`Self::base_path`] (the port left out when 80).
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let port = if self.port == 80 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("http://{host}{port}{}", self.base_path())
    }

    /// The catalog base path: the path without a trailing `/announce` and without trailing `/`.
    fn base_path(&self) -> &str {
        let p = self.path.trim_end_matches('/');
        p.strip_suffix("/announce")
            .unwrap_or(p)
            .trim_end_matches('/')
    }
}

async fn connect<T: Transport>(
    transport: &T,
    url: &HttpUrl,
) -> Result<T::Stream, TrackerClientError> {
    let stream = match url.host.parse::<IpAddr>() {
        Ok(ip) => transport.connect(SocketAddr::new(ip, url.port)).await,
        Err(_) => transport.connect_host(&url.host, url.port).await,
    };
    stream.map_err(TrackerClientError::Connect)
}

/// One GET or POST with connect and exchange under the deadline.
async fn call<T: Transport>(
    transport: &T,
    url: &HttpUrl,
    target: &str,
    post_body: Option<(&str, &[u8])>,
    opts: &ClientOptions,
) -> Result<(u16, Vec<u8>), TrackerClientError> {
    let limits = opts.limits;
    let work = async {
        let mut stream = connect(transport, url).await?;
        let host = url.host_header();
        let result = match post_body {
            None => http::get(&mut stream, &host, target, &limits).await,
            Some((ct, body)) => http::post(&mut stream, &host, target, ct, body, &limits).await,
        };
        Ok::<_, TrackerClientError>(result?)
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .map_err(|_| TrackerClientError::Timeout)?
}

fn status_error(status: u16, body: &[u8]) -> TrackerClientError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    TrackerClientError::Status { status, message }
}

/// Announce to `announce_url`: `http://host:port/path` (the query appended with `?` or `&`) or
/// `udp://host:port` (BEP 15, see [`crate::udp_tracker_client`]).
pub async fn announce<T: Transport>(
    transport: &T,
    announce_url: &str,
    params: &AnnounceParams,
) -> Result<AnnounceReply, TrackerClientError> {
    announce_with(transport, announce_url, params, &ClientOptions::default()).await
}

/// [`announce`] with explicit options.
pub async fn announce_with<T: Transport>(
    transport: &T,
    announce_url: &str,
    params: &AnnounceParams,
    opts: &ClientOptions,
) -> Result<AnnounceReply, TrackerClientError> {
    if announce_url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
    {
        let url = UdpUrl::parse(announce_url)?;
        let udp = crate::udp_tracker_client::UdpOptions {
            deadline: opts.limits.timeout,
            ..Default::default()
        };
        return crate::udp_tracker_client::announce(transport, &url, params, &udp).await;
    }
    let url = HttpUrl::parse(announce_url)?;
    let target = url.target_with_query(&announce_query(params));
    let (status, body) = call(transport, &url, &target, None, opts).await?;
    match parse_announce_reply(&body) {
        Ok(reply) if status == 200 => Ok(reply),
        // Some trackers send a failure reason with an error status: the reason is the better message.
        Err(e @ TrackerProtoError::Failure(_)) => Err(e.into()),
        Ok(_) => Err(status_error(status, &body)),
        Err(_) if status != 200 => Err(status_error(status, &body)),
        Err(e) => Err(e.into()),
    }
}

/// Scrape `hashes` (all torrents if empty) from the tracker of `announce_url`; the scrape URL is the
/// announce URL with its last `announce` path segment replaced by `scrape` (BEP 48 convention).
pub async fn scrape<T: Transport>(
    transport: &T,
    announce_url: &str,
    hashes: &[InfoHash],
) -> Result<BTreeMap<InfoHash, ScrapeStats>, TrackerClientError> {
    let mut url = HttpUrl::parse(announce_url)?;
    let Some(prefix) = url
        .path
        .strip_suffix("announce")
        .filter(|p| p.ends_with('/'))
    else {
        return Err(TrackerClientError::BadUrl {
            url: announce_url.to_string(),
            reason: "no /announce to scrape",
        });
    };
    url.path = format!("{prefix}scrape");
    let query: Vec<String> = hashes
        .iter()
        .map(|h| format!("info_hash={}", percent_encode(&h.0)))
        .collect();
    let target = if query.is_empty() && url.query.is_none() {
        url.path.clone()
    } else {
        url.target_with_query(&query.join("&"))
    };
    let (status, body) = call(transport, &url, &target, None, &ClientOptions::default()).await?;
    if status != 200 {
        return Err(status_error(status, &body));
    }
    Ok(parse_scrape_reply(&body)?)
}

/// The catalog URL `suffix` (e.g. `/files`) relative to `base` — a base URL, or an announce URL whose
/// `/announce` is stripped.
fn catalog_target(base: &str, suffix: &str) -> Result<(HttpUrl, String), TrackerClientError> {
    let url = HttpUrl::parse(base)?;
    let target = format!("{}{suffix}", url.base_path());
    Ok((url, target))
}

async fn catalog_get<T: Transport>(
    transport: &T,
    base: &str,
    suffix: &str,
) -> Result<Vec<u8>, TrackerClientError> {
    let (url, target) = catalog_target(base, suffix)?;
    let (status, body) = call(transport, &url, &target, None, &ClientOptions::default()).await?;
    if status != 200 {
        return Err(status_error(status, &body));
    }
    Ok(body)
}

/// List the published files (`GET /files`).
pub async fn list_files<T: Transport>(
    transport: &T,
    base_url: &str,
) -> Result<Vec<FileSummary>, TrackerClientError> {
    Ok(serde_json::from_slice(
        &catalog_get(transport, base_url, "/files").await?,
    )?)
}

/// Fetch the metainfo published under `name` (`GET /files/{name}`); an unknown name is
/// [`TrackerClientError::Status`] 404.
pub async fn fetch_metainfo<T: Transport>(
    transport: &T,
    base_url: &str,
    name: &str,
) -> Result<Vec<u8>, TrackerClientError> {
    catalog_get(
        transport,
        base_url,
        &format!("/files/{}", percent_encode(name.as_bytes())),
    )
    .await
}

/// Publish a metainfo (`POST /files`); returns its catalog entry. Publishing the same torrent again is fine;
/// another torrent under a taken name is refused with status 409.
pub async fn publish<T: Transport>(
    transport: &T,
    base_url: &str,
    metainfo: &[u8],
) -> Result<FileSummary, TrackerClientError> {
    let (url, target) = catalog_target(base_url, "/files")?;
    let post = Some(("application/x-bittorrent", metainfo));
    let (status, body) = call(transport, &url, &target, post, &ClientOptions::default()).await?;
    if !(200..300).contains(&status) {
        return Err(status_error(status, &body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The swarm view (`GET /swarm`).
pub async fn swarm<T: Transport>(
    transport: &T,
    base_url: &str,
) -> Result<SwarmView, TrackerClientError> {
    Ok(serde_json::from_slice(
        &catalog_get(transport, base_url, "/swarm").await?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = HttpUrl::parse("http://10.0.0.1:6969/announce").expect("ok");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str(), u.query.clone()),
            ("10.0.0.1", 6969, "/announce", None)
        );
        assert_eq!(u.target_with_query("a=1"), "/announce?a=1");
        assert_eq!(u.base_path(), "");
        let u = HttpUrl::parse("HTTP://tracker.lan/x/announce?key=abc#frag").expect("ok");
        assert_eq!((u.host.as_str(), u.port), ("tracker.lan", 80));
        assert_eq!(u.target_with_query("a=1"), "/x/announce?key=abc&a=1");
        assert_eq!(u.base_path(), "/x");
        let u = HttpUrl::parse("http://[::1]:7000").expect("ok");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 7000, "/")
        );
        assert_eq!(u.host_header(), "[::1]:7000");
        assert_eq!(
            HttpUrl::parse("http://h:1/base/").expect("ok").base_path(),
            "/base"
        );
        assert_eq!(
            HttpUrl::parse("http://T.lan:80/x/announce/")
                .expect("ok")
                .base_url(),
            "http://t.lan/x"
        );
        assert_eq!(
            HttpUrl::parse("http://[::1]:7000/announce")
                .expect("ok")
                .base_url(),
            "http://[::1]:7000"
        );
        let u = UdpUrl::parse("udp://[::1]:6969/announce").expect("ok");
        assert_eq!((u.host.as_str(), u.port), ("::1", 6969));
        let u = UdpUrl::parse("UDP://tracker.lan:80").expect("ok");
        assert_eq!((u.host.as_str(), u.port), ("tracker.lan", 80));
        for bad in [
            "udp://tracker.lan",
            "udp://:80",
            "http://t.lan:80",
            "udp://h:0",
        ] {
            assert!(
                matches!(UdpUrl::parse(bad), Err(TrackerClientError::BadUrl { .. })),
                "{bad}"
            );
        }
        for bad in [
            "https://x/announce",
            "x:6969",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://[::1/",
            "http://u@h/",
        ] {
            assert!(
                matches!(HttpUrl::parse(bad), Err(TrackerClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}
