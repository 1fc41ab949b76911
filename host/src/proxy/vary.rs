//! The origin's `Vary` (RFC 9111 section 4.1): one URL, several stored responses, chosen by
//! request header fields.
//!
//! The policy's key names the object; the origin's `Vary` says which request fields select a
//! variant of it. When a response to be stored varies, Larder stores a *Vary marker* under the
//! policy's key (an entry that holds only the list of field names) and the response itself
//! under a *variant key*: the policy's key plus the normalised values of those fields in the
//! request. A lookup that finds a marker derives the variant key from its own request and
//! looks that up. The marker and every variant carry the same tags, so a purge of the key or
//! any tag reaches all of them. `Vary: *` is never stored (no request can match it).
//!
//! Normalisation (section 4.1 allows it): values of a repeated field are joined with `, `,
//! whitespace around commas is dropped, `Accept-Encoding` becomes the sorted set of the
//! codings it accepts (`gzip, br` and `br,gzip;q=1` select the same variant, `gzip;q=0` none),
//! and `Accept-Language` the sorted, lower-cased list of its ranges (`en, de` = `De, EN`).

use http::header::{self, HeaderMap, HeaderName};

use crate::store::ObjectKey;

/// What a response's `Vary` says.
#[derive(Debug, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary`: one response for everyone.
    None,
    /// `Vary: *`: never served from the cache.
    Star,
    /// The request fields that select the variant, lower-case, sorted, without duplicates.
    Fields(Vec<HeaderName>),
}

impl Vary {
    /// Reads the `Vary` fields of `headers` (a response, or a Vary marker).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut fields = Vec::new();
        for value in headers.get_all(header::VARY) {
            let Ok(value) = value.to_str() else {
                // A field name is a token: anything else cannot be matched, like `*`.
                return Vary::Star;
            };
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    return Vary::Star;
                }
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => fields.push(name),
                    Err(_) => return Vary::Star,
                }
            }
        }
        if fields.is_empty() {
            return Vary::None;
        }
        fields.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        fields.dedup();
        Vary::Fields(fields)
    }
}

/// The key of the variant of `base` that `request` selects, given the fields it varies on.
pub fn variant_key(base: &ObjectKey, fields: &[HeaderName], request: &HeaderMap) -> ObjectKey {
    keyed(base, fields, |f| normalised(f, request))
}

/// The variant of `base` whose selecting `fields` have the values `value_of` gives.
fn keyed(
    base: &ObjectKey,
    fields: &[HeaderName],
    value_of: impl Fn(&HeaderName) -> String,
) -> ObjectKey {
    let values: Vec<String> = fields.iter().map(value_of).collect();
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(HeaderName::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    base.variant(&pairs)
}

/// For a response that varies on `Accept-Language`: the key of its variant *in language
/// `lang`*. A response in `de` is also stored under it, and a request whose first choice is
/// `de` looks it up when its own variant is missing: `fr;q=0.5, de` finds what `en, de`
/// stored, since an origin that has `de` answers a client preferring `de` with it. `None` when
/// the response does not vary on `Accept-Language`.
pub fn language_key(
    base: &ObjectKey,
    fields: &[HeaderName],
    request: &HeaderMap,
    lang: &str,
) -> Option<ObjectKey> {
    if !fields.contains(&header::ACCEPT_LANGUAGE) {
        return None;
    }
    Some(keyed(base, fields, |f| {
        if *f == header::ACCEPT_LANGUAGE {
            format!("lang:{lang}")
        } else {
            normalised(f, request)
        }
    }))
}

/// The request's most preferred language: the `Accept-Language` range with the highest weight
/// (the first of equals), lower-case; never `*`.
pub fn preferred_language(request: &HeaderMap) -> Option<String> {
    let mut best: Option<(f32, String)> = None;
    for value in request.get_all(header::ACCEPT_LANGUAGE) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if range.is_empty() || range == "*" || q <= 0.0 {
                continue;
            }
            if best.as_ref().is_none_or(|(bq, _)| q > *bq) {
                best = Some((q, range));
            }
        }
    }
    best.map(|(_, range)| range)
}

/// The one language a response is in (`Content-Language: de`), lower-case; `None` for none
/// or several.
pub fn content_language(response: &HeaderMap) -> Option<String> {
    let mut values = response.get_all(header::CONTENT_LANGUAGE).iter();
    let value = values.next()?.to_str().ok()?.trim();
    (values.next().is_none() && !value.is_empty() && !value.contains(','))
        .then(|| value.to_ascii_lowercase())
}

/// The header of a Vary marker: the fields, comma-separated.
pub fn marker_header(fields: &[HeaderName]) -> http::HeaderValue {
    let joined = fields
        .iter()
        .map(HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    http::HeaderValue::from_str(&joined).expect("header names make a valid header value")
}

/// The normalised value of `field` in `request`; absent and empty are the same.
pub(crate) fn normalised(field: &HeaderName, request: &HeaderMap) -> String {
    let mut items: Vec<String> = Vec::new();
    for value in request.get_all(field) {
        let value = String::from_utf8_lossy(value.as_bytes());
        items.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    if *field == header::ACCEPT_LANGUAGE {
        // Language ranges are case-insensitive, and their order carries no preference that
        // their weights do not.
        items = items
            .iter()
            .map(|i| i.to_ascii_lowercase().replace(' ', ""))
            .collect();
        items.sort_unstable();
    } else if *field == header::ACCEPT_ENCODING {
        items = items
            .iter()
            .filter_map(|item| accepted_coding(item))
            .collect();
        items.sort_unstable();
        items.dedup();
    }
    items.join(",")
}

/// The coding of one `Accept-Encoding` item, lower-case, unless its weight is zero.
fn accepted_coding(item: &str) -> Option<String> {
    let mut parts = item.split(';');
    let coding = parts.next()?.trim().to_ascii_lowercase();
    if coding.is_empty() {
        return None;
    }
    for param in parts {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
            && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        {
            return None;
        }
    }
    Some(coding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn vary_fields_are_sorted_and_deduplicated() {
        let v = Vary::of(&headers(&[
            ("vary", "Accept-Language, accept"),
            ("vary", "ACCEPT"),
        ]));
        assert_eq!(
            v,
            Vary::Fields(vec![header::ACCEPT, header::ACCEPT_LANGUAGE])
        );
        assert_eq!(Vary::of(&headers(&[("vary", "accept, *")])), Vary::Star);
        assert_eq!(Vary::of(&headers(&[("vary", " , ")])), Vary::None);
        assert_eq!(Vary::of(&HeaderMap::new()), Vary::None);
    }

    fn variant(req: &[(&'static str, &'static str)], fields: &[HeaderName]) -> ObjectKey {
        let base = ObjectKey::derive("r", &["/x", ""], &[]);
        variant_key(&base, fields, &headers(req))
    }

    #[test]
    fn variants_differ_by_the_selecting_fields_only() {
        let f = [header::ACCEPT];
        let json = variant(&[("accept", "application/json")], &f);
        let html = variant(&[("accept", "text/html")], &f);
        assert_ne!(json.digest, html.digest);
        assert_eq!(json.implicit_tags, html.implicit_tags);
        assert_eq!(
            json.digest,
            variant(&[("accept", "application/json"), ("cookie", "a=1")], &f).digest
        );
        // Absent and empty select the same variant; the base key is not a variant.
        assert_eq!(
            variant(&[], &f).digest,
            variant(&[("accept", "")], &f).digest
        );
        assert_ne!(
            variant(&[], &f).digest,
            ObjectKey::derive("r", &["/x", ""], &[]).digest
        );
    }

    #[test]
    fn accept_encoding_is_normalised_to_the_accepted_codings() {
        let f = [header::ACCEPT_ENCODING];
        let a = variant(&[("accept-encoding", "gzip, br")], &f);
        let b = variant(&[("accept-encoding", "BR,gzip;q=1")], &f);
        let c = variant(
            &[("accept-encoding", "br"), ("accept-encoding", "gzip")],
            &f,
        );
        let d = variant(&[("accept-encoding", "br, gzip;q=0, gzip")], &f);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.digest, c.digest);
        assert_eq!(a.digest, d.digest);
        let gzip_refused = variant(&[("accept-encoding", "br, gzip;q=0")], &f);
        assert_ne!(a.digest, gzip_refused.digest);
    }

    #[test]
    fn accept_language_ignores_case_and_order() {
        let f = [header::ACCEPT_LANGUAGE];
        assert_eq!(
            variant(&[("accept-language", "en, de")], &f).digest,
            variant(&[("accept-language", "De,EN")], &f).digest
        );
        assert_ne!(
            variant(&[("accept-language", "en")], &f).digest,
            variant(&[("accept-language", "de")], &f).digest
        );
    }

    #[test]
    fn a_request_finds_a_stored_language_it_prefers_most() {
        let f = [header::ACCEPT_LANGUAGE];
        let base = ObjectKey::derive("r", &["/x", ""], &[]);
        let stored_in = |lang: &str| language_key(&base, &f, &HeaderMap::new(), lang).unwrap();
        let req = headers(&[("accept-language", "fr;q=0.5, DE;q=1.0")]);
        let wanted = preferred_language(&req).unwrap();
        assert_eq!(wanted, "de");
        assert_eq!(
            language_key(&base, &f, &req, &wanted).unwrap().digest,
            stored_in("de").digest
        );
        assert_eq!(
            preferred_language(&headers(&[("accept-language", "en, de")])).as_deref(),
            Some("en")
        );
        assert_eq!(
            preferred_language(&headers(&[("accept-language", "*, de;q=0")])),
            None
        );
        assert!(language_key(&base, &[header::ACCEPT], &req, "de").is_none());
        assert_eq!(
            content_language(&headers(&[("content-language", "De")])).as_deref(),
            Some("de")
        );
        assert_eq!(
            content_language(&headers(&[("content-language", "de, en")])),
            None
        );
    }

    #[test]
    fn whitespace_around_commas_does_not_matter() {
        let f = [header::ACCEPT_LANGUAGE];
        assert_eq!(
            variant(&[("accept-language", "en,  fr")], &f).digest,
            variant(&[("accept-language", "en, fr")], &f).digest
        );
    }
}
