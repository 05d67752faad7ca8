//! The protocol endpoint: dispatch on `Action`, then InitUploadEx and FinishUploadEx
//! (PROTOCOL.md §2, §4); UploadPartEx is in [`super::part`].
//!
//! Owns the order of the checks (method, parameters, signature, protocol rules) and the answer each
//! outcome gets. Fault injection runs first, before any state is read or changed. The state and
//! its rules are [`super::state`]'s.

use super::answer::{wrong_method, Answer, ListedPart, STALE_SIGNATURE};
use super::app::App;
use super::body;
use super::conn::ConnHandle;
use super::inject::{self, Gate};
use super::params::{Action, FinishParams, InitParams, Query};
use super::part;
use super::rules;
use super::state::{FinishOutcome, InitOutcome};
use crate::protocol::plan::PartSize;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::sync::Arc;

/// `/v2/index.php`, any method.
pub async fn protocol(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnHandle>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let agent = headers.get(axum::http::header::USER_AGENT);
    app.stats
        .call(agent.map_or("-", |a| a.to_str().unwrap_or("(not text)")));
    let query = Query::parse(uri.query());
    let action = match query.action() {
        Ok(action) => action,
        Err(error) => {
            body::drain(body).await;
            return Answer::param(error.to_string()).into_response();
        }
    };
    let decision = app.faults.decide(action, query.raw("fileSha"));
    let body = match inject::apply(&app, action, decision, body, &conn).await {
        Gate::Pass(body) => body,
        Gate::Answered(response) => return response,
    };
    // Init and finish take no body: whatever came is read so that the answer is not lost.
    match action {
        Action::Init => {
            body::drain(body).await;
            init(&app, &method, &query).await
        }
        Action::Part => part::upload_part(app, &method, &query, body).await,
        Action::Finish => {
            body::drain(body).await;
            finish(&app, &method, &query).await
        }
    }
    .into_response()
}

async fn init(app: &App, method: &Method, query: &Query) -> Answer {
    let answer = match init_checked(app, method, query).await {
        Ok(answer) | Err(answer) => answer,
    };
    app.stats.init(answer.code);
    tracing::info!(
        fileSha = query.raw("fileSha").unwrap_or(""),
        code = answer.code,
        desc = %answer.code_desc,
        "init"
    );
    answer
}

async fn init_checked(app: &App, method: &Method, query: &Query) -> Result<Answer, Answer> {
    if let Some(answer) = wrong_method(method, Method::GET, Action::Init) {
        return Err(answer);
    }
    let p = InitParams::from_query(query).map_err(|e| Answer::param(e.to_string()))?;
    app.verify(&p.signature, &p.file_sha)
        .map_err(|e| Answer::signature(e.to_string()))?;
    if !rules::PART_SIZES.contains(&p.data_size) {
        let desc = format!("dataSize {} is neither 524288 nor 1048576", p.data_size);
        return Err(Answer::protocol(false, desc));
    }
    let part_size = PartSize::from_bytes(p.data_size).expect("one of the part sizes");
    if p.file_size == 0 {
        return Err(Answer::protocol(false, "fileSize must be at least 1"));
    }
    let outcome = app
        .store
        .init(&p, part_size)
        .await
        .map_err(|e| Answer::write_state(e.to_string()))?;
    Ok(match outcome {
        InitOutcome::New => Answer::code(0),
        InitOutcome::Resume { part_size, parts } => Answer {
            data_size: Some(part_size),
            list_parts: Some(
                parts
                    .into_iter()
                    .map(|(offset, held)| ListedPart {
                        offset,
                        data_size: held.len,
                        data_md5: held.md5,
                    })
                    .collect(),
            ),
            ..Answer::code(1)
        },
        InitOutcome::Finished(file) => Answer {
            url: Some(app.file_url(&file)),
            file_id: Some(file.file_id),
            ..Answer::code(2)
        },
        InitOutcome::SizeMismatch { known } => Answer::protocol(
            false,
            format!(
                "fileSize {} differs from this fileSha's {known}",
                p.file_size
            ),
        ),
    })
}

async fn finish(app: &App, method: &Method, query: &Query) -> Answer {
    let answer = match finish_checked(app, method, query).await {
        Ok(answer) | Err(answer) => answer,
    };
    app.stats.finish(answer.code == 0);
    tracing::info!(
        fileSha = query.raw("fileSha").unwrap_or(""),
        code = answer.code,
        fileId = answer.file_id.as_deref().unwrap_or(""),
        desc = %answer.code_desc,
        "finish"
    );
    answer
}

async fn finish_checked(app: &App, method: &Method, query: &Query) -> Result<Answer, Answer> {
    if let Some(answer) = wrong_method(method, Method::GET, Action::Finish) {
        return Err(answer);
    }
    let p = FinishParams::from_query(query).map_err(|e| Answer::param(e.to_string()))?;
    let claims = app
        .verify(&p.signature, &p.file_sha)
        .map_err(|e| Answer::signature(e.to_string()))?;
    let outcome = app
        .store
        .finish(&p, &claims.file_name)
        .await
        .map_err(|e| Answer::write_state(e.to_string()))?;
    Ok(match outcome {
        FinishOutcome::Done { file, .. } => Answer {
            url: Some(app.file_url(&file)),
            verify_content: Some(app.verify_content(&file)),
            file_id: Some(file.file_id),
            ..Answer::code(0)
        },
        FinishOutcome::NoUpload => Answer::no_upload(),
        FinishOutcome::StaleSignature => Answer::signature(STALE_SIGNATURE),
        FinishOutcome::Missing { missing, total } => {
            let message = format!("{} of {total} parts missing", missing.len());
            let shown: Vec<String> = missing.iter().take(8).map(u64::to_string).collect();
            let desc = format!("{message}; first missing offsets: {}", shown.join(", "));
            Answer::error(super::answer::PROTOCOL, true, message, desc)
        }
        FinishOutcome::ShaMismatch { actual } => Answer::protocol(
            false,
            format!(
                "sha-1 of the assembled parts is {actual}, not fileSha; the parts were discarded"
            ),
        ),
    })
}
