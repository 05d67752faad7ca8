//! Every way a call can fail, and the one function that says what to do about it.
//!
//! [`classify`] is the whole of PROTOCOL.md §6 "client reactions": the engine asks it, never
//! inspects codes itself. Errors keep the service's `code`, `message` and `codeDesc` so the ledger
//! and the logs can show exactly what the service said.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The three calls of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Init,
    Part,
    Finish,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Init => "InitUploadEx",
            Action::Part => "UploadPartEx",
            Action::Finish => "FinishUploadEx",
        }
    }
}

/// A service answer with `code < 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceError {
    pub code: i64,
    pub message: String,
    #[serde(rename = "codeDesc")]
    pub code_desc: String,
    #[serde(rename = "canRetry")]
    pub can_retry: Option<i64>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.message)?;
        if !self.code_desc.is_empty() {
            write!(f, " ({})", self.code_desc)?;
        }
        Ok(())
    }
}

/// A call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{action} refused: {error}", action = .action.as_str())]
    Service { action: Action, error: ServiceError },
    #[error("{action}: transport error: {detail}", action = .action.as_str())]
    Transport { action: Action, detail: String },
    #[error("{action}: http status {status}: {body}", action = .action.as_str())]
    Http {
        action: Action,
        status: u16,
        body: String,
    },
    #[error("{action}: not a protocol answer (http {status}): {body}", action = .action.as_str())]
    BadBody {
        action: Action,
        status: u16,
        body: String,
    },
}

impl CallError {
    /// Whether the service said a part's body did not match its `dataMd5` (-10006): the bytes
    /// were damaged on the way, or are not the bytes that were hashed.
    pub fn is_body_mismatch(&self) -> bool {
        self.service().is_some_and(|s| s.code == BODY_MISMATCH_CODE)
    }

    /// The service's error, when the service answered one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            CallError::Service { error, .. } => Some(error),
            _ => None,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            CallError::Service { action, .. }
            | CallError::Transport { action, .. }
            | CallError::Http { action, .. }
            | CallError::BadBody { action, .. } => *action,
        }
    }

    /// The code recorded in the ledger: the service's, or the HTTP status negated, or 0 for
    /// transport errors.
    pub fn code(&self) -> i64 {
        match self {
            CallError::Service { error, .. } => error.code,
            CallError::Http { status, .. } | CallError::BadBody { status, .. } => {
                -i64::from(*status)
            }
            CallError::Transport { .. } => 0,
        }
    }
}

/// How quickly to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The configured base delay.
    Normal,
    /// A longer base: the service said its request quota is exceeded (4400, HTTP 429).
    Slow,
    /// Retry only a few times: an answer we do not understand may be a passing proxy fault.
    Few,
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wait (backoff) and send the same call again.
    Retry(Pace),
    /// Wait, run init again and reconcile the held parts, then go on.
    Reinit,
    /// Make a new signature, run init again, then go on.
    Resign,
    /// Give up on this file; record the error.
    Final,
}

/// Platform codes that retry although `canRetry` is not 1.
const RETRY_CODES: [i64; 3] = [5100, 6000, 6200];
const QUOTA_CODE: i64 = 4400;
/// The service's code for a signature it refused (wrong key, or expired).
pub const SIGNATURE_CODE: i64 = -10002;
const NO_UPLOAD_CODE: i64 = -10005;
const BODY_MISMATCH_CODE: i64 = -10006;

/// Classify a failed call (PROTOCOL.md §6). `signature_stale` says whether the signature the call
/// carried is expired or within the renewal margin by the client's own clock.
pub fn classify(error: &CallError, signature_stale: bool) -> Verdict {
    match error {
        CallError::Service { action, error } => classify_service(*action, error, signature_stale),
        CallError::Transport { .. } => Verdict::Retry(Pace::Normal),
        CallError::Http { status, .. } => match status {
            429 => Verdict::Retry(Pace::Slow),
            408 | 500..=599 => Verdict::Retry(Pace::Normal),
            _ => Verdict::Retry(Pace::Few),
        },
        CallError::BadBody { .. } => Verdict::Retry(Pace::Few),
    }
}

fn classify_service(action: Action, error: &ServiceError, signature_stale: bool) -> Verdict {
    let code = error.code;
    if code == SIGNATURE_CODE {
        let expired = error.code_desc.contains("expired") || error.message.contains("expired");
        return if signature_stale || expired {
            Verdict::Resign
        } else {
            Verdict::Final
        };
    }
    if code == NO_UPLOAD_CODE && action == Action::Part {
        return Verdict::Reinit;
    }
    if code == QUOTA_CODE {
        return Verdict::Retry(Pace::Slow);
    }
    if error.can_retry == Some(1) || RETRY_CODES.contains(&code) {
        return if action == Action::Finish {
            Verdict::Reinit
        } else {
            Verdict::Retry(Pace::Normal)
        };
    }
    Verdict::Final
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(action: Action, code: i64, can_retry: Option<i64>, desc: &str) -> CallError {
        CallError::Service {
            action,
            error: ServiceError {
                code,
                message: "m".into(),
                code_desc: desc.into(),
                can_retry,
            },
        }
    }

    #[test]
    fn service_codes_follow_the_protocol_table() {
        use Action::*;
        let cases = [
            (
                service(Part, -10006, Some(1), ""),
                Verdict::Retry(Pace::Normal),
            ),
            (
                service(Init, -10004, Some(1), ""),
                Verdict::Retry(Pace::Normal),
            ),
            (service(Part, -10005, Some(1), ""), Verdict::Reinit),
            (
                service(Finish, -10003, Some(1), "2 parts missing"),
                Verdict::Reinit,
            ),
            (
                service(Finish, -10003, Some(0), "sha1 mismatch"),
                Verdict::Final,
            ),
            (service(Part, -10003, Some(0), "offset"), Verdict::Final),
            (
                service(Part, -10002, Some(0), "hmac does not match"),
                Verdict::Final,
            ),
            (
                service(Part, -10002, Some(0), "signature expired"),
                Verdict::Resign,
            ),
            (service(Init, 4400, None, ""), Verdict::Retry(Pace::Slow)),
            (
                service(Init, 6200, Some(0), ""),
                Verdict::Retry(Pace::Normal),
            ),
            (service(Part, 5100, None, ""), Verdict::Retry(Pace::Normal)),
            (service(Part, 6000, None, ""), Verdict::Retry(Pace::Normal)),
            (service(Init, 4100, Some(0), ""), Verdict::Final),
            (service(Init, 4300, None, ""), Verdict::Final),
            (service(Part, -10001, Some(7), ""), Verdict::Final),
        ];
        for (error, verdict) in cases {
            assert_eq!(classify(&error, false), verdict, "{error}");
        }
    }

    #[test]
    fn a_stale_signature_is_renewed_whatever_the_description() {
        let e = service(Action::Init, -10002, Some(0), "");
        assert_eq!(classify(&e, true), Verdict::Resign);
        assert_eq!(classify(&e, false), Verdict::Final);
    }

    #[test]
    fn transport_and_http_outcomes() {
        let a = Action::Part;
        let http = |status| CallError::Http {
            action: a,
            status,
            body: String::new(),
        };
        assert_eq!(
            classify(
                &CallError::Transport {
                    action: a,
                    detail: "reset".into()
                },
                false
            ),
            Verdict::Retry(Pace::Normal)
        );
        for s in [500, 502, 503, 504, 408] {
            assert_eq!(
                classify(&http(s), false),
                Verdict::Retry(Pace::Normal),
                "{s}"
            );
        }
        assert_eq!(classify(&http(429), false), Verdict::Retry(Pace::Slow));
        assert_eq!(classify(&http(404), false), Verdict::Retry(Pace::Few));
        let bad = CallError::BadBody {
            action: a,
            status: 200,
            body: "<html>".into(),
        };
        assert_eq!(classify(&bad, false), Verdict::Retry(Pace::Few));
    }

    #[test]
    fn error_text_keeps_code_message_and_description() {
        let e = service(Action::Finish, -10003, Some(0), "sha1 mismatch");
        assert_eq!(
            e.to_string(),
            "FinishUploadEx refused: code -10003: m (sha1 mismatch)"
        );
        assert_eq!(e.code(), -10003);
    }
}
