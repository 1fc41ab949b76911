//! Test plugin: a team's own policy for the tech-stack view, added to the shipped policy's
//! analyze route with `also_invalidate`. It caches the view tagged `tech-stack:{id}`, and its
//! `on-invalidate` purges that tag, only when the analyze asks for `feature_type=tech_stack`,
//! and traps when it also says `fail=1` (a policy that fails among several).

use larder_sdk::{
    CacheKey, Invalidation, Policy, Request, RequestDecision, Response, ResponseDecision,
    StoreDirective,
};

struct TechStackPurge;

fn tag(req: &Request) -> Option<String> {
    req.param("id").map(|id| format!("tech-stack:{id}"))
}

impl Policy for TechStackPurge {
    fn on_request(req: &Request) -> RequestDecision {
        RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
    }

    fn on_response(req: &Request, resp: &Response) -> ResponseDecision {
        match (resp.status, tag(req)) {
            (200, Some(tag)) => ResponseDecision::store(StoreDirective::ttl(600).tag(tag)),
            _ => ResponseDecision::no_store("status"),
        }
    }

    fn on_invalidate(req: &Request, _resp: &Response) -> Vec<Invalidation> {
        if req.query_param("feature_type").as_deref() != Some("tech_stack") {
            return Vec::new();
        }
        if req.query_param("fail").is_some() {
            panic!("tech-stack-purge: asked to fail");
        }
        tag(req).map(Invalidation::tag).into_iter().collect()
    }
}

larder_sdk::export_policy!(TechStackPurge);
