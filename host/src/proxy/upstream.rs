//! Forwarding to the origin.
//!
//! One pooled HTTP/1.1 client for the process (keep-alive, `TCP_NODELAY`). Hop-by-hop headers
//! are removed in both directions (RFC 9110 section 7.6.1): from a request once, when it
//! arrives ([`admit`]), so that the cache key, the policy and the upstream all see the same
//! fields; from a response when it comes back. `Host` is set to the upstream's authority, and
//! `Via` records the hop.
//!
//! Every upstream request of the request path (a fill's, a pass-through's, a write's) is
//! awaited through one method, `Exchange::timed`: its wait is counted and its response head
//! cleaned there, once.
//!
//! The forwarding fields are the gateway's own: `X-Forwarded-For` is the connection's peer,
//! `X-Forwarded-Host` the request's `Host` (or its URI's authority, for HTTP/2) and
//! `X-Forwarded-Proto` `http`. A client's `X-Forwarded-*` and `Forwarded` are dropped at entry
//! unless its address is one of `server.trusted_proxies`; a trusted proxy's are kept, and its
//! address is appended to `X-Forwarded-For`; a client's `X-Real-IP` is dropped likewise.
//! `X-Forwarded-Host` is the client's `Host`, which is in no storage key: an origin that builds
//! links from it must not cache by it (see docs/http-semantics.md).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why the upstream gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream unreachable: {0}")]
    Connect(String),
    /// The request may have reached the upstream, but no answer came back (the connection
    /// broke after it was sent).
    #[error("upstream connection lost before an answer: {0}")]
    Lost(String),
    #[error("upstream body failed: {0}")]
    Body(String),
}

impl UpstreamError {
    pub fn as_str(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "upstream-timeout",
            UpstreamError::Connect(_) => "upstream-connect",
            UpstreamError::Lost(_) => "upstream-lost",
            UpstreamError::Body(_) => "upstream-body",
        }
    }

    /// Whether the upstream may have acted on the request although no answer arrived: a write
    /// then invalidates as if it had succeeded.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, UpstreamError::Timeout(_) | UpstreamError::Lost(_))
    }

    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

pub struct Upstream {
    client: Client<HttpConnector, Body>,
    base: Uri,
    authority: HeaderValue,
}

static VIA: HeaderValue = HeaderValue::from_static("1.1 larder");

impl Upstream {
    pub fn new(base: Uri) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let authority = base
            .authority()
            .map(|a| HeaderValue::from_str(a.as_str()).expect("an authority is a header value"))
            .expect("upstream URL has an authority (checked by the config)");
        Self {
            client,
            base,
            authority,
        }
    }

    /// Sends `parts` + `body` upstream for a client at `peer` (`None`: the gateway's own
    /// request, such as a warm-up); `timeout` bounds the wait for the response head. `parts`
    /// went through [`admit`].
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        peer: Option<IpAddr>,
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_with(parts, peer, parts.headers.clone(), body, timeout)
            .await
    }

    /// [`Upstream::send`] with other request header fields than the client's (a fill's, without
    /// the client's conditionals, or a revalidation's, with the stored validators).
    pub async fn send_with(
        &self,
        parts: &http::request::Parts,
        peer: Option<IpAddr>,
        mut headers: HeaderMap,
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri = Uri::builder()
            .scheme(self.base.scheme_str().unwrap_or("http"))
            .authority(self.base.authority().expect("checked").clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| UpstreamError::Connect(format!("bad request URI: {e}")))?;
        forwarding(&mut headers, &parts.uri, peer);
        headers.insert(header::HOST, self.authority.clone());
        headers.append(header::VIA, VIA.clone());

        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;

        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Lost(error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

impl super::Exchange {
    /// Sends this request upstream with `headers` (the client's, or a fill's: see
    /// [`Upstream::send_with`]), through [`Self::timed`].
    pub(super) async fn forward(
        &self,
        headers: HeaderMap,
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.timed(
            self.gw
                .upstream
                .send_with(&self.parts, self.peer, headers, body, timeout),
        )
        .await
    }

    /// Waits for the response head of an upstream request being `sending`, counts the wait
    /// (for the request's log line and the route's metrics), and cleans the head (see
    /// [`from_upstream`]).
    pub(super) async fn timed(
        &self,
        sending: impl Future<Output = Result<Response<Incoming>, UpstreamError>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let sent = Instant::now();
        let result = sending.await;
        let took = sent.elapsed();
        self.upstream_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.telemetry().upstream(took);
        result.map(|response| {
            let (mut parts, body) = response.into_parts();
            from_upstream(&mut parts.headers);
            Response::from_parts(parts, body)
        })
    }
}

/// What every upstream response goes through: hop-by-hop fields removed, and a `Date` added
/// when the origin sent none or an invalid one (RFC 9110 section 6.6.1), so the response's
/// age can be known.
fn from_upstream(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    let valid_date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| httpdate::parse_http_date(v.trim()).is_ok());
    if !valid_date {
        headers.insert(header::DATE, super::conditional::date_now());
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// NGINX's convention for the client address: a client could name any address in it.
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The client listener speaks plain HTTP.
static HTTP: HeaderValue = HeaderValue::from_static("http");

/// Prepares a request's fields when it arrives, before anything reads them: removes the
/// hop-by-hop fields (and those the client names in `Connection`), and the forwarding fields
/// unless the client at `peer` is a trusted proxy. What remains is what the upstream is sent
/// (plus the gateway's own `Host`, `Via` and forwarding fields), so a variant key computed from
/// it names what the origin answered.
///
/// Costs no allocation for a request with a single `Connection` field.
pub fn admit(headers: &mut HeaderMap, peer: Option<IpAddr>, trusted: &[TrustedProxy]) {
    strip_hop_by_hop(headers);
    let trusted = peer.is_some_and(|ip| trusted.iter().any(|t| t.contains(ip)));
    if !trusted {
        for name in [
            &X_FORWARDED_FOR,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PROTO,
            &FORWARDED,
            &X_REAL_IP,
        ] {
            headers.remove(name);
        }
    }
}

/// Writes the forwarding fields of a request from a client at `peer` (see the module docs):
/// what [`admit`] left of the client's own came from a trusted proxy.
fn forwarding(headers: &mut HeaderMap, uri: &Uri, peer: Option<IpAddr>) {
    if let Some(peer) = peer {
        let mut chain = Vec::new();
        for prior in headers.get_all(&X_FORWARDED_FOR) {
            chain.extend_from_slice(prior.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer.to_canonical().to_string().as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&chain) {
            headers.insert(&X_FORWARDED_FOR, value);
        }
    }
    let host = headers.remove(header::HOST);
    if !headers.contains_key(&X_FORWARDED_HOST) {
        let host = host.or_else(|| {
            uri.authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            headers.insert(&X_FORWARDED_HOST, host);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, HTTP.clone());
    }
}

/// An address or a range of them (`server.trusted_proxies`): `10.0.0.0/8`, `2001:db8::/32`,
/// `192.0.2.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let prefix = u32::from(self.prefix);
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or a CIDR range (10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(TrustedProxy {
            network: network.to_canonical(),
            prefix,
        })
    }
}

/// Removes the hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The values leave the map before the names they hold are removed from it. One line (a
    // plain `Connection: keep-alive`) is moved out, which costs no allocation; several are
    // copied.
    let lines = headers.get_all(header::CONNECTION).iter().count();
    let (first, rest): (Option<HeaderValue>, Vec<HeaderValue>) = match lines {
        0 => (None, Vec::new()),
        1 => (headers.remove(header::CONNECTION), Vec::new()),
        _ => (
            None,
            headers
                .get_all(header::CONNECTION)
                .iter()
                .cloned()
                .collect(),
        ),
    };
    for value in first.iter().chain(&rest) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',') {
            // A name that is not a field name names nothing.
            headers.remove(name.trim());
        }
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_those_named_by_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn every_connection_field_names_what_goes() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Accept-Language"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" x-a ,, not a name"),
        );
        for name in ["accept-language", "x-a", "accept"] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::ACCEPT]);
    }

    fn request(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        fields
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    /// The forwarding fields, by name.
    fn forwarded(h: &HeaderMap) -> Vec<(&str, &str)> {
        let mut fields: Vec<_> = h
            .iter()
            .filter(|(n, _)| n.as_str().contains("forwarded"))
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        fields.sort();
        fields
    }

    #[test]
    fn forwarding_fields_are_the_gateways_unless_the_peer_is_trusted() {
        let client = [
            ("host", "shop.example"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
        ];
        let uri: Uri = "/items".parse().unwrap();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let proxies = ["192.0.2.0/24".parse::<TrustedProxy>().unwrap()];

        let mut h = request(&client);
        admit(&mut h, Some(peer), &[]);
        forwarding(&mut h, &uri, Some(peer));
        assert_eq!(
            forwarded(&h),
            [
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-proto", "http"),
            ]
        );

        let mut h = request(&client);
        admit(&mut h, Some(peer), &proxies);
        forwarding(&mut h, &uri, Some(peer));
        assert_eq!(
            forwarded(&h),
            [
                ("forwarded", "for=203.0.113.9"),
                ("x-forwarded-for", "203.0.113.9, 192.0.2.1"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ]
        );

        // HTTP/2 has no `Host`: the authority stands in. The gateway's own requests have no
        // peer, and nothing of a client's is believed.
        let mut h = request(&client[1..]);
        admit(&mut h, None, &proxies);
        forwarding(&mut h, &"http://shop.example/items".parse().unwrap(), None);
        assert_eq!(
            forwarded(&h),
            [
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-proto", "http"),
            ]
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let contains = |range: &str, ip: &str| {
            range
                .parse::<TrustedProxy>()
                .unwrap()
                .contains(ip.parse().unwrap())
        };
        assert!(contains("10.0.0.0/8", "10.200.0.1"));
        assert!(!contains("10.0.0.0/8", "11.0.0.1"));
        assert!(contains("192.0.2.7", "192.0.2.7"));
        assert!(!contains("192.0.2.7", "192.0.2.8"));
        assert!(contains("0.0.0.0/0", "198.51.100.1"));
        assert!(contains("127.0.0.1", "::ffff:127.0.0.1"));
        assert!(contains("2001:db8::/32", "2001:db8:1::5"));
        assert!(!contains("2001:db8::/32", "2001:db9::5"));
        assert!(!contains("::/0", "10.0.0.1"));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "host.local",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad}");
        }
    }
}
