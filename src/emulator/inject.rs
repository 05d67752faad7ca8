//! Carrying out a fault decision ([`super::faults::Decision`]) on a live request.
//!
//! Owns the mechanics: waiting (cut short by shutdown, with HTTP 503), answering an HTTP error or an injected JSON error, and closing the
//! connection after part of the body. It runs before the action's handler, so an injected fault
//! never changes the state. What to inject is decided in [`super::faults`].

use super::answer::Answer;
use super::app::App;
use super::body;
use super::conn::ConnHandle;
use super::faults::{Decision, Injected};
use super::params::Action;
use super::stats::Reject;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What the request does after fault injection.
#[derive(Debug)]
pub enum Gate {
    /// No fault: the handler gets the body.
    Pass(Body),
    /// A fault answered the request.
    Answered(Response),
}

/// Wait the decision's delay, then inject its outcome if it has one.
pub async fn apply(
    app: &App,
    action: Action,
    decision: Decision,
    body: Body,
    conn: &ConnHandle,
) -> Gate {
    if decision.stalled {
        app.stats.injected("stall");
    }
    if !decision.delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(decision.delay) => {}
            _ = app.shutdown.cancelled() => {
                let answer = (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
                return Gate::Answered(answer.into_response());
            }
        }
    }
    let Some(injected) = decision.outcome else {
        return Gate::Pass(body);
    };
    tracing::debug!(
        action = action.name(),
        kind = injected.kind(),
        "fault injected"
    );
    app.stats.injected(injected.kind());
    count(app, action, injected);
    let response = match injected {
        Injected::Drop { after_bytes } => {
            body::read_at_least(body, after_bytes).await;
            conn.drop_connection();
            return std::future::pending().await;
        }
        Injected::Status(status) => {
            let status = StatusCode::from_u16(status).expect("500 and 503 are statuses");
            (status, "injected fault\n").into_response()
        }
        Injected::Answer { code, can_retry } => {
            let desc = format!(
                "injected fault: code {code}, canRetry {}",
                u8::from(can_retry)
            );
            Answer::error(code, can_retry, "injected fault", desc).into_response()
        }
    };
    body::drain(body).await;
    Gate::Answered(response)
}

/// Count an injected fault under its action's counters.
fn count(app: &App, action: Action, injected: Injected) {
    match (action, injected) {
        (Action::Part, _) => app.stats.part_rejected(Reject::Injected),
        (Action::Init, Injected::Answer { code, .. }) => app.stats.init(code),
        (Action::Init, _) => {}
        (Action::Finish, _) => app.stats.finish(false),
    }
}
