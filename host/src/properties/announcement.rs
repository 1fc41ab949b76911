//! Invalidation announcements (`store::redis::Announcement`), read from the pub/sub channel
//! that any client of the Redis can publish on: never a panic on any message, and encode then
//! decode is the identity (an announcement is applied as it was made).

use proptest::prelude::*;

use super::CASES;
use crate::store::key::Digest;
use crate::store::tiered::Announcement;

fn announcement() -> impl Strategy<Value = Announcement> {
    (
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<[u8; 16]>().prop_map(Digest), 0..6),
        any::<bool>(),
        prop_oneof![Just(0u64), any::<u64>()],
    )
        .prop_map(|(instance, soft, tags, flush, ack)| Announcement {
            instance,
            // A flush carries no tags and is never soft: `f` says it all.
            soft: soft && !flush,
            tags: if flush { Vec::new() } else { tags },
            flush,
            ack,
        })
}

/// Message-like text: the grammar's pieces, sometimes anything.
fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{0,17}:[hsfx]?:([0-9a-fA-F]{0,34},?){0,3}",
        "[0-9a-f]{1,4}:[hs]:ac4ac4ac4ac4ac4a[0-9a-fz]{0,17}",
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn an_announcement_round_trips(a in announcement()) {
        let text = a.encode();
        prop_assert_eq!(Announcement::decode(&text), Some(a), "{}", text);
    }

    #[test]
    fn arbitrary_messages_never_panic(text in message()) {
        if let Some(a) = Announcement::decode(&text) {
            // What decodes, encodes to a message that decodes the same.
            prop_assert_eq!(Announcement::decode(&a.encode()), Some(a));
        }
    }
}
