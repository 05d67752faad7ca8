//! Which path goes to which handler: the one place that knows every handler and the state they
//! share.

use super::app::{App, ENDPOINT_PATH};
use super::{admin, files, handlers};
use axum::routing::{any, get};
use axum::Router;
use std::sync::Arc;

/// Every route the emulator serves.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(ENDPOINT_PATH, any(handlers::protocol))
        .route("/files/{file_id}/{name}", get(files::download))
        .merge(admin::routes())
        .with_state(app)
}
