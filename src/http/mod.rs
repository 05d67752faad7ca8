//! The HTTP listener (`[http] listen`, or its old name `[metrics] listen`): a read-only status
//! page for the people who drop files (`/`, its `/app.js` and `/app.css`, refreshed from
//! `/files.json`) and the Prometheus exposition (`/metrics`).
//!
//! GET only; every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only, no inline code), `nosniff`, `no-referrer` and `DENY` framing. The page shows what
//! the ledger's records hold (no secret, no signature, no config), names escaped by
//! [`crate::shown`] and put in the DOM as text by the script. It has no authentication: it
//! listens on loopback unless configured otherwise, behind a reverse proxy that authenticates
//! (README). What a file looks like on the page is `files.rs`; the metrics are
//! [`crate::metrics`].

mod files;

use crate::ledger::Ledger;
use crate::metrics::Metrics;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub use files::{FileRow, FilesPage, FilesQuery};

/// The page's policy: nothing but this origin's script, style and JSON; no inline code, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    ledger: Ledger,
}

/// Serve the page and `/metrics` on `listen` until `cancel`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    ledger: Ledger,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "status page and metrics listening");
    axum::serve(listener, router(metrics, ledger))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

/// The routes, each GET only (other methods get 405), with the security headers on every answer.
pub fn router(metrics: Metrics, ledger: Ledger) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { text("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { text("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { text("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/files.json", get(files_json))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { metrics, ledger })
        .layer(axum::middleware::map_response(secure))
}

fn text(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn files_json(State(shared): State<Shared>, Query(query): Query<FilesQuery>) -> Response {
    match FilesPage::read(&shared.ledger, &query).await {
        Ok(page) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(page)).into_response(),
        Err(e) => failed(e),
    }
}

async fn metrics_text(State(shared): State<Shared>) -> Response {
    let Shared { metrics, ledger } = shared;
    match metrics.render(&ledger).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => failed(e),
    }
}

fn failed(e: crate::ledger::LedgerError) -> Response {
    tracing::warn!(error = %e, "http: the ledger could not be read");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the ledger could not be read\n",
    )
        .into_response()
}

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
