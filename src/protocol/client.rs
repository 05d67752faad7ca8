//! The HTTP client of the three calls. One [`Client`] is shared by every upload (it pools
//! connections); each method makes exactly one request and returns a typed answer or a
//! [`CallError`]. It never retries: retrying is the engine's loop, on the policy of [`super::retry`].
//!
//! An answer's body is read chunk by chunk up to the most the protocol can need (see
//! [`answer_limit`]); a longer one is refused as not a protocol answer without being buffered, so
//! an endpoint that answers forever cannot take the host's memory.

use super::outcome::{Action, CallError, ServiceError};
use super::plan::PartSize;
use super::wire::{FinishAnswer, InitAnswer, InitRequest, PartRequest, RawAnswer};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Network timeouts, from the config's `[timeouts]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP + TLS connection establishment.
    #[serde(with = "super::retry::humantime_serde")]
    pub connect: Duration,
    /// One whole request, a part's body included; a stalled call fails after this.
    #[serde(with = "super::retry::humantime_serde")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint `{0}` is not an http(s) URL")]
    BadEndpoint(String),
    #[error("cannot build the http client: {0}")]
    Build(String),
}

/// How much of an unexpected body is kept for the ledger and the logs.
const BODY_EXCERPT: usize = 200;
/// The most any answer but init's resume list can take: a few short fields.
const ANSWER_BYTES: u64 = 64 * 1024;
/// The most one element of `listParts` can take (`{"offset":…,"dataSize":…,"dataMd5":"…"}` is
/// about 80 bytes).
const HELD_PART_BYTES: u64 = 256;

/// The longest body `action` may answer: init's resume list may name every part of the file at
/// the smallest part size; the other answers are short.
pub fn answer_limit(action: Action, file_size: u64) -> u64 {
    match action {
        Action::Init => file_size
            .div_ceil(PartSize::HalfMiB.bytes())
            .saturating_mul(HELD_PART_BYTES)
            .saturating_add(ANSWER_BYTES),
        Action::Part | Action::Finish => ANSWER_BYTES,
    }
}

/// A part's body: bytes in memory, or a stream read from the file as it is sent, with its
/// length (sent as `Content-Length`, so the service sees a plain body, not a chunked one).
#[derive(Debug)]
pub struct PartBody {
    body: reqwest::Body,
    len: Option<u64>,
}

impl PartBody {
    /// `len` bytes that `stream` yields as they are sent.
    pub fn streamed<S>(len: u64, stream: S) -> PartBody
    where
        S: futures::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        PartBody {
            body: reqwest::Body::wrap_stream(stream),
            len: Some(len),
        }
    }
}

impl From<Bytes> for PartBody {
    fn from(bytes: Bytes) -> PartBody {
        PartBody {
            body: bytes.into(),
            len: None,
        }
    }
}

/// `vodup/VERSION (node NAME)`, the name's characters outside printable ASCII (or a parenthesis)
/// as `?`, so any node name makes a valid header.
fn user_agent(node: &str) -> String {
    let name: String = node
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '(' && c != ')' => c,
            _ => '?',
        })
        .collect();
    format!("vodup/{} (node {name})", env!("CARGO_PKG_VERSION"))
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: reqwest::Url,
}

impl Client {
    /// A client of `endpoint`. `node` names this host in the `User-Agent` (`vodup/VERSION (node
    /// NAME)`), so the service's logs tell a fleet's nodes apart.
    pub fn new(endpoint: &str, timeouts: &Timeouts, node: &str) -> Result<Client, ClientError> {
        let url = reqwest::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ClientError::BadEndpoint(endpoint.to_owned()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .user_agent(user_agent(node))
            // A redirect is an answer, never followed: the signature, the parts and the finish go
            // to the configured endpoint only, and a fileId comes only from it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Client {
            http,
            endpoint: url,
        })
    }

    pub async fn init(&self, req: InitRequest<'_>) -> Result<InitAnswer, CallError> {
        let query = [
            ("fileSha", req.file_sha.to_owned()),
            ("fileSize", req.file_size.to_string()),
            ("dataSize", req.part_size.to_string()),
            ("signature", req.signature.to_owned()),
        ];
        let limit = answer_limit(Action::Init, req.file_size);
        let raw = self.call(Action::Init, &query, None, limit).await?;
        match raw.code {
            Some(0) => Ok(InitAnswer::New),
            Some(1) => Ok(InitAnswer::Resume {
                part_size: raw.data_size.and_then(|s| u64::try_from(s).ok()),
                held: raw.held_parts(),
            }),
            Some(2) if !raw.file_id.is_empty() => Ok(InitAnswer::Instant {
                url: RawAnswer::non_empty(&raw.url),
                file_id: raw.file_id,
            }),
            _ => Err(unexpected(Action::Init, &raw)),
        }
    }

    pub async fn upload_part(
        &self,
        req: PartRequest<'_>,
        body: impl Into<PartBody>,
    ) -> Result<(), CallError> {
        let query = [
            ("fileSha", req.file_sha.to_owned()),
            ("offset", req.offset.to_string()),
            ("dataSize", req.data_size.to_string()),
            ("dataMd5", req.data_md5.to_owned()),
            ("signature", req.signature.to_owned()),
        ];
        let limit = answer_limit(Action::Part, 0);
        let raw = self
            .call(Action::Part, &query, Some(body.into()), limit)
            .await?;
        match raw.code {
            Some(0) => Ok(()),
            _ => Err(unexpected(Action::Part, &raw)),
        }
    }

    pub async fn finish(&self, file_sha: &str, signature: &str) -> Result<FinishAnswer, CallError> {
        let query = [
            ("fileSha", file_sha.to_owned()),
            ("signature", signature.to_owned()),
        ];
        let limit = answer_limit(Action::Finish, 0);
        let raw = self.call(Action::Finish, &query, None, limit).await?;
        match raw.code {
            Some(0) if !raw.file_id.is_empty() => Ok(FinishAnswer {
                url: RawAnswer::non_empty(&raw.url),
                verify_content: RawAnswer::non_empty(&raw.verify_content),
                file_id: raw.file_id,
            }),
            _ => Err(unexpected(Action::Finish, &raw)),
        }
    }

    /// One request: GET for init and finish, POST with the part's bytes for a part. Answers with
    /// `code < 0` become [`CallError::Service`]; a body longer than `limit` bytes is not read
    /// further.
    async fn call(
        &self,
        action: Action,
        params: &[(&str, String)],
        body: Option<PartBody>,
        limit: u64,
    ) -> Result<RawAnswer, CallError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("Action", action.as_str())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let request = match body {
            Some(PartBody { body, len: None }) => self.http.post(url).body(body),
            Some(PartBody {
                body,
                len: Some(len),
            }) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body),
            None => self.http.get(url),
        };
        let transport = |e: reqwest::Error| CallError::Transport {
            action,
            detail: describe(e),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let to = redirected_to(&response);
            return Err(CallError::Http {
                action,
                status,
                body: format!("a redirect to {}: not followed", excerpt(to.as_bytes())),
            });
        }
        let answer = read_answer(&mut response, limit).await.map_err(transport)?;
        // Dropping a response whose body was not read to its end closes the connection.
        drop(response);
        parse_answer(action, status, answer, limit)
    }
}

/// Where a redirect pointed, without its query: a Location often echoes the request's, which
/// carries the signature.
fn redirected_to(response: &reqwest::Response) -> String {
    let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
        return String::new();
    };
    let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
    match reqwest::Url::parse(&location) {
        Ok(url) => format!(
            "{}://{}{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        ),
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// An answer's body read as far as `limit`: the service's answer, or why it is none.
fn parse_answer(
    action: Action,
    status: u16,
    answer: Answer,
    limit: u64,
) -> Result<RawAnswer, CallError> {
    let text = match answer {
        Answer::Whole(text) => text,
        Answer::TooLong(start) if status == 200 => {
            return Err(CallError::BadBody {
                action,
                status,
                body: format!("{}… (longer than {limit} bytes)", excerpt(&start)),
            })
        }
        Answer::TooLong(start) => start,
    };
    tracing::trace!(action = action.as_str(), status, body = %excerpt(&text), "answer");
    if status != 200 {
        return Err(CallError::Http {
            action,
            status,
            body: excerpt(&text),
        });
    }
    let raw: RawAnswer = match serde_json::from_slice(&text) {
        Ok(raw @ RawAnswer { code: Some(_), .. }) => raw,
        _ => {
            return Err(CallError::BadBody {
                action,
                status,
                body: excerpt(&text),
            })
        }
    };
    match raw.code {
        Some(code) if is_error_code(code) => Err(CallError::Service {
            action,
            error: ServiceError {
                code,
                message: raw.message,
                code_desc: raw.code_desc,
                can_retry: raw.can_retry,
            },
        }),
        _ => Ok(raw),
    }
}

/// A body as far as it was read.
enum Answer {
    Whole(Vec<u8>),
    /// Longer than the limit: its first bytes only.
    TooLong(Vec<u8>),
}

/// Read the body chunk by chunk, keeping at most `limit` bytes; a body announced (Content-Length)
/// longer than `limit` is read only as far as its excerpt.
async fn read_answer(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Answer, reqwest::Error> {
    let announced_too_long = response.content_length().is_some_and(|n| n > limit);
    let keep = if announced_too_long {
        BODY_EXCERPT
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX)
    };
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if chunk.len() > keep - body.len() {
            let room = keep - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok(Answer::TooLong(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(if announced_too_long {
        Answer::TooLong(body)
    } else {
        Answer::Whole(body)
    })
}

/// Upload errors are negative; platform errors are 4000-6999 (PROTOCOL.md §6).
fn is_error_code(code: i64) -> bool {
    code < 0 || PLATFORM_CODES.contains(&code)
}

const PLATFORM_CODES: std::ops::RangeInclusive<i64> = 4000..=6999;

/// A success code this call does not define, or a success without its required fields.
fn unexpected(action: Action, raw: &RawAnswer) -> CallError {
    CallError::BadBody {
        action,
        status: 200,
        body: format!(
            "unexpected code {:?} (fileId {:?}, message {:?})",
            raw.code, raw.file_id, raw.message
        ),
    }
}

/// A transport error's text without the URL (the URL carries the signature).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.truncate(400);
    text
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]);
    text.into_owned()
}
