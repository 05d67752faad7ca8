//! `GET /files/{fileId}/{name}`: the bytes of a finished file (PROTOCOL.md §7).
//!
//! Owns serving only: the file's part files are streamed from disk one after the other, in large
//! chunks and without their headers, never loaded whole (files may be 1 GiB). Which files exist and
//! where their parts are is [`super::state`]'s knowledge.

use super::app::App;
use super::disk::PART_HEADER_BYTES;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt as _, TryStreamExt as _};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncSeekExt as _;
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
    let stream = futures::stream::iter(file.parts)
        .then(open_part)
        .try_flatten()
        .inspect_err(move |error| {
            tracing::error!(fileId = %file_id, %error, "cannot read finished file");
        });
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, file.size.to_string()),
    ];
    (headers, Body::from_stream(stream)).into_response()
}

/// A part file's bytes, after its header.
async fn open_part(path: PathBuf) -> std::io::Result<ReaderStream<tokio::fs::File>> {
    let mut file = tokio::fs::File::open(&path).await?;
    file.seek(SeekFrom::Start(PART_HEADER_BYTES)).await?;
    Ok(ReaderStream::with_capacity(file, CHUNK))
}
