//! Stored entries and tag tokens (`store::entry`, `store::tags`), read back from Redis or the
//! memory tier: never a panic on any value (a foreign key, a corrupt or truncated value, a value
//! written by another version), and encode then decode is the identity.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;

use crate::store::key::Digest;
use crate::store::tags::Token;
use crate::store::{Entry, EntryMeta};

/// Entries are encoded with zstd past 512 bytes of body: fewer cases, still seconds.
const CASES: u32 = 500;

fn token() -> impl Strategy<Value = Token> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(hard_us, any_us, nonce, lineage)| Token {
            hard_us,
            any_us,
            nonce,
            lineage,
        },
    )
}

fn entry() -> impl Strategy<Value = Entry> {
    let header = (
        "[a-z][a-z0-9-]{0,12}",
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..40),
    );
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        // Compressible, and long enough to be compressed.
        (any::<u8>(), 512usize..4096).prop_map(|(b, n)| vec![b; n]),
    ];
    let meta = (
        any::<(u64, u64, u32, u32)>(),
        any::<(u32, u32, u32, bool)>(),
    )
        .prop_map(|((a, b, c, d), (e, f, g, h))| EntryMeta {
            stored_at_ms: a,
            fill_started_us: b,
            initial_age: c,
            ttl: d,
            stale_while_revalidate: e,
            stale_if_error: f,
            keep: g,
            vary_marker: h,
        });
    (
        100u16..1000,
        proptest::collection::vec(header, 0..8),
        body,
        meta,
        proptest::collection::vec((any::<[u8; 16]>(), token()), 0..5),
    )
        .prop_map(|(status, headers, body, meta, tags)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    HeaderName::try_from(name).unwrap(),
                    HeaderValue::from_bytes(&value).unwrap(),
                );
            }
            Entry {
                status: StatusCode::from_u16(status).unwrap(),
                headers: map,
                body: Bytes::from(body),
                meta,
                tags: tags.into_iter().map(|(id, t)| (Digest(id), t)).collect(),
            }
        })
}

/// A mutation of a valid value: bytes overwritten, or the value cut or extended.
#[derive(Debug, Clone)]
enum Mutation {
    Set {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    Cut(prop::sample::Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..3))
            .prop_map(|(at, bytes)| Mutation::Set { at, bytes }),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Cut),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn apply(mut value: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        // An earlier cut may have left nothing to overwrite or cut.
        Mutation::Set { .. } | Mutation::Cut(_) if value.is_empty() => {}
        Mutation::Set { at, bytes } => {
            let at = at.index(value.len());
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = value.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        Mutation::Cut(at) => value.truncate(at.index(value.len())),
        Mutation::Append(more) => value.extend_from_slice(more),
    }
    value
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn an_entry_round_trips(e in entry()) {
        let d = Entry::decode(Bytes::from(e.encode())).unwrap();
        prop_assert_eq!(d.status, e.status);
        prop_assert_eq!(&d.headers, &e.headers);
        prop_assert_eq!(&d.body, &e.body);
        prop_assert_eq!(d.meta, e.meta);
        prop_assert_eq!(&d.tags, &e.tags);
    }

    #[test]
    fn arbitrary_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Entry::decode(Bytes::from(value));
    }

    #[test]
    fn corrupted_entries_never_panic(
        e in entry(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let value = mutations.iter().fold(e.encode(), apply);
        let _ = Entry::decode(Bytes::from(value));
    }

    #[test]
    fn a_token_round_trips(t in token()) {
        prop_assert_eq!(Token::decode(t.encode().as_bytes()), Some(t));
    }

    #[test]
    fn arbitrary_tokens_never_panic(
        text in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "[0-9a-f.]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        let _ = Token::decode(&text);
    }
}

/// The offset of the header count in an encoded entry without tags.
fn header_count_offset() -> usize {
    // magic, flags, status, two u64 and five u32 of meta, the tag count.
    4 + 1 + 2 + 8 + 8 + 4 * 5 + 2
}

/// Found while writing `corrupted_entries_never_panic` (which reaches it only rarely in its
/// 500 cases): a header count above `HeaderMap`'s capacity limit (32,768) made the decoder
/// panic in `HeaderMap::with_capacity` instead of calling the value corrupt.
#[test]
fn a_huge_header_count_is_corrupt_not_a_panic() {
    let mut e = crate::store::entry::tests::sample();
    e.tags.clear();
    let mut value = e.encode();
    let at = header_count_offset();
    value[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(Entry::decode(Bytes::from(value)).is_err());
}
