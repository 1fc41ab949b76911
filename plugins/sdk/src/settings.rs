//! A route's settings, checked once when the gateway loads the plugin.
//!
//! The gateway calls [`Policy::check_settings`](crate::Policy::check_settings) for every route
//! that uses the policy when it loads or reloads its plugins, with the route's
//! `[route.settings]`. A policy that validates them there is told about a typo at start-up (the
//! gateway refuses the config with the policy's reason, naming the route and the plugin), not
//! by a warning on every request, and its per-request code can read the settings knowing they
//! parse.
//!
//! The usual shape is one function that reads the settings into a typed struct, used by both:
//!
//! ```
//! use larder_sdk::{Policy, Request, RequestDecision, CacheKey, SettingError, Settings};
//!
//! /// What the routes may tune.
//! struct Tuning {
//!     ttl: u32,
//!     soft_purge: bool,
//! }
//!
//! impl Tuning {
//!     fn read(settings: &Settings) -> Result<Tuning, SettingError> {
//!         settings.only(&["ttl", "soft_purge"])?;
//!         Ok(Tuning {
//!             ttl: settings.parse_or("ttl", 600)?,
//!             soft_purge: settings.parse_or("soft_purge", false)?,
//!         })
//!     }
//! }
//!
//! struct Items;
//!
//! impl Policy for Items {
//!     fn check_settings(settings: &Settings) -> Result<(), String> {
//!         Tuning::read(settings)?;
//!         Ok(())
//!     }
//!
//!     fn on_request(req: &Request) -> RequestDecision {
//!         RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
//!     }
//! }
//!
//! let good = Request::new("GET", "/").with_setting("ttl", "60");
//! assert!(Items::check_settings(&good.settings()).is_ok());
//! let typo = Request::new("GET", "/").with_setting("tll", "60");
//! assert_eq!(
//!     Items::check_settings(&typo.settings()).unwrap_err(),
//!     "unknown setting `tll` (this policy reads `ttl`, `soft_purge`)"
//! );
//! let bad = Request::new("GET", "/").with_setting("ttl", "ten");
//! assert_eq!(
//!     Items::check_settings(&bad.settings()).unwrap_err(),
//!     "setting `ttl` = \"ten\" is not a valid u32"
//! );
//! ```

use std::fmt;
use std::str::FromStr;

use crate::Param;

/// A route's name and settings, as `check-settings` receives them and as every request of the
/// route carries them ([`Request::settings`](crate::Request::settings)).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    route: &'a str,
    params: &'a [Param],
}

impl<'a> Settings<'a> {
    /// The settings `params` of the route named `route`.
    pub fn new(route: &'a str, params: &'a [Param]) -> Self {
        Self { route, params }
    }

    /// The route's name, as written in the gateway's config.
    pub fn route(&self) -> &'a str {
        self.route
    }

    /// Every setting, in the config's order.
    pub fn all(&self) -> &'a [Param] {
        self.params
    }

    /// The raw value of setting `name` (numbers and booleans in their TOML form).
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("view", "summary");
    /// assert_eq!(req.settings().get("view"), Some("summary"));
    /// assert_eq!(req.settings().get("missing"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Setting `name` parsed as `T` (surrounding spaces ignored): `Ok(None)` when absent, an
    /// error naming the setting, its value and the type when it does not parse.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "600");
    /// assert_eq!(req.settings().parse::<u32>("ttl"), Ok(Some(600)));
    /// assert_eq!(req.settings().parse::<u32>("absent"), Ok(None));
    /// assert!(req.settings().parse::<bool>("ttl").is_err());
    /// ```
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, SettingError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| SettingError::invalid::<T>(name, raw)),
        }
    }

    /// Setting `name` parsed as `T`, or `default` when it is absent; an error when it is present
    /// and does not parse.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "600");
    /// assert_eq!(req.settings().parse_or("ttl", 1800u32), Ok(600));
    /// assert_eq!(req.settings().parse_or("stale_if_error", 0u32), Ok(0));
    /// ```
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, SettingError> {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// Refuses any setting not named in `known`: a misspelt name (`tll` for `ttl`) would
    /// otherwise be silently ignored.
    ///
    /// ```
    /// use larder_sdk::Request;
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "600");
    /// assert!(req.settings().only(&["ttl", "view"]).is_ok());
    /// assert!(req.settings().only(&["view"]).is_err());
    /// ```
    pub fn only(&self, known: &[&str]) -> Result<(), SettingError> {
        match self
            .params
            .iter()
            .find(|p| !known.contains(&p.name.as_str()))
        {
            None => Ok(()),
            Some(p) => Err(SettingError::Unknown {
                name: p.name.clone(),
                known: known.iter().map(|k| (*k).to_owned()).collect(),
            }),
        }
    }
}

/// A setting the policy cannot use. Its text is what the gateway shows when it refuses the
/// config; `?` turns it into the `String` that [`Policy::check_settings`](crate::Policy::check_settings)
/// returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingError {
    /// Present, but its value does not parse as the type the policy reads.
    Invalid {
        /// The setting's name.
        name: String,
        /// Its value as written.
        value: String,
        /// What it should be, completing "is not ..." (`a valid u32`, or the policy's own
        /// words).
        expected: String,
    },
    /// A setting the policy does not read.
    Unknown {
        /// The setting's name.
        name: String,
        /// The settings the policy reads.
        known: Vec<String>,
    },
}

impl SettingError {
    /// `value` of setting `name` does not parse as a `T`.
    pub fn invalid<T>(name: &str, value: &str) -> Self {
        let ty = std::any::type_name::<T>();
        SettingError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            // `core::num::NonZeroU32` -> `NonZeroU32`: the last path segment reads best.
            expected: format!("a valid {}", ty.rsplit("::").next().unwrap_or(ty)),
        }
    }

    /// `value` of setting `name` is not what the policy needs, in the policy's words
    /// (`expected` completes "is not ...").
    ///
    /// ```
    /// use larder_sdk::SettingError;
    ///
    /// let e = SettingError::expected("percent", "150", "a percentage from 0 to 100");
    /// assert_eq!(e.to_string(), "setting `percent` = \"150\" is not a percentage from 0 to 100");
    /// ```
    pub fn expected(name: &str, value: &str, expected: &str) -> Self {
        SettingError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::Invalid {
                name,
                value,
                expected,
            } => write!(f, "setting `{name}` = {value:?} is not {expected}"),
            SettingError::Unknown { name, known } => {
                write!(f, "unknown setting `{name}` (this policy reads ")?;
                if known.is_empty() {
                    f.write_str("none")?;
                }
                for (i, k) in known.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}`{k}`")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for SettingError {}

impl From<SettingError> for String {
    fn from(e: SettingError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<Param> {
        pairs
            .iter()
            .map(|(n, v)| Param {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect()
    }

    #[test]
    fn a_setting_that_does_not_parse_is_named_with_its_value_and_type() {
        let p = params(&[("ttl", "ten"), ("soft", "yes"), ("n", " 7 ")]);
        let s = Settings::new("r", &p);
        assert_eq!(
            s.parse::<u32>("ttl").unwrap_err().to_string(),
            "setting `ttl` = \"ten\" is not a valid u32"
        );
        assert_eq!(
            s.parse_or("soft", false).unwrap_err().to_string(),
            "setting `soft` = \"yes\" is not a valid bool"
        );
        assert_eq!(s.parse::<u8>("n"), Ok(Some(7)), "spaces are ignored");
        assert_eq!(s.parse_or("absent", 3u8), Ok(3));
        assert_eq!(s.route(), "r");
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let p = params(&[("ttl", "1"), ("tll", "2")]);
        let s = Settings::new("r", &p);
        assert_eq!(
            s.only(&["ttl"]).unwrap_err().to_string(),
            "unknown setting `tll` (this policy reads `ttl`)"
        );
        assert_eq!(
            s.only(&[]).unwrap_err().to_string(),
            "unknown setting `ttl` (this policy reads none)"
        );
        assert!(s.only(&["tll", "ttl"]).is_ok());
    }
}
