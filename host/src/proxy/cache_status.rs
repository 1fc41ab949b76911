//! The `Cache-Status` response header (RFC 9211): what the cache did, on every response.
//!
//! `larder; hit; ttl=1790`, `larder; fwd=miss; fwd-status=200; stored`,
//! `larder; fwd=bypass; detail="authorization"`.

use std::fmt::Write;

use http::HeaderValue;

/// Why a request went forward (the `fwd` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cache was configured not to handle it: no route, or the policy passed it.
    Bypass,
    /// The method is not cacheable (writes).
    Method,
    /// No entry.
    Miss,
    /// An entry, but not fresh (expired or soft-purged).
    Stale,
}

impl Forward {
    pub fn as_str(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::Miss => "miss",
            Forward::Stale => "stale",
        }
    }
}

/// One `Cache-Status` entry for this cache, rendered in a fixed parameter order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStatus {
    /// `Ok(ttl)` for a hit, `Err(fwd)` for a forwarded request.
    outcome: Result<i64, Forward>,
    fwd_status: Option<u16>,
    stored: bool,
    collapsed: bool,
    detail: Option<String>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> Self {
        Self {
            outcome: Ok(ttl),
            fwd_status: None,
            stored: false,
            collapsed: false,
            detail: None,
        }
    }

    pub fn forward(fwd: Forward) -> Self {
        Self {
            outcome: Err(fwd),
            fwd_status: None,
            stored: false,
            collapsed: false,
            detail: None,
        }
    }

    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    pub fn is_stored(&self) -> bool {
        self.stored
    }

    /// The request waited for another request's fill and got its response.
    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// Sets `detail`, unless one is set already: the first reason is the one that explains
    /// what followed.
    pub fn detail(mut self, detail: &str) -> Self {
        if self.detail.is_none() {
            self.detail = Some(detail.to_owned());
        }
        self
    }

    /// Renders the entry; `detail` as a structured-field string (printable ASCII, `"` and `\`
    /// escaped, at most 128 characters).
    pub fn render(&self) -> String {
        let mut text = String::from("larder");
        match self.outcome {
            Ok(ttl) => {
                let _ = write!(text, "; hit; ttl={ttl}");
            }
            Err(fwd) => {
                let _ = write!(text, "; fwd={}", fwd.as_str());
            }
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(text, "; fwd-status={status}");
        }
        if self.stored {
            text.push_str("; stored");
        }
        if self.collapsed {
            text.push_str("; collapsed");
        }
        if let Some(detail) = &self.detail {
            text.push_str("; detail=\"");
            for c in detail.chars().take(128) {
                match c {
                    '"' | '\\' => {
                        text.push('\\');
                        text.push(c);
                    }
                    ' '..='~' => text.push(c),
                    _ => text.push('?'),
                }
            }
            text.push('"');
        }
        text
    }

    pub fn header_value(&self) -> HeaderValue {
        // The rendered text becomes the value's buffer: no second copy.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(self.render()))
            .expect("only printable ASCII is written")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_9211_entries() {
        assert_eq!(CacheStatus::hit(1790).render(), "larder; hit; ttl=1790");
        assert_eq!(
            CacheStatus::forward(Forward::Miss)
                .fwd_status(200)
                .stored()
                .render(),
            "larder; fwd=miss; fwd-status=200; stored"
        );
        assert_eq!(
            CacheStatus::forward(Forward::Bypass)
                .detail("say \"hi\"\n")
                .fwd_status(502)
                .detail("ignored")
                .render(),
            "larder; fwd=bypass; fwd-status=502; detail=\"say \\\"hi\\\"?\""
        );
    }
}
