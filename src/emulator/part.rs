//! UploadPartEx (PROTOCOL.md §3): one part's bytes, checked and held.
//!
//! Owns the order of a part's checks (method, parameters, signature, upload, part rules, then the
//! body) and the answer to each outcome. The body is only read once the part is admitted (a refused
//! one is drained, see [`body`]); the store then hashes and writes it on a blocking thread. Every
//! part request is counted as accepted or as rejected with a reason.

use super::answer::{wrong_method, Answer, STALE_SIGNATURE};
use super::app::App;
use super::body;
use super::lanes::Coming;
use super::params::{Action, PartParams, Query};
use super::state::{PartCheck, PartReceived, PartTicket};
use super::stats::Reject;
use axum::body::Body;
use axum::http::Method;
use std::sync::Arc;

/// An accepted part request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    bytes: u64,
    duplicate: bool,
}

/// Handle one UploadPartEx request and count it. Once its body is in, the part is stored and
/// counted in a task of its own, so a client that hangs up meanwhile (a killed uploader) cannot
/// leave a part held but not counted.
pub async fn upload_part(app: Arc<App>, method: &Method, query: &Query, body: Body) -> Answer {
    let admitted = admit_and_read(&app, method, query, body).await;
    let query = query.clone();
    tokio::spawn(async move {
        let outcome = match admitted {
            Ok((p, ticket, chunks, coming)) => store(&app, p, ticket, chunks, coming).await,
            Err(refused) => Err(refused),
        };
        count(&app, &query, outcome)
    })
    .await
    .expect("storing a part does not panic")
}

/// Count an answered part request and give its answer.
fn count(app: &App, query: &Query, outcome: Result<Accepted, (Reject, Answer)>) -> Answer {
    let sha = query.raw("fileSha").unwrap_or("");
    let offset = query.raw("offset").unwrap_or("");
    match outcome {
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

/// The part's checks, then its body (a refused part's body is drained).
async fn admit_and_read(
    app: &App,
    method: &Method,
    query: &Query,
    body: Body,
) -> Result<(PartParams, PartTicket, Vec<bytes::Bytes>, Coming), (Reject, Answer)> {
    let (p, ticket) = match admit(app, method, query).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            body::drain(body).await;
            return Err(refused);
        }
    };
    let coming = app.store.body_coming(p.data_size);
    let chunks = body::read_part(body, p.data_size).await?;
    Ok((p, ticket, chunks, coming))
}

/// Verify and hold a part whose body is in.
async fn store(
    app: &App,
    p: PartParams,
    ticket: PartTicket,
    chunks: Vec<bytes::Bytes>,
    coming: Coming,
) -> Result<Accepted, (Reject, Answer)> {
    match app.store.receive_part(&p, ticket, chunks, coming).await {
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

/// The checks made before the body is read: method, parameters, signature, upload, part rules.
async fn admit(
    app: &App,
    method: &Method,
    query: &Query,
) -> Result<(PartParams, PartTicket), (Reject, Answer)> {
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
    Ok((p, ticket))
}
