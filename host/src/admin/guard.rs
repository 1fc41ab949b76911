//! Who may use the admin API: every request must name an allowed `Host` and carry no foreign
//! `Origin`; mutating requests also need the admin token.
//!
//! The admin listener is meant for loopback or a private network, but an operator's browser
//! can reach both. A page on another site can make it send simple requests there (a form's
//! POST), and a page whose name it rebinds to 127.0.0.1 in DNS can even read the answers, since
//! the browser then takes the admin API for that page's own site (DNS rebinding). Both show in
//! the request: the rebound page's name is in `Host`, the other site in `Origin`.
//!
//! Allowed hosts are `localhost`, IP addresses (a browser sends an address as `Host` only to a
//! page loaded from that address, which an attacker's name cannot be rebound to), and the names
//! in `server.admin_hosts`. An `Origin` is allowed when its host is `localhost`, a loopback
//! address, a configured name, or the request's own `Host` (the dashboard's own POSTs).
//! Requests with neither header (HTTP/1.0 health checks) come from no browser and pass.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::gateway::Gateway;

/// A JSON error with its status (and, for 401, the scheme to authenticate with).
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, Json(json!({ "error": message.into() }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"larder-admin\""),
        );
    }
    r
}

/// Middleware of every admin route: refuses a foreign `Host` or `Origin` with 403.
pub async fn same_site(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let snapshot = gw.snapshot();
    let configured = &snapshot.config.server.admin_hosts;
    let host = match req.headers().get(header::HOST) {
        Some(v) => Some(v.to_str().unwrap_or("\u{fffd}")),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    if let Some(host) = host
        && !host_allowed(host, configured)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "the admin API does not answer to Host {host:?}: use localhost or an IP address, or add the name to server.admin_hosts"
            ),
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin_allowed(origin, host, configured)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-site request refused: the admin API takes requests from its own pages, curl and the like (Origin not allowed)",
        );
    }
    next.run(req).await
}

/// `host` (`name[:port]`, `[v6][:port]` or a bare address) is `localhost`, an IP address or a
/// configured name.
fn host_allowed(host: &str, configured: &[String]) -> bool {
    let name = hostname(host);
    name.parse::<IpAddr>().is_ok() || is_named(&name, configured)
}

/// `localhost` or a configured name (`name` lower-case, without port or brackets).
fn is_named(name: &str, configured: &[String]) -> bool {
    name == "localhost"
        || configured
            .iter()
            .any(|c| c.trim_start_matches('[').trim_end_matches(']') == name)
}

/// An `Origin` (`scheme://host[:port]`) from loopback, a configured name or the request's own
/// host; `null` (a sandboxed or local-file page) and anything unparsable is foreign.
fn origin_allowed(origin: &HeaderValue, host: Option<&str>, configured: &[String]) -> bool {
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<axum::http::Uri>().ok())
        .filter(|u| u.scheme().is_some())
        .and_then(|u| u.authority().cloned())
    else {
        return false;
    };
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str())) {
        return true;
    }
    let name = hostname(authority.as_str());
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => is_named(&name, configured),
    }
}

/// The host part of `host[:port]`, lower-case, an IPv6 address without its brackets.
fn hostname(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        // A bare IPv6 address (several colons) has no port.
        None if host.matches(':').count() > 1 => host,
        None => host.split(':').next().unwrap_or(""),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the bearer token; the error is the refusal's status and message. The comparison is of
/// the BLAKE3 digests of both, in constant time (`blake3::Hash`'s `PartialEq`): how long it
/// takes says nothing about how much of the token a guess got right, nor how long the token is.
pub fn authorize(gw: &Gateway, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let snapshot = gw.snapshot();
    let Some(expected) = snapshot.config.server.admin_token.as_deref() else {
        return Err((
            StatusCode::FORBIDDEN,
            "the admin API's mutating endpoints are disabled: set LARDER_ADMIN_TOKEN in the gateway's environment and send it as `Authorization: Bearer <token>` (plugins and config also reload on SIGHUP)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    if blake3::hash(given.as_bytes()) == blake3::hash(expected.as_bytes()) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (`Authorization: Bearer <LARDER_ADMIN_TOKEN>`)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_addresses_and_configured_names_are_allowed_hosts() {
        let configured = ["larder-admin.internal".to_owned()];
        for host in [
            "localhost",
            "LOCALHOST:8360",
            "127.0.0.1:8360",
            "[::1]:8360",
            "[::1]",
            "10.1.2.3:8360",
            "larder-admin.internal:8360",
            "Larder-Admin.Internal.",
        ] {
            assert!(host_allowed(host, &configured), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8360",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8360",
            "",
        ] {
            assert!(!host_allowed(host, &configured), "{host}");
        }
    }

    #[test]
    fn an_origin_is_allowed_from_loopback_a_configured_name_or_the_host_itself() {
        let configured = ["larder-admin.internal".to_owned()];
        let allowed = |origin: &str, host: &str| {
            origin_allowed(
                &HeaderValue::from_str(origin).unwrap(),
                Some(host),
                &configured,
            )
        };
        assert!(allowed("http://localhost:8360", "localhost:8360"));
        assert!(allowed("http://127.0.0.1:8360", "localhost:8360"));
        assert!(allowed("http://10.1.2.3:8360", "10.1.2.3:8360"));
        assert!(allowed("https://larder-admin.internal", "10.1.2.3:8360"));
        assert!(!allowed("http://evil.example", "127.0.0.1:8360"));
        assert!(!allowed("http://10.9.9.9", "10.1.2.3:8360"));
        assert!(!allowed("null", "127.0.0.1:8360"));
        assert!(!allowed("127.0.0.1", "127.0.0.1:8360"));
    }
}
