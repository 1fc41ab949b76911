//! `larder plugin run`: a policy author's loop from the shell.
//!
//! It calls a plugin exactly as the gateway would (same engine, same sandbox and limits), but
//! with a request described on the command line, and prints the decisions as JSON, so a policy
//! can be tried, and tested in the author's own CI, without a gateway, an origin or Redis.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use larder_bindings::types::{
    Header, Invalidation, InvalidationTarget, KeyRef, Param, Request, RequestDecision, Response,
    ResponseDecision,
};
use serde_json::{Value, json};

use super::plugin_check::load;
use crate::policy::sandbox::Limits;

/// Arguments of `larder plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The plugin component.
    pub file: PathBuf,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request path, with the query if any (`/api/v1/repositories/1?x=y`).
    #[arg(long)]
    pub path: String,
    /// The route's pattern, for path parameters (default: the path itself, no parameters).
    #[arg(long)]
    pub route: Option<String>,
    /// The route's name.
    #[arg(long, default_value = "cli")]
    pub route_name: String,
    /// A request header, `name:value` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// A route setting, `name=value` (repeatable).
    #[arg(long = "setting", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// An upstream status: also call on-response (safe methods) or on-invalidate (writes).
    #[arg(long)]
    pub status: Option<u16>,
    /// An upstream response header, `name:value` (repeatable).
    #[arg(long = "response-header", value_name = "NAME:VALUE")]
    pub response_headers: Vec<String>,
    /// Upstream body size in bytes.
    #[arg(long)]
    pub body_size: Option<u64>,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub deadline_ms: u64,
    #[command(flatten)]
    pub memory_limit: super::plugin_check::MemoryLimit,
}

fn split_pair<'a>(s: &'a str, sep: char, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    s.split_once(sep)
        .map(|(a, b)| (a.trim(), b.trim()))
        .with_context(|| format!("{what} {s:?} must look like name{sep}value"))
}

fn headers(list: &[String]) -> anyhow::Result<Vec<Header>> {
    list.iter()
        .map(|h| {
            let (name, value) = split_pair(h, ':', "header")?;
            Ok(Header {
                name: name.to_ascii_lowercase(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// The request a route `route_name` with the pattern `pattern` (default: the path itself, no
/// parameters) would show the policy for `method` and `path_and_query`: the path parameters
/// captured and percent-decoded as the gateway's router does, the header fields a gateway
/// hides by default (`plugins.hidden_headers`) left out.
pub fn request(
    method: &str,
    path_and_query: &str,
    pattern: Option<&str>,
    route_name: &str,
    headers: Vec<Header>,
    settings: Vec<Param>,
) -> anyhow::Result<Request> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    let pattern = pattern.unwrap_or(&path).to_owned();
    let mut router = matchit::Router::new();
    router
        .insert(pattern.as_str(), ())
        .map_err(|e| anyhow::anyhow!("route pattern {pattern:?}: {e}"))?;
    let params = router
        .at(&path)
        .map_err(|_| anyhow::anyhow!("path {path:?} does not match route {pattern:?}"))?
        .params
        .iter()
        .map(|(k, v)| Param {
            name: k.to_owned(),
            value: crate::routes::percent_decode(v),
        })
        .collect();
    let hidden = crate::config::defaults::HIDDEN_HEADERS;
    Ok(Request {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers: headers
            .into_iter()
            .filter(|h| !hidden.contains(&h.name.to_ascii_lowercase().as_str()))
            .collect(),
        route_name: route_name.to_owned(),
        route_pattern: pattern,
        params,
        settings,
    })
}

/// Runs the plugin on the described request; returns the decisions.
pub async fn run(args: RunArgs) -> anyhow::Result<Value> {
    let plugin = load(&args.file).await?;
    let limits = Limits {
        deadline: Duration::from_millis(args.deadline_ms),
        memory: args.memory_limit.bytes as usize,
    };
    let settings = args
        .settings
        .iter()
        .map(|s| {
            let (name, value) = split_pair(s, '=', "setting")?;
            Ok(Param {
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let req = request(
        &args.method,
        &args.path,
        args.route.as_deref(),
        &args.route_name,
        headers(&args.headers)?,
        settings,
    )?;
    let unsafe_method = matches!(req.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
    let mut out = json!({ "plugin": plugin.name.as_ref(), "version": plugin.version });
    let mut passed = false;
    if !unsafe_method {
        let d = plugin.on_request(0, limits, &req).await?;
        passed = matches!(d, RequestDecision::Pass(_));
        out["on_request"] = request_decision(&d);
    }
    if passed && args.status.is_some() {
        // The gateway forwards a passed request uncached and never asks on-response about it:
        // neither does this, or it would print a decision the gateway would never make.
        out["on_response"] = json!({ "not_called": "on-request passed the request" });
    } else if let Some(status) = args.status {
        let resp = Response {
            status,
            headers: headers(&args.response_headers)?,
            body_size: args.body_size,
        };
        if unsafe_method {
            let list = plugin.on_invalidate(0, limits, &req, &resp).await?;
            out["on_invalidate"] = Value::Array(list.iter().map(invalidation).collect());
        } else {
            let d = plugin.on_response(0, limits, &req, &resp, None).await?;
            out["on_response"] = response_decision(&d);
        }
    }
    Ok(out)
}

pub fn request_decision(d: &RequestDecision) -> Value {
    match d {
        RequestDecision::Pass(reason) => json!({ "pass": reason }),
        RequestDecision::Lookup(k) => json!({ "lookup": { "parts": k.parts, "vary": k.vary } }),
    }
}

pub fn response_decision(d: &ResponseDecision) -> Value {
    match d {
        ResponseDecision::NoStore(reason) => json!({ "no_store": reason }),
        ResponseDecision::Store(s) => json!({ "store": {
            "ttl": s.ttl,
            "stale_while_revalidate": s.stale_while_revalidate,
            "stale_if_error": s.stale_if_error,
            "tags": s.tags,
        }}),
    }
}

pub fn invalidation(i: &Invalidation) -> Value {
    let key_ref = |k: &KeyRef| json!({ "route": k.route, "parts": k.parts });
    let target = match &i.target {
        InvalidationTarget::Tag(t) => json!({ "tag": t }),
        InvalidationTarget::Key(k) => json!({ "key": key_ref(k) }),
        InvalidationTarget::Prefix(k) => json!({ "prefix": key_ref(k) }),
    };
    json!({ "target": target, "soft": i.soft })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_shown_leaves_out_what_a_gateway_hides_by_default() {
        let shown = |name: &str| Header {
            name: name.into(),
            value: "1".into(),
        };
        let req = request(
            "get",
            "/r/7?x=1",
            Some("/r/{id}"),
            "r",
            vec![shown("accept"), shown("x-request-id"), shown("Traceparent")],
            vec![],
        )
        .unwrap();
        let names: Vec<_> = req.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["accept"]);
        assert_eq!(
            (req.method.as_str(), req.query.as_deref()),
            ("GET", Some("x=1"))
        );
        assert_eq!(req.params[0].value, "7");
    }
}
