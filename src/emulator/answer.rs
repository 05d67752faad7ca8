//! The JSON answer of every protocol call (PROTOCOL.md §2-4) and the error codes of §6.
//!
//! Owns the wire shape only: field names, which fields appear, and the constructors the handlers
//! use. It does not decide which code a situation deserves; the handlers do.

use super::params::Action;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Common parameter check failed: missing or malformed parameter, wrong method.
pub const PARAM: i64 = -10001;
/// Signature check failed.
pub const SIGNATURE: i64 = -10002;
/// Protocol parameter check failed: offset, sizes, part rules, finish preconditions.
pub const PROTOCOL: i64 = -10003;
/// Writing the upload's state failed.
pub const WRITE_STATE: i64 = -10004;
/// Reading the upload's state failed: the service lost or never had the upload.
pub const READ_STATE: i64 = -10005;
/// Invalid body: length or MD5 differs from the query.
pub const BODY: i64 = -10006;

/// One held part in an init's `listParts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedPart {
    pub offset: u64,
    pub data_size: u64,
    pub data_md5: String,
}

/// Every answer: the four common fields plus the extras of the action that produced it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub code: i64,
    pub message: String,
    pub code_desc: String,
    pub can_retry: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_parts: Option<Vec<ListedPart>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(
        default,
        rename = "verify_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_content: Option<String>,
}

impl Answer {
    /// A success (or an init's code 1 / 2) without extra fields.
    pub fn code(code: i64) -> Answer {
        Answer {
            code,
            ..Answer::default()
        }
    }

    /// A failure: `code < 0` with its `canRetry`, the message and the diagnostic `codeDesc`.
    pub fn error(
        code: i64,
        can_retry: bool,
        message: impl Into<String>,
        desc: impl Into<String>,
    ) -> Answer {
        Answer {
            code,
            message: message.into(),
            code_desc: desc.into(),
            can_retry: i64::from(can_retry),
            ..Answer::default()
        }
    }

    /// -10001, canRetry 0.
    pub fn param(desc: impl Into<String>) -> Answer {
        Answer::error(PARAM, false, "common parameter check failed", desc)
    }

    /// -10002, canRetry 0.
    pub fn signature(desc: impl Into<String>) -> Answer {
        Answer::error(SIGNATURE, false, "signature check failed", desc)
    }

    /// -10003 with the given `canRetry`.
    pub fn protocol(can_retry: bool, desc: impl Into<String>) -> Answer {
        let desc = desc.into();
        Answer::error(PROTOCOL, can_retry, desc.clone(), desc)
    }

    /// -10004, canRetry 1: the emulator could not write its state.
    pub fn write_state(desc: impl Into<String>) -> Answer {
        Answer::error(WRITE_STATE, true, "writing the upload's state failed", desc)
    }

    /// -10005, canRetry 1: no upload is known for this fileSha.
    pub fn no_upload() -> Answer {
        Answer::error(
            READ_STATE,
            true,
            "reading the upload's state failed",
            "no unfinished upload for this fileSha; run InitUploadEx",
        )
    }

    /// -10006, canRetry 1: the body does not match the query.
    pub fn body(desc: impl Into<String>) -> Answer {
        Answer::error(BODY, true, "invalid body", desc)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// `codeDesc` of a part or finish call whose signature is valid but not the latest init's.
pub const STALE_SIGNATURE: &str =
    "signature is not the one of the most recent init of this fileSha";

/// The answer to a request made with the wrong method, if it was.
pub fn wrong_method(method: &Method, expected: Method, action: Action) -> Option<Answer> {
    let desc = format!("{} takes {expected}, not {method}", action.name());
    (*method != expected).then(|| Answer::param(desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_has_the_four_common_fields_only() {
        let json = serde_json::to_value(Answer::code(0)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 0, "message": "", "codeDesc": "", "canRetry": 0})
        );
    }

    #[test]
    fn extra_fields_use_the_protocol_names() {
        let answer = Answer {
            data_size: Some(1_048_576),
            list_parts: Some(vec![ListedPart {
                offset: 0,
                data_size: 1_048_576,
                data_md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
            }]),
            file_id: Some("7".into()),
            url: Some("http://x/files/7/a.mp4".into()),
            verify_content: Some("abc".into()),
            ..Answer::code(1)
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["dataSize"], 1_048_576);
        assert_eq!(
            json["listParts"][0]["dataMd5"],
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(json["listParts"][0]["dataSize"], 1_048_576);
        assert_eq!(json["fileId"], "7");
        assert_eq!(json["verify_content"], "abc");
        let back: Answer = serde_json::from_value(json).unwrap();
        assert_eq!(back, answer);
    }

    #[test]
    fn errors_carry_their_retry_flag() {
        assert_eq!(Answer::body("x").can_retry, 1);
        assert_eq!(Answer::no_upload().code, READ_STATE);
        assert_eq!(Answer::signature("x").can_retry, 0);
        assert_eq!(
            Answer::protocol(true, "2 of 4 parts missing").message,
            "2 of 4 parts missing"
        );
    }
}
