//! Environment overrides: what differs per deployment (where Redis and the origin are, the
//! listeners, the plugin and state directories, the admin token) without editing the file.
//!
//! They are applied after the file is validated and win over it; each is checked again, and a
//! bad one is named by its variable (a Redis password is never echoed). `Config` keeps the
//! overrides it was built with, so a reload applies the same ones.

use std::path::PathBuf;

use super::validate::{check_prefix, parse_upstream};
use super::{Config, ConfigError, RedisConfig};

/// Environment variables that override the file, as a deployment sets them.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub redis_url: Option<String>,
    pub upstream: Option<String>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub plugin_dir: Option<String>,
    pub admin_token: Option<String>,
    pub state_dir: Option<String>,
}

impl EnvOverrides {
    /// Reads `REDIS_URL`, `LARDER_UPSTREAM`, `LARDER_LISTEN`, `LARDER_ADMIN_LISTEN`,
    /// `LARDER_PLUGIN_DIR`, `LARDER_ADMIN_TOKEN` and `LARDER_STATE_DIR`; empty values count
    /// as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            redis_url: var("REDIS_URL"),
            upstream: var("LARDER_UPSTREAM"),
            listen: var("LARDER_LISTEN"),
            admin_listen: var("LARDER_ADMIN_LISTEN"),
            plugin_dir: var("LARDER_PLUGIN_DIR"),
            admin_token: var("LARDER_ADMIN_TOKEN"),
            state_dir: var("LARDER_STATE_DIR"),
        }
    }
}

impl Config {
    /// Applies `env` over what the file says.
    pub(super) fn apply_env(&mut self, env: &EnvOverrides) -> Result<(), ConfigError> {
        if let Some(url) = &env.redis_url {
            let redis = self.redis.get_or_insert_with(RedisConfig::default);
            // The environment names the deployment's Redis: it replaces a cluster list too.
            redis.url = url.clone();
            redis.cluster.clear();
            let target = redis.target().map_err(|message| ConfigError::Env {
                var: "REDIS_URL",
                value: crate::store::cluster::redact(url),
                message,
            })?;
            check_prefix(&redis.prefix, target.is_cluster()).map_err(|message| {
                ConfigError::Env {
                    var: "REDIS_URL",
                    value: crate::store::cluster::redact(url),
                    message,
                }
            })?;
        }
        if let Some(v) = &env.upstream {
            self.server.upstream = parse_upstream(v).map_err(|message| ConfigError::Env {
                var: "LARDER_UPSTREAM",
                value: v.clone(),
                message,
            })?;
        }
        for (var, value, slot) in [
            ("LARDER_LISTEN", &env.listen, &mut self.server.listen),
            (
                "LARDER_ADMIN_LISTEN",
                &env.admin_listen,
                &mut self.server.admin_listen,
            ),
        ] {
            if let Some(v) = value {
                *slot = v.parse().map_err(|e| ConfigError::Env {
                    var,
                    value: v.clone(),
                    message: format!("not a socket address (host:port): {e}"),
                })?;
            }
        }
        if let Some(dir) = &env.plugin_dir {
            self.plugins.dir = PathBuf::from(dir);
        }
        if let Some(dir) = &env.state_dir {
            self.cache.state_dir = PathBuf::from(dir);
        }
        self.server.admin_token = env.admin_token.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn env_overrides_win_and_are_checked() {
        let env = EnvOverrides {
            redis_url: Some("redis://127.0.0.1:7000".into()),
            upstream: Some("http://10.0.0.1:81".into()),
            ..Default::default()
        };
        let c = Config::parse(Path::new("l.toml"), "", &env).unwrap();
        assert_eq!(c.redis.unwrap().url, "redis://127.0.0.1:7000");
        assert_eq!(c.server.upstream.to_string(), "http://10.0.0.1:81/");

        let bad = EnvOverrides {
            upstream: Some("https://x".into()),
            ..Default::default()
        };
        let err = Config::parse(Path::new("l.toml"), "", &bad).unwrap_err();
        assert!(err.to_string().contains("LARDER_UPSTREAM"), "{err}");
    }

    #[test]
    fn a_bad_redis_url_is_named_by_its_variable_without_its_password() {
        let env = EnvOverrides {
            redis_url: Some("redis+cluster://:secret@h1:7000/5".into()),
            ..Default::default()
        };
        let err = Config::parse(Path::new("l.toml"), "", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_URL") && err.contains("only database 0") && !err.contains("secret"),
            "{err}"
        );
    }
}
