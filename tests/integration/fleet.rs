//! One AI computation per key across the fleet: three gateway processes share one Redis, and
//! concurrent cold requests spread over them make one upstream request, through a fill lease in
//! Redis. The lease's failures are caused as they happen in production: the holder is killed
//! mid-fill (SIGKILL), Redis is paused (SIGSTOP) during the herd, and a repository is
//! re-analysed while another instance's fill of it is in flight.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use larder_tests::origin::{Origin, OriginConfig};
use larder_tests::process::{self, GatewayProcess};
use larder_tests::redis_server::RedisServer;

/// Every response of a herd, with how long it took.
struct Answer {
    reply: Result<larder_tests::http::Reply, String>,
    took: Duration,
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn ai(repo: u64) -> String {
    format!("/api/v1/repositories/{repo}/ai-features")
}

/// The demo config, with a Redis timeout that two busy cores keep.
fn config() -> String {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .expect("larder.toml");
    format!("{demo}\n[redis]\ntimeout_ms = 500\n")
}

async fn three_gateways(origin: &Origin, redis: &RedisServer) -> [GatewayProcess; 3] {
    let (config, upstream, redis_url) = (config(), origin.url(), redis.url());
    let (a, b, c) = tokio::join!(
        GatewayProcess::start("gateway A", &config, &upstream, &redis_url),
        GatewayProcess::start("gateway B", &config, &upstream, &redis_url),
        GatewayProcess::start("gateway C", &config, &upstream, &redis_url),
    );
    let gateways = [a, b, c];
    for g in &gateways {
        let deadline = Instant::now() + Duration::from_secs(10);
        while g.health().await.is_none_or(|h| h["store"]["up"] != true) {
            assert!(Instant::now() < deadline, "{}: redis not up", g.name);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    gateways
}

/// `n` concurrent GETs of `path`, spread round-robin over `gateways`.
async fn herd(gateways: &[&GatewayProcess], path: &str, n: usize) -> Vec<Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = gateways[i % gateways.len()].url(path);
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = process::request("GET", &url, TIMEOUT).await;
                Answer {
                    reply,
                    took: started.elapsed(),
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.expect("request task"));
    }
    answers
}

/// Asserts every answer is a 200 with one body; answers that body.
fn one_body(answers: &[Answer]) -> bytes::Bytes {
    let mut bodies = HashSet::new();
    for a in answers {
        match &a.reply {
            Ok(r) if r.status == 200 => {
                bodies.insert(r.body.clone());
            }
            other => panic!(
                "a request was not answered 200: {:?}",
                other
                    .as_ref()
                    .map(|r| (r.status, r.cache_status().to_owned()))
            ),
        }
    }
    assert_eq!(bodies.len(), 1, "every client gets the same body");
    bodies.into_iter().next().expect("one body")
}

async fn stat(gateways: &[&GatewayProcess], field: &str) -> u64 {
    let mut sum = 0;
    for g in gateways {
        let stats = process::request("GET", &g.admin("/stats"), TIMEOUT)
            .await
            .expect("stats")
            .json();
        sum += stats["total"][field].as_u64().expect(field);
    }
    sum
}

fn version(reply: &larder_tests::http::Reply) -> u64 {
    reply.json()["analysis_version"]
        .as_u64()
        .expect("analysis_version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_herd_spread_over_three_instances_makes_one_upstream_request() {
    let redis = RedisServer::start();
    let origin = Origin::start(OriginConfig::fast()).await.expect("origin");
    let [a, b, c] = three_gateways(&origin, &redis).await;
    let gateways = [&a, &b, &c];
    let path = ai(3);

    let answers = herd(&gateways, &path, 150).await;

    assert_eq!(origin.count("GET", &path), 1, "one AI computation");
    one_body(&answers);
    let fleet: Vec<&Answer> = answers
        .iter()
        .filter(|a| {
            a.reply
                .as_ref()
                .is_ok_and(|r| r.cache_status().contains("detail=\"fleet\""))
        })
        .collect();
    // One leader per instance; the two that did not fill answered from the one that did.
    assert_eq!(fleet.len(), 2, "two instances answered from another's fill");
    assert_eq!(stat(&gateways, "fleet_collapsed").await, 2);
    assert_eq!(stat(&gateways, "lease_takeovers").await, 0);
    let filler = answers
        .iter()
        .filter(|a| {
            a.reply
                .as_ref()
                .is_ok_and(|r| r.cache_status().ends_with("; stored"))
        })
        .map(|a| a.took)
        .max()
        .expect("the request that filled");
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "150 cold requests over 3 instances: 1 upstream request; the fill took {filler:?}, the \
         slowest answer {slowest:?} ({:?} over the fill)",
        slowest.saturating_sub(filler)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_killed_mid_fill_costs_at_most_one_more_upstream_request() {
    let redis = RedisServer::start();
    let origin = Origin::start(OriginConfig::fast()).await.expect("origin");
    let [mut a, b, c] = three_gateways(&origin, &redis).await;
    let path = ai(5);
    // A takes the lease; its upstream request is held at the origin.
    origin.hold(&path);
    let url = a.url(&path);
    let holder = tokio::spawn(async move { process::request("GET", &url, TIMEOUT).await });
    assert!(
        origin.wait_until_waiting(1, Duration::from_secs(10)).await,
        "A's fill reached the origin"
    );
    // B and C wait for A's fill; A dies in the middle of it.
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.kill();
        origin.release_all();
    };
    let waiting = [&b, &c];
    let (answers, ()) = tokio::join!(herd(&waiting, &path, 60), kill);
    assert!(
        holder.await.expect("holder").is_err(),
        "A's client lost its connection"
    );

    one_body(&answers);
    assert_eq!(
        origin.count("GET", &path),
        2,
        "the dead holder's request and one takeover"
    );
    assert_eq!(stat(&[&b, &c], "lease_takeovers").await, 1);
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    println!("holder killed mid-fill: 2 upstream requests, slowest answer {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_paused_during_the_herd_every_request_is_answered() {
    let redis = RedisServer::start();
    let origin = Origin::start(OriginConfig::fast()).await.expect("origin");
    let [a, b, c] = three_gateways(&origin, &redis).await;
    let gateways = [&a, &b, &c];
    let path = ai(7);
    redis.pause();
    let answers = herd(&gateways, &path, 150).await;
    redis.resume();

    for answer in &answers {
        let reply = answer.reply.as_ref().expect("answered");
        assert_eq!(reply.status, 200, "{}", reply.cache_status());
    }
    let upstream = origin.count("GET", &path);
    assert!(
        (1..=3).contains(&upstream),
        "at most one upstream request per instance, not {upstream}"
    );
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    println!("redis paused during the herd: {upstream} upstream requests, slowest {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_remote_fill_keeps_its_result_from_later_requests() {
    let redis = RedisServer::start();
    let origin = Origin::start(OriginConfig::fast()).await.expect("origin");
    let [a, b, c] = three_gateways(&origin, &redis).await;
    let path = ai(9);
    let before = origin.analysis_version(9).expect("repository 9");
    // A fills; the origin answers with the analysis of now, and holds the answer.
    origin.hold(&path);
    let url = a.url(&path);
    let filler = tokio::spawn(async move { process::request("GET", &url, TIMEOUT).await });
    assert!(origin.wait_until_waiting(1, Duration::from_secs(10)).await);
    // B waits for A's fill.
    let url = b.url(&path);
    let early = tokio::spawn(async move { process::request("GET", &url, TIMEOUT).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The repository is re-analysed through C: acknowledged, so purged everywhere.
    let analyze = process::request(
        "POST",
        &c.url("/api/v1/repositories/9/actions/analyze"),
        TIMEOUT,
    )
    .await
    .expect("analyze");
    assert_eq!(analyze.status, 200, "{}", analyze.text());
    let after = origin.analysis_version(9).expect("repository 9");
    assert!(after > before);
    // Requests that arrive after the purge, on every instance, while A's fill is in flight.
    let late: Vec<_> = [&b, &c]
        .iter()
        .map(|g| {
            let url = g.url(&path);
            tokio::spawn(async move { process::request("GET", &url, TIMEOUT).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    origin.release_all();

    let filled = filler.await.expect("filler").expect("answered");
    assert_eq!(filled.status, 200);
    assert_eq!(
        version(&filled),
        before,
        "A's fill started before the analyze"
    );
    assert!(
        filled.cache_status().contains("purged-during-fill"),
        "{}",
        filled.cache_status()
    );
    let early = early.await.expect("early").expect("answered");
    for l in late {
        let reply = l.await.expect("late").expect("answered");
        assert_eq!(reply.status, 200);
        assert_eq!(
            version(&reply),
            after,
            "a request after the purge got the purged result: {}",
            reply.cache_status()
        );
    }
    // Nothing purged was stored: every instance now answers the new analysis.
    for g in [&a, &b, &c] {
        let reply = process::request("GET", &g.url(&path), TIMEOUT)
            .await
            .expect("answered");
        assert_eq!(
            version(&reply),
            after,
            "{}: {}",
            g.name,
            reply.cache_status()
        );
    }
    assert!(version(&early) >= before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_fleet_coalescing_off_fills_once_per_instance() {
    let redis = RedisServer::start();
    let origin = Origin::start(OriginConfig::fast()).await.expect("origin");
    let config = config().replacen(
        "name = \"ai-features\"\n",
        "name = \"ai-features\"\nfleet_coalescing = false\n",
        1,
    );
    assert!(config.contains("fleet_coalescing = false"));
    let (upstream, redis_url) = (origin.url(), redis.url());
    let (a, b, c) = tokio::join!(
        GatewayProcess::start("gateway A", &config, &upstream, &redis_url),
        GatewayProcess::start("gateway B", &config, &upstream, &redis_url),
        GatewayProcess::start("gateway C", &config, &upstream, &redis_url),
    );
    let path = ai(11);
    let answers = herd(&[&a, &b, &c], &path, 60).await;
    assert!(
        answers
            .iter()
            .all(|a| a.reply.as_ref().is_ok_and(|r| r.status == 200))
    );
    assert_eq!(origin.count("GET", &path), 3, "one fill per instance");
}

/// The lease's steps, on the store: one holder at a time, its outcome for the waiters, and
/// which claims may take over what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_lease_has_one_holder_and_ends_with_its_outcome() {
    use larder::store::key::Digest;
    use larder::store::redis::{Claim, ClaimMode, LEASE, LeaseKey, RedisStore};

    let redis = RedisServer::start();
    let connect = || async {
        let store = RedisStore::start(&larder::config::RedisConfig {
            url: redis.url(),
            timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .expect("store");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !larder::store::Storage::health(&store).up {
            assert!(Instant::now() < deadline, "redis not up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store
    };
    let (a, b) = (connect().await, connect().await);
    let key = a.lease_key("r", Digest([7; 16]));
    async fn claim_on(s: &RedisStore, key: &LeaseKey, mode: ClaimMode) -> Claim {
        s.claim_fill(key, mode).await.expect("redis answers")
    }
    let claim = |s, mode| claim_on(s, &key, mode);
    let kind = |c: &Claim| match c {
        Claim::Won(_) => "won",
        Claim::Held => "held",
        Claim::Stored => "stored",
        Claim::Unstorable => "unstorable",
    };

    let Claim::Won(lease) = claim(&a, ClaimMode::New).await else {
        panic!("a free lease is taken")
    };
    for mode in [ClaimMode::New, ClaimMode::Wait, ClaimMode::Force] {
        assert_eq!(kind(&claim(&b, mode).await), "held", "{mode:?}");
    }
    // The holder renews its lease while it fills.
    a.renewing(&lease, tokio::time::sleep(Duration::from_millis(1500)))
        .await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key_name(&redis))
        .query(&mut redis.conn())
        .expect("PTTL");
    assert!(
        ttl > (LEASE.as_millis() as i64) - 1500,
        "renewed: {ttl} ms left"
    );

    // Waited for (b found it held): its end is announced.
    let published = redis.calls("publish");
    a.finish_fill(lease, true).await;
    assert_eq!(
        redis.calls("publish") - published,
        1,
        "the waiters are told"
    );
    assert_eq!(kind(&claim(&b, ClaimMode::Wait).await), "stored");
    assert_eq!(kind(&claim(&b, ClaimMode::New).await), "stored");
    let Claim::Won(lease) = claim(&b, ClaimMode::Force).await else {
        panic!("a waiter that found no usable entry takes the lease over a stored outcome")
    };
    // Nobody waited for this one: no announcement.
    b.finish_fill(lease, false).await;
    assert_eq!(
        redis.calls("publish") - published,
        1,
        "no message for a fill nobody waits for"
    );
    assert_eq!(kind(&claim(&a, ClaimMode::Wait).await), "unstorable");
    let Claim::Won(lease) = claim(&a, ClaimMode::New).await else {
        panic!("a new miss takes the lease over an unstorable outcome")
    };
    // A lease lost to expiry cannot end the next holder's.
    let _: () = redis::cmd("DEL")
        .arg(key_name(&redis))
        .query(&mut redis.conn())
        .expect("DEL");
    let Claim::Won(next) = claim(&b, ClaimMode::Wait).await else {
        panic!("an expired lease is free")
    };
    a.finish_fill(lease, true).await;
    assert_eq!(kind(&claim(&a, ClaimMode::Wait).await), "held");
    b.finish_fill(next, true).await;
    assert_eq!(kind(&claim(&a, ClaimMode::Wait).await), "stored");
}

/// The one lease key in `redis`.
fn key_name(redis: &RedisServer) -> String {
    let keys = redis.keys("larder:fill-lease:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

/// A fill that stores ends its lease in the store's own round trip: the store script writes the
/// entry and replaces the lease by its outcome, so a miss costs Redis one script call, not a
/// second one for the lease; and a fill no other instance waited for is not announced. (On a
/// route whose entries carry only implicit tags, the lookup is an `MGET` and the claim a
/// `SET NX`: the store is the only script.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_stores_ends_its_lease_in_the_same_round_trip() {
    use larder_tests::gateway::{Harness, StoreKind};

    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let path = |n| format!("/api/v1/echo?cache_control=max-age%3D60&body=b{n}");
    // The first miss loads the store script into Redis (`EVAL` once, `EVALSHA` after).
    assert!(h.get(&path(0)).await.cache_status().ends_with("; stored"));
    let (evalsha, publish) = (redis.calls("evalsha"), redis.calls("publish"));

    for n in 1..=10 {
        let reply = h.get(&path(n)).await;
        assert!(
            reply.cache_status().ends_with("; stored"),
            "{}",
            reply.cache_status()
        );
    }
    // The lease ended with the store, before the answer.
    assert_eq!(
        redis.calls("evalsha") - evalsha,
        10,
        "one script call per miss"
    );
    assert_eq!(redis.calls("publish"), publish, "nobody waited: no news");
    // Outcomes live two seconds: those still there say the fill stored.
    let leases = redis.keys("larder:fill-lease:*");
    assert!(!leases.is_empty());
    for lease in leases {
        let outcome: String = redis::cmd("GET")
            .arg(&lease)
            .query(&mut redis.conn())
            .expect("GET");
        assert_eq!(outcome, "done:stored", "{lease}");
    }
    for n in 1..=10 {
        assert!(h.get(&path(n)).await.is_hit());
    }
    h.stop().await;
}
