//! Storage keys and tag ids: what a policy's key parts and tags become before they reach a store.
//!
//! Everything that a client can influence (path params, query, header values, tag names) is
//! hashed, never pasted into a Redis key: a client cannot craft a key that collides with another
//! route's, spans a Redis hash slot it chooses, or fills Redis with long key names. What stays
//! readable is what the operator wrote: the route name. `redis-cli --scan --pattern
//! 'larder:obj:repository:*'` lists the cached entries of the `repository` route.
//!
//! Hashing is length-delimited and domain-separated (`obj`, `tag`, `key`, `prefix`), so
//! `["ab","c"]` and `["a","bc"]` differ, and a tag named like a key part cannot collide with it.

use std::fmt;

/// A 128-bit digest, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The identity of something an entry can be invalidated by: an explicit tag, its exact key, or
/// a prefix of its key parts.
pub type TagId = Digest;

/// Collects the length-delimited fields and hashes them in one call when finished. Hashing the
/// concatenation gives the same digest as streaming it into a `blake3::Hasher`, without that
/// hasher's 2 KB state being set up and copied for every key and tag of every request.
struct Hasher(Vec<u8>);

impl Hasher {
    fn new(domain: &str) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(domain.as_bytes());
        buf.push(0);
        Self(buf)
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn finish(&self) -> Digest {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(&self.0).as_bytes()[..16]);
        Digest(out)
    }
}

/// The tag id of an explicit tag (`repo:1`); tags are global across routes.
pub fn tag_id(tag: &str) -> TagId {
    Hasher::new("tag").field(tag.as_bytes()).finish()
}

/// The tag id every variant of the entry at exactly `parts` on `route` carries.
pub fn key_tag(route: &str, parts: &[impl AsRef<str>]) -> TagId {
    let mut h = Hasher::new("key");
    h.field(route.as_bytes());
    for p in parts {
        h.field(p.as_ref().as_bytes());
    }
    h.finish()
}

/// The tag id entries on `route` whose parts start with `parts` carry.
pub fn prefix_tag(route: &str, parts: &[impl AsRef<str>]) -> TagId {
    let mut h = Hasher::new("prefix");
    h.field(route.as_bytes());
    for p in parts {
        h.field(p.as_ref().as_bytes());
    }
    h.finish()
}

/// Where an object lives and what invalidates it implicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    /// The route name: the readable namespace.
    pub route: String,
    /// Digest of the key parts and the values of the vary headers.
    pub digest: Digest,
    /// Implicit tags: the exact key, and each proper prefix of the parts.
    pub implicit_tags: Vec<TagId>,
}

impl ObjectKey {
    /// Derives the key for `parts` on `route`, varying on `vary` = (header name, value) pairs.
    pub fn derive(route: &str, parts: &[impl AsRef<str>], vary: &[(&str, &str)]) -> Self {
        let mut h = Hasher::new("obj");
        h.field(route.as_bytes());
        h.field(&(parts.len() as u64).to_le_bytes());
        for p in parts {
            h.field(p.as_ref().as_bytes());
        }
        for (name, value) in vary {
            h.field(name.as_bytes()).field(value.as_bytes());
        }
        let mut implicit_tags = Vec::with_capacity(parts.len());
        implicit_tags.push(key_tag(route, parts));
        for n in 1..parts.len() {
            implicit_tags.push(prefix_tag(route, &parts[..n]));
        }
        Self {
            route: route.to_owned(),
            digest: h.finish(),
            implicit_tags,
        }
    }

    /// The key of one variant of this object, selected by (header name, value) pairs: a
    /// different digest, the same implicit tags (a purge of the object reaches every variant).
    pub fn variant(&self, selecting: &[(&str, &str)]) -> Self {
        let mut h = Hasher::new("variant");
        h.field(&self.digest.0);
        for (name, value) in selecting {
            h.field(name.as_bytes()).field(value.as_bytes());
        }
        Self {
            route: self.route.clone(),
            digest: h.finish(),
            implicit_tags: self.implicit_tags.clone(),
        }
    }
}

/// The tags that a key or prefix invalidation on `route` touches.
///
/// A prefix that is the whole key also matches the entry stored under exactly that key, whose
/// implicit tags hold no prefix of its full length; hence both ids.
pub fn prefix_invalidation(route: &str, parts: &[impl AsRef<str>]) -> [TagId; 2] {
    [prefix_tag(route, parts), key_tag(route, parts)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable() {
        // Entries already in Redis stay reachable across versions: these values must not
        // change (they are BLAKE3 of the domain, a zero byte and the length-delimited fields).
        let mut streamed = blake3::Hasher::new();
        streamed.update(b"tag\0");
        streamed.update(&6u64.to_le_bytes());
        streamed.update(b"repo:1");
        assert_eq!(tag_id("repo:1").0, streamed.finalize().as_bytes()[..16]);
    }

    #[test]
    fn parts_are_length_delimited() {
        let a = ObjectKey::derive("r", &["ab", "c"], &[]);
        let b = ObjectKey::derive("r", &["a", "bc"], &[]);
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn routes_namespace_keys() {
        let a = ObjectKey::derive("r1", &["repo", "1"], &[]);
        let b = ObjectKey::derive("r2", &["repo", "1"], &[]);
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.implicit_tags, b.implicit_tags);
    }

    #[test]
    fn vary_values_select_variants_but_share_the_key_tag() {
        let json = ObjectKey::derive("r", &["x"], &[("accept", "application/json")]);
        let html = ObjectKey::derive("r", &["x"], &[("accept", "text/html")]);
        assert_ne!(json.digest, html.digest);
        assert_eq!(json.implicit_tags, html.implicit_tags);
    }

    #[test]
    fn implicit_tags_cover_the_key_and_each_proper_prefix() {
        let k = ObjectKey::derive("r", &["repo", "1", "view"], &[]);
        assert_eq!(
            k.implicit_tags,
            vec![
                key_tag("r", &["repo", "1", "view"]),
                prefix_tag("r", &["repo"]),
                prefix_tag("r", &["repo", "1"]),
            ]
        );
        // A prefix invalidation of repo 1 reaches this entry, one of repo 10 does not.
        let hits = |p: &[&str]| {
            prefix_invalidation("r", p)
                .iter()
                .any(|t| k.implicit_tags.contains(t))
        };
        assert!(hits(&["repo", "1"]));
        assert!(hits(&["repo", "1", "view"]));
        assert!(!hits(&["repo", "10"]));
        assert!(!hits(&["repo", "1", "view", "more"]));
    }

    #[test]
    fn tag_ids_differ_from_key_tags_of_the_same_text() {
        assert_ne!(tag_id("repo:1"), key_tag("repo:1", &[] as &[&str]));
    }
}
