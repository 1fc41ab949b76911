//! The `[server]` section: the listeners, the upstream and the limits that protect both.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::Locator;
use crate::config::raw::{RawServer, defaults};
use crate::config::{ConfigError, ServerConfig};

impl Locator<'_> {
    /// The `[server]` section. The admin token is left unset: it only comes from the
    /// environment.
    pub(in crate::config) fn server(&self, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            listen: self.socket_addr(raw.listen.as_ref(), defaults::LISTEN)?,
            admin_listen: self.socket_addr(raw.admin_listen.as_ref(), defaults::ADMIN_LISTEN)?,
            upstream: self.upstream(raw.upstream.as_ref())?,
            upstream_timeout: Duration::from_millis(
                raw.upstream_timeout_ms
                    .unwrap_or(defaults::UPSTREAM_TIMEOUT_MS),
            ),
            admin_token: None,
            workers: self.workers(raw.workers.as_ref())?,
            header_read_timeout: self.timeout(
                "header_read_timeout_ms",
                raw.header_read_timeout_ms.as_ref(),
                defaults::HEADER_READ_TIMEOUT_MS,
            )?,
            idle_timeout: self.timeout(
                "idle_timeout_ms",
                raw.idle_timeout_ms.as_ref(),
                defaults::IDLE_TIMEOUT_MS,
            )?,
            http2_keepalive: match &raw.http2_keepalive_ms {
                Some(ms) if *ms.get_ref() == 0 => None,
                ms => Some(self.timeout(
                    "http2_keepalive_ms",
                    ms.as_ref(),
                    defaults::HTTP2_KEEPALIVE_MS,
                )?),
            },
            body_read_timeout: self.timeout(
                "body_read_timeout_ms",
                raw.body_read_timeout_ms.as_ref(),
                defaults::BODY_READ_TIMEOUT_MS,
            )?,
            max_connections: self.max_connections(raw.max_connections.as_ref())?,
            admin_hosts: self.admin_hosts(raw.admin_hosts.as_deref())?,
            trusted_proxies: raw
                .trusted_proxies
                .iter()
                .flatten()
                .map(|p| {
                    p.get_ref()
                        .parse()
                        .map_err(|m| self.error(p.span().start, m))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    fn socket_addr(
        &self,
        value: Option<&Spanned<String>>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        match value {
            None => Ok(default.parse().expect("default address parses")),
            Some(v) => v.get_ref().parse().map_err(|e| {
                self.error(
                    v.span().start,
                    format!("{:?} is not a socket address (host:port): {e}", v.get_ref()),
                )
            }),
        }
    }

    /// `server.workers`: 1 to [`defaults::MAX_WORKERS`], else one per core.
    fn workers(&self, value: Option<&Spanned<usize>>) -> Result<usize, ConfigError> {
        let Some(value) = value else {
            return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
        };
        let n = *value.get_ref();
        if n == 0 || n > defaults::MAX_WORKERS {
            return Err(self.error(
                value.span().start,
                format!(
                    "`workers` must be 1 to {} (got {n}); leave it out for one per core",
                    defaults::MAX_WORKERS
                ),
            ));
        }
        Ok(n)
    }

    /// A `[server]` timeout in milliseconds: at least [`defaults::MIN_TIMEOUT_MS`].
    fn timeout(
        &self,
        key: &str,
        value: Option<&Spanned<u64>>,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(Duration::from_millis(default)),
            Some(ms) if *ms.get_ref() >= defaults::MIN_TIMEOUT_MS => {
                Ok(Duration::from_millis(*ms.get_ref()))
            }
            Some(ms) => Err(self.error(
                ms.span().start,
                format!(
                    "`{key}` must be at least {} (milliseconds; got {}){}",
                    defaults::MIN_TIMEOUT_MS,
                    ms.get_ref(),
                    if key == "http2_keepalive_ms" {
                        ", or 0 for no pings"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }

    /// `server.max_connections`: at least 1; by default [`defaults::MAX_CONNECTIONS`] or half
    /// the open-file limit, whichever is lower.
    fn max_connections(&self, value: Option<&Spanned<usize>>) -> Result<usize, ConfigError> {
        match value {
            None => Ok(crate::server::open_file_limit()
                .map_or(defaults::MAX_CONNECTIONS, |files| {
                    (files / 2).clamp(1, defaults::MAX_CONNECTIONS)
                })),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => Err(self.error(n.span().start, "`max_connections` must be at least 1")),
        }
    }

    /// `server.admin_hosts`: host names (or addresses) without scheme, port or path.
    fn admin_hosts(&self, list: Option<&[Spanned<String>]>) -> Result<Vec<String>, ConfigError> {
        let mut hosts = Vec::new();
        for host in list.unwrap_or_default() {
            let name = host.get_ref();
            let ok = match name.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => {
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }
            };
            if !ok {
                return Err(self.error(
                    host.span().start,
                    format!(
                        "admin host {name:?} must be a host name without scheme, port or path (e.g. \"larder-admin.internal\")"
                    ),
                ));
            }
            hosts.push(name.to_ascii_lowercase());
        }
        Ok(hosts)
    }

    fn upstream(&self, value: Option<&Spanned<String>>) -> Result<http::Uri, ConfigError> {
        match value {
            None => Ok(defaults::UPSTREAM.parse().expect("default upstream parses")),
            Some(v) => parse_upstream(v.get_ref()).map_err(|m| self.error(v.span().start, m)),
        }
    }
}

/// An upstream URL: `http://host:port`, nothing more (requests keep their own path).
pub(in crate::config) fn parse_upstream(v: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = v
        .parse()
        .map_err(|e| format!("not a URL: {e} (expected http://host:port)"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// upstreams are supported (TLS to the origin is not yet)".into());
    }
    if uri.authority().is_none() {
        return Err("the URL has no host (expected http://host:port)".into());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("the URL must not have a path: requests keep their own path".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::defaults;
    use crate::config::tests::parse;

    #[test]
    fn listener_limits_have_defaults_and_a_bad_value_names_its_line() {
        let s = parse("").unwrap().server;
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http2_keepalive, Some(Duration::from_secs(30)));
        assert_eq!(s.body_read_timeout, Duration::from_secs(10));
        assert!((1..=defaults::MAX_CONNECTIONS).contains(&s.max_connections));
        assert!(s.admin_hosts.is_empty());

        let s = parse(
            "[server]\nheader_read_timeout_ms = 500\nhttp2_keepalive_ms = 0\nmax_connections = 3\nadmin_hosts = [\"Admin.Example\", \"[::1]\"]\n",
        )
        .unwrap()
        .server;
        assert_eq!(s.header_read_timeout, Duration::from_millis(500));
        assert_eq!((s.http2_keepalive, s.max_connections), (None, 3));
        assert_eq!(s.admin_hosts, ["admin.example", "[::1]"]);

        for (text, at, problem) in [
            ("[server]\nidle_timeout_ms = 5\n", ":2:19:", "at least 100"),
            (
                "[server]\nhttp2_keepalive_ms = 5\n",
                ":2:22:",
                "or 0 for no pings",
            ),
            ("[server]\nmax_connections = 0\n", ":2:19:", "at least 1"),
            (
                "[server]\nadmin_hosts = [\"ok\", \"http://evil\"]\n",
                ":2:22:",
                "without scheme, port or path",
            ),
            (
                "[server]\nadmin_hosts = [\"admin:8360\"]\n",
                ":2:16:",
                "without scheme, port or path",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml") && err.contains(at) && err.contains(problem),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn workers_default_to_one_per_core_and_a_bad_count_names_its_line() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(parse("").unwrap().server.workers, cores);
        assert_eq!(parse("[server]\nworkers = 3\n").unwrap().server.workers, 3);
        for bad in ["0", "257"] {
            let err = parse(&format!("[server]\nworkers = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("dir/larder.toml:2:11:"), "{err}");
            assert!(
                err.contains("1 to 256") && err.contains("one per core"),
                "{err}"
            );
        }
    }

    #[test]
    fn trusted_proxies_default_to_none_and_a_bad_range_names_its_line() {
        assert!(parse("").unwrap().server.trusted_proxies.is_empty());
        let text = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n";
        assert_eq!(parse(text).unwrap().server.trusted_proxies.len(), 2);
        for bad in ["10.0.0.0/33", "proxy.local"] {
            let err = parse(&format!(
                "[server]\ntrusted_proxies = [\"::1\", \"{bad}\"]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("dir/larder.toml:2:27:"), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }
}
