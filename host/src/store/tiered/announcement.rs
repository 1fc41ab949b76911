//! The invalidation announcement: what the Redis store publishes on `<prefix>invalidations` after
//! every purge, and what each instance's memory tier reads from it.
//!
//! Pub/sub is how a purge made on one instance reaches every other instance's memory tier; the
//! acknowledgement it asks for is how the purging instance knows that every tier has applied it
//! before it answers (see `docs/invalidation.md`). Producer ([`crate::store::redis`]) and
//! consumer ([`super`]) share this one definition, so they cannot drift apart.
//!
//! The text is a wire format between instances, which may run different versions during a
//! rolling upgrade: an instance must read what the previous version writes, and the previous
//! version must read (and apply) what this one writes. The tests below pin both directions.

use crate::store::TagId;

/// The first half of the pseudo-tag that carries an announcement's ack id (see
/// [`Announcement`]).
const ACK_MARK: &str = "ac4ac4ac4ac4ac4a";

/// An invalidation as announced on the `<prefix>invalidations` channel, for every instance's
/// in-process state (the memory tier): `<instance>:<h|s>:<tag>,<tag>...` (tags in hex), or
/// `<instance>:f:` when every entry was dropped (a pending set that overflowed). Every
/// subscriber that applied it counts itself on `<prefix>ack:<ack>`, so the announcer knows when
/// every tier has it (the Redis store's `await_acks`). The ack id travels as a last pseudo-tag,
/// `ACK_MARK` followed by the id in 16 hex digits: an instance of an earlier version reads it
/// as one more tag (which no entry carries) and still applies the announcement, so a rolling
/// upgrade loses no purge.
#[derive(Debug, PartialEq, Eq)]
pub struct Announcement {
    pub instance: u64,
    pub soft: bool,
    pub tags: Vec<TagId>,
    /// Every entry is gone: drop everything.
    pub flush: bool,
    /// Where subscribers acknowledge it (0: no acknowledgement asked).
    pub ack: u64,
}

impl Announcement {
    pub fn encode(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|t| t.to_string()).collect();
        let kind = match (self.flush, self.soft) {
            (true, _) => "f",
            (false, true) => "s",
            (false, false) => "h",
        };
        let mut tags = tags.join(",");
        if self.ack != 0 {
            if !tags.is_empty() {
                tags.push(',');
            }
            tags.push_str(&format!("{ACK_MARK}{:016x}", self.ack));
        }
        format!("{:x}:{kind}:{tags}", self.instance)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let (soft, flush) = match parts.next()? {
            "s" => (true, false),
            "h" => (false, false),
            "f" => (false, true),
            _ => return None,
        };
        let mut ack = 0;
        let mut tags = Vec::new();
        for field in parts.next()?.split(',').filter(|t| !t.is_empty()) {
            match field.strip_prefix(ACK_MARK) {
                Some(id) if field.len() == 32 => ack = u64::from_str_radix(id, 16).ok()?,
                _ => tags.push(crate::store::pending::parse_digest(field)?),
            }
        }
        Some(Self {
            instance,
            soft,
            tags,
            flush,
            ack,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;

    fn a_with_ack() -> Announcement {
        Announcement {
            instance: 7,
            soft: false,
            tags: vec![tag_id("repo:1")],
            flush: false,
            ack: 0x1234,
        }
    }

    #[test]
    fn announcements_round_trip_and_refuse_garbage() {
        let a = Announcement {
            instance: 0xdead_beef,
            soft: true,
            tags: vec![tag_id("repo:1"), tag_id("all-repos")],
            flush: false,
            ack: 0xabc,
        };
        assert_eq!(Announcement::decode(&a.encode()), Some(a));
        let empty = Announcement {
            instance: 1,
            soft: false,
            tags: vec![],
            flush: false,
            ack: 0,
        };
        assert_eq!(Announcement::decode(&empty.encode()), Some(empty));
        let flush = Announcement {
            instance: 2,
            soft: false,
            tags: vec![],
            flush: true,
            ack: 0x10,
        };
        assert_eq!(flush.encode(), "2:f:ac4ac4ac4ac4ac4a0000000000000010");
        assert_eq!(Announcement::decode(&flush.encode()), Some(flush));
        // Announcements of an earlier version, without an ack id, are still read...
        assert_eq!(Announcement::decode("2:h:").map(|a| a.ack), Some(0));
        // ...and an earlier version reads ours as tags: every field after the kind is 32 hex
        // digits.
        let ours = a_with_ack().encode();
        let fields = ours.splitn(3, ':').nth(2).unwrap();
        assert!(
            fields
                .split(',')
                .all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        for bad in [
            "",
            "x:h:",
            "1:q:",
            "1:h:abc",
            "1:h:zz000000000000000000000000000000",
        ] {
            assert_eq!(Announcement::decode(bad), None, "{bad:?}");
        }
    }
}
