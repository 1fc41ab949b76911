//! `larder plugin test PLUGIN.wasm CASES.toml`: a policy's decisions pinned in a file, checked
//! against the compiled component.
//!
//! The cases are language-neutral: the same file tests a policy written in Rust, Python or
//! anything else that builds a component, so a port can be shown to decide exactly as the
//! original. Each case is a request (and, where a later call needs one, the upstream's answer)
//! and the decisions expected of it. The runner calls the policy as the gateway would (same
//! engine, sandbox and limits as `larder plugin run`), in the gateway's order:
//!
//! 1. `check-settings` with the case's route and settings (once per distinct pair);
//! 2. `on-request` for a safe method, or for a POST with a `body_digest` (what
//!    `request-body-digest` answers during the call: a `cache_post` route);
//! 3. `on-response` when the request is looked up (GET or HEAD, or a POST whose policy asked for
//!    the digest) and the case has a `response`;
//! 4. `on-invalidate` for any other unsafe request, with the case's `response` (default: status
//!    200, no fields).
//!
//! An expectation names only what it checks: in an expected table, fields left out are not
//! compared (`on_response = { store = { ttl = 60 } }` checks the TTL and that it stores);
//! arrays and plain values must be equal. An expected `check_settings` error matches when the
//! policy's reason contains it. A failing case prints each difference by its path and what the
//! policy decided, and the command exits non-zero.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use larder_bindings::types::{Header, Param, Request, RequestDecision, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::plugin_check::load;
use super::plugin_run::{invalidation, request, request_decision, response_decision};
use crate::policy::Plugin;
use crate::policy::sandbox::Limits;

/// Arguments of `larder plugin test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin component.
    pub file: PathBuf,
    /// The cases file (TOML; see `larder plugin test --help` and plugins/README.md).
    pub cases: PathBuf,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub deadline_ms: u64,
    #[command(flatten)]
    pub memory_limit: super::plugin_check::MemoryLimit,
}

/// A cases file: `[defaults]` shared by every `[[case]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    route: Option<String>,
    pattern: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: Fields,
    #[serde(default)]
    settings: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Default: `[defaults]`'s, else `GET`.
    method: Option<String>,
    /// With the query, if any.
    path: String,
    /// The route's name. Default: `[defaults]`'s, else `test`.
    route: Option<String>,
    /// The route's pattern. Default: `[defaults]`'s, else the path itself (no parameters).
    pattern: Option<String>,
    /// Added to `[defaults]`'s; a field named in both takes the case's value.
    #[serde(default)]
    headers: Fields,
    /// Merged over `[defaults]`'s.
    #[serde(default)]
    settings: toml::Table,
    /// What `request-body-digest` answers during `on-request`.
    body_digest: Option<String>,
    response: Option<CaseResponse>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseResponse {
    status: u16,
    #[serde(default)]
    headers: Fields,
    body_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `"ok"`, or `{ err = "part of the reason" }`.
    check_settings: Option<toml::Value>,
    on_request: Option<toml::Value>,
    on_response: Option<toml::Value>,
    on_invalidate: Option<toml::Value>,
}

/// Header fields as a table (`{ accept = "text/html" }`) or, for repeated fields, a list of
/// pairs (`[["accept", "a"], ["accept", "b"]]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Fields {
    Table(toml::Table),
    Pairs(Vec<(String, String)>),
}

impl Default for Fields {
    fn default() -> Self {
        Fields::Pairs(Vec::new())
    }
}

impl Fields {
    fn headers(&self) -> anyhow::Result<Vec<Header>> {
        let pair = |name: &str, value: String| Header {
            name: name.to_ascii_lowercase(),
            value,
        };
        match self {
            Fields::Pairs(pairs) => Ok(pairs.iter().map(|(n, v)| pair(n, v.clone())).collect()),
            Fields::Table(table) => table
                .iter()
                .map(|(name, value)| {
                    let value = value
                        .as_str()
                        .with_context(|| format!("header {name:?} must be a string"))?;
                    Ok(pair(name, value.to_owned()))
                })
                .collect(),
        }
    }
}

/// The outcome of a run: the report to print, and how many cases failed.
pub struct Outcome {
    pub report: String,
    pub failed: usize,
    pub total: usize,
}

/// Runs every case of `args.cases` against `args.file`.
pub async fn test(args: TestArgs) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;
    let file: CasesFile = toml::from_str(&text)
        .with_context(|| format!("{}: not a cases file", args.cases.display()))?;
    if file.cases.is_empty() {
        anyhow::bail!("{}: no [[case]]", args.cases.display());
    }
    let plugin = load(&args.file).await?;
    let limits = Limits {
        deadline: Duration::from_millis(args.deadline_ms),
        memory: args.memory_limit.bytes as usize,
    };
    let mut runner = Runner {
        plugin,
        limits,
        settings_checked: HashMap::new(),
    };
    let mut report = format!(
        "{}: {} cases from {}\n",
        args.file.display(),
        file.cases.len(),
        display_name(&args.cases)
    );
    let mut failed = 0;
    for case in &file.cases {
        let problems = match runner.run(&file.defaults, case).await {
            Ok(problems) => problems,
            Err(e) => vec![format!("{e:#}")],
        };
        if problems.is_empty() {
            let _ = writeln!(report, "ok    {}", case.name);
        } else {
            failed += 1;
            let _ = writeln!(report, "FAIL  {}", case.name);
            for line in problems {
                let _ = writeln!(report, "      {line}");
            }
        }
    }
    let _ = write!(
        report,
        "{} passed, {failed} failed",
        file.cases.len() - failed
    );
    Ok(Outcome {
        report,
        failed,
        total: file.cases.len(),
    })
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A route's name and its settings as rendered.
type RouteSettings = (String, Vec<(String, String)>);

struct Runner {
    plugin: Plugin,
    limits: Limits,
    /// `check-settings`' answer per route and settings.
    settings_checked: HashMap<RouteSettings, Result<(), String>>,
}

/// How a case's request went through the policy: looked up, or passed (and why).
enum Flow {
    LookedUp,
    Passed(&'static str),
    /// An unsafe request `on-request` is not asked about.
    Write,
}

/// A case's request and response as the policy sees them, its defaults applied.
struct CaseInput {
    req: Request,
    method: http::Method,
    /// The route's settings, rendered, for `check-settings`.
    settings: Vec<(String, String)>,
    resp: Option<Response>,
}

impl CaseInput {
    fn of(defaults: &Defaults, case: &Case) -> anyhow::Result<Self> {
        let route = case
            .route
            .as_deref()
            .or(defaults.route.as_deref())
            .unwrap_or("test");
        let method = case
            .method
            .as_deref()
            .or(defaults.method.as_deref())
            .unwrap_or("GET");
        let settings = merged_settings(&defaults.settings, &case.settings)?;
        let params = settings
            .iter()
            .map(|(name, value)| Param {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        let headers = merged_headers(defaults.headers.headers()?, case.headers.headers()?);
        let pattern = case.pattern.as_deref().or(defaults.pattern.as_deref());
        let req = request(method, &case.path, pattern, route, headers, params)?;
        let method = http::Method::from_bytes(req.method.as_bytes())
            .with_context(|| format!("method {:?} is not an HTTP method", req.method))?;
        let resp = match &case.response {
            Some(r) => Some(Response {
                status: r.status,
                headers: r.headers.headers()?,
                body_size: r.body_size,
            }),
            None => None,
        };
        Ok(Self {
            req,
            method,
            settings,
            resp,
        })
    }
}

impl Runner {
    /// Runs one case; returns what differs from its expectations (empty: it passed). The calls
    /// follow the gateway's order: `check-settings`, then `on-request` for a safe method, then
    /// `on-response` if it looked up, or `on-invalidate` for a write it did not look up.
    async fn run(&mut self, defaults: &Defaults, case: &Case) -> anyhow::Result<Vec<String>> {
        let CaseInput {
            req,
            method,
            settings,
            resp,
        } = CaseInput::of(defaults, case)?;
        let mut problems = Vec::new();
        if !self
            .settings_accepted(&req, settings, case, &mut problems)
            .await?
        {
            return Ok(problems);
        }
        let flow = self.on_request(&req, &method, case, &mut problems).await?;
        self.on_response(&req, &flow, resp.as_ref(), case, &mut problems)
            .await?;
        self.on_invalidate(&req, &method, &flow, resp, case, &mut problems)
            .await?;
        Ok(problems)
    }

    /// `on-response`, when `on-request` looked up and the case has a response.
    async fn on_response(
        &mut self,
        req: &Request,
        flow: &Flow,
        resp: Option<&Response>,
        case: &Case,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let expected = case.expect.on_response.as_ref();
        match (flow, resp) {
            (Flow::LookedUp, Some(resp)) => {
                let decision = self
                    .plugin
                    .on_response(0, self.limits, req, resp, case.body_digest.as_deref())
                    .await?;
                if let Some(expected) = expected {
                    let decided = response_decision(&decision);
                    compare("on_response", &to_json(expected)?, &decided, problems);
                }
            }
            _ if expected.is_none() => {}
            (Flow::LookedUp, None) => {
                problems.push("on_response: the case has no `response` to call it with".into())
            }
            (Flow::Passed(why), _) => problems.push(format!("on_response: not called: {why}")),
            (Flow::Write, _) => {
                problems.push("on_response: not called: the request is a write".into())
            }
        }
        Ok(())
    }

    /// `on-invalidate`, for an unsafe method that was not looked up (a write), with the case's
    /// response or a bare 200.
    async fn on_invalidate(
        &mut self,
        req: &Request,
        method: &http::Method,
        flow: &Flow,
        resp: Option<Response>,
        case: &Case,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let expected = case.expect.on_invalidate.as_ref();
        if !crate::routes::is_unsafe(method) || matches!(flow, Flow::LookedUp) {
            if expected.is_some() {
                problems.push(format!(
                    "on_invalidate: not called: a {method} that is not a write (the gateway calls it for unsafe methods that were not looked up)"
                ));
            }
            return Ok(());
        }
        let resp = resp.unwrap_or(Response {
            status: 200,
            headers: Vec::new(),
            body_size: None,
        });
        let list = self
            .plugin
            .on_invalidate(0, self.limits, req, &resp)
            .await?;
        if let Some(expected) = expected {
            let decided = Value::Array(list.iter().map(invalidation).collect());
            compare("on_invalidate", &to_json(expected)?, &decided, problems);
        }
        Ok(())
    }

    /// `check-settings` for the case's route and settings, compared with what the case
    /// expects; `false` when the policy refused them (no other call is made then).
    async fn settings_accepted(
        &mut self,
        req: &Request,
        settings: Vec<(String, String)>,
        case: &Case,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<bool> {
        let key = (req.route_name.clone(), settings);
        let accepted = match self.settings_checked.get(&key) {
            Some(known) => known.clone(),
            None => {
                let answer = self
                    .plugin
                    .check_settings(self.limits, &req.route_name, &req.settings)
                    .await?;
                self.settings_checked.insert(key, answer.clone());
                answer
            }
        };
        let expect = &case.expect;
        match (&expect.check_settings, &accepted) {
            (Some(expected), _) => {
                let decided = match &accepted {
                    Ok(()) => json!("ok"),
                    Err(reason) => json!({ "err": reason }),
                };
                compare("check_settings", &to_json(expected)?, &decided, problems)
            }
            (None, Err(reason)) => problems.push(format!(
                "check_settings refused the route's settings (the gateway would not load it): {reason}"
            )),
            (None, Ok(())) => {}
        }
        if accepted.is_err() {
            for (name, given) in [
                ("on_request", &expect.on_request),
                ("on_response", &expect.on_response),
                ("on_invalidate", &expect.on_invalidate),
            ] {
                if given.is_some() {
                    problems.push(format!(
                        "{name}: not called: check_settings refused the settings"
                    ));
                }
            }
        }
        Ok(accepted.is_ok())
    }

    /// `on-request`, when the gateway would call it (see the module doc), compared with what
    /// the case expects.
    async fn on_request(
        &mut self,
        req: &Request,
        method: &http::Method,
        case: &Case,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<Flow> {
        let body_keyed = *method == http::Method::POST && case.body_digest.is_some();
        if crate::routes::is_unsafe(method) && !body_keyed {
            if case.expect.on_request.is_some() {
                problems.push(format!(
                    "on_request: not called: the gateway does not ask it about a {method} without a body digest (give the case a body_digest for a cache_post route)"
                ));
            }
            return Ok(Flow::Write);
        }
        let (decision, facts) = self
            .plugin
            .on_request_with_body(0, self.limits, req, case.body_digest.as_deref())
            .await?;
        if let Some(expected) = &case.expect.on_request {
            let decided = request_decision(&decision);
            compare("on_request", &to_json(expected)?, &decided, problems);
        }
        let cacheable_method = *method == http::Method::GET || *method == http::Method::HEAD;
        Ok(match decision {
            RequestDecision::Lookup(_) if cacheable_method || facts.body_digest_asked => {
                Flow::LookedUp
            }
            RequestDecision::Lookup(_) if body_keyed => Flow::Write,
            RequestDecision::Lookup(_) => Flow::Passed(
                "on-request's lookup is a pass for this method (only GET and HEAD are looked up, and a POST that asked for its body's digest)",
            ),
            RequestDecision::Pass(_) if body_keyed => Flow::Write,
            RequestDecision::Pass(_) => Flow::Passed("on-request passed the request"),
        })
    }
}

/// The case's settings over the defaults', rendered as the gateway renders them.
fn merged_settings(
    defaults: &toml::Table,
    case: &toml::Table,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut merged = defaults.clone();
    merged.extend(case.clone());
    merged
        .iter()
        .map(|(name, value)| {
            let rendered = crate::config::render_setting(value).with_context(|| {
                format!(
                    "setting `{name}` is a {}; settings must be strings, numbers or booleans",
                    value.type_str()
                )
            })?;
            Ok((name.clone(), rendered))
        })
        .collect()
}

/// The defaults' fields, those the case names replaced by the case's, then the case's others.
fn merged_headers(defaults: Vec<Header>, case: Vec<Header>) -> Vec<Header> {
    let mut merged: Vec<Header> = defaults
        .into_iter()
        .filter(|d| !case.iter().any(|c| c.name == d.name))
        .collect();
    merged.extend(case);
    merged
}

fn to_json(value: &toml::Value) -> anyhow::Result<Value> {
    serde_json::to_value(value).context("an expectation that is not JSON-like")
}

/// Appends to `out` every way `actual` differs from `expected` (see the module doc for what is
/// compared), each with its path; then, if any, what the policy decided.
fn compare(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let before = out.len();
    differences(path, expected, actual, out);
    if out.len() > before {
        out.push(format!("{path} decided: {actual}"));
    }
}

fn differences(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (name, e) in e {
                let at = format!("{path}.{name}");
                match a.get(name) {
                    Some(a) if path == "check_settings" && name == "err" => match (e, a) {
                        (Value::String(part), Value::String(reason)) if reason.contains(part) => {}
                        _ => out.push(format!("{at}: expected a reason containing {e}, got {a}")),
                    },
                    Some(a) => differences(&at, e, a, out),
                    None => out.push(format!("{at}: expected {e}, got nothing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), e, a, out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: expected {e}, got {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(expected: Value, actual: Value) -> Vec<String> {
        let mut out = Vec::new();
        differences("on_response", &expected, &actual, &mut out);
        out
    }

    #[test]
    fn fields_left_out_of_an_expected_table_are_not_compared() {
        let stored =
            json!({ "store": { "ttl": 60, "stale_while_revalidate": 0, "tags": ["repo:1"] } });
        assert!(diff(json!({ "store": { "ttl": 60 } }), stored.clone()).is_empty());
        assert_eq!(
            diff(
                json!({ "store": { "ttl": 30, "tags": ["repo:2"] } }),
                stored
            ),
            [
                "on_response.store.tags[0]: expected \"repo:2\", got \"repo:1\"",
                "on_response.store.ttl: expected 30, got 60",
            ]
        );
    }

    #[test]
    fn another_decision_is_named_by_what_is_missing() {
        assert_eq!(
            diff(
                json!({ "store": { "ttl": 60 } }),
                json!({ "no_store": "status" })
            ),
            ["on_response.store: expected {\"ttl\":60}, got nothing"]
        );
    }

    #[test]
    fn arrays_must_have_the_same_length() {
        assert_eq!(
            diff(json!(["a"]), json!(["a", "b"])),
            ["on_response: expected [\"a\"], got [\"a\",\"b\"]"]
        );
    }

    #[test]
    fn a_settings_error_matches_by_containment() {
        let mut out = Vec::new();
        let refused = json!({ "err": "setting `ttl` = \"ten\" is not a u32" });
        differences(
            "check_settings",
            &json!({ "err": "ttl" }),
            &refused,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        differences("check_settings", &json!("ok"), &refused, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_case_names_headers_over_the_defaults() {
        let h = |n: &str, v: &str| Header {
            name: n.into(),
            value: v.into(),
        };
        let merged = merged_headers(
            vec![h("accept", "a"), h("x-team", "t")],
            vec![h("accept", "b"), h("accept", "c")],
        );
        let merged: Vec<_> = merged.iter().map(|h| (&*h.name, &*h.value)).collect();
        assert_eq!(merged, [("x-team", "t"), ("accept", "b"), ("accept", "c")]);
    }

    #[test]
    fn settings_are_rendered_as_the_gateway_renders_them() {
        let defaults: toml::Table = toml::from_str("ttl = 60\nsoft_purge = true").unwrap();
        let case: toml::Table = toml::from_str("ttl = \"ten\"").unwrap();
        assert_eq!(
            merged_settings(&defaults, &case).unwrap(),
            [
                ("soft_purge".to_owned(), "true".to_owned()),
                ("ttl".to_owned(), "ten".to_owned())
            ]
        );
        let nested: toml::Table = toml::from_str("bad = [1]").unwrap();
        let e = merged_settings(&nested, &toml::Table::new()).unwrap_err();
        assert!(e.to_string().contains("setting `bad` is a array"), "{e}");
    }
}
