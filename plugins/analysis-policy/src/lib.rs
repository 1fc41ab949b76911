#![doc = include_str!("../README.md")]

use larder_sdk::{
    BadParam, CacheKey, Digits, FromParam, Invalidation, Policy, Request, RequestDecision,
    Response, ResponseDecision, SettingError, Settings, StoreDirective,
};

/// The Source Code Analysis Tool policy.
pub struct AnalysisPolicy;

/// Tag on every aggregate over all repositories (the list, insights).
const ALL_REPOS: &str = "all-repos";

/// A repository id as the backend parses it: ASCII digits with leading zeros, no sign (`+1` is
/// a 400 there), within `u64`. Its `Display` is the canonical text used in keys and tags.
pub type RepoId = Digits<u64>;

/// A route's settings (the table above), typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuning {
    ttl: u32,
    not_found_ttl: u32,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    soft_purge: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            ttl: 1800,
            not_found_ttl: 60,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            soft_purge: false,
        }
    }
}

impl Tuning {
    /// Every setting this policy reads; `view` and `vary` are free text.
    const NAMES: [&str; 7] = [
        "ttl",
        "not_found_ttl",
        "stale_while_revalidate",
        "stale_if_error",
        "view",
        "vary",
        "soft_purge",
    ];

    fn read(settings: &Settings) -> Result<Tuning, SettingError> {
        let d = Tuning::default();
        Ok(Tuning {
            ttl: settings.parse_or("ttl", d.ttl)?,
            not_found_ttl: settings.parse_or("not_found_ttl", d.not_found_ttl)?,
            stale_while_revalidate: settings
                .parse_or("stale_while_revalidate", d.stale_while_revalidate)?,
            stale_if_error: settings.parse_or("stale_if_error", d.stale_if_error)?,
            soft_purge: settings.parse_or("soft_purge", d.soft_purge)?,
        })
    }

    /// The request's route's settings, which `check_settings` accepted at load; silently the
    /// defaults should they not parse (logging would cost every request its decision reuse).
    fn of(req: &Request) -> Tuning {
        Tuning::read(&req.settings()).unwrap_or_default()
    }
}

fn repo_tag(id: u64) -> String {
    format!("repo:{id}")
}

/// The repository of the request: `Ok(None)` on a route without `{id}` (the aggregates,
/// embeddings), `Err` for an id the backend does not accept.
fn repository(req: &Request) -> Result<Option<RepoId>, BadParam> {
    req.param_as::<RepoId>("id")
}

impl Policy for AnalysisPolicy {
    fn check_settings(settings: &Settings) -> Result<(), String> {
        settings.only(&Tuning::NAMES)?;
        Tuning::read(settings)?;
        Ok(())
    }

    fn on_request(req: &Request) -> RequestDecision {
        // Answers to authenticated requests may be personal; never share them.
        if req.has_header("authorization") || req.has_header("cookie") {
            return RequestDecision::pass("credentials");
        }
        if !req.is_safe() {
            // A POST whose answer depends only on its body (embeddings) is cached by the
            // body's digest, on routes configured with `cache_post = true`.
            return match larder_sdk::request_body_digest() {
                Some(digest) if req.method == "POST" => {
                    RequestDecision::lookup(CacheKey::new([req.route_name.as_str(), &digest]))
                }
                _ => RequestDecision::pass("method"),
            };
        }
        let query = req.query_or_empty();
        let key = match repository(req) {
            // The repository id is always in the key, in its canonical form: two repositories
            // never share an entry, and two spellings of one repository always do.
            Ok(Some(id)) => {
                let view = req.setting("view").unwrap_or(&req.route_name);
                CacheKey::new(["repo", &id.to_string(), view, query])
            }
            Ok(None) => CacheKey::new([req.route_name.as_str(), query]),
            // Not an id the backend accepts: it answers with an error, which is not cached.
            Err(bad) => return bad.into(),
        };
        let vary = req
            .setting("vary")
            .into_iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        RequestDecision::lookup(key.vary(vary))
    }

    fn on_response(req: &Request, resp: &Response) -> ResponseDecision {
        if resp.has_header("set-cookie") {
            return ResponseDecision::no_store("set-cookie");
        }
        let cc = resp.cache_control();
        if cc.no_store {
            return ResponseDecision::no_store("no-store");
        }
        if cc.private {
            return ResponseDecision::no_store("private");
        }
        // The backend sends no validators, so a `no-cache` answer could not be revalidated.
        if cc.no_cache {
            return ResponseDecision::no_store("no-cache");
        }
        let tuning = Tuning::of(req);
        let ttl = match resp.status {
            200 => tuning.ttl,
            404 => tuning.not_found_ttl,
            _ => return ResponseDecision::no_store("status"),
        };
        // A zero TTL is the config's way of turning storing off (the host rejects `store` with
        // a zero TTL).
        if ttl == 0 {
            let reason = if resp.status == 404 { "status" } else { "ttl" };
            return ResponseDecision::no_store(reason);
        }
        let tags = match repository(req) {
            Ok(Some(Digits(id))) => vec![repo_tag(id)],
            // A body-keyed POST (embeddings) depends on no repository: tagged by its route.
            Ok(None) if req.method == "POST" => vec![req.route_name.clone()],
            Ok(None) => vec![ALL_REPOS.to_owned()],
            // `on_request` passed it, so this is not called for it; never store one anyway.
            Err(_) => return ResponseDecision::no_store(BadParam::REASON),
        };
        ResponseDecision::store(
            StoreDirective::ttl(ttl)
                .stale_while_revalidate(tuning.stale_while_revalidate)
                .stale_if_error(tuning.stale_if_error)
                .tags(tags),
        )
    }

    fn on_invalidate(req: &Request, _resp: &Response) -> Vec<Invalidation> {
        // Only writes to one repository (analyze) change cached answers; anything else
        // (embeddings) touches nothing cached.
        let repo = match repository(req) {
            Ok(Some(Digits(id))) => Some(id),
            Ok(None) => return Vec::new(),
            // The backend took a write for an id this policy does not serve: it reads ids more
            // leniently than we thought. Purging more than needed is harmless, so read the id
            // as leniently as common parsers do (`+1`, surrounding spaces) and purge that
            // repository.
            Err(bad) => {
                let lenient = u64::from_param(bad.value.trim()).ok();
                larder_sdk::warn(&format!(
                    "{bad}, but the backend accepted the write; purging {}",
                    match lenient {
                        Some(id) => format!("repo:{id} and {ALL_REPOS}"),
                        None => format!("only {ALL_REPOS}"),
                    }
                ));
                lenient
            }
        };
        let soft = Tuning::of(req).soft_purge;
        // The aggregates (list, insights) are computed over every repository, so they go too.
        repo.map(repo_tag)
            .into_iter()
            .chain([ALL_REPOS.to_owned()])
            .map(|tag| Invalidation::tag(tag).soft_if(soft))
            .collect()
    }
}

larder_sdk::export_policy!(AnalysisPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    fn ai_features(id: &str) -> Request {
        Request::new("GET", format!("/api/v1/repositories/{id}/ai-features"))
            .with_route("ai-features", "/api/v1/repositories/{id}/ai-features")
            .with_param("id", id)
    }

    fn insights() -> Request {
        Request::new("GET", "/api/v1/insights").with_route("insights", "/api/v1/insights")
    }

    fn analyze(id: &str) -> Request {
        Request::new("POST", format!("/api/v1/repositories/{id}/actions/analyze"))
            .with_route("analyze", "/api/v1/repositories/{id}/actions/analyze")
            .with_param("id", id)
    }

    #[test]
    fn a_post_is_cached_by_its_body_digest_only_when_offered() {
        let req = Request::new("POST", "/api/v1/embeddings")
            .with_route("embeddings", "/api/v1/embeddings");
        larder_sdk::testing::set_body_digest(None);
        assert_eq!(
            AnalysisPolicy::on_request(&req),
            RequestDecision::pass("method")
        );
        larder_sdk::testing::set_body_digest(Some("ab12"));
        assert_eq!(
            AnalysisPolicy::on_request(&req),
            RequestDecision::lookup(CacheKey::new(["embeddings", "ab12"]))
        );
        let stored = AnalysisPolicy::on_response(&req, &Response::new(200));
        assert_eq!(
            stored,
            ResponseDecision::store(StoreDirective::ttl(1800).tag("embeddings"))
        );
        larder_sdk::testing::set_body_digest(None);
    }

    #[test]
    fn credentials_and_unsafe_methods_pass() {
        for req in [
            ai_features("1").with_header("authorization", "Bearer t"),
            ai_features("1").with_header("cookie", "session=1"),
            analyze("1").with_header("cookie", "session=1"),
        ] {
            assert_eq!(
                AnalysisPolicy::on_request(&req),
                RequestDecision::pass("credentials")
            );
        }
        assert_eq!(
            AnalysisPolicy::on_request(&analyze("1")),
            RequestDecision::pass("method")
        );
    }

    #[test]
    fn repository_keys_carry_the_id_view_and_query() {
        assert_eq!(
            AnalysisPolicy::on_request(&ai_features("7")),
            RequestDecision::lookup(CacheKey::new(["repo", "7", "ai-features", ""]))
        );
        let req = ai_features("7")
            .with_setting("view", "ai")
            .with_query("lang=en");
        assert_eq!(
            AnalysisPolicy::on_request(&req),
            RequestDecision::lookup(CacheKey::new(["repo", "7", "ai", "lang=en"]))
        );
    }

    #[test]
    fn aggregate_keys_use_the_route_name() {
        assert_eq!(
            AnalysisPolicy::on_request(&insights()),
            RequestDecision::lookup(CacheKey::new(["insights", ""]))
        );
        let list = Request::new("GET", "/api/v1/repositories")
            .with_route("repositories", "/api/v1/repositories")
            .with_query("page=2");
        assert_eq!(
            AnalysisPolicy::on_request(&list),
            RequestDecision::lookup(CacheKey::new(["repositories", "page=2"]))
        );
    }

    #[test]
    fn vary_setting() {
        let req = insights().with_setting("vary", "Accept, accept-language,");
        assert_eq!(
            AnalysisPolicy::on_request(&req),
            RequestDecision::lookup(
                CacheKey::new(["insights", ""]).vary(["accept", "accept-language"])
            )
        );
    }

    #[test]
    fn stores_200_with_settings_and_tags() {
        assert_eq!(
            AnalysisPolicy::on_response(&ai_features("3"), &Response::new(200)),
            ResponseDecision::store(StoreDirective::ttl(1800).tag("repo:3"))
        );
        let req = insights()
            .with_setting("ttl", "600")
            .with_setting("stale_while_revalidate", "30")
            .with_setting("stale_if_error", "3600");
        assert_eq!(
            AnalysisPolicy::on_response(&req, &Response::new(200)),
            ResponseDecision::store(
                StoreDirective::ttl(600)
                    .stale_while_revalidate(30)
                    .stale_if_error(3600)
                    .tag("all-repos")
            )
        );
    }

    #[test]
    fn settings_are_checked_at_load_by_name_and_type() {
        let good = ai_features("1")
            .with_setting("ttl", "600")
            .with_setting("not_found_ttl", "0")
            .with_setting("stale_while_revalidate", "30")
            .with_setting("stale_if_error", "3600")
            .with_setting("view", "ai")
            .with_setting("vary", "accept")
            .with_setting("soft_purge", "true");
        assert_eq!(AnalysisPolicy::check_settings(&good.settings()), Ok(()));
        assert_eq!(
            AnalysisPolicy::check_settings(&insights().settings()),
            Ok(())
        );
        for (name, value, reason) in [
            (
                "ttl",
                "half an hour",
                "setting `ttl` = \"half an hour\" is not a valid u32",
            ),
            ("ttl", "-1", "setting `ttl` = \"-1\" is not a valid u32"),
            (
                "soft_purge",
                "yes",
                "setting `soft_purge` = \"yes\" is not a valid bool",
            ),
            (
                "tll",
                "600",
                "unknown setting `tll` (this policy reads `ttl`, `not_found_ttl`, `stale_while_revalidate`, `stale_if_error`, `view`, `vary`, `soft_purge`)",
            ),
        ] {
            let req = ai_features("1").with_setting(name, value);
            assert_eq!(
                AnalysisPolicy::check_settings(&req.settings()),
                Err(reason.to_owned())
            );
        }
    }

    #[test]
    fn bad_settings_fall_back_to_defaults() {
        let req = ai_features("3").with_setting("ttl", "half an hour");
        assert_eq!(
            AnalysisPolicy::on_response(&req, &Response::new(200)),
            ResponseDecision::store(StoreDirective::ttl(1800).tag("repo:3"))
        );
    }

    #[test]
    fn not_found_is_stored_briefly() {
        assert_eq!(
            AnalysisPolicy::on_response(&ai_features("999"), &Response::new(404)),
            ResponseDecision::store(StoreDirective::ttl(60).tag("repo:999"))
        );
        let req = ai_features("999").with_setting("not_found_ttl", "0");
        assert_eq!(
            AnalysisPolicy::on_response(&req, &Response::new(404)),
            ResponseDecision::no_store("status")
        );
    }

    #[test]
    fn other_statuses_and_origin_refusals_are_not_stored() {
        for status in [201, 204, 301, 400, 500, 502, 503] {
            assert_eq!(
                AnalysisPolicy::on_response(&ai_features("1"), &Response::new(status)),
                ResponseDecision::no_store("status"),
                "{status}"
            );
        }
        for (header, value, reason) in [
            ("set-cookie", "a=b", "set-cookie"),
            ("cache-control", "no-store", "no-store"),
            ("cache-control", "private, max-age=60", "private"),
            ("cache-control", "no-cache", "no-cache"),
        ] {
            let resp = Response::new(200).with_header(header, value);
            assert_eq!(
                AnalysisPolicy::on_response(&ai_features("1"), &resp),
                ResponseDecision::no_store(reason)
            );
        }
        let req = ai_features("1").with_setting("ttl", "0");
        assert_eq!(
            AnalysisPolicy::on_response(&req, &Response::new(200)),
            ResponseDecision::no_store("ttl")
        );
    }

    #[test]
    fn analyze_purges_the_repository_and_the_aggregates() {
        assert_eq!(
            AnalysisPolicy::on_invalidate(&analyze("5"), &Response::new(202)),
            [Invalidation::tag("repo:5"), Invalidation::tag("all-repos")]
        );
        let soft = analyze("5").with_setting("soft_purge", "true");
        assert_eq!(
            AnalysisPolicy::on_invalidate(&soft, &Response::new(202)),
            [
                Invalidation::tag("repo:5").soft(),
                Invalidation::tag("all-repos").soft()
            ]
        );
        let embeddings = Request::new("POST", "/api/v1/embeddings")
            .with_route("embeddings", "/api/v1/embeddings");
        assert!(AnalysisPolicy::on_invalidate(&embeddings, &Response::new(200)).is_empty());
    }

    #[test]
    fn every_spelling_of_a_repository_id_has_one_key_and_one_tag() {
        let expected_key = RequestDecision::lookup(CacheKey::new(["repo", "1", "ai-features", ""]));
        let expected_store = ResponseDecision::store(StoreDirective::ttl(1800).tag("repo:1"));
        for id in ["1", "01", "0001"] {
            assert_eq!(
                AnalysisPolicy::on_request(&ai_features(id)),
                expected_key,
                "{id}"
            );
            assert_eq!(
                AnalysisPolicy::on_response(&ai_features(id), &Response::new(200)),
                expected_store,
                "{id}"
            );
            assert_eq!(
                AnalysisPolicy::on_invalidate(&analyze(id), &Response::new(200)),
                [Invalidation::tag("repo:1"), Invalidation::tag("all-repos")],
                "{id}"
            );
        }
        assert_eq!(
            AnalysisPolicy::on_request(&ai_features("0")),
            RequestDecision::lookup(CacheKey::new(["repo", "0", "ai-features", ""]))
        );
        assert_eq!(
            AnalysisPolicy::on_request(&ai_features("18446744073709551615")),
            RequestDecision::lookup(CacheKey::new([
                "repo",
                "18446744073709551615",
                "ai-features",
                ""
            ]))
        );
    }

    #[test]
    fn ids_the_backend_refuses_pass_uncached() {
        // `+1` is a spelling of 1 to some parsers, but this backend answers it with 400: serving
        // repository 1's cached answer for it would contradict the backend.
        for id in [
            "abc",
            "1a",
            "+1",
            "-1",
            "",
            " 1",
            "1.0",
            "18446744073709551616",
        ] {
            assert_eq!(
                AnalysisPolicy::on_request(&ai_features(id)),
                RequestDecision::pass("bad-param"),
                "{id:?}"
            );
            assert_eq!(
                AnalysisPolicy::on_response(&ai_features(id), &Response::new(200)),
                ResponseDecision::no_store("bad-param"),
                "{id:?}"
            );
        }
        // Credentials are checked first: the reason names the more important rule.
        assert_eq!(
            AnalysisPolicy::on_request(&ai_features("abc").with_header("cookie", "s=1")),
            RequestDecision::pass("credentials")
        );
    }

    #[test]
    fn a_successful_write_to_an_id_the_policy_does_not_serve_purges_what_it_can_read() {
        // Leniently read as a number: that repository, and the aggregates.
        for id in ["+1", "+01", " 1"] {
            assert_eq!(
                AnalysisPolicy::on_invalidate(&analyze(id), &Response::new(200)),
                [Invalidation::tag("repo:1"), Invalidation::tag("all-repos")],
                "{id:?}"
            );
        }
        // Not a number at all: the aggregates only.
        for id in ["abc", "-1", "99999999999999999999"] {
            assert_eq!(
                AnalysisPolicy::on_invalidate(&analyze(id), &Response::new(200)),
                [Invalidation::tag("all-repos")],
                "{id:?}"
            );
        }
        let soft = analyze("+1").with_setting("soft_purge", "true");
        assert_eq!(
            AnalysisPolicy::on_invalidate(&soft, &Response::new(200)),
            [
                Invalidation::tag("repo:1").soft(),
                Invalidation::tag("all-repos").soft()
            ]
        );
    }
}
