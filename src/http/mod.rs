//! The HTTP listener (`[http] listen`, or its old name `[metrics] listen`): a read-only status
//! page for the people who drop files (`/`, its `/app.js` and `/app.css`, refreshed from
//! `/files.json`) and the Prometheus exposition (`/metrics`).
//!
//! GET only; every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only, no inline code), `nosniff`, `no-referrer` and `DENY` framing. The page shows what
//! the ledger's records hold (no secret, no signature, no config), names escaped by
//! [`crate::shown`] and put in the DOM as text by the script. With `[http] token_file`, every
//! request must carry the token (bearer, or basic authentication's password, which a browser asks
//! for); without it, it listens on loopback unless configured otherwise (README). What a file
//! looks like on the page is `files.rs`; the metrics are [`crate::metrics`].
//!
//! It answers only requests whose `Host` is an IP literal, `localhost` or one of
//! `[http] allowed_hosts` (a page reached through another name is a DNS rebinding), and holds at
//! most [`MAX_CONNECTIONS`] connections, each given [`HEADER_TIMEOUT`] to send its request head
//! and [`CONNECTION_LIFE`] in all, so slow clients cannot hold it (or the daemon's descriptors).

mod files;

use crate::ledger::Ledger;
use crate::metrics::Metrics;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection has to send each request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may stay open in all (a page reconnects; it refreshes every 2 s).
pub const CONNECTION_LIFE: Duration = Duration::from_secs(120);
/// Pause after a failed `accept` (out of descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// Who may be answered: requests naming one of these hosts (besides IP literals and
/// `localhost`), carrying the token if there is one.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allowed_hosts: Vec<String>,
    pub token: Option<crate::protocol::SecretKey>,
}

/// Serve the page and `/metrics` on `listen` until `cancel`, to the requests `access` admits.
pub async fn serve(
    listen: SocketAddr,
    access: Access,
    metrics: Metrics,
    ledger: Ledger,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let login = access.token.is_some();
    tracing::info!(%listen, login, "status page and metrics listening");
    let router = router(metrics, ledger, access);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "http: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("http: {MAX_CONNECTIONS} connections open: closing a new one");
            continue;
        };
        let router = router.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |request| router.clone().oneshot(request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFE, connection).await;
            drop(slot);
        });
    }
}

/// The routes, each GET only (other methods get 405), with the security headers on every answer,
/// for requests whose `Host` is an IP literal, `localhost` or one of `access.allowed_hosts`
/// (others get 421) and that carry `access.token` if there is one (others get 401).
pub fn router(metrics: Metrics, ledger: Ledger, access: Access) -> Router {
    let allowed: Arc<[String]> = access
        .allowed_hosts
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let token = Arc::new(access.token);
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
        .layer(axum::middleware::from_fn(move |request, next| {
            authenticated(token.clone(), request, next)
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            host_checked(allowed.clone(), request, next)
        }))
        .layer(axum::middleware::map_response(secure))
}

async fn host_checked(
    allowed: Arc<[String]>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if host_allowed(host, &allowed) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not one the status page answers to (http.allowed_hosts)\n",
        )
            .into_response(),
    }
}

/// With a token, only requests that carry it: `Authorization: Bearer TOKEN`, or `Basic` with
/// the token as the password. Others get 401 with a `Basic` challenge, so a browser asks.
async fn authenticated(
    token: Arc<Option<crate::protocol::SecretKey>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential);
    if given.is_some_and(|given| token.verifies(&given)) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"vodup\", charset=\"UTF-8\"",
        )],
        "this status page asks for its token (http.token_file): as a bearer token, or as the \
         password of basic authentication\n",
    )
        .into_response()
}

/// The token an `Authorization` value carries: a bearer token, or a basic password.
fn credential(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().as_bytes().to_vec());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// Whether `host` (a `Host` header: name or address, maybe with a port) may be answered: an IP
/// literal or `localhost` (no DNS name an attacker controls), or a name of `allowed`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || allowed.iter().any(|a| a.trim_end_matches('.') == name)
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

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_ip_literals_localhost_and_the_allowed_names_are_answered() {
        let allowed = ["vodup.example.com".to_owned()];
        for ok in [
            "127.0.0.1:9464",
            "10.1.2.3",
            "[::1]:9464",
            "localhost:9464",
            "LOCALHOST",
            "vodup.example.com",
            "VODUP.example.com.:443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9464",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1",
            "[evil]:80",
            "",
        ] {
            assert!(!host_allowed(refused, &allowed), "{refused}");
        }
    }
}
