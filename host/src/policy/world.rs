//! The versions of the `larder:policy` interface this gateway loads, and calls that work for
//! every one of them.
//!
//! A published version of the WIT never changes (`wit/policy.wit` is the current one, older
//! ones are kept under `wit/deps/`); a component says which one it was built against by the
//! name of its export, `larder:policy/policy@<version>`. The linker provides the host's imports
//! under every version's name (they are the same functions), and a plugin is instantiated with
//! the bindings of the version it exports. Versions 0.1.0 and 0.2.0 share their types, so the
//! request and the decisions are one set of Rust types whatever the version; what differs is
//! which exports there are: a 0.1.0 plugin has no `check-settings`, and accepts any settings.

use larder_bindings::types::{
    Invalidation, LogLevel, Param, Request, RequestDecision, Response, ResponseDecision,
};
use larder_bindings::{v0_1, v0_2};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::sandbox::CallState;

/// A version of the `larder:policy` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    /// `log`, `request-body-digest`; `on-request`, `on-response`, `on-invalidate`.
    V0_1,
    /// 0.1.0 and `check-settings`.
    V0_2,
}

impl WitVersion {
    /// Every version this gateway loads, newest first.
    pub const ALL: [WitVersion; 2] = [WitVersion::V0_2, WitVersion::V0_1];
    /// The version of `wit/policy.wit`, which the SDK builds against.
    pub const CURRENT: WitVersion = WitVersion::V0_2;

    /// `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }

    /// The package: `larder:policy@0.2.0`.
    pub fn package(self) -> String {
        format!("larder:policy@{}", self.as_str())
    }

    /// The export a plugin of this version has: `larder:policy/policy@0.2.0`.
    pub fn policy_export(self) -> String {
        format!("larder:policy/policy@{}", self.as_str())
    }

    /// The functions a plugin of this version exports, for `larder plugin check`.
    pub fn exports(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "on-request, on-response, on-invalidate",
            WitVersion::V0_2 => "check-settings, on-request, on-response, on-invalidate",
        }
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds the host's imports to `linker` under the name of every version.
pub(super) fn add_host_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    v0_2::add_host_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    v0_1::add_host_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}

/// 0.1.0's host functions are 0.2.0's (same types, same meaning), under the older name.
impl v0_1::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) {
        v0_2::Host::log(self, level, message)
    }

    fn request_body_digest(&mut self) -> Option<String> {
        v0_2::Host::request_body_digest(self)
    }
}

/// The version whose `larder:policy/policy` a component exports, after checking its imports and
/// exports by name, so that the common mistakes get a message that says what to do rather than
/// the linker's (which names one missing item at a time and not why it is missing).
pub(super) fn check_world(engine: &Engine, component: &Component) -> Result<WitVersion, String> {
    let current = WitVersion::CURRENT;
    let known = WitVersion::ALL.map(WitVersion::as_str).join(" and ");
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let version = WitVersion::ALL
        .into_iter()
        .find(|v| exports.contains(&v.policy_export().as_str()));
    let Some(version) = version else {
        if let Some(other) = exports
            .iter()
            .find(|e| e.starts_with("larder:policy/policy"))
        {
            return Err(format!(
                "the component exports `{other}`, a version of the larder:policy WIT this gateway does not know (it loads {known}): rebuild it with the larder-sdk of this gateway (whose wit/ defines `{}`)",
                current.package()
            ));
        }
        let list = if exports.is_empty() {
            "it exports nothing".to_owned()
        } else {
            format!("it exports {}", quoted_list(&exports))
        };
        return Err(format!(
            "the component does not export `{}` ({list}; a plugin built against an older WIT exports {}): implement `larder_sdk::Policy` for a type and register it once with `larder_sdk::export_policy!(YourType)`",
            current.policy_export(),
            WitVersion::ALL[1..]
                .iter()
                .map(|v| format!("`{}`", v.policy_export()))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    };
    for (import, _) in ty.imports(engine) {
        if let Some(rest) = import.strip_prefix("larder:policy/") {
            if !WitVersion::ALL
                .iter()
                .any(|v| rest.ends_with(&format!("@{v}")))
            {
                return Err(format!(
                    "the component imports `{import}`, but this gateway provides the larder:policy WIT in versions {known}: it was built against another version; rebuild it with the larder-sdk of this gateway"
                ));
            }
        } else if !import.starts_with("wasi:") {
            return Err(format!(
                "the component imports `{import}`, which a policy cannot have (the gateway provides WASI 0.2, granting nothing, and `larder:policy/host`): remove the dependency that needs it"
            ));
        }
    }
    Ok(version)
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plugin pre-instantiated with the bindings of its version.
pub(super) enum Pre {
    V0_1(v0_1::PolicyPluginPre<CallState>),
    V0_2(v0_2::PolicyPluginPre<CallState>),
}

impl Pre {
    /// Finds the exports of `version` in `pre`'s component.
    pub(super) fn new(
        version: WitVersion,
        pre: wasmtime::component::InstancePre<CallState>,
    ) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1 => Pre::V0_1(v0_1::PolicyPluginPre::new(pre)?),
            WitVersion::V0_2 => Pre::V0_2(v0_2::PolicyPluginPre::new(pre)?),
        })
    }

    pub(super) fn version(&self) -> WitVersion {
        match self {
            Pre::V0_1(_) => WitVersion::V0_1,
            Pre::V0_2(_) => WitVersion::V0_2,
        }
    }

    pub(super) async fn instantiate_async(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance of a plugin, of either version; its calls take and give the same types.
pub(super) enum Instance {
    V0_1(v0_1::PolicyPlugin),
    V0_2(v0_2::PolicyPlugin),
}

impl Instance {
    pub(super) async fn on_request(
        &self,
        store: &mut Store<CallState>,
        req: &Request,
    ) -> wasmtime::Result<RequestDecision> {
        match self {
            Instance::V0_1(p) => p.larder_policy_policy().call_on_request(store, req).await,
            Instance::V0_2(p) => p.larder_policy_policy().call_on_request(store, req).await,
        }
    }

    pub(super) async fn on_response(
        &self,
        store: &mut Store<CallState>,
        req: &Request,
        resp: &Response,
    ) -> wasmtime::Result<ResponseDecision> {
        match self {
            Instance::V0_1(p) => {
                p.larder_policy_policy()
                    .call_on_response(store, req, resp)
                    .await
            }
            Instance::V0_2(p) => {
                p.larder_policy_policy()
                    .call_on_response(store, req, resp)
                    .await
            }
        }
    }

    pub(super) async fn on_invalidate(
        &self,
        store: &mut Store<CallState>,
        req: &Request,
        resp: &Response,
    ) -> wasmtime::Result<Vec<Invalidation>> {
        match self {
            Instance::V0_1(p) => {
                p.larder_policy_policy()
                    .call_on_invalidate(store, req, resp)
                    .await
            }
            Instance::V0_2(p) => {
                p.larder_policy_policy()
                    .call_on_invalidate(store, req, resp)
                    .await
            }
        }
    }

    /// `check-settings`; a 0.1.0 plugin has none and accepts any settings.
    pub(super) async fn check_settings(
        &self,
        store: &mut Store<CallState>,
        route: &str,
        settings: &[Param],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Instance::V0_1(_) => Ok(Ok(())),
            Instance::V0_2(p) => {
                p.larder_policy_policy()
                    .call_check_settings(store, route, settings)
                    .await
            }
        }
    }
}
