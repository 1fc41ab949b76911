//! Helper methods and constructors on the WIT types re-exported at the crate root.
//!
//! The types themselves are generated from `wit/policy.wit`, so their fields are public and
//! documented there; this module adds the small vocabulary a policy is written in.

use std::str::FromStr;

use crate::cache_control::CacheControl;
use crate::{
    CacheKey, Header, Invalidation, InvalidationTarget, KeyRef, Param, Request, RequestDecision,
    Response, ResponseDecision, StoreDirective,
};

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn all_headers<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.as_str())
}

fn strings<I>(items: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl Request {
    /// A request with the given method and path and nothing else: no query, no headers, an
    /// empty route. Meant for native unit tests of a policy; the host builds the real ones.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/api/v1/repositories/1")
    ///     .with_route("repository", "/api/v1/repositories/{id}")
    ///     .with_param("id", "1")
    ///     .with_header("accept", "application/json");
    /// assert_eq!(req.param("id"), Some("1"));
    /// ```
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            route_name: String::new(),
            route_pattern: String::new(),
            params: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// Sets the query string (without the leading `?`). For tests.
    #[must_use]
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Appends a header (the name is lower-cased, as the host does). For tests.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        });
        self
    }

    /// Sets the route name and pattern. For tests.
    #[must_use]
    pub fn with_route(mut self, name: impl Into<String>, pattern: impl Into<String>) -> Self {
        self.route_name = name.into();
        self.route_pattern = pattern.into();
        self
    }

    /// Appends a captured path parameter. For tests.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push(Param {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Appends a route setting. For tests.
    #[must_use]
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push(Param {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The value of the first header named `name` (compared case-insensitively), if any.
    ///
    /// Repeated fields are not joined; use [`Request::header_values`] for all of them.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/")
    ///     .with_header("Accept", "application/json")
    ///     .with_header("accept", "text/html");
    /// assert_eq!(req.header("ACCEPT"), Some("application/json"));
    /// assert_eq!(req.header_values("accept").count(), 2);
    /// assert!(!req.has_header("authorization"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The values of every header named `name` (compared case-insensitively), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        all_headers(&self.headers, name)
    }

    /// Whether the request has at least one header named `name` (case-insensitive).
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The value of the path parameter `name` captured by the route pattern (`{id}`),
    /// percent-decoded by the host, as the client spelled it.
    ///
    /// For an identifier that goes into keys or tags, prefer [`Request::param_as`] or
    /// [`Request::param_canonical`]: `01` and `1` are different texts but, to a backend that
    /// reads a number, the same resource.
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Request, RequestDecision};
    ///
    /// // Route `path = "/docs/{lang}/{page}"`, request `/docs/en/intro`:
    /// let req = Request::new("GET", "/docs/en/intro")
    ///     .with_route("docs", "/docs/{lang}/{page}")
    ///     .with_param("lang", "en")
    ///     .with_param("page", "intro");
    /// let decision = match (req.param("lang"), req.param("page")) {
    ///     (Some(lang), Some(page)) => RequestDecision::lookup(CacheKey::new([page, lang])),
    ///     _ => RequestDecision::pass("no-page"),
    /// };
    /// assert_eq!(decision, RequestDecision::lookup(CacheKey::new(["intro", "en"])));
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// The value of the route setting `name` (`[route.settings]` in the gateway's config),
    /// rendered as a string: numbers and booleans appear in their TOML form (`"1800"`,
    /// `"true"`).
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// // `[route.settings] view = "summary"` in the gateway's config:
    /// let req = Request::new("GET", "/").with_setting("view", "summary");
    /// assert_eq!(req.setting("view"), Some("summary"));
    /// assert_eq!(req.setting("missing"), None);
    /// ```
    pub fn setting(&self, name: &str) -> Option<&str> {
        find_param(&self.settings, name)
    }

    /// The route's settings, typed: the same [`Settings`](crate::Settings) that
    /// [`Policy::check_settings`](crate::Policy::check_settings) saw at load.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "600");
    /// assert_eq!(req.settings().parse_or("ttl", 1800u32), Ok(600));
    /// ```
    pub fn settings(&self) -> crate::Settings<'_> {
        crate::Settings::new(&self.route_name, &self.settings)
    }

    /// The route setting `name` parsed as `T`, or `default` when the setting is absent.
    ///
    /// A setting that is present but does not parse also yields `default`, and logs a warning
    /// naming the setting, so that a typo in the config degrades to the documented default
    /// instead of failing every request. Use [`Request::setting_parse`] to handle it yourself.
    ///
    /// Better, check the setting once, at load, in
    /// [`Policy::check_settings`](crate::Policy::check_settings): the gateway then refuses a
    /// config with a bad value, and this warning (which also costs the call its decision
    /// reuse) never happens.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "600");
    /// assert_eq!(req.setting_or("ttl", 1800u32), 600);
    /// assert_eq!(req.setting_or("stale_if_error", 0u32), 0);
    /// assert!(!req.setting_or("soft_purge", false));
    /// ```
    pub fn setting_or<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.setting_parse(name) {
            Ok(Some(value)) => value,
            Ok(None) => default,
            Err(raw) => {
                crate::warn(&format!(
                    "route `{}`: setting `{name}` = {raw:?} is not valid; using the default",
                    self.route_name
                ));
                default
            }
        }
    }

    /// The route setting `name` parsed as `T`: `Ok(None)` when absent, `Err(raw)` with the raw
    /// text when present but not parseable.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "ten minutes");
    /// assert_eq!(req.setting_parse::<u32>("ttl"), Err("ten minutes".to_owned()));
    /// assert_eq!(req.setting_parse::<u32>("absent"), Ok(None));
    /// ```
    pub fn setting_parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.setting(name) {
            None => Ok(None),
            Some(raw) => raw.trim().parse().map(Some).map_err(|_| raw.to_owned()),
        }
    }

    /// Whether the method is GET or HEAD: the only methods whose responses Larder caches.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// assert!(Request::new("HEAD", "/").is_safe());
    /// assert!(!Request::new("POST", "/").is_safe());
    /// ```
    pub fn is_safe(&self) -> bool {
        self.method.eq_ignore_ascii_case("GET") || self.method.eq_ignore_ascii_case("HEAD")
    }

    /// The query string without the leading `?`, or `""` when the request had none. Handy as
    /// the last key part.
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Request};
    ///
    /// let req = Request::new("GET", "/search").with_query("q=larder&page=2");
    /// let key = CacheKey::new([req.path.as_str(), req.query_or_empty()]);
    /// assert_eq!(key.parts, ["/search", "q=larder&page=2"]);
    /// assert_eq!(Request::new("GET", "/").query_or_empty(), "");
    /// ```
    pub fn query_or_empty(&self) -> &str {
        self.query.as_deref().unwrap_or("")
    }

    /// The query's `name=value` pairs in order, percent-decoded, with `+` read as a space (the
    /// form encoding browsers and most clients use). A pair without `=` has an empty value;
    /// empty pairs (`a=1&&b=2`) are skipped; an escape that is not `%` and two hex digits is
    /// kept as written, and bytes that do not decode to UTF-8 become U+FFFD.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/search").with_query("q=caf%C3%A9+au+lait&tag=a&tag=b&flag");
    /// let pairs = req.query_pairs();
    /// assert_eq!(pairs[0], ("q".to_owned(), "café au lait".to_owned()));
    /// assert_eq!(pairs[3], ("flag".to_owned(), String::new()));
    /// ```
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query_or_empty()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(name), form_decode(value))
            })
            .collect()
    }

    /// The decoded value of the first query parameter called `name` (compared after decoding,
    /// case-sensitively, as servers do), or `None`.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/tech-stack").with_query("fresh=1&feature%5Ftype=tech_stack");
    /// assert_eq!(req.query_param("fresh").as_deref(), Some("1"));
    /// assert_eq!(req.query_param("feature_type").as_deref(), Some("tech_stack"));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The request's `Cache-Control` directives (all fields combined).
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_header("cache-control", "no-store");
    /// assert!(req.cache_control().no_store);
    /// ```
    pub fn cache_control(&self) -> CacheControl {
        CacheControl::parse(self.header_values("cache-control"))
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX` a
/// byte; anything else as written.
fn form_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Response {
    /// A response with the given status, no headers and no known body size. For tests.
    ///
    /// ```
    /// use larder_sdk::Response;
    ///
    /// let resp = Response::new(200).with_header("Cache-Control", "max-age=60");
    /// assert_eq!(resp.header("cache-control"), Some("max-age=60"));
    /// ```
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body_size: None,
        }
    }

    /// Appends a header (the name is lower-cased, as the host does). For tests.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        });
        self
    }

    /// The value of the first header named `name` (compared case-insensitively), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The values of every header named `name` (compared case-insensitively), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        all_headers(&self.headers, name)
    }

    /// Whether the response has at least one header named `name` (case-insensitive).
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Whether the status is 2xx.
    ///
    /// ```
    /// use larder_sdk::Response;
    ///
    /// assert!(Response::new(204).is_success());
    /// assert!(!Response::new(304).is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response's `Cache-Control` directives (all fields combined).
    ///
    /// ```
    /// use larder_sdk::Response;
    ///
    /// let resp = Response::new(200).with_header("cache-control", "private, max-age=60");
    /// let cc = resp.cache_control();
    /// assert!(cc.private);
    /// assert_eq!(cc.max_age, Some(60));
    /// ```
    pub fn cache_control(&self) -> CacheControl {
        CacheControl::parse(self.header_values("cache-control"))
    }
}

impl CacheKey {
    /// A key with these parts, most significant first, and no vary headers.
    ///
    /// The parts must not be empty (the host rejects an empty key and proxies uncached).
    /// Parts are length-delimited when hashed, so there is no need to escape separators.
    ///
    /// ```
    /// use larder_sdk::CacheKey;
    ///
    /// let key = CacheKey::new(["repo", "1", "ai-features", ""]).vary(["Accept"]);
    /// assert_eq!(key.parts, ["repo", "1", "ai-features", ""]);
    /// assert_eq!(key.vary, ["accept"]);
    /// ```
    pub fn new<I>(parts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            parts: strings(parts),
            vary: Vec::new(),
        }
    }

    /// Appends one part.
    #[must_use]
    ///
    /// ```
    /// use larder_sdk::CacheKey;
    ///
    /// let key = CacheKey::new(["repo", "7"]).part("readme");
    /// assert_eq!(key.parts, ["repo", "7", "readme"]);
    /// ```
    pub fn part(mut self, part: impl Into<String>) -> Self {
        self.parts.push(part.into());
        self
    }

    /// Adds request headers whose values select a variant of the object (like `Vary`). Names
    /// are lower-cased; the host adds the headers' values to the key.
    #[must_use]
    ///
    /// ```
    /// use larder_sdk::CacheKey;
    ///
    /// // One entry per language the client asks for, without putting the header in the parts.
    /// let key = CacheKey::new(["page", "intro"]).vary(["Accept-Language"]);
    /// assert_eq!(key.vary, ["accept-language"]);
    /// ```
    pub fn vary<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.vary
            .extend(headers.into_iter().map(|h| h.into().to_ascii_lowercase()));
        self
    }
}

impl RequestDecision {
    /// Forward the request upstream and do not store the answer. `reason` is short and
    /// machine-friendly (`"method"`, `"credentials"`); the host shows it in `Cache-Status`.
    ///
    /// ```
    /// use larder_sdk::{Request, RequestDecision};
    ///
    /// fn on_request(req: &Request) -> RequestDecision {
    ///     if req.has_header("authorization") {
    ///         return RequestDecision::pass("credentials");
    ///     }
    ///     RequestDecision::pass("not-yet")
    /// }
    /// let req = Request::new("GET", "/me").with_header("authorization", "Bearer x");
    /// assert_eq!(on_request(&req), RequestDecision::Pass("credentials".into()));
    /// ```
    pub fn pass(reason: impl Into<String>) -> Self {
        Self::Pass(reason.into())
    }

    /// Look the request up under `key`; on a miss the host forwards it and calls
    /// [`Policy::on_response`](crate::Policy::on_response).
    ///
    /// ```
    /// use larder_sdk::{CacheKey, RequestDecision};
    ///
    /// let decision = RequestDecision::lookup(CacheKey::new(["item", "42"]));
    /// assert!(matches!(decision, RequestDecision::Lookup(ref k) if k.parts == ["item", "42"]));
    /// ```
    pub fn lookup(key: CacheKey) -> Self {
        Self::Lookup(key)
    }
}

impl StoreDirective {
    /// Store for `seconds` (must be at least 1), with no stale windows and no tags.
    ///
    /// ```
    /// use larder_sdk::{ResponseDecision, StoreDirective};
    ///
    /// let decision = ResponseDecision::store(
    ///     StoreDirective::ttl(1800)
    ///         .tags(["repo:1"])
    ///         .stale_while_revalidate(60)
    ///         .stale_if_error(600),
    /// );
    /// ```
    pub fn ttl(seconds: u32) -> Self {
        Self {
            ttl: seconds,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            tags: Vec::new(),
        }
    }

    /// Adds surrogate keys (tags) for [`Invalidation::tag`].
    #[must_use]
    pub fn tags<I>(mut self, tags: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Adds one tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Seconds after the TTL during which the stale entry is served while one background
    /// request refreshes it. 0 disables it.
    #[must_use]
    pub fn stale_while_revalidate(mut self, seconds: u32) -> Self {
        self.stale_while_revalidate = seconds;
        self
    }

    /// Seconds after the TTL during which the stale entry is served when the upstream fails.
    /// 0 disables it.
    #[must_use]
    pub fn stale_if_error(mut self, seconds: u32) -> Self {
        self.stale_if_error = seconds;
        self
    }
}

impl ResponseDecision {
    /// Store the response under the key chosen by `on_request`.
    ///
    /// ```
    /// use larder_sdk::{Response, ResponseDecision, StoreDirective};
    ///
    /// // A TTL per status.
    /// fn decide(resp: &Response) -> ResponseDecision {
    ///     match resp.status {
    ///         200 => ResponseDecision::store(StoreDirective::ttl(600)),
    ///         404 => ResponseDecision::store(StoreDirective::ttl(30)),
    ///         _ => ResponseDecision::no_store("status"),
    ///     }
    /// }
    /// assert_eq!(decide(&Response::new(404)), ResponseDecision::store(StoreDirective::ttl(30)));
    /// assert_eq!(decide(&Response::new(500)), ResponseDecision::no_store("status"));
    /// ```
    pub fn store(directive: StoreDirective) -> Self {
        Self::Store(directive)
    }

    /// Do not store the response; `reason` says why (`"status"`, `"no-store"`).
    pub fn no_store(reason: impl Into<String>) -> Self {
        Self::NoStore(reason.into())
    }

    /// Adds tags if this is a `store` decision; a `no-store` decision is returned unchanged.
    /// Handy on top of [`follow_origin`](crate::follow_origin).
    #[must_use]
    ///
    /// ```
    /// use larder_sdk::{follow_origin, Request, Response, ResponseDecision, StoreDirective};
    ///
    /// let req = Request::new("GET", "/repos/1").with_param("id", "1");
    /// let resp = Response::new(200).with_header("cache-control", "max-age=60");
    /// let decision = follow_origin(&req, &resp).with_tags(["repo:1"]);
    /// assert_eq!(decision, ResponseDecision::store(StoreDirective::ttl(60).tag("repo:1")));
    /// ```
    pub fn with_tags<I>(self, tags: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        match self {
            Self::Store(directive) => Self::Store(directive.tags(tags)),
            no_store => no_store,
        }
    }
}

impl KeyRef {
    /// A key (or key prefix) on the route of the request being handled.
    ///
    /// ```
    /// use larder_sdk::{Invalidation, KeyRef};
    ///
    /// // On `DELETE /items/42`, purge the entry `on_request` stored for `GET /items/42`
    /// // (key parts `["item", "42"]`) on the same route.
    /// let purge = Invalidation::key(KeyRef::here(["item", "42"]));
    /// assert!(!purge.soft);
    /// ```
    pub fn here<I>(parts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            route: None,
            parts: strings(parts),
        }
    }

    /// A key (or key prefix) on the route named `route` in the gateway's config.
    ///
    /// ```
    /// use larder_sdk::{Invalidation, KeyRef};
    ///
    /// // Every entry of the route named "search" in larder.toml whose key starts with "items".
    /// let purge = Invalidation::prefix(KeyRef::on_route("search", ["items"]));
    /// ```
    pub fn on_route<I>(route: impl Into<String>, parts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            route: Some(route.into()),
            parts: strings(parts),
        }
    }
}

impl Invalidation {
    /// Every entry carrying `tag`, on any route. Hard (entries are gone) unless
    /// [`Invalidation::soft`] is applied.
    ///
    /// ```
    /// use larder_sdk::{Invalidation, KeyRef};
    ///
    /// let purge = vec![
    ///     Invalidation::tag("repo:1").soft(),
    ///     Invalidation::key(KeyRef::here(["/api/v1/repositories/1", ""])),
    ///     Invalidation::prefix(KeyRef::on_route("insights", ["insights"])),
    /// ];
    /// ```
    pub fn tag(tag: impl Into<String>) -> Self {
        Self {
            target: InvalidationTarget::Tag(tag.into()),
            soft: false,
        }
    }

    /// The entry (every variant of it) stored under exactly these key parts.
    pub fn key(key: KeyRef) -> Self {
        Self {
            target: InvalidationTarget::Key(key),
            soft: false,
        }
    }

    /// Every entry whose key parts start with these parts.
    pub fn prefix(key: KeyRef) -> Self {
        Self {
            target: InvalidationTarget::Prefix(key),
            soft: false,
        }
    }

    /// Makes this a soft purge: entries become stale instead of disappearing, and are served
    /// stale while one request refreshes them if they have a `stale-while-revalidate` window.
    #[must_use]
    pub fn soft(self) -> Self {
        self.soft_if(true)
    }

    /// Sets whether this is a soft purge (see [`Invalidation::soft`]).
    #[must_use]
    ///
    /// ```
    /// use larder_sdk::{Invalidation, Request};
    ///
    /// let req = Request::new("PUT", "/items/42").with_setting("soft_purge", "true");
    /// let purge = Invalidation::tag("item:42").soft_if(req.setting_or("soft_purge", false));
    /// assert!(purge.soft);
    /// ```
    pub fn soft_if(mut self, soft: bool) -> Self {
        self.soft = soft;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_first_wins() {
        let req = Request::new("GET", "/")
            .with_header("Accept", "a")
            .with_header("accept", "b");
        assert_eq!(req.header("ACCEPT"), Some("a"));
        assert_eq!(req.header_values("accept").collect::<Vec<_>>(), ["a", "b"]);
        assert!(req.has_header("accept"));
        assert!(!req.has_header("authorization"));
    }

    #[test]
    fn settings_parse_with_defaults() {
        let req = Request::new("GET", "/")
            .with_setting("ttl", "600")
            .with_setting("bad", "ten")
            .with_setting("soft_purge", "true");
        assert_eq!(req.setting("ttl"), Some("600"));
        assert_eq!(req.setting_or("ttl", 1u32), 600);
        assert_eq!(req.setting_or("missing", 7u32), 7);
        assert_eq!(req.setting_or("bad", 7u32), 7);
        assert!(req.setting_or("soft_purge", false));
        assert_eq!(req.setting_parse::<u32>("bad"), Err("ten".to_owned()));
        assert_eq!(req.setting_parse::<u32>("missing"), Ok(None));
    }

    #[test]
    fn query_pairs_are_decoded_and_odd_escapes_kept() {
        let req =
            Request::new("GET", "/").with_query("a=1&&b=x%2By+z&c=%zz&d=100%&%E2%82%AC=euro&e");
        assert_eq!(
            req.query_pairs(),
            [
                ("a", "1"),
                ("b", "x+y z"),
                ("c", "%zz"),
                ("d", "100%"),
                ("€", "euro"),
                ("e", ""),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(req.query_param("€").as_deref(), Some("euro"));
        assert_eq!(req.query_param("A"), None, "names are case-sensitive");
        assert!(Request::new("GET", "/").query_pairs().is_empty());
        let bad = Request::new("GET", "/").with_query("x=%FF");
        assert_eq!(bad.query_param("x").as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn safe_methods() {
        assert!(Request::new("GET", "/").is_safe());
        assert!(Request::new("HEAD", "/").is_safe());
        assert!(!Request::new("POST", "/").is_safe());
        assert!(!Request::new("DELETE", "/").is_safe());
    }

    #[test]
    fn query_or_empty() {
        assert_eq!(Request::new("GET", "/").query_or_empty(), "");
        assert_eq!(
            Request::new("GET", "/").with_query("a=1").query_or_empty(),
            "a=1"
        );
    }

    #[test]
    fn key_builders() {
        let key = CacheKey::new(["repo", "1"])
            .part("view")
            .vary(["Accept-Encoding"]);
        assert_eq!(key.parts, ["repo", "1", "view"]);
        assert_eq!(key.vary, ["accept-encoding"]);
        assert_eq!(
            RequestDecision::lookup(key.clone()),
            RequestDecision::Lookup(key)
        );
        assert_eq!(
            RequestDecision::pass("method"),
            RequestDecision::Pass("method".into())
        );
    }

    #[test]
    fn store_directive_builders() {
        let d = StoreDirective::ttl(1800)
            .tags(["repo:1"])
            .tag("all-repos")
            .stale_while_revalidate(30)
            .stale_if_error(600);
        assert_eq!(d.ttl, 1800);
        assert_eq!(d.tags, ["repo:1", "all-repos"]);
        assert_eq!(d.stale_while_revalidate, 30);
        assert_eq!(d.stale_if_error, 600);
        let stored = ResponseDecision::store(StoreDirective::ttl(5)).with_tags(["t"]);
        assert_eq!(
            stored,
            ResponseDecision::Store(StoreDirective::ttl(5).tag("t"))
        );
        let not = ResponseDecision::no_store("status").with_tags(["t"]);
        assert_eq!(not, ResponseDecision::NoStore("status".into()));
    }

    #[test]
    fn invalidation_builders() {
        let inv = Invalidation::tag("repo:1").soft();
        assert_eq!(inv.target, InvalidationTarget::Tag("repo:1".into()));
        assert!(inv.soft);
        assert!(!Invalidation::tag("x").soft_if(false).soft);
        let key = Invalidation::key(KeyRef::here(["/a", ""]));
        assert_eq!(
            key.target,
            InvalidationTarget::Key(KeyRef {
                route: None,
                parts: vec!["/a".into(), String::new()]
            })
        );
        let prefix = Invalidation::prefix(KeyRef::on_route("list", ["list"]));
        assert_eq!(
            prefix.target,
            InvalidationTarget::Prefix(KeyRef {
                route: Some("list".into()),
                parts: vec!["list".into()]
            })
        );
    }
}
