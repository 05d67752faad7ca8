//! UploadPartEx (PROTOCOL.md §3): one part's bytes, checked and held.
//!
//! Owns the order of a part's checks (method, parameters, signature, upload, part rules, body) and
//! the reading of the body: it is streamed into memory as the chunks hyper delivers (at most one
//! part size, never joined or copied), then hashed and written on a blocking thread by the store.
//! Every part request is counted as accepted or as rejected with a reason.

use super::answer::Answer;
use super::app::App;
use super::handlers::{wrong_method, STALE_SIGNATURE};
use super::params::{Action, PartParams, Query};
use super::state::{PartCheck, PartReceived};
use super::stats::Reject;
use axum::body::{Body, Bytes};
use axum::http::Method;
use futures::StreamExt as _;

/// An accepted part request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    bytes: u64,
    duplicate: bool,
}

/// Handle one UploadPartEx request and count it.
pub async fn upload_part(app: &App, method: &Method, query: &Query, body: Body) -> Answer {
    let sha = query.raw("fileSha").unwrap_or("");
    let offset = query.raw("offset").unwrap_or("");
    match receive(app, method, query, body).await {
        Ok(Accepted { bytes, duplicate }) => {
            app.stats.part_accepted(sha, bytes, duplicate);
            tracing::debug!(fileSha = sha, offset, bytes, duplicate, "part accepted");
            Answer::code(0)
        }
        Err((reason, answer)) => {
            app.stats.part_rejected(reason);
            tracing::debug!(
                fileSha = sha,
                offset,
                reason = reason.as_str(),
                code = answer.code,
                desc = %answer.code_desc,
                "part rejected"
            );
            answer
        }
    }
}

async fn receive(
    app: &App,
    method: &Method,
    query: &Query,
    body: Body,
) -> Result<Accepted, (Reject, Answer)> {
    if let Some(answer) = wrong_method(method, Method::POST, Action::Part) {
        return Err((Reject::Method, answer));
    }
    let p =
        PartParams::from_query(query).map_err(|e| (Reject::Param, Answer::param(e.to_string())))?;
    app.verify(&p.signature, &p.file_sha)
        .map_err(|e| (Reject::Signature, Answer::signature(e.to_string())))?;
    let ticket = match app.store.check_part(&p).await {
        PartCheck::Ready(ticket) => ticket,
        PartCheck::NoUpload => return Err((Reject::NoUpload, Answer::no_upload())),
        PartCheck::StaleSignature => {
            return Err((Reject::Signature, Answer::signature(STALE_SIGNATURE)))
        }
        PartCheck::BadOffset(desc) => return Err((Reject::Offset, Answer::protocol(false, desc))),
        PartCheck::BadSize(desc) => return Err((Reject::Size, Answer::protocol(false, desc))),
    };
    let chunks = read_body(body, p.data_size).await?;
    match app.store.receive_part(&p, ticket, chunks).await {
        Ok(PartReceived::Stored) => Ok(Accepted {
            bytes: p.data_size,
            duplicate: false,
        }),
        Ok(PartReceived::Duplicate) => Ok(Accepted {
            bytes: p.data_size,
            duplicate: true,
        }),
        Ok(PartReceived::Md5Mismatch { actual }) => {
            let desc = format!("body md5 is {actual}, dataMd5 is {}", p.data_md5);
            Err((Reject::Md5, Answer::body(desc)))
        }
        Ok(PartReceived::Gone) => Err((Reject::NoUpload, Answer::no_upload())),
        Err(e) => {
            tracing::error!(fileSha = %p.file_sha, offset = p.offset, error = %e, "cannot store part");
            Err((Reject::Storage, Answer::write_state(e.to_string())))
        }
    }
}

/// The body as received, refused as soon as it exceeds `expected` bytes or if it ends short.
async fn read_body(body: Body, expected: u64) -> Result<Vec<Bytes>, (Reject, Answer)> {
    let mut stream = body.into_data_stream();
    let mut chunks = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                Reject::Aborted,
                Answer::body(format!("body cut short: {e}")),
            )
        })?;
        total += chunk.len() as u64;
        if total > expected {
            let desc = format!("body is longer than dataSize {expected}");
            return Err((Reject::Length, Answer::body(desc)));
        }
        chunks.push(chunk);
    }
    if total < expected {
        let desc = format!("body has {total} bytes, dataSize is {expected}");
        return Err((Reject::Length, Answer::body(desc)));
    }
    Ok(chunks)
}
