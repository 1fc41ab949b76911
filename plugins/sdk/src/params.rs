//! Typed path parameters: one resource, one identity.
//!
//! A backend that reads `{id}` as a number serves `/items/1`, `/items/01` and `/items/001`
//! (and, depending on its parser, `/items/+1`) as the same item. A policy that puts the raw
//! text into its keys and tags gives that item several cache identities: a write through one
//! spelling purges `item:1` and leaves `/items/01` cached under `item:01`, and an operator's
//! purge of `item:1` misses it too. Parsing the parameter into a typed value and using the
//! value's canonical text (`"1"`) in keys and tags gives every spelling one key namespace and
//! one tag.
//!
//! [`Request::param_as`] parses a parameter into any [`FromParam`] type;
//! [`Request::param_canonical`] returns its canonical text. A value the type refuses is a
//! [`BadParam`], which converts into the decision to pass the request uncached
//! ([`BadParam::REASON`], `"bad-param"`): the backend will most likely answer it with an error,
//! and the cache must not give it an identity the backend does not.
//!
//! ```
//! use larder_sdk::{CacheKey, Request, RequestDecision};
//!
//! fn on_request(req: &Request) -> RequestDecision {
//!     match req.param_as::<u64>("id") {
//!         Ok(Some(id)) => {
//!             RequestDecision::lookup(CacheKey::new(["item".to_owned(), id.to_string()]))
//!         }
//!         Ok(None) => RequestDecision::pass("no-id"),
//!         // Not a number: pass uncached, `Cache-Status: ...; detail="bad-param"`.
//!         Err(bad) => bad.into(),
//!     }
//! }
//!
//! let key = |id: &str| on_request(&Request::new("GET", "/items").with_param("id", id));
//! assert_eq!(key("01"), key("1"));
//! assert_eq!(key("+1"), key("1"));
//! assert_eq!(key("one"), RequestDecision::pass("bad-param"));
//! ```
//!
//! # Which spellings are one value
//!
//! The integer types accept what common backend parsers accept (Rust's `str::parse`, Python's
//! `int`, Java's `Long.parseLong`, PostgreSQL's `int8`): ASCII digits, leading zeros, an
//! optional leading `+` (and `-` for the signed types). They refuse the empty string, any other
//! character (spaces, `_`, non-ASCII digits) and values outside the type's range.
//!
//! If your backend refuses a sign (as the Source Code Analysis Tool's does: `/+1` is a 400
//! there), use [`Digits`]: the same integers, written with digits only. Accepting a spelling the
//! backend refuses would let a cached answer for `/1` be served for `/+1`, which the backend
//! answers with an error; refusing one it accepts only passes those requests uncached. When in
//! doubt, accept less.
//!
//! # Your own types
//!
//! Implement [`FromParam`] for an identifier with more structure (a UUID, a slug that is
//! case-insensitive): parse every spelling the backend accepts, refuse the others, and write
//! the one canonical spelling in `Display`.

use std::fmt;
use std::num::IntErrorKind;

use crate::{Request, RequestDecision};

/// A type a path parameter can be parsed into, with one canonical text per value.
///
/// `Display` must write the canonical text: the same for every spelling `from_param` accepts
/// for one value, and text that `from_param` parses back into that value. Keys and tags built
/// from it then name a resource once, however the client spelled it.
///
/// Implemented for the integer types (see the [module documentation](self) for the spellings
/// they accept) and [`Digits`].
///
/// ```
/// use std::fmt;
///
/// use larder_sdk::{FromParam, ParamError, Request};
///
/// /// A language tag such as `en` or `pt-br`, which the backend matches case-insensitively.
/// struct Lang(String);
///
/// impl FromParam for Lang {
///     fn from_param(raw: &str) -> Result<Self, ParamError> {
///         if raw.is_empty() {
///             return Err(ParamError::Empty);
///         }
///         if !raw.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
///             return Err(ParamError::InvalidCharacter);
///         }
///         Ok(Lang(raw.to_ascii_lowercase()))
///     }
/// }
///
/// impl fmt::Display for Lang {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str(&self.0)
///     }
/// }
///
/// let req = Request::new("GET", "/docs/PT-BR/intro").with_param("lang", "PT-BR");
/// assert_eq!(req.param_canonical::<Lang>("lang"), Ok(Some("pt-br".to_owned())));
/// ```
pub trait FromParam: Sized + fmt::Display {
    /// Parses the parameter's text (percent-decoded by the host), or says why it is not a
    /// value of this type.
    fn from_param(raw: &str) -> Result<Self, ParamError>;
}

/// Why a parameter's text is not a value of the type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// The text is empty.
    Empty,
    /// A character the type does not accept: a non-digit in a number, a sign where none is
    /// allowed.
    InvalidCharacter,
    /// A number outside the type's range.
    OutOfRange,
    /// Characters the type accepts, in an order it does not (for types with more structure
    /// than a number).
    Malformed,
}

impl ParamError {
    /// A short name for logs: `empty`, `invalid-character`, `out-of-range`, `malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamError::Empty => "empty",
            ParamError::InvalidCharacter => "invalid-character",
            ParamError::OutOfRange => "out-of-range",
            ParamError::Malformed => "malformed",
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamError::Empty => "it is empty",
            ParamError::InvalidCharacter => "it contains a character the type does not accept",
            ParamError::OutOfRange => "it is out of range",
            ParamError::Malformed => "it is malformed",
        })
    }
}

impl std::error::Error for ParamError {}

/// A path parameter whose text is not a value of the type it was asked as; returned by
/// [`Request::param_as`].
///
/// Turn it into the ready-made decision with `bad.into()` (or [`RequestDecision::from`]):
/// pass uncached with the reason [`BadParam::REASON`]. The SDK does not log it: a scan of
/// invalid ids would flood the gateway's log, and a call that logs is never answered from the
/// gateway's table of reused decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    /// The parameter's name (`id` for `{id}`).
    pub name: String,
    /// Its text, as the policy received it.
    pub value: String,
    /// Why the text was refused.
    pub error: ParamError,
}

impl BadParam {
    /// The reason of the decision a `BadParam` converts into; shown by the gateway as
    /// `Cache-Status: larder; fwd=bypass; detail="bad-param"`.
    pub const REASON: &'static str = "bad-param";
}

impl fmt::Display for BadParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path parameter `{}` = {:?} is not valid: {}",
            self.name, self.value, self.error
        )
    }
}

impl std::error::Error for BadParam {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<BadParam> for RequestDecision {
    /// Pass the request uncached, with the reason [`BadParam::REASON`].
    ///
    /// ```
    /// use larder_sdk::{Request, RequestDecision};
    ///
    /// let req = Request::new("GET", "/items/x").with_param("id", "x");
    /// let bad = req.param_as::<u32>("id").unwrap_err();
    /// assert_eq!(RequestDecision::from(bad), RequestDecision::pass("bad-param"));
    /// ```
    fn from(_: BadParam) -> Self {
        RequestDecision::pass(BadParam::REASON)
    }
}

/// The canonical text of `raw` as a `T`: `"1"` for `"01"` as a `u64`.
///
/// ```
/// use larder_sdk::params::canonical;
/// use larder_sdk::{Digits, ParamError};
///
/// assert_eq!(canonical::<u64>("007"), Ok("7".to_owned()));
/// assert_eq!(canonical::<u64>("+7"), Ok("7".to_owned()));
/// assert_eq!(canonical::<Digits<u64>>("+7"), Err(ParamError::InvalidCharacter));
/// assert_eq!(canonical::<i32>("-007"), Ok("-7".to_owned()));
/// ```
pub fn canonical<T: FromParam>(raw: &str) -> Result<String, ParamError> {
    T::from_param(raw).map(|value| value.to_string())
}

/// An integer written with ASCII digits only: leading zeros are accepted, a sign is not.
///
/// For backends whose parser refuses `+1`: the cache must not treat `/items/+1` as
/// `/items/1` when the backend answers the first with an error.
///
/// ```
/// use larder_sdk::{Digits, Request};
///
/// let req = Request::new("GET", "/items/0042").with_param("id", "0042");
/// assert_eq!(req.param_as::<Digits<u64>>("id"), Ok(Some(Digits(42))));
/// assert_eq!(req.param_canonical::<Digits<u64>>("id"), Ok(Some("42".to_owned())));
///
/// let signed = Request::new("GET", "/items/+42").with_param("id", "+42");
/// assert!(signed.param_as::<Digits<u64>>("id").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digits<T>(pub T);

impl<T: FromParam> FromParam for Digits<T> {
    fn from_param(raw: &str) -> Result<Self, ParamError> {
        if raw.is_empty() {
            return Err(ParamError::Empty);
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParamError::InvalidCharacter);
        }
        T::from_param(raw).map(Digits)
    }
}

impl<T: fmt::Display> fmt::Display for Digits<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! integers {
    ($($t:ty),* $(,)?) => {$(
        impl FromParam for $t {
            /// Decimal digits with leading zeros, an optional leading `+` (and `-` for the
            /// signed types), within the type's range.
            fn from_param(raw: &str) -> Result<Self, ParamError> {
                // `str::parse` accepts exactly that syntax; only its errors are translated.
                raw.parse::<$t>().map_err(|e| match e.kind() {
                    IntErrorKind::Empty => ParamError::Empty,
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                        ParamError::OutOfRange
                    }
                    _ => ParamError::InvalidCharacter,
                })
            }
        }
    )*};
}

integers!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

impl Request {
    /// The path parameter `name` parsed as a `T`: `Ok(None)` when the route captured no such
    /// parameter, `Err` with a [`BadParam`] when its text is not a `T`.
    ///
    /// Use the value (or its `Display`, the canonical text) in keys and tags, so that every
    /// spelling of one resource maps to one entry and one tag; see the
    /// [`params`](crate::params) module.
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Request, RequestDecision};
    ///
    /// fn key(req: &Request) -> RequestDecision {
    ///     match req.param_as::<u64>("id") {
    ///         Ok(Some(id)) => {
    ///             RequestDecision::lookup(CacheKey::new(["item".to_owned(), id.to_string()]))
    ///         }
    ///         Ok(None) => RequestDecision::pass("no-id"),
    ///         Err(bad) => bad.into(),
    ///     }
    /// }
    ///
    /// let get = |id: &str| Request::new("GET", "/items").with_param("id", id);
    /// assert_eq!(key(&get("007")), RequestDecision::lookup(CacheKey::new(["item", "7"])));
    /// assert_eq!(key(&get("7")), key(&get("007")));
    /// assert_eq!(key(&get("7a")), RequestDecision::pass("bad-param"));
    /// assert_eq!(key(&Request::new("GET", "/items")), RequestDecision::pass("no-id"));
    /// ```
    pub fn param_as<T: FromParam>(&self, name: &str) -> Result<Option<T>, BadParam> {
        let Some(raw) = self.param(name) else {
            return Ok(None);
        };
        T::from_param(raw).map(Some).map_err(|error| BadParam {
            name: name.to_owned(),
            value: raw.to_owned(),
            error,
        })
    }

    /// The canonical text of the path parameter `name` as a `T` (`"1"` for `"01"` as a
    /// `u64`): [`Request::param_as`], written with the type's `Display`.
    ///
    /// ```
    /// use larder_sdk::{Invalidation, Request};
    ///
    /// let write = Request::new("POST", "/items/0042/refresh").with_param("id", "0042");
    /// let purge = match write.param_canonical::<u64>("id") {
    ///     Ok(Some(id)) => vec![Invalidation::tag(format!("item:{id}"))],
    ///     _ => Vec::new(),
    /// };
    /// assert_eq!(purge, [Invalidation::tag("item:42")]);
    /// ```
    pub fn param_canonical<T: FromParam>(&self, name: &str) -> Result<Option<String>, BadParam> {
        self.param_as::<T>(name)
            .map(|value| value.map(|v: T| v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_integer_has_one_canonical_text() {
        for raw in ["1", "01", "0001", "+1", "+01"] {
            assert_eq!(canonical::<u64>(raw), Ok("1".to_owned()), "{raw}");
        }
        assert_eq!(canonical::<u64>("0"), Ok("0".to_owned()));
        assert_eq!(canonical::<u64>("000"), Ok("0".to_owned()));
        assert_eq!(canonical::<i64>("-0"), Ok("0".to_owned()));
        assert_eq!(canonical::<i64>("-007"), Ok("-7".to_owned()));
        assert_eq!(canonical::<i64>("+7"), Ok("7".to_owned()));
        // Many leading zeros are not an overflow.
        let long = format!("{}{}", "0".repeat(100), u64::MAX);
        assert_eq!(canonical::<u64>(&long), Ok(u64::MAX.to_string()));
    }

    #[test]
    fn integers_refuse_what_is_not_a_number_of_the_type() {
        assert_eq!(u64::from_param(""), Err(ParamError::Empty));
        for raw in [
            "+", "-", "abc", "1a", " 1", "1 ", "1_000", "1.0", "0x1", "١", "--1", "+-1",
        ] {
            assert_eq!(
                u64::from_param(raw),
                Err(ParamError::InvalidCharacter),
                "{raw:?}"
            );
        }
        // A negative number is not an unsigned one at all.
        assert_eq!(u64::from_param("-1"), Err(ParamError::InvalidCharacter));
        assert_eq!(
            u64::from_param("18446744073709551616"),
            Err(ParamError::OutOfRange)
        );
        assert_eq!(u8::from_param("256"), Err(ParamError::OutOfRange));
        assert_eq!(i8::from_param("-129"), Err(ParamError::OutOfRange));
        assert_eq!(u64::from_param("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(i8::from_param("-128"), Ok(i8::MIN));
    }

    #[test]
    fn digits_refuse_signs_and_keep_leading_zeros() {
        assert_eq!(Digits::<u64>::from_param("0042"), Ok(Digits(42)));
        assert_eq!(canonical::<Digits<u64>>("0042"), Ok("42".to_owned()));
        assert_eq!(
            Digits::<u64>::from_param("+42"),
            Err(ParamError::InvalidCharacter)
        );
        assert_eq!(
            Digits::<i64>::from_param("-42"),
            Err(ParamError::InvalidCharacter)
        );
        assert_eq!(Digits::<u64>::from_param(""), Err(ParamError::Empty));
        assert_eq!(Digits::<u8>::from_param("300"), Err(ParamError::OutOfRange));
    }

    #[test]
    fn request_accessors() {
        let req = Request::new("GET", "/repos/01").with_param("id", "01");
        assert_eq!(req.param_as::<u64>("id"), Ok(Some(1)));
        assert_eq!(req.param_canonical::<u64>("id"), Ok(Some("1".to_owned())));
        assert_eq!(req.param_as::<u64>("missing"), Ok(None));
        assert_eq!(req.param_canonical::<u64>("missing"), Ok(None));

        let bad = Request::new("GET", "/repos/abc").with_param("id", "abc");
        let err = bad.param_as::<u64>("id").unwrap_err();
        assert_eq!(
            err,
            BadParam {
                name: "id".into(),
                value: "abc".into(),
                error: ParamError::InvalidCharacter,
            }
        );
        assert_eq!(
            err.to_string(),
            "path parameter `id` = \"abc\" is not valid: \
             it contains a character the type does not accept"
        );
        assert_eq!(
            RequestDecision::from(err),
            RequestDecision::Pass("bad-param".into())
        );
        assert_eq!(
            bad.param_canonical::<u64>("id").unwrap_err().error,
            ParamError::InvalidCharacter
        );
    }

    #[test]
    fn error_names() {
        let names: Vec<_> = [
            ParamError::Empty,
            ParamError::InvalidCharacter,
            ParamError::OutOfRange,
            ParamError::Malformed,
        ]
        .iter()
        .map(|e| e.as_str())
        .collect();
        assert_eq!(
            names,
            ["empty", "invalid-character", "out-of-range", "malformed"]
        );
    }
}
