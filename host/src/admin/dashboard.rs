//! `GET /`: the dashboard, one self-contained page (no CDN, no build step) that polls
//! `/stats` and draws it: hit ratio over time and per route, the upstream time saved, hit and
//! miss latency, plugins, reloads, the store, and a purge form that posts to `/purge` with the
//! admin token the operator types in (the page itself holds no secret).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
}
