//! Strict parsing of the query string of a protocol call (PROTOCOL.md §2-4).
//!
//! Owns what makes a parameter present and well formed: a missing, repeated or malformed one is a
//! [`ParamError`], which the handlers answer with `-10001`. It does not check the protocol rules
//! between parameters (part sizes, offsets): that is `-10003` and belongs to the handlers and state.

use std::collections::{HashMap, HashSet};

/// The three actions of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Init,
    Part,
    Finish,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Init, Action::Part, Action::Finish];

    /// The `Action` query value.
    pub fn name(self) -> &'static str {
        match self {
            Action::Init => "InitUploadEx",
            Action::Part => "UploadPartEx",
            Action::Finish => "FinishUploadEx",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Why a query is refused with `-10001`; the text becomes `codeDesc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{key}` {reason}")]
    Malformed {
        key: &'static str,
        reason: &'static str,
    },
    #[error("parameter `{0}` is given more than once")]
    Repeated(String),
    #[error("unknown action `{0}`")]
    UnknownAction(String),
}

/// The decoded query string. A key given more than once is refused when it is asked for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: HashMap<String, String>,
    repeated: HashSet<String>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut query = Query::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if query.pairs.contains_key(key.as_ref()) {
                query.repeated.insert(key.into_owned());
            } else {
                query.pairs.insert(key.into_owned(), value.into_owned());
            }
        }
        query
    }

    /// A parameter as first sent, if present (fault scoping and logs look at `fileSha` before
    /// validation).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    pub fn action(&self) -> Result<Action, ParamError> {
        let name = self.required("Action")?;
        Action::from_name(name).ok_or_else(|| ParamError::UnknownAction(name.to_owned()))
    }

    fn required(&self, key: &'static str) -> Result<&str, ParamError> {
        if self.repeated.contains(key) {
            return Err(ParamError::Repeated(key.to_owned()));
        }
        self.raw(key).ok_or(ParamError::Missing(key))
    }

    /// A canonical unsigned decimal: digits only, no sign, no leading zero, fits in 64 bits.
    fn number(&self, key: &'static str) -> Result<u64, ParamError> {
        let text = self.required(key)?;
        let malformed = |reason| ParamError::Malformed { key, reason };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("is not an unsigned decimal integer"));
        }
        if text.len() > 1 && text.starts_with('0') {
            return Err(malformed("has a leading zero"));
        }
        text.parse().map_err(|_| malformed("is too large"))
    }

    /// Exactly `len` lowercase hex characters.
    fn hex(&self, key: &'static str, len: usize) -> Result<String, ParamError> {
        let text = self.required(key)?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != len || !text.bytes().all(lower_hex) {
            let reason = if len == 40 {
                "is not 40 lowercase hex characters"
            } else {
                "is not 32 lowercase hex characters"
            };
            return Err(ParamError::Malformed { key, reason });
        }
        Ok(text.to_owned())
    }

    fn signature(&self) -> Result<String, ParamError> {
        let text = self.required("signature")?;
        if text.is_empty() {
            return Err(ParamError::Malformed {
                key: "signature",
                reason: "is empty",
            });
        }
        Ok(text.to_owned())
    }
}

/// `InitUploadEx` parameters. `data_size` is only well formed here; whether it is one of the two
/// part sizes is a protocol rule (`-10003`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitParams {
    pub file_sha: String,
    pub file_size: u64,
    pub data_size: u64,
    pub signature: String,
}

impl InitParams {
    pub fn from_query(q: &Query) -> Result<InitParams, ParamError> {
        Ok(InitParams {
            file_sha: q.hex("fileSha", 40)?,
            file_size: q.number("fileSize")?,
            data_size: q.number("dataSize")?,
            signature: q.signature()?,
        })
    }
}

/// `UploadPartEx` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartParams {
    pub file_sha: String,
    pub offset: u64,
    pub data_size: u64,
    pub data_md5: String,
    pub signature: String,
}

impl PartParams {
    pub fn from_query(q: &Query) -> Result<PartParams, ParamError> {
        Ok(PartParams {
            file_sha: q.hex("fileSha", 40)?,
            offset: q.number("offset")?,
            data_size: q.number("dataSize")?,
            data_md5: q.hex("dataMd5", 32)?,
            signature: q.signature()?,
        })
    }
}

/// `FinishUploadEx` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishParams {
    pub file_sha: String,
    pub signature: String,
}

impl FinishParams {
    pub fn from_query(q: &Query) -> Result<FinishParams, ParamError> {
        Ok(FinishParams {
            file_sha: q.hex("fileSha", 40)?,
            signature: q.signature()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn query(raw: &str) -> Query {
        Query::parse(Some(raw))
    }

    #[test]
    fn init_parses_url_encoded_values() {
        let q = query(&format!(
            "Action=InitUploadEx&fileSha={SHA}&fileSize=6000000&dataSize=1048576&signature=a%2Bb%2F%3D"
        ));
        assert_eq!(q.action(), Ok(Action::Init));
        let p = InitParams::from_query(&q).unwrap();
        assert_eq!(p.file_size, 6_000_000);
        assert_eq!(p.data_size, 1_048_576);
        assert_eq!(p.signature, "a+b/=");
    }

    #[test]
    fn part_parses_every_field() {
        let q = query(&format!(
            "Action=UploadPartEx&fileSha={SHA}&offset=0&dataSize=3&dataMd5={MD5}&signature=s"
        ));
        let p = PartParams::from_query(&q).unwrap();
        assert_eq!((p.offset, p.data_size, p.data_md5.as_str()), (0, 3, MD5));
    }

    #[test]
    fn missing_and_unknown_actions_are_refused() {
        assert_eq!(query("").action(), Err(ParamError::Missing("Action")));
        assert_eq!(
            query("Action=DeleteFile").action(),
            Err(ParamError::UnknownAction("DeleteFile".into()))
        );
        assert_eq!(
            query("Action=inituploadex").action(),
            Err(ParamError::UnknownAction("inituploadex".into()))
        );
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let q = query("Action=InitUploadEx&Action=InitUploadEx");
        assert_eq!(q.action(), Err(ParamError::Repeated("Action".into())));
        let q = query(&format!(
            "Action=FinishUploadEx&fileSha={SHA}&signature=a&signature=b"
        ));
        assert_eq!(q.action(), Ok(Action::Finish));
        assert_eq!(
            FinishParams::from_query(&q),
            Err(ParamError::Repeated("signature".into()))
        );
    }

    #[test]
    fn numbers_must_be_canonical_unsigned_decimals() {
        let bad = [
            "",
            "-1",
            "+1",
            "1.0",
            "0x10",
            "007",
            "18446744073709551616",
            " 1",
        ];
        for text in bad {
            let q = query(&format!(
                "fileSha={SHA}&fileSize={}&dataSize=1&signature=s",
                urlenc(text)
            ));
            assert!(
                matches!(
                    InitParams::from_query(&q),
                    Err(ParamError::Malformed {
                        key: "fileSize",
                        ..
                    })
                ),
                "{text:?}"
            );
        }
        let q = query(&format!("fileSha={SHA}&fileSize=0&dataSize=1&signature=s"));
        assert_eq!(InitParams::from_query(&q).unwrap().file_size, 0);
    }

    #[test]
    fn hashes_must_be_lowercase_hex_of_the_right_length() {
        for sha in [&SHA[..39], &SHA.to_uppercase(), &format!("{}g", &SHA[..39])] {
            let q = query(&format!("fileSha={sha}&signature=s"));
            assert!(FinishParams::from_query(&q).is_err(), "{sha}");
        }
        let q = query(&format!(
            "fileSha={SHA}&offset=0&dataSize=1&dataMd5={}&signature=s",
            MD5.to_uppercase()
        ));
        assert!(matches!(
            PartParams::from_query(&q),
            Err(ParamError::Malformed { key: "dataMd5", .. })
        ));
    }

    #[test]
    fn missing_or_empty_signature_is_refused() {
        let q = query(&format!("fileSha={SHA}"));
        assert_eq!(
            FinishParams::from_query(&q),
            Err(ParamError::Missing("signature"))
        );
        let q = query(&format!("fileSha={SHA}&signature="));
        assert!(FinishParams::from_query(&q).is_err());
    }

    fn urlenc(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
