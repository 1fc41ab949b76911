//! `standard`: a Larder policy that caches like a well-behaved shared HTTP cache (RFC 9111).
//!
//! - **Request**: GET and HEAD only (`pass("method")`); never a request with
//!   `Cache-Control: no-store` (`pass("request-no-store")`). Everything else is looked up under
//!   the key `[path, query]` (the query without `?`, or `""`). The key varies on no request
//!   header: the origin's `Vary` is the host's business.
//! - **Response**: [`FollowOrigin`]: stored only with explicit freshness from the origin
//!   (`CDN-Cache-Control` first, RFC 9213), never with `no-store`, `private`, `no-cache` or
//!   `Set-Cookie`, and the answer to a request with `Authorization` only when the response says
//!   `public`, `s-maxage` or `must-revalidate` (RFC 9111 section 3.5); see
//!   [`larder_sdk::freshness`]. Route settings tune it (see [`rules`]; the gateway has the
//!   policy check them at load, and refuses a config with a bad or unknown one). The
//!   origin's `Surrogate-Key` tags become the entry's tags.
//! - **Invalidation** (RFC 9111 section 4.4): after a successful unsafe request, the target
//!   URI's entry on the same route, plus the entries of the URIs in `Location` and
//!   `Content-Location` when they are on the same host.
//!
//! See `README.md` for how to build and load it.

use larder_sdk::freshness::{FollowOrigin, Heuristic};
use larder_sdk::{
    CacheKey, Invalidation, KeyRef, Policy, Request, RequestDecision, Response, ResponseDecision,
    SettingError, Settings,
};

/// The standard HTTP caching policy.
pub struct Standard;

impl Policy for Standard {
    /// Every setting must be one [`rules`] reads, with a value of its type.
    fn check_settings(settings: &Settings) -> Result<(), String> {
        settings.only(&SETTINGS)?;
        rules(settings)?;
        Ok(())
    }

    fn on_request(req: &Request) -> RequestDecision {
        if !req.is_safe() {
            return RequestDecision::pass("method");
        }
        if req.cache_control().no_store {
            return RequestDecision::pass("request-no-store");
        }
        RequestDecision::lookup(CacheKey::new([req.path.as_str(), req.query_or_empty()]))
    }

    /// The SDK default, `follow_origin`, plus the origin's surrogate keys: the space-separated
    /// tags of `Surrogate-Key` become the entry's tags, so the origin (or an operator with
    /// `POST /purge`) can invalidate by them.
    fn on_response(req: &Request, resp: &Response) -> ResponseDecision {
        let decision = rules_of(req).decide(req, resp);
        let tags: Vec<String> = resp
            .header_values("surrogate-key")
            .flat_map(str::split_ascii_whitespace)
            .filter(|t| t.len() <= 256)
            .take(32)
            .map(str::to_owned)
            .collect();
        if tags.is_empty() {
            decision
        } else {
            decision.with_tags(tags)
        }
    }

    fn on_invalidate(req: &Request, resp: &Response) -> Vec<Invalidation> {
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut add = |path: &str, query: &str| {
            let key = (path.to_owned(), query.to_owned());
            if !keys.contains(&key) {
                keys.push(key);
            }
        };
        // The target URI itself, and the bare path: a write to `/items?x=1` most likely
        // changed what `GET /items` shows too.
        add(&req.path, req.query_or_empty());
        add(&req.path, "");
        for field in ["location", "content-location"] {
            if let Some((path, query)) = resp
                .header(field)
                .and_then(|value| same_origin_path(value, req.header("host")))
            {
                add(path, query);
            }
        }
        keys.into_iter()
            .map(|(path, query)| Invalidation::key(KeyRef::here([path, query])))
            .collect()
    }
}

larder_sdk::export_policy!(Standard);

/// The settings [`rules`] reads.
const SETTINGS: [&str; 4] = [
    "targeted_cache_control",
    "heuristic_percent",
    "heuristic_max_s",
    "stale_if_error_s",
];

/// The origin's rules as this route's settings tune them:
/// - `targeted_cache_control`: comma-separated targeted fields to obey (RFC 9213), most
///   specific first; default `cdn-cache-control`, `""` for none;
/// - `heuristic_percent`: heuristic freshness as this percentage of the time since
///   `Last-Modified` (RFC 9111 section 4.2.2 suggests 10); default 0, off;
/// - `heuristic_max_s`: the most heuristic freshness may give, default 86400;
/// - `stale_if_error_s`: a stale-if-error window for responses that give none and do not
///   forbid stale answers (RFC 9111 section 4.2.4: a cache cut off from the origin may serve
///   stale); default 0.
///
/// A value that does not parse is an error, which [`Standard::check_settings`] reports when the
/// gateway loads the plugin.
fn rules(settings: &Settings) -> Result<FollowOrigin, SettingError> {
    let targeted = settings
        .get("targeted_cache_control")
        .unwrap_or("cdn-cache-control");
    let percent: u32 = settings.parse_or("heuristic_percent", 0)?;
    let max = settings.parse_or("heuristic_max_s", 86_400)?;
    let heuristic = if percent == 0 {
        Heuristic::Off
    } else {
        Heuristic::SinceModified { percent, max }
    };
    Ok(FollowOrigin::new()
        .targeted(targeted.split(','))
        .heuristic(heuristic)
        .default_stale_if_error(settings.parse_or("stale_if_error_s", 0)?))
}

/// The rules of the request's route, whose settings the gateway had checked at load; should
/// they not parse all the same, the defaults (silently: a log line would cost every request
/// its decision reuse).
fn rules_of(req: &Request) -> FollowOrigin {
    rules(&req.settings())
        .unwrap_or_else(|_| rules(&Settings::new(&req.route_name, &[])).unwrap_or_default())
}

/// The path and query (without `?`, or `""`) of a `Location`/`Content-Location` value that
/// names a resource on the request's own host: an absolute path (`/items/5`), or an absolute
/// or network-path URL (`https://host/items/5`, `//host/items/5`) whose host equals the
/// request's `Host` (ports ignored). `None` for anything else, including relative references
/// like `5` or `../5`, which are not resolved.
fn same_origin_path<'a>(value: &'a str, host: Option<&str>) -> Option<(&'a str, &'a str)> {
    let value = value.trim();
    let value = value.split_once('#').map_or(value, |(before, _)| before);
    let path_and_query = if let Some(rest) = value.strip_prefix("//") {
        authority_then_path(rest, host?)?
    } else if value.starts_with('/') {
        value
    } else {
        let (scheme, rest) = value.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        authority_then_path(rest, host?)?
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let path = if path.is_empty() { "/" } else { path };
    path.starts_with('/').then_some((path, query))
}

/// Splits `authority/path?query` and checks the authority's host against `host`; returns the
/// path and query.
fn authority_then_path<'a>(rest: &'a str, host: &str) -> Option<&'a str> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    (host_part(authority).eq_ignore_ascii_case(host_part(host))).then_some(path_and_query)
}

/// The host of an authority: without user info and port (`[v6]` literals kept whole).
fn host_part(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(end) = authority.find(']').filter(|_| authority.starts_with('[')) {
        return &authority[..=end];
    }
    authority.split_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use larder_sdk::{InvalidationTarget, ResponseDecision, StoreDirective};

    fn get(path: &str) -> Request {
        Request::new("GET", path).with_route("site", "/{*rest}")
    }

    #[test]
    fn passes_unsafe_methods_and_no_store() {
        assert_eq!(
            Standard::on_request(&Request::new("POST", "/a")),
            RequestDecision::pass("method")
        );
        assert_eq!(
            Standard::on_request(&get("/a").with_header("cache-control", "no-store")),
            RequestDecision::pass("request-no-store")
        );
    }

    #[test]
    fn looks_up_by_path_and_query() {
        assert_eq!(
            Standard::on_request(&get("/a")),
            RequestDecision::lookup(CacheKey::new(["/a", ""]))
        );
        assert_eq!(
            Standard::on_request(&Request::new("HEAD", "/a").with_query("b=1")),
            RequestDecision::lookup(CacheKey::new(["/a", "b=1"]))
        );
    }

    #[test]
    fn settings_are_checked_at_load_by_name_and_type() {
        let good = get("/a")
            .with_setting(
                "targeted_cache_control",
                "larder-cache-control,cdn-cache-control",
            )
            .with_setting("heuristic_percent", "10")
            .with_setting("heuristic_max_s", "3600")
            .with_setting("stale_if_error_s", "60");
        assert_eq!(Standard::check_settings(&good.settings()), Ok(()));
        assert_eq!(Standard::check_settings(&get("/a").settings()), Ok(()));
        for (name, value, reason) in [
            (
                "heuristic_percent",
                "10%",
                "setting `heuristic_percent` = \"10%\" is not a valid u32",
            ),
            (
                "heuristic_max_s",
                "a day",
                "setting `heuristic_max_s` = \"a day\" is not a valid u32",
            ),
            (
                "stale_if_error",
                "60",
                "unknown setting `stale_if_error` (this policy reads `targeted_cache_control`, `heuristic_percent`, `heuristic_max_s`, `stale_if_error_s`)",
            ),
        ] {
            let req = get("/a").with_setting(name, value);
            assert_eq!(
                Standard::check_settings(&req.settings()),
                Err(reason.to_owned())
            );
        }
    }

    #[test]
    fn settings_tune_targeted_fields_and_heuristics() {
        let resp = Response::new(200)
            .with_header("cache-control", "max-age=60")
            .with_header("cdn-cache-control", "max-age=600")
            .with_header("larder-cache-control", "no-store");
        assert_eq!(
            Standard::on_response(&get("/a"), &resp),
            ResponseDecision::store(StoreDirective::ttl(600))
        );
        let req = get("/a").with_setting("targeted_cache_control", "larder-cache-control");
        assert_eq!(
            Standard::on_response(&req, &resp),
            ResponseDecision::no_store("no-store")
        );
        let req = get("/a").with_setting("targeted_cache_control", "");
        assert_eq!(
            Standard::on_response(&req, &resp),
            ResponseDecision::store(StoreDirective::ttl(60))
        );
        let dated = Response::new(200)
            .with_header("date", "Mon, 01 Jan 2024 10:00:00 GMT")
            .with_header("last-modified", "Mon, 01 Jan 2024 09:00:00 GMT");
        assert_eq!(
            Standard::on_response(&get("/a"), &dated),
            ResponseDecision::no_store("no-explicit-freshness")
        );
        let req = get("/a").with_setting("heuristic_percent", "10");
        assert_eq!(
            Standard::on_response(&req, &dated),
            ResponseDecision::store(StoreDirective::ttl(360))
        );
    }

    #[test]
    fn stores_answers_to_credentials_only_when_the_origin_shares_them() {
        let req = get("/a").with_header("authorization", "Bearer t");
        assert_eq!(
            Standard::on_request(&req),
            RequestDecision::lookup(CacheKey::new(["/a", ""]))
        );
        let private = Response::new(200).with_header("cache-control", "max-age=60");
        assert_eq!(
            Standard::on_response(&req, &private),
            ResponseDecision::no_store("authorization")
        );
        let shared = Response::new(200).with_header("cache-control", "public, max-age=60");
        assert_eq!(
            Standard::on_response(&req, &shared),
            ResponseDecision::store(StoreDirective::ttl(60))
        );
    }

    #[test]
    fn follows_the_origin() {
        let resp = Response::new(200).with_header("cache-control", "max-age=60");
        assert_eq!(
            Standard::on_response(&get("/a"), &resp),
            ResponseDecision::store(StoreDirective::ttl(60))
        );
        assert_eq!(
            Standard::on_response(&get("/a"), &Response::new(200)),
            ResponseDecision::no_store("no-explicit-freshness")
        );
    }

    fn keys(invalidations: &[Invalidation]) -> Vec<(String, String)> {
        invalidations
            .iter()
            .map(|inv| {
                assert!(!inv.soft);
                match &inv.target {
                    InvalidationTarget::Key(KeyRef { route: None, parts }) => {
                        (parts[0].clone(), parts[1].clone())
                    }
                    other => panic!("unexpected target {other:?}"),
                }
            })
            .collect()
    }

    fn pair(path: &str, query: &str) -> (String, String) {
        (path.into(), query.into())
    }

    #[test]
    fn invalidates_the_target() {
        let req = Request::new("POST", "/items");
        let got = Standard::on_invalidate(&req, &Response::new(204));
        assert_eq!(keys(&got), [pair("/items", "")]);
        let req = Request::new("POST", "/items").with_query("x=1");
        let got = Standard::on_invalidate(&req, &Response::new(204));
        assert_eq!(keys(&got), [pair("/items", "x=1"), pair("/items", "")]);
    }

    #[test]
    fn invalidates_same_origin_locations() {
        let req = Request::new("POST", "/items").with_header("host", "example.com:8359");
        let resp = Response::new(201)
            .with_header("location", "/items/5?v=2#frag")
            .with_header("content-location", "http://EXAMPLE.com/items/5/view");
        assert_eq!(
            keys(&Standard::on_invalidate(&req, &resp)),
            [
                pair("/items", ""),
                pair("/items/5", "v=2"),
                pair("/items/5/view", "")
            ]
        );
    }

    #[test]
    fn ignores_foreign_and_relative_locations() {
        let req = Request::new("PUT", "/items/5").with_header("host", "example.com");
        for location in [
            "https://evil.example/items/5",
            "//evil.example/items/5",
            "5",
            "../items",
            "mailto:a@example.com",
            "ftp://example.com/x",
        ] {
            let resp = Response::new(303).with_header("location", location);
            assert_eq!(
                keys(&Standard::on_invalidate(&req, &resp)),
                [pair("/items/5", "")],
                "{location}"
            );
        }
    }

    #[test]
    fn absolute_locations_need_a_host_header() {
        assert_eq!(same_origin_path("https://example.com/a", None), None);
        assert_eq!(same_origin_path("/a", None), Some(("/a", "")));
        assert_eq!(
            same_origin_path("https://user@example.com:443", Some("example.com")),
            Some(("/", ""))
        );
        assert_eq!(
            same_origin_path("http://[::1]:8080/a?b", Some("[::1]")),
            Some(("/a", "b"))
        );
    }
}
