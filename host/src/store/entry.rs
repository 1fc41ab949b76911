//! A cached response and its compact binary form.
//!
//! Metadata and body travel in one value so a hit is one Redis read. The layout is versioned by
//! its magic; anything that does not decode exactly (truncated, written by another version, by
//! hand) is `Corrupt`, which the caller treats as a miss and deletes, never serves.
//!
//! ```text
//! "LRD2"  flags:u8  status:u16  stored_at_ms:u64  fill_started_us:u64  initial_age:u32
//!         ttl:u32  swr:u32  sie:u32  keep:u32
//!         n_tags:u16   { tag:[u8;16]  token_len:u8 token }*
//!         n_headers:u16 { name_len:u16 name  value_len:u32 value }*
//!         body_len:u64 body                      (flag bit 1 clear)
//!         body_len:u64 zstd_len:u64 zstd(body)   (flag bit 1 set)
//! ```
//! Integers are little-endian. Flag bit 0 marks a Vary marker (see [`EntryMeta::vary_marker`]);
//! bit 1 a body stored zstd-compressed: bodies of 512 bytes or more are, when that saves at
//! least an eighth (analysis JSON shrinks several-fold), which is what lets a deployment's
//! cache fit a 100 MB Redis. Only the Redis value is compressed: hits from the memory store or
//! tier are served as they are.
//! `LRD1` values (written before revalidation and Vary support) decode as `Corrupt`: a miss.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::key::{Digest, TagId};
use super::tags::Token;

const MAGIC: &[u8; 4] = b"LRD2";
const FLAG_VARY_MARKER: u8 = 1;
const FLAG_ZSTD: u8 = 2;
/// Bodies shorter than this are stored as they are.
const COMPRESS_MIN: usize = 512;
const ZSTD_LEVEL: i32 = 3;
/// The longest body a compressed value may claim: a corrupt length must not allocate wildly.
const MAX_BODY: u64 = 1 << 30;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub meta: EntryMeta,
    /// Every tag of the entry with the token it had when the entry was stored.
    pub tags: Vec<(TagId, Token)>,
}

/// Timing facts of a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    /// When the upstream request that produced it started, in microseconds since the epoch.
    pub fill_started_us: u64,
    /// The `Age` the upstream reported, in seconds.
    pub initial_age: u32,
    /// Freshness lifetime in seconds, counted from `stored_at_ms - initial_age`.
    pub ttl: u32,
    /// stale-while-revalidate window in seconds after `ttl`.
    pub stale_while_revalidate: u32,
    /// stale-if-error window in seconds after `ttl`.
    pub stale_if_error: u32,
    /// Seconds after `ttl` during which a stale entry is kept only so that it can be
    /// revalidated with its validators (`ETag`, `Last-Modified`); 0 for entries without any.
    pub keep: u32,
    /// This entry is not a response but a Vary marker: the origin's response for this key
    /// said `Vary`, so the responses live under variant keys derived from the request headers
    /// named in this entry's `vary` header. Its body is empty.
    pub vary_marker: bool,
}

impl EntryMeta {
    /// The entry's current age in seconds at `now_ms`.
    pub fn age(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_at_ms) / 1000 + u64::from(self.initial_age)
    }

    /// Seconds of freshness left at `now_ms` (negative once stale).
    pub fn ttl_left(&self, now_ms: u64) -> i64 {
        i64::from(self.ttl) - self.age(now_ms) as i64
    }

    /// How long the store must keep the entry: fresh life plus the longest stale window.
    pub fn storage_lifetime_secs(&self) -> u64 {
        u64::from(self.ttl.saturating_sub(self.initial_age))
            + u64::from(
                self.stale_while_revalidate
                    .max(self.stale_if_error)
                    .max(self.keep),
            )
    }
}

/// The value could not be decoded; the message says where it stopped making sense.
#[derive(Debug, thiserror::Error)]
#[error("corrupt cache entry: {0}")]
pub struct Corrupt(pub &'static str);

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let header_bytes: usize = self
            .headers
            .iter()
            .map(|(n, v)| 6 + n.as_str().len() + v.len())
            .sum();
        let mut out =
            BytesMut::with_capacity(64 + self.tags.len() * 64 + header_bytes + self.body.len());
        let compressed = (self.body.len() >= COMPRESS_MIN)
            .then(|| zstd_context::compress(&self.body))
            .flatten()
            .filter(|c| c.len() <= self.body.len() - self.body.len() / 8);
        out.put_slice(MAGIC);
        let m = &self.meta;
        let mut flags = 0;
        if m.vary_marker {
            flags |= FLAG_VARY_MARKER;
        }
        if compressed.is_some() {
            flags |= FLAG_ZSTD;
        }
        out.put_u8(flags);
        out.put_u16_le(self.status.as_u16());
        out.put_u64_le(m.stored_at_ms);
        out.put_u64_le(m.fill_started_us);
        out.put_u32_le(m.initial_age);
        out.put_u32_le(m.ttl);
        out.put_u32_le(m.stale_while_revalidate);
        out.put_u32_le(m.stale_if_error);
        out.put_u32_le(m.keep);
        out.put_u16_le(self.tags.len() as u16);
        for (tag, token) in &self.tags {
            out.put_slice(&tag.0);
            let t = token.encode();
            out.put_u8(t.len() as u8);
            out.put_slice(t.as_bytes());
        }
        out.put_u16_le(self.headers.len() as u16);
        for (name, value) in &self.headers {
            out.put_u16_le(name.as_str().len() as u16);
            out.put_slice(name.as_str().as_bytes());
            out.put_u32_le(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.put_u64_le(self.body.len() as u64);
        match &compressed {
            Some(c) => {
                out.put_u64_le(c.len() as u64);
                out.put_slice(c);
            }
            None => out.put_slice(&self.body),
        }
        out.to_vec()
    }

    /// Decodes a value; an uncompressed body is a slice of `value`, not a copy.
    pub fn decode(value: Bytes) -> Result<Self, Corrupt> {
        let mut r = Reader(value);
        if r.take(4, "magic")?.as_ref() != MAGIC {
            return Err(Corrupt("unknown format (magic)"));
        }
        let flags = r.u8()?;
        if flags & !(FLAG_VARY_MARKER | FLAG_ZSTD) != 0 {
            return Err(Corrupt("unknown flags"));
        }
        let status = StatusCode::from_u16(r.u16()?).map_err(|_| Corrupt("status"))?;
        let meta = EntryMeta {
            stored_at_ms: r.u64()?,
            fill_started_us: r.u64()?,
            initial_age: r.u32()?,
            ttl: r.u32()?,
            stale_while_revalidate: r.u32()?,
            stale_if_error: r.u32()?,
            keep: r.u32()?,
            vary_marker: flags & FLAG_VARY_MARKER != 0,
        };
        let n_tags = r.u16()? as usize;
        let mut tags = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            let mut id = [0u8; 16];
            id.copy_from_slice(&r.take(16, "tag")?);
            let len = r.u8()? as usize;
            let token = Token::decode(&r.take(len, "token")?).ok_or(Corrupt("token"))?;
            tags.push((Digest(id), token));
        }
        let n_headers = r.u16()? as usize;
        // A hint only, and bounded: `HeaderMap::with_capacity` panics past 32,768, and a
        // header takes at least 6 bytes of what remains.
        let mut headers = HeaderMap::with_capacity(n_headers.min(r.0.remaining() / 6).min(1024));
        for _ in 0..n_headers {
            let len = r.u16()? as usize;
            let name = HeaderName::from_bytes(&r.take(len, "header name")?)
                .map_err(|_| Corrupt("header name"))?;
            let len = r.u32()? as usize;
            let value = HeaderValue::from_maybe_shared(r.take(len, "header value")?)
                .map_err(|_| Corrupt("header value"))?;
            headers.append(name, value);
        }
        let len = r.u64()?;
        let body = if flags & FLAG_ZSTD != 0 {
            if len > MAX_BODY {
                return Err(Corrupt("body length"));
            }
            let zlen = r.u64()?;
            let z = r.take(
                usize::try_from(zlen).map_err(|_| Corrupt("compressed length"))?,
                "compressed body",
            )?;
            let body =
                zstd_context::decompress(&z, len as usize).ok_or(Corrupt("compressed body"))?;
            if body.len() as u64 != len {
                return Err(Corrupt("compressed body length"));
            }
            Bytes::from(body)
        } else {
            r.take(
                usize::try_from(len).map_err(|_| Corrupt("body length"))?,
                "body",
            )?
        };
        if r.0.has_remaining() {
            return Err(Corrupt("trailing bytes"));
        }
        Ok(Entry {
            status,
            headers,
            body,
            meta,
            tags,
        })
    }

    /// Bytes this entry occupies in the memory store, counted so that the store's budget bounds
    /// the process's memory: the body and header values (copies of their own there), a header
    /// map slot per header, each tag and its token, and the entry's fixed part (its inline
    /// fields, its slot and the cache's bookkeeping). For a small entry the fixed costs are most
    /// of it: a 404 with three headers and three tags weighs about 1.1 KB, not its 85-byte body.
    pub fn weight(&self) -> usize {
        /// A header map slot (name, value, hash, links, index) and the value's allocation.
        const PER_HEADER: usize = 120;
        /// A tag id and its recorded token.
        const PER_TAG: usize = 64;
        /// The entry inline in its reference-counted slot, the memory store's map entry, and
        /// its share of the store's record of recently evicted keys.
        const FIXED: usize = 416;
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + PER_HEADER)
                .sum::<usize>()
            + self.tags.len() * PER_TAG
            + FIXED
    }
}

/// zstd with one compression and one decompression context per thread: making a context costs
/// more than (de)compressing a typical entry.
mod zstd_context {
    use std::cell::RefCell;

    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }

    pub fn compress(data: &[u8]) -> Option<Vec<u8>> {
        COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = zstd::bulk::Compressor::new(super::ZSTD_LEVEL).ok();
            }
            c.as_mut()?.compress(data).ok()
        })
    }

    pub fn decompress(data: &[u8], len: usize) -> Option<Vec<u8>> {
        DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = zstd::bulk::Decompressor::new().ok();
            }
            d.as_mut()?.decompress(data, len).ok()
        })
    }
}

struct Reader(Bytes);

impl Reader {
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, Corrupt> {
        if self.0.remaining() < n {
            return Err(Corrupt(what));
        }
        Ok(self.0.split_to(n))
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1, "truncated")?.get_u8())
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(self.take(2, "truncated")?.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(self.take(4, "truncated")?.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(self.take(8, "truncated")?.get_u64_le())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::key::tag_id;

    pub(crate) fn sample() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Entry {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(br#"{"analysis_version":1}"#),
            meta: EntryMeta {
                stored_at_ms: 1_700_000_000_000,
                fill_started_us: 1_699_999_999_000_000,
                initial_age: 3,
                ttl: 1800,
                stale_while_revalidate: 60,
                stale_if_error: 600,
                keep: 0,
                vary_marker: false,
            },
            tags: vec![(tag_id("repo:1"), Token::new_unpurged())],
        }
    }

    #[test]
    fn an_entry_round_trips() {
        let e = sample();
        let d = Entry::decode(Bytes::from(e.encode())).unwrap();
        assert_eq!(d.status, e.status);
        assert_eq!(d.headers, e.headers);
        assert_eq!(d.body, e.body);
        assert_eq!(d.meta, e.meta);
        assert_eq!(d.tags, e.tags);
    }

    #[test]
    fn every_truncation_is_corrupt_never_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Entry::decode(Bytes::copy_from_slice(&bytes[..len])).is_err(),
                "len {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Entry::decode(Bytes::from(longer)).is_err());
    }

    #[test]
    fn large_bodies_are_stored_compressed_and_come_back_whole() {
        let mut e = sample();
        let json: String = (0..200)
            .map(|i| format!(r#"{{"metric":"complexity","file":"src/m{i}.rs","value":{i}}},"#))
            .collect();
        e.body = Bytes::from(json);
        let encoded = e.encode();
        assert_eq!(encoded[4] & FLAG_ZSTD, FLAG_ZSTD);
        assert!(
            encoded.len() * 4 < e.body.len(),
            "{} vs {}",
            encoded.len(),
            e.body.len()
        );
        let d = Entry::decode(Bytes::from(encoded.clone())).unwrap();
        assert_eq!(d.body, e.body);
        // Every truncation of a compressed value is corrupt too.
        for len in (0..encoded.len()).step_by(7) {
            assert!(Entry::decode(Bytes::copy_from_slice(&encoded[..len])).is_err());
        }
        // Incompressible bodies are stored as they are.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        e.body = Bytes::from(noise);
        assert_eq!(e.encode()[4] & FLAG_ZSTD, 0);
    }

    #[test]
    fn foreign_values_are_corrupt() {
        assert!(Entry::decode(Bytes::from_static(b"hello, world")).is_err());
        let mut flipped = sample().encode();
        flipped[3] = b'9';
        assert!(Entry::decode(Bytes::from(flipped)).is_err());
    }

    #[test]
    fn age_and_ttl_count_from_the_origin() {
        let m = sample().meta;
        assert_eq!(m.age(m.stored_at_ms), 3);
        assert_eq!(m.ttl_left(m.stored_at_ms + 10_000), 1800 - 13);
        assert_eq!(m.storage_lifetime_secs(), 1797 + 600);
    }
}
