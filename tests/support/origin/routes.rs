//! The HTTP face of the origin: the router, the middleware that counts and holds requests, and
//! one handler per endpoint. Handlers only read the state and ask `analysis` for bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::analysis;
use super::state::Shared;

type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/repositories", get(list_repositories))
        .route("/api/v1/repositories/{id}", get(repository))
        .route("/api/v1/repositories/{id}/ai-features", get(ai_features))
        .route("/api/v1/repositories/{id}/tech-stack", get(tech_stack))
        .route("/api/v1/repositories/{id}/actions/analyze", post(analyze))
        .route("/api/v1/insights", get(insights))
        .route("/api/v1/embeddings", post(embeddings))
        .route("/api/v1/me", get(me))
        .route("/api/v1/echo", any(echo))
        .route("/api/v1/blob", get(blob))
        .route("/_origin/counts", get(origin_counts))
        .route("/_origin/reset", post(origin_reset))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), observe))
        .with_state(shared)
}

/// Why a request failed; rendered as `{"error": {"code", "message"}}` like the real backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("repository id `{0}` is not a number")]
    BadRepositoryId(String),
    #[error("repository {0} does not exist")]
    UnknownRepository(u64),
    #[error("invalid query string: {0}")]
    BadQuery(String),
    #[error("invalid request body: {0}")]
    BadBody(String),
    #[error("an Authorization header is required")]
    Unauthorized,
    #[error("no endpoint at {0}")]
    NoRoute(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRepositoryId(_) | Self::BadQuery(_) | Self::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnknownRepository(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRepositoryId(_) => "invalid_repository_id",
            Self::UnknownRepository(_) => "repository_not_found",
            Self::BadQuery(_) => "invalid_query",
            Self::BadBody(_) => "invalid_body",
            Self::Unauthorized => "unauthorized",
            Self::NoRoute(_) => "not_found",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code(), "message": self.to_string()}}));
        let mut response = (self.status(), body).into_response();
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scat\""),
            );
        }
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadQuery(rejection.body_text())
    }
}

/// Counts every request outside `/_origin/*`, then parks its answer while a hold covers its path.
///
/// The hold sits after the handler: like a slow real backend, the answer reflects the state when
/// the request arrived (handlers read the analysis version before their delay). A fill parked by a
/// hold therefore delivers the old version after a re-analysis: the race the gateway must survive.
async fn observe(State(shared): AppState, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/_origin/") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    shared.record(&method, &path);
    let started = Instant::now();
    let response = next.run(request).await;
    shared.wait_while_held(&path).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "served"
    );
    response
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Parses a repository id and checks that the repository exists; returns it with its version.
fn repository_id(shared: &Shared, raw: &str) -> Result<(u64, u64), ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRepositoryId(raw.to_owned()));
    }
    // All digits but too large for u64: a number, just not one of ours.
    let id = raw.parse().unwrap_or(u64::MAX);
    let version = shared.version(id).ok_or(ApiError::UnknownRepository(id))?;
    Ok((id, version))
}

async fn health(State(shared): AppState) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "scat",
        "version": "4.2.1",
        "repositories": shared.repositories(),
        "uptime_seconds": shared.started.elapsed().as_secs(),
    }))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    page: Option<u64>,
    per_page: Option<u64>,
}

async fn list_repositories(
    State(shared): AppState,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let page = params.page.unwrap_or(1).max(1);
    let per_page = params.per_page.unwrap_or(100).clamp(1, 100);
    let total = shared.repositories();
    let first = (page - 1).saturating_mul(per_page).saturating_add(1);
    let last = first.saturating_add(per_page - 1).min(total);
    let repositories: Vec<Value> = (first..=last)
        .filter_map(|id| Some(analysis::listing(id, shared.version(id)?)))
        .collect();
    pause(shared.config.repository_delay).await;
    Ok(Json(json!({
        "repositories": repositories,
        "page": page,
        "per_page": per_page,
        "total": total,
    })))
}

async fn repository(
    State(shared): AppState,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, version) = repository_id(&shared, &raw)?;
    pause(shared.config.repository_delay).await;
    let mut body = analysis::listing(id, version);
    if let Value::Object(fields) = &mut body {
        fields.insert(
            "analyzed_at".into(),
            json!(analysis::analyzed_at(id, version)),
        );
        fields.insert(
            "complexity_analysis".into(),
            Value::Object(analysis::complexity_analysis(id, version)),
        );
    }
    Ok(Json(body))
}

async fn ai_features(
    State(shared): AppState,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, version) = repository_id(&shared, &raw)?;
    pause(shared.config.ai_features_delay).await;
    Ok(Json(analysis::ai_features(id, version)))
}

async fn tech_stack(
    State(shared): AppState,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, version) = repository_id(&shared, &raw)?;
    pause(shared.config.tech_stack_delay).await;
    Ok(Json(analysis::tech_stack(id, version)))
}

#[derive(Debug, Deserialize)]
struct AnalyzeParams {
    feature_type: Option<String>,
}

async fn analyze(
    State(shared): AppState,
    Path(raw): Path<String>,
    params: Result<Query<AnalyzeParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let (id, _) = repository_id(&shared, &raw)?;
    let feature_type = params
        .feature_type
        .filter(|feature| !feature.is_empty())
        .unwrap_or_else(|| "complexity".to_owned());
    let delay = shared.config.analyze_delay;
    let version = if delay.is_zero() {
        shared.reanalyze(id)
    } else {
        // A job of its own: it completes even if the caller hangs up.
        let job = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            job.reanalyze(id)
        })
        .await
        .ok()
        .flatten()
    }
    .ok_or(ApiError::UnknownRepository(id))?;
    tracing::info!(id, feature_type, version, "repository re-analysed");
    Ok(Json(json!({
        "id": id,
        "feature_type": feature_type,
        "status": "completed",
        "analysis_version": version,
        "analyzed_at": analysis::analyzed_at(id, version),
    })))
}

async fn insights(State(shared): AppState) -> Json<Value> {
    // Versions are read before the delay: the answer reflects the state when the request arrived.
    let versions: Vec<u64> = (1..=shared.repositories())
        .filter_map(|id| shared.version(id))
        .collect();
    pause(shared.config.insights_delay).await;
    Json(analysis::insights(&versions))
}

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    text: String,
}

async fn embeddings(State(shared): AppState, body: Bytes) -> Result<Json<Value>, ApiError> {
    // Parsed by hand rather than with `Json<T>` so every malformed body is a 400 (axum would
    // answer 415 or 422 for some), as the real backend does.
    let request: EmbeddingRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::BadBody(error.to_string()))?;
    pause(shared.config.embeddings_delay).await;
    let embedding = analysis::embedding(&request.text);
    Ok(Json(json!({
        "model": "scat-embed-16",
        "dimensions": embedding.len(),
        "tokens": request.text.split_whitespace().count(),
        "embedding": embedding,
    })))
}

async fn me(headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    let user: String = token.chars().take(8).collect();
    Ok(Json(json!({
        "user": user,
        "display_name": format!("User {user}"),
        "scopes": ["repositories:read", "insights:read", "analysis:write"],
    })))
}

#[derive(Debug, Deserialize)]
struct EchoParams {
    status: Option<u16>,
    cache_control: Option<String>,
    cdn_cache_control: Option<String>,
    vary: Option<String>,
    content_language: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    set_cookie: Option<String>,
    surrogate_key: Option<String>,
    body: Option<String>,
    delay_ms: Option<u64>,
}

/// A generic answer for HTTP caching tests: the status and caching headers asked for, and a
/// body carrying a serial number that tells a cached answer from a fresh one.
async fn echo(
    State(shared): AppState,
    method: Method,
    request_headers: HeaderMap,
    params: Result<Query<EchoParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let status = match params.status.map(StatusCode::from_u16) {
        None => StatusCode::OK,
        Some(Ok(status)) if (200..=599).contains(&status.as_u16()) => status,
        Some(_) => return Err(ApiError::BadQuery("status must be in 200..=599".into())),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::CACHE_CONTROL, &params.cache_control),
        (
            HeaderName::from_static("cdn-cache-control"),
            &params.cdn_cache_control,
        ),
        (header::VARY, &params.vary),
        (header::CONTENT_LANGUAGE, &params.content_language),
        (header::ETAG, &params.etag),
        (header::LAST_MODIFIED, &params.last_modified),
        (header::SET_COOKIE, &params.set_cookie),
        (
            HeaderName::from_static("surrogate-key"),
            &params.surrogate_key,
        ),
    ] {
        if let Some(value) = value {
            headers.insert(name.clone(), header_value(&name, value)?);
        }
    }
    pause(Duration::from_millis(params.delay_ms.unwrap_or(0))).await;
    let serial = shared.next_echo_serial();
    headers.insert(HeaderName::from_static("x-origin-serial"), serial.into());

    if matches!(method, Method::GET | Method::HEAD) && not_modified(&params, &request_headers) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        return Ok((status, headers).into_response());
    }
    let body = json!({
        "body": params.body.as_deref().unwrap_or("echo"),
        "serial": serial,
        "method": method.as_str(),
        "status": status.as_u16(),
    });
    Ok((status, headers, Json(body)).into_response())
}

fn header_value(name: &HeaderName, value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|_| ApiError::BadQuery(format!("`{value}` is not a valid {name} value")))
}

/// Whether the request's validators match the ones this echo answer would carry.
fn not_modified(params: &EchoParams, request: &HeaderMap) -> bool {
    let header = |name| request.get(name).and_then(|value| value.to_str().ok());
    if let (Some(etag), Some(candidates)) = (&params.etag, header(header::IF_NONE_MATCH)) {
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        return candidates
            .split(',')
            .any(|candidate| candidate.trim() == "*" || weak(candidate) == weak(etag));
    }
    matches!(
        (&params.last_modified, header(header::IF_MODIFIED_SINCE)),
        (Some(last_modified), Some(since)) if since.trim() == last_modified.trim()
    )
}

#[derive(Debug, Deserialize)]
struct BlobParams {
    bytes: u64,
    /// Send `Content-Length` (default: chunked, no length).
    #[serde(default)]
    length: bool,
}

/// `bytes` bytes of `x`, streamed in 64 KiB chunks, marked cacheable: for checking that a body
/// too large to store passes through in bounded memory. With `length=true` it sends
/// `Content-Length` and answers a single `Range: bytes=a-b` with 206.
async fn blob(
    request_headers: HeaderMap,
    params: Result<Query<BlobParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    const CHUNK: usize = 64 * 1024;
    static ZEROS: [u8; CHUNK] = [b'x'; CHUNK];
    let Query(params) = params?;
    let total = params.bytes;
    let range = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| params.length && a <= b && *b < total);
    let (start, end) = range.unwrap_or((0, total));
    let len = if range.is_some() {
        end - start + 1
    } else {
        total
    };
    let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
        let n = len.saturating_sub(sent).min(CHUNK as u64);
        (n > 0).then(|| {
            let chunk = Bytes::from_static(&ZEROS[..n as usize]);
            (Ok::<_, std::io::Error>(chunk), sent + n)
        })
    });
    let mut response = (
        [
            (header::CACHE_CONTROL, "max-age=60"),
            (header::CONTENT_TYPE, "application/octet-stream"),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response();
    if params.length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {start}-{end}/{total}");
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            header_value(&header::CONTENT_RANGE, &value)?,
        );
    }
    Ok(response)
}

async fn origin_counts(State(shared): AppState) -> Json<Value> {
    Json(json!(shared.counts_snapshot()))
}

async fn origin_reset(State(shared): AppState) -> StatusCode {
    shared.reset_counts();
    StatusCode::NO_CONTENT
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute(request.uri().path().to_owned())
}
