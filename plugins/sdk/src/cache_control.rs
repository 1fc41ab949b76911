//! Parsing of the header fields that drive HTTP caching: `Cache-Control` (RFC 9111 section
//! 5.2, plus `stale-while-revalidate` and `stale-if-error` from RFC 5861), `Age` (section 5.1)
//! and HTTP dates for `Expires` and `Date` (RFC 9110 section 5.6.7).
//!
//! Parsing is lenient in what it accepts and conservative in what it concludes: an argument
//! that cannot be read as delta-seconds makes `max-age`/`s-maxage` zero (the response is
//! stale), an unreadable `Expires` is in the past, and a value too large to represent
//! saturates at 2^31 seconds as RFC 9111 section 1.2.2 requires.

/// The value RFC 9111 section 1.2.2 requires for delta-seconds too large to represent.
pub const DELTA_SECONDS_MAX: u32 = 2_147_483_648;

/// The `Cache-Control` directives Larder understands, from one or more field values.
///
/// Directive names are case-insensitive. When a directive with an argument appears more than
/// once, the first occurrence wins (RFC 9111 section 4.2.1). Unknown directives are ignored.
/// The qualified forms `private="field"` and `no-cache="field"` are treated like their
/// unqualified forms: the gateway cannot strip single fields from a stored response, so it
/// does not store it at all.
///
/// ```
/// use larder_sdk::cache_control::CacheControl;
///
/// let cc = CacheControl::parse(["public, max-age=60", "stale-if-error=\"600\""]);
/// assert!(cc.public);
/// assert_eq!(cc.max_age, Some(60));
/// assert_eq!(cc.stale_if_error, Some(600));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`: do not store (request or response).
    pub no_store: bool,
    /// `no-cache` (qualified or not): do not use a stored response without revalidating it.
    pub no_cache: bool,
    /// `private` (qualified or not): a shared cache must not store the response.
    pub private: bool,
    /// `public`: a shared cache may store the response even if it would not otherwise (for
    /// example a response to a request with `Authorization`).
    pub public: bool,
    /// `must-revalidate`: once stale, the response must not be served without revalidation.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: `must-revalidate` for shared caches only.
    pub proxy_revalidate: bool,
    /// `must-understand`: store only if the status code is understood; then `no-store` does
    /// not apply (RFC 9111 section 5.2.2.3).
    pub must_understand: bool,
    /// `max-age=N`, in seconds.
    pub max_age: Option<u32>,
    /// `s-maxage=N`, in seconds: overrides `max-age` and `Expires` for shared caches.
    pub s_maxage: Option<u32>,
    /// `stale-while-revalidate=N`, in seconds (RFC 5861).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error=N`, in seconds (RFC 5861).
    pub stale_if_error: Option<u32>,
}

impl CacheControl {
    /// Parses and combines the given `Cache-Control` field values (pass every field line of
    /// the message, in order).
    pub fn parse<'a, I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut cc = Self::default();
        for value in values {
            for (name, arg) in directives(value) {
                cc.apply(&name, arg.as_deref());
            }
        }
        cc
    }

    fn apply(&mut self, name: &str, arg: Option<&str>) {
        fn seconds(slot: &mut Option<u32>, arg: Option<&str>) {
            if slot.is_none() {
                // Missing or invalid argument: conservatively zero (stale / no window).
                *slot = Some(arg.and_then(parse_delta_seconds).unwrap_or(0));
            }
        }
        match name {
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "max-age" => seconds(&mut self.max_age, arg),
            "s-maxage" => seconds(&mut self.s_maxage, arg),
            "stale-while-revalidate" => seconds(&mut self.stale_while_revalidate, arg),
            "stale-if-error" => seconds(&mut self.stale_if_error, arg),
            _ => {}
        }
    }
}

impl CacheControl {
    /// Parses a targeted cache-control field (RFC 9213, `CDN-Cache-Control`): unlike
    /// `Cache-Control`, it is a Structured Field dictionary (RFC 8941), parsed strictly.
    /// `None` when the field is not a valid dictionary, or a known directive has a value of
    /// the wrong type (`max-age="60"`): RFC 9213 says such a field is ignored as a whole.
    ///
    /// ```
    /// use larder_sdk::cache_control::CacheControl;
    ///
    /// let cc = CacheControl::parse_targeted(["max-age=600, stale-if-error=60"]).unwrap();
    /// assert_eq!((cc.max_age, cc.stale_if_error), (Some(600), Some(60)));
    /// assert!(CacheControl::parse_targeted(["max-age=\"600\""]).is_none());
    /// assert!(CacheControl::parse_targeted(["max-age =600"]).is_none());
    /// ```
    pub fn parse_targeted<'a, I>(values: I) -> Option<Self>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let joined = values.into_iter().collect::<Vec<_>>().join(", ");
        let mut cc = Self::default();
        for (name, value) in sf::dictionary(&joined)? {
            let flag = |slot: &mut bool| match value {
                sf::Item::Boolean(b) => {
                    *slot |= b;
                    Some(())
                }
                _ => None,
            };
            let seconds = |slot: &mut Option<u32>| match value {
                sf::Item::Integer(n) if n >= 0 => {
                    if slot.is_none() {
                        *slot = Some(
                            u32::try_from(n)
                                .unwrap_or(DELTA_SECONDS_MAX)
                                .min(DELTA_SECONDS_MAX),
                        );
                    }
                    Some(())
                }
                _ => None,
            };
            match name.as_str() {
                "no-store" => flag(&mut cc.no_store)?,
                // Qualified forms (`private="set-cookie"`) count as unqualified, as in
                // `Cache-Control`.
                "no-cache" => cc.no_cache |= value != sf::Item::Boolean(false),
                "private" => cc.private |= value != sf::Item::Boolean(false),
                "public" => flag(&mut cc.public)?,
                "must-revalidate" => flag(&mut cc.must_revalidate)?,
                "proxy-revalidate" => flag(&mut cc.proxy_revalidate)?,
                "must-understand" => flag(&mut cc.must_understand)?,
                "max-age" => seconds(&mut cc.max_age)?,
                "s-maxage" => seconds(&mut cc.s_maxage)?,
                "stale-while-revalidate" => seconds(&mut cc.stale_while_revalidate)?,
                "stale-if-error" => seconds(&mut cc.stale_if_error)?,
                _ => {}
            }
        }
        Some(cc)
    }
}

/// A strict parser of Structured Field dictionaries (RFC 8941 section 4.2.2), as much as
/// targeted cache-control fields need: member names and bare items; parameters and inner
/// lists are parsed and dropped.
mod sf {
    /// A member's value, as far as directives care.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Item {
        Boolean(bool),
        Integer(i64),
        /// A string, token, decimal, byte sequence or inner list.
        Other,
    }

    pub fn dictionary(text: &str) -> Option<Vec<(String, Item)>> {
        let mut p = Parser(text.trim_matches(' ').as_bytes());
        let mut out = Vec::new();
        while !p.0.is_empty() {
            let key = p.key()?;
            let item = if p.eat(b'=') {
                let item = if p.peek() == Some(b'(') {
                    p.inner_list()?
                } else {
                    p.bare_item()?
                };
                p.parameters()?;
                item
            } else {
                p.parameters()?;
                Item::Boolean(true)
            };
            match out.iter_mut().find(|(k, _)| *k == key) {
                // The last value of a repeated key wins.
                Some(member) => member.1 = item,
                None => out.push((key, item)),
            }
            p.ows();
            if p.0.is_empty() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
            p.ows();
            if p.0.is_empty() {
                return None;
            }
        }
        Some(out)
    }

    struct Parser<'a>(&'a [u8]);

    impl<'a> Parser<'a> {
        fn peek(&self) -> Option<u8> {
            self.0.first().copied()
        }
        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.0 = &self.0[1..];
                true
            } else {
                false
            }
        }
        fn ows(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.0 = &self.0[1..];
            }
        }
        fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
            let n = self.0.iter().take_while(|c| f(**c)).count();
            let (taken, rest) = self.0.split_at(n);
            self.0 = rest;
            taken
        }
        fn key(&mut self) -> Option<String> {
            let first = self.peek()?;
            if !(first.is_ascii_lowercase() || first == b'*') {
                return None;
            }
            let key = self.take_while(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'.' | b'*')
            });
            Some(String::from_utf8_lossy(key).into_owned())
        }
        fn parameters(&mut self) -> Option<()> {
            while self.eat(b';') {
                while self.eat(b' ') {}
                self.key()?;
                if self.eat(b'=') {
                    self.bare_item()?;
                }
            }
            Some(())
        }
        fn inner_list(&mut self) -> Option<Item> {
            self.eat(b'(');
            loop {
                while self.eat(b' ') {}
                if self.eat(b')') {
                    self.parameters()?;
                    return Some(Item::Other);
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
        }
        fn bare_item(&mut self) -> Option<Item> {
            match self.peek()? {
                b'-' | b'0'..=b'9' => self.number(),
                b'"' => {
                    self.0 = &self.0[1..];
                    loop {
                        match self.peek()? {
                            b'"' => {
                                self.0 = &self.0[1..];
                                return Some(Item::Other);
                            }
                            b'\\' => {
                                let escaped = *self.0.get(1)?;
                                if escaped != b'"' && escaped != b'\\' {
                                    return None;
                                }
                                self.0 = &self.0[2..];
                            }
                            0x20..=0x7e => self.0 = &self.0[1..],
                            _ => return None,
                        }
                    }
                }
                b'?' => {
                    self.0 = &self.0[1..];
                    let b = match self.peek()? {
                        b'0' => false,
                        b'1' => true,
                        _ => return None,
                    };
                    self.0 = &self.0[1..];
                    Some(Item::Boolean(b))
                }
                b':' => {
                    self.0 = &self.0[1..];
                    self.take_while(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')
                    });
                    self.eat(b':').then_some(Item::Other)
                }
                c if c.is_ascii_alphabetic() || c == b'*' => {
                    self.take_while(|c| {
                        c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)
                    });
                    Some(Item::Other)
                }
                _ => None,
            }
        }
        fn number(&mut self) -> Option<Item> {
            let negative = self.eat(b'-');
            let int = self.take_while(|c| c.is_ascii_digit());
            if int.is_empty() {
                return None;
            }
            if self.eat(b'.') {
                let frac = self.take_while(|c| c.is_ascii_digit());
                return (int.len() <= 12 && (1..=3).contains(&frac.len())).then_some(Item::Other);
            }
            if int.len() > 15 {
                return None;
            }
            let n: i64 = std::str::from_utf8(int).ok()?.parse().ok()?;
            Some(Item::Integer(if negative { -n } else { n }))
        }
    }
}

/// Splits one `Cache-Control` field value into lower-cased directive names and their
/// arguments, unquoting quoted-string arguments. Commas inside quotes do not split.
fn directives(value: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        // Skip separators and whitespace before a directive.
        while chars
            .next_if(|c| *c == ',' || c.is_ascii_whitespace())
            .is_some()
        {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            name.push(c.to_ascii_lowercase());
        }
        let name = name.trim().to_owned();
        let mut arg = None;
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let mut text = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
                // Anything between the closing quote and the next comma is garbage.
                while chars.next_if(|c| *c != ',').is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    text.push(c);
                }
                text = text.trim().to_owned();
            }
            arg = Some(text);
        }
        if !name.is_empty() {
            out.push((name, arg));
        }
    }
    out
}

/// Parses delta-seconds (`1*DIGIT`), saturating at [`DELTA_SECONDS_MAX`]. Returns `None` for
/// anything that is not a non-empty run of ASCII digits.
///
/// ```
/// use larder_sdk::cache_control::{parse_delta_seconds, DELTA_SECONDS_MAX};
///
/// assert_eq!(parse_delta_seconds("60"), Some(60));
/// assert_eq!(parse_delta_seconds("99999999999999"), Some(DELTA_SECONDS_MAX));
/// assert_eq!(parse_delta_seconds("-1"), None);
/// ```
pub fn parse_delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for digit in text.bytes() {
        value = value * 10 + u64::from(digit - b'0');
        if value >= u64::from(DELTA_SECONDS_MAX) {
            return Some(DELTA_SECONDS_MAX);
        }
    }
    u32::try_from(value).ok()
}

/// Parses an `Age` field value (delta-seconds). A list (`7200, 0`, from repeated fields
/// combined) counts by its first member, which the origin's nearest cache wrote. `None` when
/// invalid; callers treat an invalid `Age` as absent.
///
/// ```
/// use larder_sdk::cache_control::parse_age;
///
/// assert_eq!(parse_age("7200, 0"), Some(7200));
/// assert_eq!(parse_age("soon"), None);
/// ```
pub fn parse_age(value: &str) -> Option<u32> {
    parse_delta_seconds(value.split(',').next().unwrap_or(value))
}

const WEEKDAYS_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEKDAYS_LONG: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP date into seconds since the Unix epoch (RFC 9110 section 5.6.7).
///
/// Accepts the preferred IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete
/// forms: RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and ANSI C asctime
/// (`Sun Nov  6 08:49:37 1994`). Month and weekday names and `GMT` are matched
/// case-insensitively (the grammar says otherwise, but origins get it wrong and a cache that
/// refuses `Expires: mon, 01 jan 2030 00:00:00 gmt` helps nobody); the weekday is not checked against the date. A two-digit RFC 850 year
/// is read as 1970-2069: the guest has no clock to apply the "50 years in the future" rule
/// against.
///
/// ```
/// use larder_sdk::cache_control::parse_http_date;
///
/// assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
/// assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784111777));
/// assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(784111777));
/// assert_eq!(parse_http_date("0"), None);
/// ```
pub fn parse_http_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some((weekday, rest)) = text.split_once(',') {
        let rest = rest.strip_prefix(' ')?;
        if one_of(&WEEKDAYS_SHORT, weekday) {
            parse_imf_fixdate(rest)
        } else if one_of(&WEEKDAYS_LONG, weekday) {
            parse_rfc850(rest)
        } else {
            None
        }
    } else {
        parse_asctime(text)
    }
}

/// `DD Mon YYYY HH:MM:SS GMT`
fn parse_imf_fixdate(rest: &str) -> Option<i64> {
    let mut fields = rest.split(' ');
    let day = two_digits(fields.next()?)?;
    let month = month(fields.next()?)?;
    let year = four_digits(fields.next()?)?;
    let time = time_of_day(fields.next()?)?;
    (fields.next()?.eq_ignore_ascii_case("GMT") && fields.next().is_none()).then_some(())?;
    to_unix(year, month, day, time)
}

/// `DD-Mon-YY HH:MM:SS GMT`
fn parse_rfc850(rest: &str) -> Option<i64> {
    let mut fields = rest.split(' ');
    let mut date = fields.next()?.split('-');
    let day = two_digits(date.next()?)?;
    let month = month(date.next()?)?;
    let yy = two_digits(date.next()?)?;
    date.next().is_none().then_some(())?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    let time = time_of_day(fields.next()?)?;
    (fields.next()?.eq_ignore_ascii_case("GMT") && fields.next().is_none()).then_some(())?;
    to_unix(year, month, day, time)
}

/// `Www Mon _D HH:MM:SS YYYY` (the day is space-padded to two characters).
fn parse_asctime(text: &str) -> Option<i64> {
    let (weekday, rest) = text.split_once(' ')?;
    one_of(&WEEKDAYS_SHORT, weekday).then_some(())?;
    let (month_name, rest) = rest.split_once(' ')?;
    let month = month(month_name)?;
    if rest.len() < 3 || !rest.is_char_boundary(2) {
        return None;
    }
    let (day_text, rest) = rest.split_at(2);
    let day = day_text.trim_start_matches(' ');
    if day.is_empty() || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let time = time_of_day(fields.next()?)?;
    let year = four_digits(fields.next()?)?;
    fields.next().is_none().then_some(())?;
    to_unix(year, month, day, time)
}

fn digits(text: &str, len: usize) -> Option<u32> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn two_digits(text: &str) -> Option<u32> {
    digits(text, 2)
}

fn four_digits(text: &str) -> Option<u32> {
    digits(text, 4)
}

fn one_of(names: &[&str], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn month(name: &str) -> Option<u32> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    u32::try_from(index + 1).ok()
}

/// `HH:MM:SS` as seconds since midnight. Accepts a leap second (`:60`) as RFC 9110 allows.
fn time_of_day(text: &str) -> Option<u32> {
    let mut parts = text.split(':');
    let hour = two_digits(parts.next()?)?;
    let minute = two_digits(parts.next()?)?;
    let second = two_digits(parts.next()?)?;
    if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(hour * 3600 + minute * 60 + second)
}

fn to_unix(year: u32, month: u32, day: u32, seconds: u32) -> Option<i64> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + i64::from(seconds))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(value: &str) -> CacheControl {
        CacheControl::parse([value])
    }

    #[test]
    fn empty_and_unknown_directives() {
        assert_eq!(cc(""), CacheControl::default());
        assert_eq!(cc(" , ,, "), CacheControl::default());
        assert_eq!(cc("immutable, foo=bar"), CacheControl::default());
    }

    #[test]
    fn boolean_directives() {
        let parsed = cc("no-store, no-cache, private, public, must-revalidate, proxy-revalidate");
        assert!(parsed.no_store);
        assert!(parsed.no_cache);
        assert!(parsed.private);
        assert!(parsed.public);
        assert!(parsed.must_revalidate);
        assert!(parsed.proxy_revalidate);
    }

    #[test]
    fn names_are_case_insensitive() {
        let parsed = cc("No-Store, MAX-AGE=5");
        assert!(parsed.no_store);
        assert_eq!(parsed.max_age, Some(5));
    }

    #[test]
    fn delta_seconds_directives() {
        let parsed = cc("max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(parsed.max_age, Some(60));
        assert_eq!(parsed.s_maxage, Some(120));
        assert_eq!(parsed.stale_while_revalidate, Some(30));
        assert_eq!(parsed.stale_if_error, Some(600));
    }

    #[test]
    fn whitespace_around_tokens() {
        let parsed = cc("  public ,max-age = 60 ");
        assert!(parsed.public);
        assert_eq!(parsed.max_age, Some(60));
    }

    #[test]
    fn quoted_arguments_are_accepted() {
        assert_eq!(cc("max-age=\"60\"").max_age, Some(60));
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        let parsed = cc("private=\"set-cookie, x-foo\", max-age=10");
        assert!(parsed.private);
        assert_eq!(parsed.max_age, Some(10));
        let parsed = cc("no-cache=\"a,b\"");
        assert!(parsed.no_cache);
        assert_eq!(parsed.max_age, None);
    }

    #[test]
    fn invalid_arguments_mean_zero() {
        assert_eq!(cc("max-age=abc").max_age, Some(0));
        assert_eq!(cc("max-age").max_age, Some(0));
        assert_eq!(cc("max-age=-5").max_age, Some(0));
        assert_eq!(cc("s-maxage=1.5").s_maxage, Some(0));
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(cc("max-age=10, max-age=20").max_age, Some(10));
        let parsed = CacheControl::parse(["max-age=10", "max-age=20, public"]);
        assert_eq!(parsed.max_age, Some(10));
        assert!(parsed.public);
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(
            cc("max-age=99999999999999999999").max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(parse_delta_seconds("2147483647"), Some(2_147_483_647));
        assert_eq!(parse_delta_seconds("2147483648"), Some(DELTA_SECONDS_MAX));
    }

    #[test]
    fn delta_seconds_rejects_non_digits() {
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("+5"), None);
        assert_eq!(parse_delta_seconds("5s"), None);
        assert_eq!(parse_delta_seconds(" 7 "), Some(7));
        assert_eq!(parse_age("0"), Some(0));
        assert_eq!(parse_age("x"), None);
    }

    #[test]
    fn imf_fixdate() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799)
        );
        assert_eq!(
            parse_http_date("Fri, 01 Jan 2038 00:00:00 GMT"),
            Some(2_145_916_800)
        );
    }

    #[test]
    fn obsolete_forms() {
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Saturday, 01-Jan-22 00:00:00 GMT"),
            Some(1_640_995_200)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sat Jan 22 00:00:00 2022"),
            Some(1_642_809_600)
        );
    }

    #[test]
    fn invalid_dates() {
        for bad in [
            "",
            "0",
            "-1",
            "tomorrow",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
            "Sun Nov \u{e9}6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_in_dates_are_case_insensitive() {
        for odd in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "sunday, 06-nov-94 08:49:37 Gmt",
            "sun nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(odd), Some(784111777), "{odd:?}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
