//! Invalidation under faults (issue 16): two gateway *processes* (the built `larder` binary),
//! each with a memory tier, on one real `redis-server` with AOF persistence, in front of the
//! stand-in backend. Four readers go through both gateways, analyzes go through either, and
//! meanwhile the suite pauses Redis (SIGSTOP), kills and restarts it, closes the invalidation
//! subscriptions (`CLIENT KILL TYPE pubsub`) and hangs up clients in the middle of analyzes.
//!
//! The promise checked: **no read that starts after an analyze of a repository was acknowledged
//! returns an older `analysis_version`**, except reads that start within [`RECOVERY_BOUND`]
//! after Redis answers again. A read that fails (5xx, or no answer during an outage) keeps the
//! promise and is counted. A hung-up analyze is acknowledged to no one, but the backend did it:
//! reads that start [`HANGUP_BOUND`] after the gateway had the backend's answer must see it.
//!
//! Needs the binary: `cargo xtask build`, then
//! `cargo test --release -p larder-tests --test integration invalidation_faults:: -- --nocapture`
//! (`LARDER_TEST_LOG=debug` sets the gateways' `LARDER_LOG`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use larder_tests::origin::{Origin, OriginConfig};
use larder_tests::process::{self, GatewayProcess};
use larder_tests::redis_server::RedisServer;

/// Reads that start within this long after Redis answers again (SIGCONT after a pause, or the
/// restarted server answering PING) may still return the analysis from before an analyze that
/// was acknowledged during the outage: the instance that took the analyze applies its pending
/// purge before it serves from Redis again, but the other instance may read the un-purged entry
/// from Redis until the pending purge has been retried. `docs/invalidation.md` documents it as
/// at most 250 ms (the retry interval) plus one Redis timeout (`timeout_ms`, 500 ms here);
/// change both together.
const RECOVERY_BOUND: Duration = Duration::from_millis(750);

/// How long after the gateway had the backend's answer to a hung-up analyze every read must see
/// the new analysis: the invalidation runs detached from the client, and a memory tier that
/// cannot hear it stops answering within its trust window (`memory_tier_trust_ms`, 1000 ms).
const HANGUP_BOUND: Duration = Duration::from_millis(1000);

/// How long the delay proxy keeps the backend's answer to a hung-up analyze from the gateway; the
/// client hangs up in this window, after the backend analysed and before the gateway knows.
const HANGUP_DELAY: Duration = Duration::from_millis(400);

/// What the suite sets on top of the demo config (`larder.toml`), in one place: `[cache]` keys,
/// then the `[redis]` section. `{dir}` is each gateway's own temp dir.
const CACHE_KEYS: &str = "memory_tier_bytes = 8388608\n";
/// The `[cache]` keys of invalidation under faults, at their defaults but for the state
/// directory (each gateway's own).
const ISSUE_16_CACHE_KEYS: &str = "\
state_dir = \"{dir}/state\"
memory_tier_outage = \"bypass\"
memory_tier_trust_ms = 1000
";
/// 500 ms as in the other Redis tests: two cores run two gateways, Redis and the readers, and a
/// spurious timeout must not be what the suite measures.
const REDIS_SECTION: &str = "\n[redis]\ntimeout_ms = 500\n";

/// The faults, at offsets from the start of the load. Every kind comes twice or more, calm
/// stretches between them.
const SCHEDULE: &[(u64, Step)] = &[
    (1_500, Step::KillSubscriptions),
    (2_500, Step::Pause(Duration::from_millis(1_500))),
    (6_000, Step::Restart(Duration::from_millis(1_000))),
    (9_500, Step::KillSubscriptions),
    (10_500, Step::Pause(Duration::from_millis(2_000))),
    (14_500, Step::Restart(Duration::from_millis(700))),
    (17_500, Step::KillSubscriptions),
];
/// How long readers and analyzers run.
const LOAD: Duration = Duration::from_secs(20);
/// The first hung-up analyze, and the time between two; the last starts at least 3 s before the
/// end of the load, so that reads can check it.
const HANGUP_FIRST: Duration = Duration::from_millis(1_000);
const HANGUP_EVERY: Duration = Duration::from_millis(2_200);

const READERS: u64 = 4;
const MAX_READS_PER_READER: usize = 20_000;
const READ_PAUSE: Duration = Duration::from_millis(2);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ANALYZES: usize = 200;
const ANALYZE_PAUSE: Duration = Duration::from_millis(150);
const ANALYZE_TIMEOUT: Duration = Duration::from_secs(6);

/// Repositories the analyzer re-analyses.
const ANALYZED: [u64; 3] = [1, 2, 3];
/// The repository only hung-up analyzes touch, so that its version moves only by them.
const HUNG_UP_REPO: u64 = 4;
const READ_REPOS: [u64; 4] = [1, 2, 3, HUNG_UP_REPO];
/// The repository views; every answer carries `analysis_version`.
const VIEWS: [&str; 3] = ["", "/ai-features", "/tech-stack"];
const GATEWAY_NAMES: [&str; 2] = ["A", "B"];

#[derive(Clone, Copy, Debug)]
enum Step {
    /// SIGSTOP for this long, then SIGCONT.
    Pause(Duration),
    /// SIGKILL, down for this long, then started again on the same port and data.
    Restart(Duration),
    /// `CLIENT KILL TYPE pubsub`.
    KillSubscriptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    Pause,
    Restart,
    KillSubscriptions,
    HangUp,
}

#[derive(Debug)]
struct Fault {
    kind: FaultKind,
    at: Instant,
    /// When Redis answered again (pauses and restarts).
    recovered: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnalyzeKind {
    Acknowledged,
    HungUp,
}

#[derive(Debug)]
struct Analyze {
    repo: u64,
    via: usize,
    kind: AnalyzeKind,
    /// When the client had its 2xx; for a hung-up analyze, when the backend had analysed.
    at: Instant,
    /// Reads that start from here on must see `version` or later: the client's 2xx, or for a
    /// hung-up analyze the backend's answer plus [`HANGUP_BOUND`].
    binding_from: Instant,
    version: u64,
}

#[derive(Debug)]
struct Read {
    repo: u64,
    via: usize,
    view: &'static str,
    start: Instant,
    /// The `analysis_version` served, or why the read failed.
    outcome: Result<u64, String>,
    cache_status: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_after_an_acknowledged_analyze_is_stale_through_redis_faults() {
    let began = Instant::now();
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let origin = Origin::start(origin_config()).await.expect("start origin");
    let upstream = format!("http://{}", delay_proxy(origin.url()).await);
    let config = gateway_config();
    let redis_url = redis.url();
    let (a, b) = tokio::join!(
        GatewayProcess::start("gateway A", &config, &upstream, &redis_url),
        GatewayProcess::start("gateway B", &config, &upstream, &redis_url),
    );
    let gateways = [a, b];
    for g in &gateways {
        wait_until_subscribed(g).await;
    }
    let bases: Arc<Vec<String>> = Arc::new(gateways.iter().map(|g| g.url("")).collect());
    for base in bases.iter() {
        for repo in READ_REPOS {
            for view in VIEWS {
                let url = format!("{base}/api/v1/repositories/{repo}{view}");
                let warm = process::request("GET", &url, READ_TIMEOUT).await;
                assert!(matches!(&warm, Ok(r) if r.status == 200), "{url}: {warm:?}");
            }
        }
    }
    let ready = began.elapsed();

    let load_start = Instant::now();
    let end = load_start + LOAD;
    let readers: Vec<_> = (0..READERS)
        .map(|n| tokio::spawn(reader(n, Arc::clone(&bases), end)))
        .collect();
    let analyzer = tokio::spawn(analyzer(Arc::clone(&bases), end));
    let ports: Vec<u16> = gateways.iter().map(|g| g.port).collect();
    let (mut faults, (hung_up, hang_up_faults, hang_up_failures)) = tokio::join!(
        inject_faults(&mut redis, load_start),
        hang_ups(&origin, &ports, load_start, end),
    );
    faults.extend(hang_up_faults);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.expect("reader"));
    }
    let (mut analyzes, analyze_failures) = analyzer.await.expect("analyzer");
    analyzes.extend(hung_up);

    let verdict = judge(&reads, &analyzes, &faults);
    report(
        &reads,
        &analyzes,
        &analyze_failures,
        &hang_up_failures,
        &faults,
        &verdict,
    );
    println!(
        "time: {:.1} s to start, {:.1} s of load, {:.1} s in all",
        ready.as_secs_f64(),
        LOAD.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );

    let served = reads.iter().filter(|r| r.outcome.is_ok()).count();
    assert!(served >= 500, "only {served} reads were answered");
    let acknowledged = analyzes
        .iter()
        .filter(|a| a.kind == AnalyzeKind::Acknowledged)
        .count();
    assert!(
        acknowledged >= 20,
        "only {acknowledged} analyzes acknowledged"
    );
    assert!(
        hang_up_failures.is_empty(),
        "hang-ups that did not reach the backend: {hang_up_failures:?}"
    );
    let client_errors: Vec<&Read> = reads
        .iter()
        .filter(|r| matches!(&r.outcome, Err(e) if e.starts_with("status 4")))
        .collect();
    assert!(client_errors.is_empty(), "4xx reads: {client_errors:?}");
    assert!(
        verdict.stale.is_empty(),
        "{} reads started after an analyze was acknowledged and returned an older analysis_version",
        verdict.stale.len()
    );
}

/// Short delays: the suite is about invalidation, not about hiding a slow backend.
fn origin_config() -> OriginConfig {
    OriginConfig {
        repositories: 10,
        ai_features_delay: Duration::from_millis(40),
        ..OriginConfig::zero_delay().with_non_ai_delays(Duration::from_millis(3))
    }
}

/// The demo config with the suite's keys, checked by `larder check-config` first so that a
/// refused key fails the suite with the gateway's own message.
fn gateway_config() -> String {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .expect("larder.toml");
    let cache_keys = format!("{CACHE_KEYS}{ISSUE_16_CACHE_KEYS}");
    let text = match demo.find("[cache]\n") {
        Some(at) => format!("{}{cache_keys}{}", &demo[..at + 8], &demo[at + 8..]),
        None => format!("{demo}\n[cache]\n{cache_keys}"),
    };
    let config = format!("{text}{REDIS_SECTION}");
    if let Err(refusal) = check_config(&config) {
        panic!("the suite's config is refused: {refusal}");
    }
    config
}

/// `larder check-config` on `config`; the refusal when it fails.
fn check_config(config: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("larder.toml");
    let text = config.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&path, text).expect("write config");
    let out = std::process::Command::new(process::binary())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        // A `[redis]` section needs a URL; nothing connects to it.
        .env("REDIS_URL", "redis://127.0.0.1:1")
        // The plugins the gateways get (`GatewayProcess` installs the example plugins).
        .env(
            "LARDER_PLUGIN_DIR",
            larder_tests::plugins::workspace_root().join("target/plugins"),
        )
        .output()
        .expect("run larder check-config (is it built? `cargo xtask build`)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Waits (bounded) until the gateway's store is up and its memory tier subscribed.
async fn wait_until_subscribed(gateway: &GatewayProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = gateway.health().await.unwrap_or_default();
        let store = &health["store"];
        if store["up"] == true && store["memory_tier"]["subscribed"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: store not up and subscribed within 10 s: {health}",
            gateway.name
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- load -----------------------------------------------------------------------------------

/// A xorshift stream: spreads reads over gateways, repositories and views without `rand`.
struct Spread(u64);

impl Spread {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

async fn reader(n: u64, bases: Arc<Vec<String>>, end: Instant) -> Vec<Read> {
    let mut spread = Spread(0x9E37_79B9_7F4A_7C15 ^ (n + 1));
    let mut reads = Vec::new();
    while Instant::now() < end && reads.len() < MAX_READS_PER_READER {
        let via = spread.next(bases.len());
        let repo = READ_REPOS[spread.next(READ_REPOS.len())];
        let view = VIEWS[spread.next(VIEWS.len())];
        let url = format!("{}/api/v1/repositories/{repo}{view}", bases[via]);
        let start = Instant::now();
        let answer = process::request("GET", &url, READ_TIMEOUT).await;
        let cache_status = answer
            .as_ref()
            .ok()
            .and_then(|r| r.header("cache-status"))
            .unwrap_or_default()
            .to_owned();
        let outcome = match answer {
            Ok(r) if r.status == 200 => {
                version_of(&r.body).ok_or_else(|| "no analysis_version".to_owned())
            }
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) if e.starts_with("no answer") => Err("no answer in time".to_owned()),
            Err(_) => Err("connection error".to_owned()),
        };
        reads.push(Read {
            repo,
            via,
            view,
            start,
            outcome,
            cache_status,
        });
        tokio::time::sleep(READ_PAUSE).await;
    }
    reads
}

fn version_of(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?["analysis_version"].as_u64()
}

/// Analyzes, one at a time, alternating repositories and gateways; the acknowledged ones, and
/// why the others failed.
async fn analyzer(bases: Arc<Vec<String>>, end: Instant) -> (Vec<Analyze>, Vec<String>) {
    let mut analyzes = Vec::new();
    let mut failures = Vec::new();
    for i in 0..MAX_ANALYZES {
        if Instant::now() >= end {
            break;
        }
        let repo = ANALYZED[i % ANALYZED.len()];
        let via = (i + i / ANALYZED.len()) % bases.len();
        let url = format!("{}/api/v1/repositories/{repo}/actions/analyze", bases[via]);
        match process::request("POST", &url, ANALYZE_TIMEOUT).await {
            Ok(r) if (200..300).contains(&r.status) => {
                let at = Instant::now();
                let version = version_of(&r.body).expect("an analyze answers its analysis_version");
                analyzes.push(Analyze {
                    repo,
                    via,
                    kind: AnalyzeKind::Acknowledged,
                    at,
                    binding_from: at,
                    version,
                });
            }
            Ok(r) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(e),
        }
        tokio::time::sleep(ANALYZE_PAUSE).await;
    }
    (analyzes, failures)
}

/// Analyzes of [`HUNG_UP_REPO`] whose client hangs up once the backend has analysed, while the
/// delay proxy still holds the answer from the gateway. Returns them (binding from the backend's
/// answer plus [`HANGUP_BOUND`]), as faults, and those that never reached the backend.
async fn hang_ups(
    origin: &Origin,
    ports: &[u16],
    load_start: Instant,
    end: Instant,
) -> (Vec<Analyze>, Vec<Fault>, Vec<String>) {
    let mut analyzes = Vec::new();
    let mut faults = Vec::new();
    let mut failures = Vec::new();
    let mut next = load_start + HANGUP_FIRST;
    let mut via = 0;
    while next + Duration::from_secs(3) < end {
        tokio::time::sleep_until(next.into()).await;
        next += HANGUP_EVERY;
        via = (via + 1) % ports.len();
        let before = origin.analysis_version(HUNG_UP_REPO).expect("repository");
        let request = format!(
            "POST /api/v1/repositories/{HUNG_UP_REPO}/actions/analyze?delay_ms={} HTTP/1.1\r\n\
             host: 127.0.0.1:{}\r\ncontent-length: 0\r\n\r\n",
            HANGUP_DELAY.as_millis(),
            ports[via]
        );
        let mut stream = match tokio::net::TcpStream::connect(("127.0.0.1", ports[via])).await {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("connect: {e}"));
                continue;
            }
        };
        if let Err(e) = stream.write_all(request.as_bytes()).await {
            failures.push(format!("send: {e}"));
            continue;
        }
        // Bounded: the backend analyses within milliseconds of the gateway forwarding.
        let deadline = Instant::now() + Duration::from_secs(3);
        let version = loop {
            let now = origin.analysis_version(HUNG_UP_REPO).expect("repository");
            if now > before || Instant::now() > deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let analysed = Instant::now();
        // Hang up: the backend has analysed, the gateway still waits for its answer.
        drop(stream);
        if version == before {
            failures.push("the backend did not analyse within 3 s".to_owned());
            continue;
        }
        analyzes.push(Analyze {
            repo: HUNG_UP_REPO,
            via,
            kind: AnalyzeKind::HungUp,
            at: analysed,
            binding_from: analysed + HANGUP_DELAY + HANGUP_BOUND,
            version,
        });
        faults.push(Fault {
            kind: FaultKind::HangUp,
            at: analysed,
            recovered: None,
        });
    }
    (analyzes, faults, failures)
}

// ---- faults ---------------------------------------------------------------------------------

/// Runs [`SCHEDULE`] against the real `redis-server`. Its blocking calls (a restart waits for
/// PING) run under `block_in_place`, so the readers' tasks keep going.
async fn inject_faults(redis: &mut RedisServer, load_start: Instant) -> Vec<Fault> {
    let mut faults = Vec::new();
    for &(offset_ms, step) in SCHEDULE {
        tokio::time::sleep_until((load_start + Duration::from_millis(offset_ms)).into()).await;
        let at = Instant::now();
        match step {
            Step::Pause(length) => {
                redis.pause();
                tokio::time::sleep(length).await;
                redis.resume();
                faults.push(Fault {
                    kind: FaultKind::Pause,
                    at,
                    recovered: Some(Instant::now()),
                });
            }
            Step::Restart(down) => {
                tokio::task::block_in_place(|| redis.kill());
                tokio::time::sleep(down).await;
                tokio::task::block_in_place(|| redis.start_again());
                faults.push(Fault {
                    kind: FaultKind::Restart,
                    at,
                    recovered: Some(Instant::now()),
                });
            }
            Step::KillSubscriptions => {
                let closed = tokio::task::block_in_place(|| redis.kill_pubsub_clients());
                println!(
                    "{:>6.2} s: CLIENT KILL TYPE pubsub closed {closed} subscription(s)",
                    (at - load_start).as_secs_f64()
                );
                faults.push(Fault {
                    kind: FaultKind::KillSubscriptions,
                    at,
                    recovered: None,
                });
            }
        }
    }
    faults
}

// ---- the stand-in's delay proxy -------------------------------------------------------------

struct Upstream {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts a proxy in front of the backend at `origin`. It forwards everything, and holds the
/// backend's answer to an analyze that asks for it (`?delay_ms=N`) for N ms, so that a client
/// can hang up after the backend analysed and before the gateway has the answer (the stand-in
/// never holds analyzes itself).
async fn delay_proxy(origin: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the delay proxy");
    let addr = listener.local_addr().expect("local addr");
    let upstream = Arc::new(Upstream {
        base: origin,
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    let app = axum::Router::new().fallback(forward).with_state(upstream);
    // Runs until the test's runtime ends.
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let hold = if parts.uri.path().ends_with("/actions/analyze") {
        parts
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("delay_ms="))
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default()
    } else {
        Duration::ZERO
    };
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", upstream.base));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "connection" | "transfer-encoding") {
            out = out.header(name, value);
        }
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(answer) = upstream.client.request(out).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (mut parts, body) = answer.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    tokio::time::sleep(hold).await;
    for name in ["connection", "transfer-encoding", "content-length"] {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}

// ---- the verdict ----------------------------------------------------------------------------

struct Stale<'a> {
    read: &'a Read,
    /// The earliest analyze the read should have seen.
    missed: &'a Analyze,
}

struct Verdict<'a> {
    stale: Vec<Stale<'a>>,
    /// Stale reads that started within [`RECOVERY_BOUND`] after Redis answered again.
    exempted: usize,
    /// Reads (answered or not) that started within such a window.
    in_recovery: usize,
}

fn judge<'a>(reads: &'a [Read], analyzes: &'a [Analyze], faults: &[Fault]) -> Verdict<'a> {
    let in_recovery = |t: Instant| {
        faults.iter().any(|f| {
            f.recovered
                .is_some_and(|r| t >= r && t < r + RECOVERY_BOUND)
        })
    };
    let mut verdict = Verdict {
        stale: Vec::new(),
        exempted: 0,
        in_recovery: 0,
    };
    for read in reads {
        let recovering = in_recovery(read.start);
        verdict.in_recovery += usize::from(recovering);
        let Ok(served) = read.outcome else { continue };
        let missed = analyzes
            .iter()
            .filter(|a| a.repo == read.repo && a.binding_from <= read.start && a.version > served)
            .min_by_key(|a| a.binding_from);
        match missed {
            None => {}
            Some(_) if recovering => verdict.exempted += 1,
            Some(missed) => verdict.stale.push(Stale { read, missed }),
        }
    }
    verdict
}

/// How long after a `CLIENT KILL TYPE pubsub` the report calls a time "after a subscription
/// kill" (the gateway resubscribes within a few hundred milliseconds).
const AFTER_KILL: Duration = Duration::from_secs(1);

/// Where `t` falls: during an outage, within its recovery bound, shortly after a subscription
/// kill, or calm. For the report only; [`judge`] exempts by [`RECOVERY_BOUND`] alone.
fn phase(t: Instant, faults: &[Fault]) -> String {
    let last = faults
        .iter()
        .filter(|f| f.kind != FaultKind::HangUp && f.at <= t)
        .max_by_key(|f| f.at);
    let Some(f) = last else {
        return "calm".to_owned();
    };
    match f.recovered {
        Some(recovered) if t < recovered => format!("during {:?}", f.kind),
        Some(recovered) if t < recovered + RECOVERY_BOUND => {
            format!("within RECOVERY_BOUND after {:?}", f.kind)
        }
        None if t < f.at + AFTER_KILL => format!("within {AFTER_KILL:?} after {:?}", f.kind),
        _ => "calm".to_owned(),
    }
}

fn report(
    reads: &[Read],
    analyzes: &[Analyze],
    analyze_failures: &[String],
    hang_up_failures: &[String],
    faults: &[Fault],
    verdict: &Verdict,
) {
    let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
    for read in reads {
        if let Err(why) = &read.outcome {
            *failed.entry(why.as_str()).or_default() += 1;
        }
    }
    let mut by_kind: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for f in faults {
        *by_kind.entry(f.kind).or_default() += 1;
    }
    let count = |kind| analyzes.iter().filter(|a| a.kind == kind).count();
    println!("\n== invalidation under faults ==");
    println!(
        "reads: {} ({} answered, {} failed: {failed:?})",
        reads.len(),
        reads.iter().filter(|r| r.outcome.is_ok()).count(),
        reads.len() - reads.iter().filter(|r| r.outcome.is_ok()).count(),
    );
    println!(
        "analyzes: {} acknowledged, {} failed {analyze_failures:?}, {} hung up (backend analysed, \
         no client saw it){}",
        count(AnalyzeKind::Acknowledged),
        analyze_failures.len(),
        count(AnalyzeKind::HungUp),
        if hang_up_failures.is_empty() {
            String::new()
        } else {
            format!(", hang-ups that failed: {hang_up_failures:?}")
        }
    );
    println!("faults injected: {by_kind:?}");
    println!(
        "reads starting within RECOVERY_BOUND ({RECOVERY_BOUND:?}) after Redis answered again: {}, \
         stale among them (exempted): {}",
        verdict.in_recovery, verdict.exempted
    );
    println!("stale reads: {} (must be 0)", verdict.stale.len());
    if verdict.stale.is_empty() {
        return;
    }
    // Grouped by the analyze the read missed (what, where and when it happened), and by when the
    // read started; one example of each.
    let first = reads
        .iter()
        .map(|r| r.start)
        .min()
        .unwrap_or_else(Instant::now);
    let since = |t: Instant| t.saturating_duration_since(first).as_secs_f64();
    // Per group: count, shortest and longest time from the analyze to the read, an example.
    let mut by_missed: BTreeMap<String, (usize, Duration, Duration, &Stale)> = BTreeMap::new();
    let mut by_read: BTreeMap<String, usize> = BTreeMap::new();
    for s in &verdict.stale {
        let missed = format!(
            "{:?} via {}, {} | read through the {} gateway",
            s.missed.kind,
            GATEWAY_NAMES[s.missed.via],
            phase(s.missed.at, faults),
            if s.read.via == s.missed.via {
                "same"
            } else {
                "other"
            },
        );
        let gap = s.read.start.saturating_duration_since(s.missed.at);
        let group = by_missed
            .entry(missed)
            .or_insert((0, Duration::MAX, Duration::ZERO, s));
        group.0 += 1;
        group.1 = group.1.min(gap);
        group.2 = group.2.max(gap);
        let read = format!(
            "read {} | {}",
            phase(s.read.start, faults),
            s.read.cache_status.split(';').nth(1).unwrap_or("").trim(),
        );
        *by_read.entry(read).or_default() += 1;
    }
    println!("stale reads by the analyze they missed (times from the start of the load):");
    for (key, (n, shortest, longest, s)) in &by_missed {
        println!(
            "  {n:>6}  {key}\n          reads {} to {} ms after the analyze; e.g. analyze of repo {} to v{} at {:.3} s, read at {:.3} s \
             ('{}' via {}) got v{}; Cache-Status: {}",
            shortest.as_millis(),
            longest.as_millis(),
            s.missed.repo,
            s.missed.version,
            since(s.missed.at),
            since(s.read.start),
            s.read.view,
            GATEWAY_NAMES[s.read.via],
            s.read.outcome.as_ref().copied().unwrap_or_default(),
            s.read.cache_status,
        );
    }
    println!("stale reads by when they started | Cache-Status:");
    for (key, n) in &by_read {
        println!("  {n:>6}  {key}");
    }
}
