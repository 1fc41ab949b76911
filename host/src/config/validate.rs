//! From the file as written to the validated [`Config`](super::Config): every check that can
//! fail points at the offending value with `file:line:column`.
//!
//! [`Locator`] turns the byte offsets that `toml` gives into those positions; each section's
//! checks are methods on it, so every error is made the same way:
//!
//! - this file: the `[cache]` and `[plugins]` sections, which need little checking.
//! - [`server`]: `[server]`, the listeners and their limits.
//! - [`redis`]: `[redis]`, where Redis is, checked as far as can be without connecting.
//! - [`route`]: the `[[route]]` tables, one by one and against each other.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawCache, RawConfig, RawPlugins, defaults};
use super::{CacheConfig, ConfigError, PluginsConfig};

mod redis;
mod route;
mod server;

pub(super) use redis::check_prefix;
pub use route::render_setting;
pub(super) use server::parse_upstream;

/// Turns byte offsets in the file into `file:line:column` errors.
pub(super) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// The file as written; a syntax error, an unknown key or a value of the wrong type is
    /// refused with its position.
    pub(super) fn raw(&self) -> Result<RawConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            self.error(offset, e.message().trim_end())
        })
    }

    fn error(&self, offset: usize, message: impl fmt::Display) -> ConfigError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.to_string(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The `[cache]` section; `base` is the config file's directory.
    pub(super) fn cache(&self, raw: &RawCache, base: &Path) -> Result<CacheConfig, ConfigError> {
        Ok(CacheConfig {
            max_object_size: raw.max_object_size.unwrap_or(defaults::MAX_OBJECT_SIZE),
            revalidate_keep: raw.revalidate_keep_s.unwrap_or(defaults::REVALIDATE_KEEP_S),
            max_request_body: raw.max_request_body.unwrap_or(defaults::MAX_REQUEST_BODY),
            memory_tier_bytes: raw.memory_tier_bytes.unwrap_or(0),
            memory_tier_outage: raw.memory_tier_outage.unwrap_or_default(),
            memory_tier_trust: Duration::from_millis(match &raw.memory_tier_trust_ms {
                None => defaults::MEMORY_TIER_TRUST_MS,
                Some(ms) if (100..=60_000).contains(ms.get_ref()) => *ms.get_ref(),
                Some(ms) => {
                    return Err(self.error(
                        ms.span().start,
                        "`memory_tier_trust_ms` must be between 100 and 60000",
                    ));
                }
            }),
            state_dir: base.join(raw.state_dir.as_deref().unwrap_or(defaults::STATE_DIR)),
            max_pending_purges: match &raw.max_pending_purges {
                None => defaults::MAX_PENDING_PURGES,
                Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
                Some(n) => {
                    return Err(
                        self.error(n.span().start, "`max_pending_purges` must be at least 1")
                    );
                }
            },
        })
    }

    /// The `[plugins]` section; `base` is the config file's directory. A memory limit above
    /// what the instance pool's slots hold could never be reached: refused, not silently capped.
    pub(super) fn plugins(
        &self,
        raw: &RawPlugins,
        base: &Path,
    ) -> Result<PluginsConfig, ConfigError> {
        let pool = crate::policy::engine::POOL_MAX_MEMORY;
        let memory_limit = match &raw.memory_limit {
            None => defaults::MEMORY_LIMIT,
            Some(n) if (1..=pool).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(self.error(
                    n.span().start,
                    format!("`memory_limit` must be between 1 and {pool} bytes (64 MiB, what an instance's slot in the pool holds)"),
                ));
            }
        };
        Ok(PluginsConfig {
            dir: base.join(raw.dir.as_deref().unwrap_or(defaults::PLUGIN_DIR)),
            deadline: Duration::from_millis(raw.deadline_ms.unwrap_or(defaults::DEADLINE_MS)),
            memory_limit,
            watch: raw.watch.unwrap_or(true),
            code_cache: match raw.code_cache.as_deref() {
                None => Some(super::default_code_cache()),
                Some("") => None,
                Some(dir) => Some(base.join(dir)),
            },
            code_cache_bytes: match &raw.code_cache_bytes {
                None => crate::policy::code_cache::DEFAULT_BUDGET,
                Some(n) if *n.get_ref() > 0 => *n.get_ref(),
                Some(n) => {
                    return Err(self.error(
                        n.span().start,
                        "`code_cache_bytes` must be at least 1 (to keep no compiled code, set `code_cache = \"\"`)",
                    ));
                }
            },
            hidden_headers: self.hidden_headers(raw.hidden_headers.as_ref())?,
            decision_cache_bytes: raw
                .decision_cache_bytes
                .unwrap_or(defaults::DECISION_CACHE_BYTES),
        })
    }

    /// `hidden_headers`: header names, lower-cased; by default the tracing fields.
    fn hidden_headers(
        &self,
        list: Option<&toml::Spanned<Vec<String>>>,
    ) -> Result<Vec<http::HeaderName>, ConfigError> {
        let Some(list) = list else {
            return Ok(defaults::HIDDEN_HEADERS
                .iter()
                .map(|name| http::HeaderName::from_static(name))
                .collect());
        };
        list.get_ref()
            .iter()
            .map(|name| {
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    self.error(
                        list.span().start,
                        format!("`hidden_headers`: {name:?} is not a header name"),
                    )
                })
            })
            .collect()
    }
}
