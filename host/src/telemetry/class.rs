//! The outcome classes requests are counted by, read off the `Cache-Status` a response carries.
//!
//! Reading the rendered field instead of threading a class through every exit of the request
//! path keeps one source of truth: what is counted is what the client was told.

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Answered fresh from the cache.
    Hit = 0,
    /// Answered stale from the cache (stale-while-revalidate, soft purge, stale-if-error).
    Stale = 1,
    /// Looked up and not found usable: forwarded (alone, or collapsed onto another's fill).
    Miss = 2,
    /// Not cacheable by configuration or policy: no route, a pass, a write.
    Pass = 3,
    /// Passed because the policy failed (`bypass-by-error`).
    Error = 4,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Hit,
        Class::Stale,
        Class::Miss,
        Class::Pass,
        Class::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hit => "hit",
            Class::Stale => "stale",
            Class::Miss => "miss",
            Class::Pass => "pass",
            Class::Error => "error",
        }
    }

    /// Served from the cache.
    pub fn from_cache(self) -> bool {
        matches!(self, Class::Hit | Class::Stale)
    }

    /// Whether a response with this `Cache-Status` value was collapsed onto another instance's
    /// fill (`proxy/fleet.rs`).
    pub fn fleet_collapsed(value: &[u8]) -> bool {
        value.ends_with(b"; collapsed; detail=\"fleet\"")
    }

    /// The class of a response with this `Cache-Status` value, and whether it was collapsed
    /// onto another request's fill.
    pub fn of_cache_status(value: &[u8]) -> (Class, bool) {
        let has = |needle: &[u8]| value.windows(needle.len()).any(|w| w == needle);
        let collapsed = has(b"; collapsed");
        let class = if has(b"detail=\"plugin-") {
            Class::Error
        } else if value.starts_with(b"larder; hit") {
            // A hit's only details are the reasons it was served stale.
            if has(b"; detail=") {
                Class::Stale
            } else {
                Class::Hit
            }
        } else if value.starts_with(b"larder; fwd=miss") || value.starts_with(b"larder; fwd=stale")
        {
            Class::Miss
        } else {
            Class::Pass
        };
        (class, collapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::Class;
    use crate::proxy::cache_status::{CacheStatus, Forward};

    fn class_of(status: CacheStatus) -> (Class, bool) {
        Class::of_cache_status(status.render().as_bytes())
    }

    #[test]
    fn every_rendered_status_has_its_class() {
        assert_eq!(class_of(CacheStatus::hit(30)), (Class::Hit, false));
        assert_eq!(
            class_of(CacheStatus::hit(0).detail("stale-while-revalidate")),
            (Class::Stale, false)
        );
        assert_eq!(
            class_of(CacheStatus::forward(Forward::Miss).fwd_status(200).stored()),
            (Class::Miss, false)
        );
        assert_eq!(
            class_of(
                CacheStatus::forward(Forward::Miss)
                    .fwd_status(200)
                    .collapsed()
            ),
            (Class::Miss, true)
        );
        assert_eq!(
            class_of(CacheStatus::forward(Forward::Stale).fwd_status(304)),
            (Class::Miss, false)
        );
        assert_eq!(
            class_of(CacheStatus::forward(Forward::Bypass).detail("no-route")),
            (Class::Pass, false)
        );
        assert_eq!(
            class_of(CacheStatus::forward(Forward::Method).fwd_status(200)),
            (Class::Pass, false)
        );
        assert_eq!(
            class_of(CacheStatus::forward(Forward::Bypass).detail("plugin-trap")),
            (Class::Error, false)
        );
        // A policy that failed on the response: the request was a miss, but counted as an
        // error so that a broken policy shows.
        assert_eq!(
            class_of(
                CacheStatus::forward(Forward::Miss)
                    .fwd_status(200)
                    .detail("plugin-deadline")
            ),
            (Class::Error, false)
        );
    }
}
