//! The service's rules as the emulator enforces them, written from PROTOCOL.md apart from the
//! client's code (`crate::protocol`): the part sizes init accepts (§2), what a part is (§3), the
//! signature's checks (§5) and the finish answer's `verify_content` (§4). A client that misreads
//! the protocol is refused here rather than agreed with by its own reading; the tests hold these
//! to PROTOCOL.md's own vectors and examples. Nothing here decides what an answer says.

use crate::protocol::SecretKey;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use std::collections::HashMap;

/// §2: the part sizes (`dataSize` of init) the service accepts.
pub const PART_SIZES: [u64; 2] = [524_288, 1_048_576];

/// §3: whether `len` bytes at `offset` are one part of a file of `file_size` bytes cut into
/// parts of `part_size`: the offset a multiple of it below the file's end, and the length the
/// part size, or what is left for the last part.
pub fn is_part(file_size: u64, part_size: u64, offset: u64, len: u64) -> bool {
    if part_size == 0 || offset >= file_size || offset % part_size != 0 {
        return false;
    }
    let left = file_size - offset;
    len == if left < part_size { left } else { part_size }
}

/// §3: every part of a file, as (offset, length), in order.
pub fn parts(file_size: u64, part_size: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = usize::try_from(part_size.max(1)).unwrap_or(usize::MAX);
    (0..file_size)
        .step_by(step)
        .map(move |offset| (offset, part_size.min(file_size - offset)))
}

/// §5: `e - t` at most 90 days.
const LONGEST: u64 = 7_776_000;
/// §5: `t - 300 <= now`.
const SKEW: u64 = 300;
/// §5: the name `f`, at most 40 bytes and none of these.
const NAME_BYTES: usize = 40;
const NOT_IN_NAMES: [char; 8] = ['\\', '/', ':', '*', '?', '"', '<', '>'];

/// What a signature that passed says of the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub secret_id: String,
    /// `f`: the name the file is stored under.
    pub file_name: String,
}

/// Why a signature is refused: the answer's `codeDesc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("signature is not valid base64")]
    NotBase64,
    #[error("signature is too short to hold an hmac")]
    TooShort,
    #[error("signature plaintext is not a valid query string: {0}")]
    Malformed(String),
    #[error("signature lacks the required key `{0}`")]
    Missing(&'static str),
    #[error("unknown secret id")]
    UnknownSecretId,
    #[error("hmac does not match")]
    BadHmac,
    #[error("signature expired")]
    Expired,
    #[error("signature issued in the future")]
    NotYetValid,
    #[error("signature validity exceeds 90 days")]
    TooLong,
    #[error("signature fs does not match fileSha")]
    FileShaMismatch,
    #[error("invalid file name in signature")]
    BadFileName,
}

/// §5's checks of `encoded` for a call about `file_sha` at `now` (Unix seconds), the keys of
/// known secret ids in `keys`: Base64, the HMAC-SHA1 of the exact plaintext bytes under the
/// key of `s`, the times, `fs`, the required keys and the name.
pub fn check_signature(
    encoded: &str,
    keys: &HashMap<String, SecretKey>,
    file_sha: &str,
    now: u64,
) -> Result<Signed, Refused> {
    let raw = BASE64.decode(encoded).map_err(|_| Refused::NotBase64)?;
    if raw.len() <= 20 {
        return Err(Refused::TooShort);
    }
    let (tag, plain) = raw.split_at(20);
    let fields = fields(plain)?;
    let field = |key: &'static str| fields.get(key).ok_or(Refused::Missing(key));
    let seconds = |key: &'static str| -> Result<u64, Refused> {
        let text = field(key)?;
        text.parse()
            .map_err(|_| Refused::Malformed(format!("`{key}` is not an unsigned integer")))
    };
    // Every required key first, then the key and the HMAC, then what the keys say.
    let r = field("r")?;
    if r.is_empty() || r.len() > 10 || !r.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed("`r` must be at most 10 digits".into()));
    }
    let secret_id = field("s")?;
    let (issued, expires) = (seconds("t")?, seconds("e")?);
    let (name, signed_sha) = (field("f")?, field("fs")?);
    for required in ["ft", "uid"] {
        field(required)?;
    }
    let key = keys.get(secret_id).ok_or(Refused::UnknownSecretId)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(key.held_by_the_service())
        .expect("hmac takes a key of any length");
    mac.update(plain);
    mac.verify_slice(tag).map_err(|_| Refused::BadHmac)?;
    if expires < issued || expires - issued > LONGEST {
        return Err(Refused::TooLong);
    }
    if issued > now + SKEW {
        return Err(Refused::NotYetValid);
    }
    if now > expires {
        return Err(Refused::Expired);
    }
    if signed_sha != file_sha {
        return Err(Refused::FileShaMismatch);
    }
    if name.is_empty() || name.len() > NAME_BYTES || name.contains(NOT_IN_NAMES) {
        return Err(Refused::BadFileName);
    }
    Ok(Signed {
        secret_id: secret_id.clone(),
        file_name: name.clone(),
    })
}

/// The plaintext's keys and values, URL-decoded.
fn fields(plain: &[u8]) -> Result<HashMap<String, String>, Refused> {
    let text = std::str::from_utf8(plain).map_err(|_| Refused::Malformed("not utf-8".into()))?;
    let pairs = form_urlencoded::parse(text.as_bytes());
    Ok(pairs
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// §4: `verify_content` of a finish answer, valid until `expires` (Unix seconds):
/// `Base64(hex(HMAC-SHA1(verify key, PLAIN)) ‖ PLAIN)`, PLAIN `ExpTime=<unix>&FileId=<fileId>`.
pub fn verify_content(verify_key: &str, expires: u64, file_id: &str) -> String {
    let plain = format!("ExpTime={expires}&FileId={file_id}");
    let mut mac = Hmac::<Sha1>::new_from_slice(verify_key.as_bytes())
        .expect("hmac takes a key of any length");
    mac.update(plain.as_bytes());
    let hex = hex::encode(mac.finalize().into_bytes());
    BASE64.encode(format!("{hex}{plain}"))
}

#[cfg(test)]
mod tests;
