//! The `[[route]]` tables: each checked on its own (a name fit for Redis keys, a pattern the
//! router accepts, HTTP methods, a plugin name that is not a path, flat settings), then against
//! each other (no name twice, no two routes for one method on one path).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::Locator;
use crate::config::raw::RawRoute;
use crate::config::{ConfigError, PluginsConfig, RouteConfig, ServerConfig};

impl Locator<'_> {
    /// Every route, in file order; the first error is reported.
    pub(in crate::config) fn routes(
        &self,
        raw: Vec<RawRoute>,
        plugins: &PluginsConfig,
        server: &ServerConfig,
    ) -> Result<Vec<RouteConfig>, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        for r in raw {
            routes.push(self.route(r, plugins, server)?);
        }
        self.check_route_names(&routes)?;
        Ok(routes)
    }

    /// One route; its deadline and upstream timeout default to the plugins' and the server's.
    fn route(
        &self,
        r: RawRoute,
        plugins: &PluginsConfig,
        server: &ServerConfig,
    ) -> Result<RouteConfig, ConfigError> {
        let name = self.route_name(&r.name)?;
        crate::routes::check_pattern(r.path.get_ref())
            .map_err(|m| self.error(r.path.span().start, m))?;
        let methods = self.methods(r.methods.as_ref())?;
        let plugin = self.plugin_name(&r.plugin)?;
        let settings = self.settings(&r.settings)?;
        let also_invalidate = self.also_invalidate(plugin, &r.also_invalidate)?;
        Ok(RouteConfig {
            name: name.clone(),
            path: r.path.get_ref().clone(),
            methods,
            plugin: plugin.clone(),
            settings,
            fail: r.fail,
            deadline: r
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(plugins.deadline),
            upstream_timeout: r
                .upstream_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(server.upstream_timeout),
            cache_post: r.cache_post,
            invalidate_writes: r.invalidate_writes.unwrap_or(true),
            fleet_coalescing: r.fleet_coalescing.unwrap_or(true),
            plugin_line: self.line_of(r.plugin.span().start),
            also_invalidate,
        })
    }

    /// `also_invalidate`: plugin names, none twice, not the route's own `plugin`.
    fn also_invalidate(
        &self,
        own: &str,
        raw: &[Spanned<String>],
    ) -> Result<Vec<(String, usize)>, ConfigError> {
        let mut out: Vec<(String, usize)> = Vec::with_capacity(raw.len());
        for entry in raw {
            let plugin = self.plugin_name(entry)?;
            let at = entry.span().start;
            if plugin == own {
                return Err(self.error(
                    at,
                    format!("also_invalidate names {plugin:?}, the route's own plugin: its on-invalidate runs already"),
                ));
            }
            if out.iter().any(|(p, _)| p == plugin) {
                return Err(self.error(at, format!("also_invalidate names {plugin:?} twice")));
            }
            out.push((plugin.clone(), self.line_of(at)));
        }
        Ok(out)
    }

    /// A route's name appears in Redis keys: a-z, 0-9, `-` and `_` only.
    fn route_name<'r>(&self, raw: &'r Spanned<String>) -> Result<&'r String, ConfigError> {
        let name = raw.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.error(
                raw.span().start,
                format!("route name {name:?} must be non-empty and use only a-z, 0-9, '-' and '_' (it appears in Redis keys)"),
            ));
        }
        Ok(name)
    }

    /// `methods`, upper-cased; by default GET and HEAD.
    fn methods(
        &self,
        methods: Option<&Spanned<Vec<String>>>,
    ) -> Result<Vec<http::Method>, ConfigError> {
        let Some(list) = methods else {
            return Ok(vec![http::Method::GET, http::Method::HEAD]);
        };
        let mut out = Vec::new();
        for m in list.get_ref() {
            let upper = m.to_ascii_uppercase();
            let method = http::Method::from_bytes(upper.as_bytes()).map_err(|_| {
                self.error(list.span().start, format!("{m:?} is not an HTTP method"))
            })?;
            out.push(method);
        }
        if out.is_empty() {
            return Err(self.error(list.span().start, "`methods` must not be empty"));
        }
        Ok(out)
    }

    /// A plugin is named by the stem of its `.wasm` file, never by a path.
    fn plugin_name<'r>(&self, raw: &'r Spanned<String>) -> Result<&'r String, ConfigError> {
        let plugin = raw.get_ref();
        if plugin.is_empty() || plugin.contains(['/', '\\', '.']) {
            return Err(self.error(
                raw.span().start,
                format!("plugin {plugin:?} must be a plugin name (the file stem of <name>.wasm in the plugin directory), not a path"),
            ));
        }
        Ok(plugin)
    }

    /// The route's settings, every value rendered as a string; tables and arrays are refused.
    fn settings(
        &self,
        settings: &BTreeMap<String, Spanned<toml::Value>>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::with_capacity(settings.len());
        for (key, value) in settings {
            let Some(rendered) = render_setting(value.get_ref()) else {
                return Err(self.error(
                    value.span().start,
                    format!(
                        "setting `{key}` is a {}; settings must be strings, numbers or booleans",
                        value.get_ref().type_str()
                    ),
                ));
            };
            out.push((key.clone(), rendered));
        }
        Ok(out)
    }

    fn check_route_names(&self, routes: &[RouteConfig]) -> Result<(), ConfigError> {
        for (i, a) in routes.iter().enumerate() {
            for b in &routes[..i] {
                if a.name == b.name {
                    let offset = self.nth_route_offset(i);
                    return Err(self.error(
                        offset,
                        format!(
                            "route name {:?} is used twice; names must be unique",
                            a.name
                        ),
                    ));
                }
                if a.path == b.path && a.methods.iter().any(|m| b.methods.contains(m)) {
                    let offset = self.nth_route_offset(i);
                    return Err(self.error(
                        offset,
                        format!(
                            "routes {:?} and {:?} both handle the same method on {:?}",
                            b.name, a.name, a.path
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn nth_route_offset(&self, n: usize) -> usize {
        self.text
            .match_indices("[[route]]")
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or(0)
    }
}

/// A route setting as the policy sees it: strings as they are, numbers and booleans in their
/// TOML form; `None` for a table, an array or a date, which settings cannot be.
pub fn render_setting(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn a_bad_pattern_names_its_line() {
        let text = "[[route]]\nname = \"a\"\npath = \"/x/{id\"\nplugin = \"p\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("dir/larder.toml:3:8:"), "{err}");
    }

    #[test]
    fn nested_settings_are_refused() {
        let text = "[[route]]\nname = \"a\"\npath = \"/x\"\nplugin = \"p\"\n[route.settings]\nttl = 5\nbad = [1]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":7:7:") && err.contains("array"), "{err}");
        let ok = parse(&text.replace("bad = [1]\n", "")).unwrap();
        assert_eq!(ok.routes[0].settings, vec![("ttl".into(), "5".into())]);
    }

    #[test]
    fn also_invalidate_names_other_plugins_once_each_with_their_lines() {
        let route =
            "[[route]]\nname = \"a\"\npath = \"/x\"\nmethods = [\"POST\"]\nplugin = \"p\"\n";
        let ok = parse(&format!(
            "{route}also_invalidate = [\n  \"q\",\n  \"r\",\n]\n"
        ))
        .unwrap();
        let refs: Vec<_> = ok.routes[0].plugin_refs().collect();
        assert_eq!(refs, [("p", 5), ("q", 7), ("r", 8)]);

        for (list, problem) in [
            ("[\"q\", \"q\"]", "\"q\" twice"),
            ("[\"p\"]", "the route's own plugin"),
            ("[\"../q\"]", "not a path"),
        ] {
            let err = parse(&format!("{route}also_invalidate = {list}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("dir/larder.toml:6:") && err.contains(problem),
                "{err}"
            );
        }
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let route = "[[route]]\nname = \"a\"\npath = \"/x\"\nplugin = \"p\"\n";
        let err = parse(&format!("{route}{route}")).unwrap_err().to_string();
        assert!(err.contains(":5:1:") && err.contains("used twice"), "{err}");
    }
}
