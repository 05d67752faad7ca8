//! The shared state every request sees: the store, the faults, the counters, and the few facts
//! the handlers share (secrets, verify key, the emulator's own base url). Not the routes
//! ([`super::routes`]), nor the protocol rules ([`super::rules`], the handlers, [`super::state`]).

use super::disk::FinishedRecord;
use super::faults::FaultInjector;
use super::rules::{self, Refused, Signed};
use super::state::Store;
use super::stats::Recorder;
use crate::clock::unix_now;
use crate::protocol::SecretKey;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// Path of the protocol endpoint, as on the real service.
pub const ENDPOINT_PATH: &str = "/v2/index.php";
/// Validity of a finish answer's `verify_content`.
pub const VERIFY_CONTENT_VALIDITY_SECS: u64 = 86_400;

#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub faults: FaultInjector,
    pub stats: Recorder,
    pub secrets: HashMap<String, SecretKey>,
    pub verify_key: String,
    /// `http://ADDR`, the prefix of every file url.
    pub base_url: String,
    /// Cancelled when the emulator shuts down: injected delays end early.
    pub shutdown: CancellationToken,
}

impl App {
    /// The service's signature checks (PROTOCOL.md §5) against the configured secrets, now.
    pub fn verify(&self, encoded: &str, file_sha: &str) -> Result<Signed, Refused> {
        rules::check_signature(encoded, &self.secrets, file_sha, unix_now())
    }

    /// `http://ADDR/files/{fileId}/{name}`, the name percent-encoded as one path segment.
    pub fn file_url(&self, file: &FinishedRecord) -> String {
        let mut url = url::Url::parse(&self.base_url).expect("the base url is valid");
        url.path_segments_mut()
            .expect("an http url has a path")
            .extend(["files", file.file_id.as_str(), file.file_name.as_str()]);
        url.into()
    }

    /// `verify_content` of a finish answer for this file, valid for a day from now.
    pub fn verify_content(&self, file: &FinishedRecord) -> String {
        let exp_time = unix_now() + VERIFY_CONTENT_VALIDITY_SECS;
        rules::verify_content(&self.verify_key, exp_time, &file.file_id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::faults::Faults;
    use super::*;

    fn app() -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let app = App {
            store: Store::open(dir.path()).unwrap(),
            faults: FaultInjector::new(Faults::default(), 0),
            stats: Recorder::default(),
            secrets: HashMap::new(),
            verify_key: "k".into(),
            base_url: "http://127.0.0.1:8080".into(),
            shutdown: CancellationToken::new(),
        };
        (dir, app)
    }

    #[test]
    fn file_urls_encode_the_name_as_one_segment() {
        let (_dir, app) = app();
        let file = FinishedRecord {
            file_id: "12".into(),
            file_name: "a b#c%.mp4".into(),
            file_size: 1,
            part_size: 524_288,
        };
        assert_eq!(
            app.file_url(&file),
            "http://127.0.0.1:8080/files/12/a%20b%23c%25.mp4"
        );
    }

    #[test]
    fn signatures_verify_against_the_configured_secrets_only() {
        use crate::protocol::Claims;
        let (_dir, mut app) = app();
        app.secrets.insert("id".into(), SecretKey::new("key"));
        let now = unix_now();
        let sha = "a9993e364706816aba3e25717850c26c9cd0d89d";
        let claims = |secret_id: &str| Claims {
            secret_id: secret_id.into(),
            issued_at: now,
            expires_at: now + 60,
            random: 1,
            file_name: "a.mp4".into(),
            file_sha: sha.into(),
            file_type: "mp4".into(),
            uid: "1".into(),
            processing: Default::default(),
        };
        let good = claims("id").sign(&SecretKey::new("key")).encoded;
        let signed = Signed {
            secret_id: "id".into(),
            file_name: "a.mp4".into(),
        };
        assert_eq!(
            app.verify(&good, sha),
            Ok(signed),
            "the client's signature passes"
        );
        let unknown = claims("other").sign(&SecretKey::new("key")).encoded;
        assert_eq!(app.verify(&unknown, sha), Err(Refused::UnknownSecretId));
    }
}
