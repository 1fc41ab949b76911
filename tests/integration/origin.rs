//! The stand-in backend (`scat-origin`, `larder_tests::origin`) as the gateway tests rely on it:
//! its answers over real sockets, and the generator of its analysis documents.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use larder_tests::origin::analysis::*;
use larder_tests::origin::{Origin, OriginConfig};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", self.body))
    }

    fn version(&self) -> u64 {
        self.json()["analysis_version"]
            .as_u64()
            .expect("analysis_version is a number")
    }
}

async fn send(method: Method, url: String, headers: &[(&str, &str)], body: &str) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid request");
    let response = client.request(request).await.expect("origin answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(origin: &Origin, path: &str) -> Reply {
    send(Method::GET, format!("{}{path}", origin.url()), &[], "").await
}

async fn post(origin: &Origin, path: &str, body: &str) -> Reply {
    send(Method::POST, format!("{}{path}", origin.url()), &[], body).await
}

async fn start(config: OriginConfig) -> Origin {
    Origin::start(config).await.expect("origin starts")
}

fn small() -> OriginConfig {
    OriginConfig {
        repositories: 5,
        ..OriginConfig::zero_delay()
    }
}

#[tokio::test]
async fn analyze_bumps_the_version_seen_everywhere() {
    let origin = start(small()).await;
    assert_eq!(get(&origin, "/api/v1/repositories/3").await.version(), 1);
    assert_eq!(
        get(&origin, "/api/v1/insights").await.json()["insights_version"],
        5
    );

    let analyzed = post(
        &origin,
        "/api/v1/repositories/3/actions/analyze?feature_type=complexity",
        "",
    )
    .await;
    assert_eq!(analyzed.status, StatusCode::OK);
    let analyzed = analyzed.json();
    assert_eq!(analyzed["id"], 3);
    assert_eq!(analyzed["feature_type"], "complexity");
    assert_eq!(analyzed["analysis_version"], 2);

    assert_eq!(get(&origin, "/api/v1/repositories/3").await.version(), 2);
    assert_eq!(
        get(&origin, "/api/v1/repositories/3/ai-features")
            .await
            .version(),
        2
    );
    assert_eq!(
        get(&origin, "/api/v1/repositories/3/tech-stack")
            .await
            .version(),
        2
    );
    assert_eq!(
        get(&origin, "/api/v1/insights").await.json()["insights_version"],
        6
    );
    assert_eq!(get(&origin, "/api/v1/repositories/4").await.version(), 1);
    let listed = get(&origin, "/api/v1/repositories").await.json();
    assert_eq!(listed["repositories"][2]["analysis_version"], 2);
    assert_eq!(origin.analysis_version(3), Some(2));
}

#[tokio::test]
async fn feature_type_defaults_to_complexity() {
    let origin = start(small()).await;
    let analyzed = post(&origin, "/api/v1/repositories/1/actions/analyze", "").await;
    assert_eq!(analyzed.json()["feature_type"], "complexity");
}

#[tokio::test]
async fn a_repository_answer_is_stable_until_reanalysed() {
    let origin = start(small()).await;
    let first = get(&origin, "/api/v1/repositories/2").await;
    let second = get(&origin, "/api/v1/repositories/2").await;
    assert_eq!(first.body, second.body);

    let json = first.json();
    let analysis = json["complexity_analysis"].as_object().expect("an object");
    assert!(analysis.len() >= 70, "{} fields", analysis.len());
    for field in [
        "id",
        "name",
        "url",
        "language",
        "analyzed_at",
        "last_analyzed_at",
    ] {
        assert!(!json[field].is_null(), "missing {field}");
    }

    origin.reanalyze(2);
    assert_ne!(
        get(&origin, "/api/v1/repositories/2").await.body,
        first.body
    );
}

#[tokio::test]
async fn analysis_answers_are_json_without_caching_headers() {
    let origin = start(small()).await;
    for path in [
        "/api/v1/health",
        "/api/v1/repositories",
        "/api/v1/repositories/1",
        "/api/v1/repositories/1/ai-features",
        "/api/v1/repositories/1/tech-stack",
        "/api/v1/insights",
    ] {
        let reply = get(&origin, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/json",
            "{path}"
        );
        assert!(!reply.headers.contains_key(header::CACHE_CONTROL), "{path}");
    }
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_400() {
    let origin = start(small()).await;
    for path in [
        "/api/v1/repositories/0",
        "/api/v1/repositories/6",
        "/api/v1/repositories/99999999999999999999999",
        "/api/v1/repositories/6/ai-features",
    ] {
        let reply = get(&origin, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.json()["error"]["code"], "repository_not_found");
    }
    let reply = get(&origin, "/api/v1/repositories/abc").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "invalid_repository_id");
    let reply = post(&origin, "/api/v1/repositories/9/actions/analyze", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&origin, "/api/v1/nothing").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn counts_are_per_method_and_path_without_query() {
    let origin = start(small()).await;
    get(&origin, "/api/v1/echo?body=a").await;
    get(&origin, "/api/v1/echo?body=b").await;
    post(&origin, "/api/v1/echo", "").await;
    get(&origin, "/api/v1/repositories/1").await;

    assert_eq!(origin.count("GET", "/api/v1/echo"), 2);
    assert_eq!(origin.count("post", "/api/v1/echo"), 1);
    assert_eq!(origin.count("GET", "/api/v1/repositories/1"), 1);
    assert_eq!(origin.count("GET", "/api/v1/repositories/2"), 0);
    assert_eq!(origin.total(), 4);

    // The admin endpoints see the counts but are not counted themselves.
    let counts = get(&origin, "/_origin/counts").await.json();
    assert_eq!(counts["GET /api/v1/echo"], 2);
    assert_eq!(counts["POST /api/v1/echo"], 1);
    assert_eq!(origin.total(), 4);

    origin.reset_counts();
    assert_eq!(origin.total(), 0);
    get(&origin, "/api/v1/health").await;
    assert_eq!(
        post(&origin, "/_origin/reset", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(origin.total(), 0);
}

#[tokio::test]
async fn a_held_answer_is_counted_then_delivered_stale_on_release() {
    let origin = start(small()).await;
    origin.hold("/api/v1/repositories/1/ai-features");
    let url = format!("{}/api/v1/repositories/1/ai-features", origin.url());
    let fill = tokio::spawn(send(Method::GET, url, &[], ""));

    assert!(origin.wait_until_waiting(1, Duration::from_secs(5)).await);
    assert_eq!(origin.count("GET", "/api/v1/repositories/1/ai-features"), 1);
    // Other paths, and the re-analysis under the held prefix, go through.
    assert_eq!(get(&origin, "/api/v1/repositories/1").await.version(), 1);
    let analyzed = post(&origin, "/api/v1/repositories/1/actions/analyze", "").await;
    assert_eq!(analyzed.json()["analysis_version"], 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !fill.is_finished(),
        "the held request answered before release"
    );

    origin.release("/api/v1/repositories/1/ai-features");
    let reply = fill.await.expect("fill task");
    assert_eq!(reply.status, StatusCode::OK);
    // The answer was produced when the request arrived: the fill delivers the old version.
    assert_eq!(reply.version(), 1);
    assert_eq!(
        get(&origin, "/api/v1/repositories/1/ai-features")
            .await
            .version(),
        2
    );
    assert_eq!(origin.waiting(), 0);
}

#[tokio::test]
async fn shutdown_releases_held_requests_and_stops_listening() {
    let origin = start(small()).await;
    origin.hold("/api/v1/");
    let url = format!("{}/api/v1/health", origin.url());
    let held = tokio::spawn(send(Method::GET, url, &[], ""));
    assert!(origin.wait_until_waiting(1, Duration::from_secs(5)).await);

    let addr = origin.addr;
    origin.shutdown().await;
    assert_eq!(held.await.expect("held task").status, StatusCode::OK);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn ai_features_answer_after_their_delay() {
    let delay = Duration::from_millis(100);
    let origin = start(OriginConfig {
        ai_features_delay: delay,
        ..small()
    })
    .await;
    let started = Instant::now();
    let reply = get(&origin, "/api/v1/repositories/4/ai-features").await;
    assert!(
        started.elapsed() >= delay,
        "answered in {:?}",
        started.elapsed()
    );
    let features = reply.json();
    assert!(
        features["features"]
            .as_array()
            .is_some_and(|f| f.len() >= 4)
    );
    assert!(features["features"][0]["confidence"].is_f64());
}

#[tokio::test]
async fn embeddings_depend_only_on_the_text() {
    let origin = start(small()).await;
    let one = post(&origin, "/api/v1/embeddings", r#"{"text": "fn main() {}"}"#).await;
    let again = post(&origin, "/api/v1/embeddings", r#"{"text": "fn main() {}"}"#).await;
    let other = post(
        &origin,
        "/api/v1/embeddings",
        r#"{"text": "fn other() {}"}"#,
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, again.body);
    assert_ne!(one.body, other.body);
    assert_eq!(one.json()["embedding"].as_array().map(Vec::len), Some(16));

    for bad in ["not json", r#"{"txt": "x"}"#, ""] {
        let reply = post(&origin, "/api/v1/embeddings", bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
}

#[tokio::test]
async fn me_needs_authorization_and_names_the_token_owner() {
    let origin = start(small()).await;
    let url = format!("{}/api/v1/me", origin.url());
    let anonymous = send(Method::GET, url.clone(), &[], "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers.contains_key(header::WWW_AUTHENTICATE));

    let alice = send(
        Method::GET,
        url.clone(),
        &[("authorization", "Bearer alice-token-1")],
        "",
    )
    .await;
    let bob = send(
        Method::GET,
        url,
        &[("authorization", "Bearer bob-token-22")],
        "",
    )
    .await;
    assert_eq!(alice.json()["user"], "alice-to");
    assert_eq!(bob.json()["user"], "bob-toke");
    assert!(!alice.headers.contains_key(header::CACHE_CONTROL));
}

#[tokio::test]
async fn echo_answers_with_the_requested_status_and_headers() {
    let origin = start(small()).await;
    let path = "/api/v1/echo?status=203&cache_control=max-age%3D60&vary=accept&etag=%22v1%22\
                &last_modified=Wed,%2001%20Jan%202025%2000:00:00%20GMT&body=hello";
    let first = get(&origin, path).await;
    assert_eq!(first.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
    assert_eq!(first.headers[header::CACHE_CONTROL], "max-age=60");
    assert_eq!(first.headers[header::VARY], "accept");
    assert_eq!(first.headers[header::ETAG], "\"v1\"");
    assert_eq!(
        first.headers[header::LAST_MODIFIED],
        "Wed, 01 Jan 2025 00:00:00 GMT"
    );
    assert_eq!(first.json()["body"], "hello");

    // Every answer carries a new serial: a cached answer is recognisable.
    let second = get(&origin, path).await;
    assert_eq!(first.json()["serial"], 1);
    assert_eq!(second.json()["serial"], 2);
    assert_eq!(second.headers["x-origin-serial"], "2");

    let bare = get(&origin, "/api/v1/echo").await;
    assert_eq!(bare.status, StatusCode::OK);
    assert!(!bare.headers.contains_key(header::CACHE_CONTROL));
    assert_eq!(
        get(&origin, "/api/v1/echo?status=99").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn echo_revalidates_a_matching_etag_with_304() {
    let origin = start(small()).await;
    let url = format!(
        "{}/api/v1/echo?etag=%22v1%22&cache_control=no-cache",
        origin.url()
    );
    let matching = send(Method::GET, url.clone(), &[("if-none-match", "\"v1\"")], "").await;
    assert_eq!(matching.status, StatusCode::NOT_MODIFIED);
    assert!(matching.body.is_empty());
    assert_eq!(matching.headers[header::ETAG], "\"v1\"");
    let stale = send(Method::GET, url, &[("if-none-match", "\"v0\"")], "").await;
    assert_eq!(stale.status, StatusCode::OK);
}

#[tokio::test]
async fn echo_waits_for_the_requested_delay() {
    let origin = start(small()).await;
    let started = Instant::now();
    get(&origin, "/api/v1/echo?delay_ms=100").await;
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn repositories_are_listed_in_pages() {
    let origin = start(small()).await;
    let all = get(&origin, "/api/v1/repositories").await.json();
    assert_eq!(all["total"], 5);
    assert_eq!(all["repositories"].as_array().map(Vec::len), Some(5));
    let page = get(&origin, "/api/v1/repositories?page=2&per_page=2")
        .await
        .json();
    let ids: Vec<u64> = page["repositories"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|repository| repository["id"].as_u64())
        .collect();
    assert_eq!(ids, [3, 4]);
    assert_eq!(
        get(&origin, "/api/v1/repositories?page=x").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn the_presets_differ_only_in_delays() {
    let fast = OriginConfig::fast();
    assert_eq!(fast.ai_features_delay, Duration::from_millis(1200));
    assert_eq!(fast.repository_delay, Duration::ZERO);
    assert_eq!(OriginConfig::zero_delay().ai_features_delay, Duration::ZERO);
    assert_eq!(OriginConfig::default().repositories, 50);
    assert_eq!(
        OriginConfig::default().with_non_ai_delays(Duration::ZERO),
        OriginConfig {
            ai_features_delay: Duration::from_millis(1200),
            ..OriginConfig::zero_delay()
        }
    );
}

// The generator of analysis documents.
#[test]
fn dates_are_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(EPOCH), "2025-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
}

#[test]
fn complexity_analysis_has_more_than_seventy_fields() {
    assert!(complexity_analysis(1, 1).len() >= 70);
}

#[test]
fn answers_depend_only_on_id_and_version() {
    assert_eq!(complexity_analysis(3, 1), complexity_analysis(3, 1));
    assert_ne!(complexity_analysis(3, 1), complexity_analysis(3, 2));
    assert_eq!(ai_features(3, 2), ai_features(3, 2));
    assert_eq!(tech_stack(3, 2), tech_stack(3, 2));
}

#[test]
fn repository_names_are_unique() {
    let names: std::collections::BTreeSet<String> =
        (1..=200).map(|id| Identity::of(id).name).collect();
    assert_eq!(names.len(), 200);
}

#[test]
fn language_mix_adds_up_to_the_code_lines() {
    for id in 1..=50 {
        let total: u64 = language_mix(id, 1, 123_457)
            .iter()
            .map(|(_, loc)| loc)
            .sum();
        assert_eq!(total, 123_457);
    }
}

#[test]
fn embeddings_are_unit_vectors_determined_by_the_text() {
    let a = embedding("fn main() {}");
    assert_eq!(a.len(), 16);
    assert_eq!(a, embedding("fn main() {}"));
    assert_ne!(a, embedding("fn main() { }"));
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn webdriver_screenshots_are_base64_decoded() {
    use larder_tests::webdriver::base64_decode;
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}
