//! `/_admin/*` (PROTOCOL.md §7): read and replace the fault set, read and reset the counters.
//!
//! Owns these routes only; the fault set's meaning is [`super::faults`]'s and the counters are
//! [`super::stats`]'s. Admin requests are never subject to fault injection.

use super::app::App;
use super::faults::Faults;
use super::stats::Stats;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/_admin/faults", get(get_faults).post(set_faults))
        .route("/_admin/stats", get(get_stats))
        .route("/_admin/stats/reset", post(reset_stats))
}

async fn get_faults(State(app): State<Arc<App>>) -> Json<Faults> {
    Json(app.faults.faults())
}

/// Replace the whole fault set (and re-seed its RNG); answers the new set.
async fn set_faults(State(app): State<Arc<App>>, Json(faults): Json<Faults>) -> Response {
    if let Err(error) = faults.validate() {
        return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
    }
    tracing::info!(?faults, "faults replaced");
    app.faults.set(faults.clone());
    Json(faults).into_response()
}

async fn get_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    Json(app.stats.snapshot())
}

async fn reset_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    app.stats.reset();
    Json(app.stats.snapshot())
}
