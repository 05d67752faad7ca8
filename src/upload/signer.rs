//! Signing a file's upload (PROTOCOL.md §5) with the configured credentials. The signature is kept
//! in the ledger and reused for every call of the file until it nears expiry, and only while these
//! credentials would have made it (an account whose key, id or uid changed under the same name
//! signs anew).

use crate::clock::unix_now;
use crate::protocol::signature::{authentic, file_name_for, file_type_for};
use crate::protocol::{Claims, Processing, SecretKey, Signature};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Signer {
    pub secret_id: String,
    pub secret_key: SecretKey,
    pub uid: String,
    pub validity: Duration,
}

impl Signer {
    /// A new signature for the file at `path` with content `sha`.
    pub fn sign(&self, path: &Path, sha: &str, processing: &Processing) -> Signature {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let now = unix_now();
        Claims {
            secret_id: self.secret_id.clone(),
            issued_at: now,
            expires_at: now + self.validity.as_secs(),
            random: rand::random(),
            file_name: file_name_for(&name),
            file_sha: sha.to_owned(),
            file_type: file_type_for(&name),
            uid: self.uid.clone(),
            processing: processing.clone(),
        }
        .sign(&self.secret_key)
    }

    /// Whether a stored signature is one these credentials made for `sha` with `processing`:
    /// otherwise it is not used (a new one is made). Its times are the ledger's and the
    /// service's to judge.
    pub fn made(&self, signature: &Signature, sha: &str, processing: &Processing) -> bool {
        let ours = |id: &str| (id == self.secret_id).then(|| self.secret_key.clone());
        authentic(&signature.encoded, ours).is_some_and(|claims| {
            claims.file_sha == sha && claims.uid == self.uid && claims.processing == *processing
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str, uid: &str) -> Signer {
        Signer {
            secret_id: "AKID1".into(),
            secret_key: SecretKey::new(key),
            uid: uid.into(),
            validity: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_stored_signature_is_reused_only_by_the_credentials_that_made_it() {
        let (sha, processing) = ("a".repeat(40), Processing::default());
        let made = signer("k1", "7").sign(Path::new("/d/a.mp4"), &sha, &processing);
        assert!(signer("k1", "7").made(&made, &sha, &processing));
        assert!(
            !signer("k2", "7").made(&made, &sha, &processing),
            "another key"
        );
        assert!(
            !signer("k1", "8").made(&made, &sha, &processing),
            "another uid"
        );
        assert!(!signer("k1", "7").made(&made, &"b".repeat(40), &processing));
    }
}
