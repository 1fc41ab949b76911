//! Phase 1 of a request: which route (and so which policy) handles it.
//!
//! Patterns use `{name}` for one path segment and `{*name}` for the rest of the path (the
//! `matchit` syntax axum uses). Several routes may share a pattern when their methods differ, so
//! the router maps a pattern to the routes registered on it and the method picks among them.
//! Static segments win over captures (`/repositories/count` beats `/repositories/{id}`).
//!
//! An unsafe request (RFC 9110 section 9.2.1: any method but GET, HEAD, OPTIONS and TRACE) to a
//! path that no route lists its method for goes to the first route of that path that has
//! `invalidate_writes` on (the default): the write is forwarded, and its policy's
//! `on-invalidate` says what it made wrong (RFC 9111 section 4.4), whichever methods the route
//! lists for lookups.

use std::sync::Arc;

use crate::config::RouteConfig;

/// A route as the request path sees it.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// Position in config order: indexes the snapshot's per-route tables.
    pub index: usize,
    /// Request header fields its policy is not shown (`plugins.hidden_headers`).
    pub hidden: Arc<[http::HeaderName]>,
}

impl Route {
    /// Whether the policy is shown the request header field `name`.
    pub fn shows(&self, name: &http::HeaderName) -> bool {
        !self.hidden.contains(name)
    }
}

/// The routes of one configuration, ready to match.
pub struct RouteTable {
    router: matchit::Router<Vec<Arc<Route>>>,
    routes: Vec<Arc<Route>>,
}

/// A matched route with its captured parameters, percent-decoded.
pub struct RouteMatch<'t> {
    pub route: &'t Arc<Route>,
    pub params: Vec<(String, String)>,
}

/// Checks a pattern's syntax: used by the config loader so that errors carry the file's line.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err(format!("path pattern {pattern:?} must start with '/'"));
    }
    let mut router = matchit::Router::new();
    router
        .insert(pattern, ())
        .map_err(|e| format!("path pattern {pattern:?} is invalid: {e}"))
}

impl RouteTable {
    /// Builds the table; the config loader has already checked patterns and overlaps.
    /// `hidden`: the request header fields no route's policy is shown.
    pub fn new(configs: &[RouteConfig], hidden: &[http::HeaderName]) -> Result<Self, String> {
        let hidden: Arc<[http::HeaderName]> = hidden.into();
        let mut by_pattern: Vec<(String, Vec<Arc<Route>>)> = Vec::new();
        let mut routes = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let route = Arc::new(Route {
                config: config.clone(),
                index,
                hidden: hidden.clone(),
            });
            routes.push(route.clone());
            match by_pattern.iter_mut().find(|(p, _)| *p == config.path) {
                Some((_, list)) => list.push(route),
                None => by_pattern.push((config.path.clone(), vec![route])),
            }
        }
        let mut router = matchit::Router::new();
        for (pattern, list) in by_pattern {
            router
                .insert(pattern.clone(), list)
                .map_err(|e| format!("route pattern {pattern:?} conflicts: {e}"))?;
        }
        Ok(Self { router, routes })
    }

    /// Every route, in config order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route called `name`, if any (names are unique: the config loader checks).
    pub fn named(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.config.name == name)
    }

    /// The route for `method` and `path`, if any: the one listing `method`, or for an unsafe
    /// method the first of the path's routes that invalidates on writes.
    pub fn find(&self, method: &http::Method, path: &str) -> Option<RouteMatch<'_>> {
        let matched = self.router.at(path).ok()?;
        let routes = matched.value;
        let route = routes
            .iter()
            .find(|r| r.config.methods.contains(method))
            .or_else(|| {
                is_unsafe(method)
                    .then(|| routes.iter().find(|r| r.config.invalidate_writes))
                    .flatten()
            })?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        Some(RouteMatch { route, params })
    }
}

/// Every method but the safe ones (RFC 9110 section 9.2.1): unknown methods such as `M-SEARCH`
/// may change state too, so they go through `on-invalidate` like POST.
pub fn is_unsafe(method: &http::Method) -> bool {
    use http::Method;
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as written, so a
/// decoded value never loses information that the key could need.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// The value of one hex digit.
pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvOverrides};
    use std::path::Path;

    fn table(text: &str) -> RouteTable {
        let c = Config::parse(Path::new("t.toml"), text, &EnvOverrides::default()).unwrap();
        RouteTable::new(&c.routes, &[]).unwrap()
    }

    const ROUTES: &str = r#"
[[route]]
name = "repo"
path = "/api/v1/repositories/{id}"
plugin = "p"
[[route]]
name = "analyze"
path = "/api/v1/repositories/{id}/actions/analyze"
methods = ["POST"]
plugin = "p"
[[route]]
name = "list"
path = "/api/v1/repositories"
plugin = "p"
"#;

    #[test]
    fn captures_are_named_and_decoded() {
        let t = table(ROUTES);
        let m = t
            .find(&http::Method::GET, "/api/v1/repositories/a%20b")
            .unwrap();
        assert_eq!(m.route.config.name, "repo");
        assert_eq!(m.params, vec![("id".to_owned(), "a b".to_owned())]);
    }

    #[test]
    fn the_method_selects_the_route() {
        let t = table(ROUTES);
        let path = "/api/v1/repositories/7/actions/analyze";
        assert_eq!(
            t.find(&http::Method::POST, path).unwrap().route.config.name,
            "analyze"
        );
        assert!(t.find(&http::Method::GET, path).is_none());
        // The analyze route lists POST; `/repositories/7` lists only lookups, but a POST to
        // it is a write its policy hears of.
        assert_eq!(
            t.find(&http::Method::POST, "/api/v1/repositories/7")
                .unwrap()
                .route
                .config
                .name,
            "repo"
        );
    }

    #[test]
    fn a_write_to_a_lookup_route_reaches_its_policy_unless_it_opts_out() {
        let t = table(ROUTES);
        for method in [
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
            http::Method::POST,
            http::Method::from_bytes(b"PURGE").unwrap(),
        ] {
            let m = t.find(&method, "/api/v1/repositories/7").unwrap();
            assert_eq!(m.route.config.name, "repo", "{method}");
            assert_eq!(m.params, vec![("id".to_owned(), "7".to_owned())]);
        }
        // Safe methods it does not list stay unrouted.
        assert!(
            t.find(&http::Method::OPTIONS, "/api/v1/repositories/7")
                .is_none()
        );

        let opted_out = table(
            r#"
[[route]]
name = "repo"
path = "/api/v1/repositories/{id}"
plugin = "p"
invalidate_writes = false
"#,
        );
        assert!(
            opted_out
                .find(&http::Method::DELETE, "/api/v1/repositories/7")
                .is_none()
        );
    }

    #[test]
    fn unmatched_paths_find_nothing() {
        let t = table(ROUTES);
        assert!(t.find(&http::Method::GET, "/api/v1/other").is_none());
        assert!(
            t.find(&http::Method::GET, "/api/v1/repositories/1/x")
                .is_none()
        );
    }

    #[test]
    fn percent_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%ff"), "%ff");
    }
}
