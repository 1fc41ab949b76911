//! The Redis store: shared by every gateway instance, surviving restarts.
//!
//! Redis is an accelerator here, never a dependency of an answer: every operation has a short
//! timeout, and after a failure a breaker skips Redis for a moment, so a dead or hung Redis costs
//! at most one timeout to the few requests that meet it, then nothing until it is back. The
//! connection is made in the background: the gateway starts and serves while Redis is down, and
//! begins caching as soon as it answers. `redis::aio::ConnectionManager` reconnects after a lost
//! connection by itself.
//!
//! A hit costs two round trips: the entry, then the tokens of its tags (whose names the entry
//! holds). A store costs two: the tags' tokens (creating missing ones), then the entry. A purge
//! replaces its tags' tokens, then announces itself on `<prefix>invalidations` (pub/sub) for
//! the instances' memory tiers ([`super::tiered`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::entry::Entry;
use super::key::{ObjectKey, TagId};
use super::tags::{self, Token};
use super::{Found, NewEntry, Standing, Storage, StoreError, StoreHealth, StoreOutcome, now_ms};
use crate::config::RedisConfig;

/// How long a purge marker outlives the purge when no entry extends it: fills in flight at the
/// time of a purge must find the marker, and they rarely take more than minutes.
const PURGE_MARKER_TTL_SECS: u64 = 86_400;
/// How long Redis is skipped after a failure before one request probes it again.
const BREAKER_OPEN_MS: u64 = 1_000;
/// Extra life of a tag token beyond the entries that reference it.
const TOKEN_MARGIN_SECS: u64 = 60;

/// Replaces a tag's token atomically (a soft purge keeps the time of the last hard purge), and
/// takes the count of entries stored with the tag since its previous purge.
const PURGE_SCRIPT: &str = r#"
local hard = ARGV[1]
if ARGV[2] == '1' then
  hard = '0'
  local old = redis.call('GET', KEYS[1])
  if old then hard = string.match(old, '^(%d+)%.') or '0' end
end
redis.call('SET', KEYS[1], hard .. '.' .. ARGV[1] .. '.' .. ARGV[3], 'EX', ARGV[4])
return tonumber(redis.call('GETDEL', KEYS[2]) or '0')
"#;

pub struct RedisStore {
    shared: Arc<Shared>,
    purge_script: redis::Script,
    client: redis::Client,
    /// Identifies this process in invalidation messages, so it can skip its own.
    instance: u64,
}

/// An invalidation as announced on the `<prefix>invalidations` channel, for every instance's
/// in-process state (the memory tier): `<instance>:<h|s>:<tag>,<tag>...` (tags in hex).
#[derive(Debug, PartialEq, Eq)]
pub struct Announcement {
    pub instance: u64,
    pub soft: bool,
    pub tags: Vec<TagId>,
}

impl Announcement {
    pub fn encode(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|t| t.to_string()).collect();
        let kind = if self.soft { "s" } else { "h" };
        format!("{:x}:{kind}:{}", self.instance, tags.join(","))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let soft = match parts.next()? {
            "s" => true,
            "h" => false,
            _ => return None,
        };
        let tags = parts
            .next()?
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|hex| {
                let mut id = [0u8; 16];
                if hex.len() != 32 {
                    return None;
                }
                for (i, byte) in id.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(super::key::Digest(id))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            instance,
            soft,
            tags,
        })
    }
}

struct Shared {
    prefix: String,
    timeout: Duration,
    conn: OnceLock<ConnectionManager>,
    /// The breaker: 0 when closed; else Redis is skipped until this time (ms since the epoch).
    open_until_ms: AtomicU64,
    /// Last error, for `/health` and for logging once per change.
    last_error: std::sync::Mutex<Option<String>>,
    failing: AtomicBool,
    /// Failed operations since start (timeouts, refused connections, error replies such as
    /// OOM, READONLY or NOAUTH).
    errors: AtomicU64,
    /// When the current error was last logged (ms since the epoch).
    logged_at_ms: AtomicU64,
}

/// A persisting error is logged again at most this often.
const LOG_INTERVAL_MS: u64 = 60_000;

impl RedisStore {
    /// Creates the store and starts connecting in the background; never fails and never waits.
    pub fn start(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())?;
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            conn: OnceLock::new(),
            open_until_ms: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(Some("connecting".into())),
            // Failing until the first answer: `/health` says "connecting" until then.
            failing: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            logged_at_ms: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        let connect_timeout = config.timeout.max(Duration::from_millis(500));
        tokio::spawn(async move {
            let manager_config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(connect_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            loop {
                let Some(shared) = weak.upgrade() else { return };
                match client
                    .get_connection_manager_with_config(manager_config.clone())
                    .await
                {
                    Ok(conn) => {
                        let _ = shared.conn.set(conn);
                        shared.recovered();
                        tracing::info!("redis connected");
                        return;
                    }
                    Err(e) => shared.failed(&StoreError::Redis(e)),
                }
                drop(shared);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(Self {
            shared,
            purge_script: redis::Script::new(PURGE_SCRIPT),
            client: redis::Client::open(config.url.as_str())?,
            instance: rand::random(),
        })
    }

    /// The client, for a connection of its own (the invalidation subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// This process's id in invalidation announcements.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The channel invalidations are announced on.
    pub fn channel(&self) -> String {
        format!("{}invalidations", self.shared.prefix)
    }

    fn obj_key(&self, key: &ObjectKey) -> String {
        format!("{}obj:{}:{}", self.shared.prefix, key.route, key.digest)
    }

    fn tag_key(&self, tag: &TagId) -> String {
        format!("{}tag:{}", self.shared.prefix, tag)
    }

    fn count_key(&self, tag: &TagId) -> String {
        format!("{}cnt:{}", self.shared.prefix, tag)
    }

    /// The connection, unless Redis is unconnected or the breaker is open.
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .shared
            .conn
            .get()
            .ok_or(StoreError::Unavailable("not connected"))?;
        if !self.shared.admit() {
            return Err(StoreError::Unavailable("breaker open after a failure"));
        }
        Ok(conn.clone())
    }

    /// Runs `op` with the timeout, feeding the breaker.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.shared.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.shared.timeout)),
        };
        match &result {
            Ok(_) => self.shared.recovered(),
            Err(e) => self.shared.failed(e),
        }
        result
    }

    fn unlink_later(&self, key: String) {
        if let Ok(mut conn) = self.conn() {
            tokio::spawn(async move {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(key).query_async(&mut conn).await;
            });
        }
    }
}

impl Shared {
    fn failed(&self, e: &StoreError) {
        let now = now_ms();
        self.open_until_ms
            .store(now + BREAKER_OPEN_MS, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut msg = e.to_string();
        // A pipeline repeats its error once per command: keep the message readable.
        if msg.len() > 240 {
            let mut cut = 240;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str("...");
        }
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // Log once per change of error, and once a minute while it persists; not once per
        // request.
        let changed = !self.failing.swap(true, Ordering::Relaxed) || last.as_deref() != Some(&msg);
        if changed || now >= self.logged_at_ms.load(Ordering::Relaxed) + LOG_INTERVAL_MS {
            self.logged_at_ms.store(now, Ordering::Relaxed);
            tracing::warn!(
                error = %msg,
                errors = self.errors.load(Ordering::Relaxed),
                "redis failing; requests go to the upstream uncached"
            );
        }
        *last = Some(msg);
    }

    /// Called after every successful operation: while Redis is healthy it costs one relaxed
    /// load, no write to a shared cache line.
    fn recovered(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            self.open_until_ms.store(0, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!("redis answering; caching on");
        }
    }

    /// The breaker. Closed (0): every request uses Redis. Open: none does until the window
    /// ends; then exactly one request probes (it wins the compare-exchange that opens the next
    /// window), so a hung Redis costs one timeout per window, not one per request.
    fn admit(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = now_ms();
        now >= until
            && self
                .open_until_ms
                .compare_exchange(
                    until,
                    now + BREAKER_OPEN_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

impl Storage for RedisStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        let mut conn = self.conn()?;
        let obj_key = self.obj_key(key);
        let value: Option<Vec<u8>> = self
            .guarded(redis::cmd("GET").arg(&obj_key).query_async(&mut conn))
            .await?;
        let Some(value) = value else { return Ok(None) };
        let entry = match Entry::decode(Bytes::from(value)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(key = %obj_key, error = %e, "deleting a corrupt cache entry");
                self.unlink_later(obj_key);
                return Ok(None);
            }
        };
        let tag_keys: Vec<String> = entry.tags.iter().map(|(t, _)| self.tag_key(t)).collect();
        let current: Vec<Option<Vec<u8>>> = if tag_keys.is_empty() {
            Vec::new()
        } else {
            self.guarded(redis::cmd("MGET").arg(&tag_keys).query_async(&mut conn))
                .await?
        };
        let current: Vec<Option<Token>> = current
            .iter()
            .map(|v| v.as_deref().and_then(Token::decode))
            .collect();
        let recorded: Vec<Token> = entry.tags.iter().map(|(_, t)| *t).collect();
        match tags::standing(&recorded, &current, entry.meta.fill_started_us) {
            Standing::Invalid => {
                self.unlink_later(obj_key);
                Ok(None)
            }
            standing => Ok(Some(Found { entry, standing })),
        }
    }

    async fn store(&self, key: &ObjectKey, new: NewEntry) -> Result<StoreOutcome, StoreError> {
        let mut conn = self.conn()?;
        let life = new.meta.storage_lifetime_secs().max(1);
        let token_life = life + TOKEN_MARGIN_SECS;

        // Read each tag's token, creating it where missing, and make it outlive this entry.
        let fresh: Vec<Token> = new.tags.iter().map(|_| Token::new_unpurged()).collect();
        let mut pipe = redis::pipe();
        for (tag, token) in new.tags.iter().zip(&fresh) {
            let k = self.tag_key(tag);
            pipe.cmd("SET")
                .arg(&k)
                .arg(token.encode())
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(token_life);
            pipe.cmd("EXPIRE")
                .arg(&k)
                .arg(token_life)
                .arg("GT")
                .ignore();
            // Count the entry for the purge's answer; the counter lives as long as the token.
            let c = self.count_key(tag);
            pipe.cmd("INCR").arg(&c).ignore();
            pipe.cmd("EXPIRE")
                .arg(&c)
                .arg(token_life)
                .arg("NX")
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(&c)
                .arg(token_life)
                .arg("GT")
                .ignore();
        }
        let previous: Vec<Option<Vec<u8>>> = if new.tags.is_empty() {
            Vec::new()
        } else {
            self.guarded(pipe.query_async(&mut conn)).await?
        };
        let mut tokens = Vec::with_capacity(fresh.len());
        for (prev, fresh) in previous.iter().zip(fresh) {
            match prev {
                None => tokens.push(fresh),
                Some(bytes) => match Token::decode(bytes) {
                    Some(t) => tokens.push(t),
                    // A token we cannot read: refuse rather than guess.
                    None => return Ok(StoreOutcome::PurgedDuringFill),
                },
            }
        }
        if tags::may_store(&tokens, new.meta.fill_started_us).is_err() {
            return Ok(StoreOutcome::PurgedDuringFill);
        }

        let entry = Entry {
            status: new.status,
            headers: new.headers,
            body: new.body,
            meta: new.meta,
            tags: new.tags.into_iter().zip(tokens).collect(),
        };
        let value = entry.encode();
        let obj_key = self.obj_key(key);
        let _: () = self
            .guarded(
                redis::cmd("SET")
                    .arg(&obj_key)
                    .arg(value)
                    .arg("EX")
                    .arg(life)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(StoreOutcome::Stored)
    }

    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let now = tags::now_us();
        let mut affected = 0u64;
        for tag in tags {
            let mut invocation = self.purge_script.key(self.tag_key(tag));
            invocation
                .key(self.count_key(tag))
                .arg(now)
                .arg(if soft { "1" } else { "0" })
                .arg(format!("{:x}", rand::random::<u64>()))
                .arg(PURGE_MARKER_TTL_SECS);
            let n: i64 = self.guarded(invocation.invoke_async(&mut conn)).await?;
            affected += n.max(0) as u64;
        }
        // Tell every instance, for its in-process state. The purge above is what makes the
        // entries invalid everywhere; a lost announcement only delays an in-process tier,
        // which drops everything when its subscription reconnects.
        let announcement = Announcement {
            instance: self.instance,
            soft,
            tags: tags.to_vec(),
        };
        let _: i64 = self
            .guarded(
                redis::cmd("PUBLISH")
                    .arg(self.channel())
                    .arg(announcement.encode())
                    .query_async(&mut conn),
            )
            .await?;
        Ok(affected)
    }

    fn health(&self) -> StoreHealth {
        let detail = self
            .shared
            .last_error
            .lock()
            .map(|l| l.clone())
            .unwrap_or(None);
        StoreHealth {
            kind: "redis",
            up: self.shared.conn.get().is_some() && detail.is_none(),
            detail,
            memory_tier: None,
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;

    #[test]
    fn announcements_round_trip_and_refuse_garbage() {
        let a = Announcement {
            instance: 0xdead_beef,
            soft: true,
            tags: vec![tag_id("repo:1"), tag_id("all-repos")],
        };
        assert_eq!(Announcement::decode(&a.encode()), Some(a));
        let empty = Announcement {
            instance: 1,
            soft: false,
            tags: vec![],
        };
        assert_eq!(Announcement::decode(&empty.encode()), Some(empty));
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
