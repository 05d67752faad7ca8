//! Wire types of the three calls: the requests vodup sends and the answers it accepts.
//!
//! Parsing is tolerant as PROTOCOL.md asks (unknown fields, `dataSha` for `dataMd5`, a resume answer
//! without `dataSize`, an instant or finish answer without `url`, numbers sent as strings); the
//! strictness lives in the emulator.

use serde::{Deserialize, Deserializer};

/// InitUploadEx's query parameters.
#[derive(Debug, Clone, Copy)]
pub struct InitRequest<'a> {
    pub file_sha: &'a str,
    pub file_size: u64,
    /// The part size the client asks for; the service may impose another on resume.
    pub part_size: u64,
    pub signature: &'a str,
}

/// UploadPartEx's query parameters; the body travels beside it.
#[derive(Debug, Clone, Copy)]
pub struct PartRequest<'a> {
    pub file_sha: &'a str,
    pub offset: u64,
    /// The body's length as announced; the client sets it from the body.
    pub data_size: u64,
    pub data_md5: &'a str,
    pub signature: &'a str,
}

/// A part the service says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPart {
    pub offset: u64,
    pub len: u64,
    /// The hash the service reported, whatever its key was called.
    pub hash: Option<String>,
}

/// What InitUploadEx answered, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitAnswer {
    /// Code 0: the service holds no part.
    New,
    /// Code 1: the service holds `held`; `part_size` is the size the upload is fixed to, when sent.
    Resume {
        part_size: Option<u64>,
        held: Vec<HeldPart>,
    },
    /// Code 2: the file is already there.
    Instant {
        file_id: String,
        url: Option<String>,
    },
}

/// What FinishUploadEx answered, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishAnswer {
    pub file_id: String,
    pub url: Option<String>,
    pub verify_content: Option<String>,
}

/// Every field any answer may carry; absent ones take their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAnswer {
    /// `None` when the body has no integer `code`: then it is not an answer at all.
    #[serde(deserialize_with = "lenient_opt_i64")]
    pub code: Option<i64>,
    #[serde(deserialize_with = "lenient_string")]
    pub message: String,
    #[serde(rename = "codeDesc", deserialize_with = "lenient_string")]
    pub code_desc: String,
    #[serde(rename = "canRetry", deserialize_with = "lenient_opt_i64")]
    pub can_retry: Option<i64>,
    #[serde(rename = "dataSize", deserialize_with = "lenient_opt_i64")]
    pub data_size: Option<i64>,
    #[serde(rename = "listParts")]
    pub list_parts: Option<Vec<RawHeldPart>>,
    #[serde(rename = "fileId", deserialize_with = "exact_id")]
    pub file_id: String,
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub verify_content: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawHeldPart {
    #[serde(deserialize_with = "lenient_i64")]
    offset: i64,
    #[serde(rename = "dataSize", deserialize_with = "lenient_i64")]
    data_size: i64,
    #[serde(rename = "dataMd5", alias = "dataSha", default)]
    hash: Option<String>,
}

impl RawAnswer {
    pub(crate) fn held_parts(&self) -> Vec<HeldPart> {
        self.list_parts
            .iter()
            .flatten()
            .filter(|p| p.offset >= 0 && p.data_size > 0)
            .map(|p| HeldPart {
                offset: p.offset as u64,
                len: p.data_size as u64,
                hash: p.hash.clone(),
            })
            .collect()
    }

    pub(crate) fn non_empty(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }
}

/// An integer, or a string holding one (some gateways quote numbers).
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    lenient_opt_i64(d)?.ok_or_else(|| serde::de::Error::custom("expected an integer"))
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A string, a number shown as a string, or nothing.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// An id as the service sent it: a string, or the digits of a JSON number exactly as written (a
/// number past 2^64 would come out of an `f64` rounded, as `1.2345678901234568e+29`); absent or
/// null is empty. Anything else makes the answer not an answer.
fn exact_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error as _;
    let raw = <Box<serde_json::value::RawValue>>::deserialize(d)?;
    let text = raw.get().trim();
    if text.starts_with('"') {
        serde_json::from_str(text).map_err(D::Error::custom)
    } else if text == "null" {
        Ok(String::new())
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(D::Error::custom(format!("fileId {text} is not an id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> RawAnswer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn resume_answer_accepts_data_sha_and_unknown_fields() {
        let a = parse(
            r#"{"code":1,"message":"","extra":{"x":1},
                "listParts":[{"offset":0,"dataSize":524288,"dataSha":"abc"},
                             {"offset":"524288","dataSize":10,"dataMd5":"def","more":true}]}"#,
        );
        assert_eq!(a.code, Some(1));
        assert_eq!(a.data_size, None);
        assert_eq!(
            a.held_parts(),
            vec![
                HeldPart {
                    offset: 0,
                    len: 524_288,
                    hash: Some("abc".into())
                },
                HeldPart {
                    offset: 524_288,
                    len: 10,
                    hash: Some("def".into())
                },
            ]
        );
    }

    #[test]
    fn instant_answer_without_code_desc_or_can_retry() {
        let a = parse(
            r#"{"code":2,"message":"ok","fileId":7031868222808505913,"url":"http://x/y.mp4"}"#,
        );
        assert_eq!(a.code, Some(2));
        assert_eq!(a.can_retry, None);
        assert_eq!(a.file_id, "7031868222808505913");
        assert_eq!(a.url, "http://x/y.mp4");
    }

    #[test]
    fn a_file_id_past_any_integer_type_is_kept_digit_for_digit() {
        let a = parse(r#"{"code":0,"fileId":123456789012345678901234567890,"url":"u"}"#);
        assert_eq!(a.file_id, "123456789012345678901234567890");
        assert_eq!(parse(r#"{"code":0,"fileId":"42"}"#).file_id, "42");
        assert_eq!(parse(r#"{"code":0,"fileId":null}"#).file_id, "");
        assert_eq!(parse(r#"{"code":0}"#).file_id, "");
        for bad in ["1.5", "-3", "1e30", "{}", "[1]", "true"] {
            let json = format!(r#"{{"code":0,"fileId":{bad}}}"#);
            assert!(
                serde_json::from_str::<RawAnswer>(&json).is_err(),
                "{bad} taken as an id"
            );
        }
    }

    #[test]
    fn error_answer_with_quoted_numbers() {
        let a = parse(
            r#"{"code":"-10006","message":"md5","codeDesc":"dataMd5 mismatch","canRetry":"1"}"#,
        );
        assert_eq!((a.code, a.can_retry), (Some(-10006), Some(1)));
        assert_eq!(a.code_desc, "dataMd5 mismatch");
    }

    #[test]
    fn an_answer_without_code_has_no_code() {
        assert_eq!(parse(r#"{"message":"x"}"#).code, None);
        assert_eq!(parse(r#"{"code":"zero"}"#).code, None);
    }
}
