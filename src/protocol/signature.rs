//! The UGC upload signature (PROTOCOL.md §5) and the finish answer's `verify_content` (§4).
//!
//! Owns building and encoding signatures, telling one of ours, and the file-name rules of the `f` and `ft`
//! keys. It holds the secret key only inside [`SecretKey`], whose `Debug` never prints it; it does
//! not decide when to re-sign (the upload engine asks [`Signature::needs_renewal`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::fmt;

type HmacSha1 = Hmac<Sha1>;

/// Longest validity the service accepts: 90 days.
pub const MAX_VALIDITY_SECS: u64 = 7_776_000;
/// A signature this close to its expiry is renewed before the next call.
pub const RENEW_MARGIN_SECS: u64 = 300;
/// Longest file name (`f`) in bytes.
pub const MAX_NAME_BYTES: usize = 40;
const FORBIDDEN_NAME_CHARS: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>'];

/// The secret key. Cloneable and comparable, but never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> Self {
        SecretKey(key.into())
    }

    fn mac(&self) -> HmacSha1 {
        HmacSha1::new_from_slice(self.0.as_bytes()).expect("hmac accepts keys of any length")
    }

    /// The key itself, for the emulator, which plays the service and so holds the apps' keys.
    pub(crate) fn held_by_the_service(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// HMAC-SHA256 of `message` under this key, lowercase hex (a webhook's signature).
    pub fn hmac_sha256_hex(&self, message: &[u8]) -> String {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.as_bytes())
            .expect("hmac accepts keys of any length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `given` (a password or token a client sent) is this secret, compared in time that
    /// does not depend on where they differ (their SHA-256 digests are compared).
    pub fn verifies(&self, given: &[u8]) -> bool {
        use sha2::Digest as _;
        let (ours, theirs) = (
            sha2::Sha256::digest(self.0.as_bytes()),
            sha2::Sha256::digest(given),
        );
        ours.iter()
            .zip(theirs.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
    }

    /// Whether the key is `text` (the example config's placeholder, say), compared without
    /// handing the key out.
    pub fn is(&self, text: &str) -> bool {
        self.0 == text
    }
}

impl<'de> serde::Deserialize<'de> for SecretKey {
    /// A value that is not a string is refused without serde's usual quote of it (a key written
    /// without quotes, say, would be shown).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)
            .map(SecretKey)
            .map_err(|_| serde::de::Error::custom("must be a string (its value is not shown)"))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Processing options carried by the signature (all optional on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processing {
    pub transcode: bool,
    pub screenshot: bool,
    pub watermark: bool,
    pub class_id: Option<u64>,
    pub tags: Vec<String>,
}

/// The plaintext claims of a signature: the keys of ORIGINAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub secret_id: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub random: u32,
    pub file_name: String,
    pub file_sha: String,
    pub file_type: String,
    pub uid: String,
    pub processing: Processing,
}

impl Claims {
    /// ORIGINAL: the URL-encoded query string that is signed, in the order of the test vector.
    pub fn original(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("s", &self.secret_id)
            .append_pair("t", &self.issued_at.to_string())
            .append_pair("e", &self.expires_at.to_string())
            .append_pair("f", &self.file_name)
            .append_pair("fs", &self.file_sha)
            .append_pair("ft", &self.file_type)
            .append_pair("uid", &self.uid)
            .append_pair("r", &self.random.to_string());
        let p = &self.processing;
        if p.transcode {
            q.append_pair("tc", "1");
            if p.screenshot {
                q.append_pair("ss", "1");
            }
            if p.watermark {
                q.append_pair("wm", "1");
            }
        }
        if let Some(cid) = p.class_id {
            q.append_pair("cid", &cid.to_string());
        }
        for (i, tag) in p.tags.iter().take(10).enumerate() {
            q.append_pair(&format!("tag.{}", i + 1), tag);
        }
        q.finish()
    }

    /// Sign these claims: `Base64(HMAC-SHA1(key, ORIGINAL) ‖ ORIGINAL)`.
    pub fn sign(&self, key: &SecretKey) -> Signature {
        Signature {
            encoded: sign_original(key, &self.original()),
            expires_at: self.expires_at,
        }
    }
}

/// Sign an ORIGINAL string as it is.
pub fn sign_original(key: &SecretKey, original: &str) -> String {
    let mut mac = key.mac();
    mac.update(original.as_bytes());
    let mut raw = mac.finalize().into_bytes().to_vec();
    raw.extend_from_slice(original.as_bytes());
    BASE64.encode(raw)
}

/// A signature ready to send, with the expiry the engine needs to renew it in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub encoded: String,
    pub expires_at: u64,
}

impl Signature {
    pub fn needs_renewal(&self, now: u64) -> bool {
        now + RENEW_MARGIN_SECS >= self.expires_at
    }
}

/// The claims of a signature whose HMAC checks out with the key `lookup` gives for its secret id,
/// if it does: whether a stored signature is one these credentials made. Its times, file and name
/// are the service's to judge (the emulator judges them with its own reading of PROTOCOL.md §5).
pub fn authentic(encoded: &str, lookup: impl Fn(&str) -> Option<SecretKey>) -> Option<Claims> {
    let raw = BASE64.decode(encoded.as_bytes()).ok()?;
    if raw.len() <= 20 {
        return None;
    }
    let (tag, original) = raw.split_at(20);
    let claims = parse_original(original)?;
    let mut mac = lookup(&claims.secret_id)?.mac();
    mac.update(original);
    mac.verify_slice(tag).ok()?;
    Some(claims)
}

fn parse_original(original: &[u8]) -> Option<Claims> {
    let text = std::str::from_utf8(original).ok()?;
    let mut fields = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        fields.insert(k.into_owned(), v.into_owned());
    }
    let get = |k: &str| fields.get(k).cloned();
    let num = |k: &str| -> Option<u64> { get(k)?.parse().ok() };
    let flag = |k: &str| fields.get(k).is_some_and(|v| v == "1");
    let tags = (1..=10).filter_map(|i| get(&format!("tag.{i}"))).collect();
    Some(Claims {
        secret_id: get("s")?,
        issued_at: num("t")?,
        expires_at: num("e")?,
        random: get("r")?.parse().ok()?,
        file_name: get("f")?,
        file_sha: get("fs")?,
        file_type: get("ft")?,
        uid: get("uid")?,
        processing: Processing {
            transcode: flag("tc"),
            screenshot: flag("ss"),
            watermark: flag("wm"),
            class_id: fields.get("cid").and_then(|c| c.parse().ok()),
            tags,
        },
    })
}

/// The `f` value for an on-disk name: forbidden characters become `_`, and the name is cut to 40
/// bytes on a character boundary, keeping the extension.
pub fn file_name_for(on_disk: &str) -> String {
    let clean: String = on_disk
        .chars()
        .map(|c| {
            if FORBIDDEN_NAME_CHARS.contains(&c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.len() <= MAX_NAME_BYTES {
        return clean;
    }
    let (stem, ext) = match clean.rfind('.') {
        Some(dot) if dot > 0 && clean.len() - dot <= MAX_NAME_BYTES / 2 => clean.split_at(dot),
        _ => (clean.as_str(), ""),
    };
    let mut cut = MAX_NAME_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// The `ft` value: the lowercased extension without the dot (empty when there is none).
pub fn file_type_for(on_disk: &str) -> String {
    match on_disk.rfind('.') {
        Some(dot) if dot > 0 => on_disk[dot + 1..].to_lowercase(),
        _ => String::new(),
    }
}

/// `verify_content` of a finish answer: `Base64(hex(HMAC-SHA1(key, PLAIN)) ‖ PLAIN)`.
pub fn verify_content(verify_key: &str, exp_time: u64, file_id: &str) -> String {
    let plain = format!("ExpTime={exp_time}&FileId={file_id}");
    let mut mac =
        HmacSha1::new_from_slice(verify_key.as_bytes()).expect("hmac accepts keys of any length");
    mac.update(plain.as_bytes());
    let hex = hex::encode(mac.finalize().into_bytes());
    BASE64.encode(format!("{hex}{plain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "bLcPnl88WU30VY57ipRhSePfPdOfSruK";
    const SID: &str = "AKIDxxxxxxxxUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv";
    const ORIGINAL: &str = "s=AKIDxxxxxxxxUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv&t=1488160264&e=1488246664&f=tencent_test.mp4&fs=a9993e364706816aba3e25717850c26c9cd0d89d&ft=mp4&uid=1234&r=123456789";
    const SIGNATURE: &str = "0cwyHQazPO2snYxH++jtRVO+oIJzPUFLSUR4eHh4eHh4eFVmTFVFVWlnUWlYcW03Q1ZTc3BLSm51YWlJS3R4cUF2JnQ9MTQ4ODE2MDI2NCZlPTE0ODgyNDY2NjQmZj10ZW5jZW50X3Rlc3QubXA0JmZzPWE5OTkzZTM2NDcwNjgxNmFiYTNlMjU3MTc4NTBjMjZjOWNkMGQ4OWQmZnQ9bXA0JnVpZD0xMjM0JnI9MTIzNDU2Nzg5";
    const FS: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    fn vector_claims() -> Claims {
        Claims {
            secret_id: SID.into(),
            issued_at: 1_488_160_264,
            expires_at: 1_488_246_664,
            random: 123_456_789,
            file_name: "tencent_test.mp4".into(),
            file_sha: FS.into(),
            file_type: "mp4".into(),
            uid: "1234".into(),
            processing: Processing::default(),
        }
    }

    fn lookup(id: &str) -> Option<SecretKey> {
        (id == SID).then(|| SecretKey::new(KEY))
    }

    #[test]
    fn signature_matches_the_protocol_test_vector() {
        let claims = vector_claims();
        assert_eq!(claims.original(), ORIGINAL);
        let raw = BASE64.decode(SIGNATURE).unwrap();
        assert_eq!(
            hex::encode(&raw[..20]),
            "d1cc321d06b33cedac9d8c47fbe8ed4553bea082"
        );
        assert_eq!(claims.sign(&SecretKey::new(KEY)).encoded, SIGNATURE);
    }

    #[test]
    fn the_test_vector_is_authentic_under_its_key_only() {
        assert_eq!(authentic(SIGNATURE, lookup), Some(vector_claims()));
        assert_eq!(authentic("%%%", lookup), None, "not base64");
        assert_eq!(authentic("AAAA", lookup), None, "too short");
        assert_eq!(authentic(SIGNATURE, |_| None), None, "unknown secret id");
        let other = |_: &str| Some(SecretKey::new("other"));
        assert_eq!(authentic(SIGNATURE, other), None, "another key");
    }

    #[test]
    fn processing_options_round_trip_through_a_signature() {
        let mut claims = vector_claims();
        claims.file_name = "a b&c=d.mp4".into();
        claims.processing = Processing {
            transcode: true,
            screenshot: true,
            watermark: false,
            class_id: Some(7),
            tags: vec!["news".into(), "ünïcode tag".into()],
        };
        let sig = claims.sign(&SecretKey::new(KEY));
        assert_eq!(authentic(&sig.encoded, lookup), Some(claims));
    }

    #[test]
    fn renewal_starts_five_minutes_before_expiry() {
        let sig = vector_claims().sign(&SecretKey::new(KEY));
        assert!(!sig.needs_renewal(1_488_246_664 - 301));
        assert!(sig.needs_renewal(1_488_246_664 - 300));
    }

    #[test]
    fn verify_content_matches_the_protocol_test_vector() {
        assert_eq!(
            verify_content("6367c48dd193d56ea7b0baad25b19455e529f5ee", 1_488_160_264, "7031868222808505913"),
            "MzMyOTY0NGIwNTk4YTc2YzZjNDljNTk3YTJhNzNkOGE1ZjA3YWJlOUV4cFRpbWU9MTQ4ODE2MDI2NCZGaWxlSWQ9NzAzMTg2ODIyMjgwODUwNTkxMw=="
        );
    }

    #[test]
    fn file_names_are_cleaned_and_cut_keeping_the_extension() {
        assert_eq!(file_name_for("a:b*c?.mp4"), "a_b_c_.mp4");
        let long = format!("{}.mov", "x".repeat(60));
        let cut = file_name_for(&long);
        assert_eq!(cut.len(), 40);
        assert!(cut.ends_with(".mov"));
        let wide = format!("{}.mp4", "é".repeat(30));
        let cut = file_name_for(&wide);
        assert!(cut.len() <= 40 && cut.ends_with(".mp4"));
        assert_eq!(file_type_for("Clip.MP4"), "mp4");
        assert_eq!(file_type_for("noext"), "");
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let shown = format!("{:?}", SecretKey::new(KEY));
        assert!(!shown.contains(KEY));
    }
}
