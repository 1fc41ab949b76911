//! Phase 4: forwarding to the origin.
//!
//! One pooled HTTP/1.1 client for the process (keep-alive, `TCP_NODELAY`). Hop-by-hop headers
//! are removed in both directions (RFC 9110 section 7.6.1), `Host` is set to the upstream's
//! authority (the client's goes in `X-Forwarded-Host`), and `Via` records the hop.

use std::time::Duration;

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

    /// Sends `parts` + `body` upstream; `timeout` bounds the wait for the response head.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_with(parts, parts.headers.clone(), body, timeout)
            .await
    }

    /// [`Upstream::send`] with other request header fields than the client's (a fill's, without
    /// the client's conditionals, or a revalidation's, with the stored validators).
    pub async fn send_with(
        &self,
        parts: &http::request::Parts,
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
        strip_hop_by_hop(&mut headers);
        if let Some(host) = headers.remove(header::HOST) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
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

/// Removes the hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
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
}
