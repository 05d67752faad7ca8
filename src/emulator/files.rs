//! `GET /files/{fileId}/{name}`: the bytes of a finished file (PROTOCOL.md §7).
//!
//! Owns serving only: the file is streamed from disk in large chunks, never loaded whole (files
//! may be 1 GiB). Which files exist is [`super::state`]'s knowledge.

use super::app::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio_util::io::ReaderStream;

/// Bytes read from disk per body chunk.
const CHUNK: usize = 256 * 1024;

pub async fn download(
    State(app): State<Arc<App>>,
    Path((file_id, name)): Path<(String, String)>,
) -> Response {
    let Some(file) = app.store.file(&file_id).filter(|f| f.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let opened = match tokio::fs::File::open(&file.path).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::error!(fileId = %file_id, path = %file.path.display(), %error, "cannot open finished file");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read file\n").into_response();
        }
    };
    let body = Body::from_stream(ReaderStream::with_capacity(opened, CHUNK));
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, file.size.to_string()),
    ];
    (headers, body).into_response()
}
