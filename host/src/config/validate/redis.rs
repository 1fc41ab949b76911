//! The `[redis]` section: where Redis is (a URL or a cluster's nodes, not both) and how keys
//! are named, checked as far as can be without connecting.

use std::time::Duration;

use super::Locator;
use crate::config::raw::{RawRedis, defaults};
use crate::config::{ConfigError, RedisConfig};

impl Locator<'_> {
    /// The `[redis]` section: where Redis is (a URL or a cluster's nodes, not both), checked as
    /// far as can be without connecting.
    pub(in crate::config) fn redis(&self, r: RawRedis) -> Result<RedisConfig, ConfigError> {
        let mut config = RedisConfig {
            timeout: Duration::from_millis(r.timeout_ms.unwrap_or(defaults::REDIS_TIMEOUT_MS)),
            ..RedisConfig::default()
        };
        if let (Some(_), Some(cluster)) = (&r.url, &r.cluster) {
            return Err(self.error(
                cluster.span().start,
                "give either `url` or `cluster`, not both (a cluster's URL is redis+cluster://host:port,host:port)",
            ));
        }
        let mut at = 0;
        if let Some(url) = &r.url {
            config.url = url.get_ref().clone();
            at = url.span().start;
        }
        if let Some(cluster) = &r.cluster {
            if cluster.get_ref().is_empty() {
                return Err(self.error(cluster.span().start, "`cluster` lists no nodes"));
            }
            config.cluster = cluster.get_ref().clone();
            at = cluster.span().start;
        }
        let cluster = if config.url.is_empty() && config.cluster.is_empty() {
            false
        } else {
            config.target().map_err(|m| self.error(at, m))?.is_cluster()
        };
        if let Some(prefix) = &r.prefix {
            config.prefix = prefix.get_ref().clone();
            check_prefix(&config.prefix, cluster)
                .map_err(|m| self.error(prefix.span().start, m))?;
        }
        if let Some(n) = &r.connections {
            let n = *n.get_ref();
            if n == 0 || n > defaults::REDIS_MAX_CONNECTIONS {
                return Err(self.error(
                    r.connections.as_ref().map(|c| c.span().start).unwrap_or(0),
                    format!(
                        "`connections` must be 1 to {} (got {n})",
                        defaults::REDIS_MAX_CONNECTIONS
                    ),
                ));
            }
            config.connections = n;
        }
        Ok(config)
    }

    /// After the environment is applied, a `[redis]` section must say where Redis is.
    pub(in crate::config) fn redis_has_target(
        &self,
        redis: Option<&RedisConfig>,
    ) -> Result<(), ConfigError> {
        if let Some(redis) = redis
            && redis.url.is_empty()
            && redis.cluster.is_empty()
        {
            return Err(self.error(
                self.text.find("[redis]").unwrap_or(0),
                "[redis] needs `url` or `cluster` (or set REDIS_URL); remove the section to use the in-memory store",
            ));
        }
        Ok(())
    }
}

/// A key prefix must not carry a hash tag on a cluster: the tag keys' own `{...}` must decide
/// their slot (and one prefix tag would put every key on one node).
pub(in crate::config) fn check_prefix(prefix: &str, cluster: bool) -> Result<(), String> {
    if cluster && prefix.contains(['{', '}']) {
        return Err(format!(
            "prefix {prefix:?} contains '{{' or '}}': on a Redis Cluster they would form a hash tag and put keys in the wrong slots"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::defaults;
    use crate::config::tests::parse;

    #[test]
    fn redis_settings_are_read() {
        let c = parse("[redis]\nurl = \"redis://u:pw@10.0.0.1:6380/3\"\nprefix = \"app1:\"\nconnections = 4\n").unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            (r.url.as_str(), r.prefix.as_str(), r.connections),
            ("redis://u:pw@10.0.0.1:6380/3", "app1:", 4)
        );
        assert_eq!(r.display_url(), "redis://u:***@10.0.0.1:6380/3");
        let c = parse("[redis]\ncluster = [\"10.0.0.1:7000\", \"10.0.0.2:7001\"]\n").unwrap();
        let r = c.redis.unwrap();
        assert!(r.target().unwrap().is_cluster());
        assert_eq!(r.connections, defaults::REDIS_CONNECTIONS);
        let c = parse("[redis]\nurl = \"redis+cluster://:pw@h1:7000,h2:7001\"\n").unwrap();
        assert!(c.redis.unwrap().target().unwrap().is_cluster());
    }

    #[test]
    fn redis_mistakes_name_their_line() {
        let cases = [
            (
                "[redis]\nurl = \"redis+cluster://h1:7000,h2:7001/2\"\n",
                ":2:7:",
                "only database 0",
            ),
            (
                "[redis]\ncluster = [\"h1:7000\", \"redis://h2:7001/1\"]\n",
                ":2:11:",
                "only database 0",
            ),
            (
                "[redis]\nurl = \"redis://h\"\ncluster = [\"h1:7000\"]\n",
                ":3:11:",
                "either `url` or `cluster`",
            ),
            ("[redis]\ncluster = []\n", ":2:11:", "no nodes"),
            (
                "[redis]\nurl = \"redis://h:6379\"\nconnections = 0\n",
                ":3:15:",
                "1 to 64",
            ),
            (
                "[redis]\ncluster = [\"h1:7000\"]\nprefix = \"{app}:\"\n",
                ":3:10:",
                "hash tag",
            ),
            (
                "[redis]\nurl = \"mysql://h:6379\"\n",
                ":2:7:",
                "unknown scheme",
            ),
            (
                "[redis]\nprefix = \"x:\"\n",
                ":1:1:",
                "needs `url` or `cluster`",
            ),
        ];
        for (text, at, problem) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml") && err.contains(at) && err.contains(problem),
                "{text:?}: {err}"
            );
        }
    }
}
