//! Signing a file's upload (PROTOCOL.md §5) with the configured credentials. The signature is kept
//! in the ledger and reused for every call of the file until it nears expiry.

use crate::clock::unix_now;
use crate::protocol::signature::{file_name_for, file_type_for};
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
}
