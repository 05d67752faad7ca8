//! The ledger's contract, written once against [`Ledger`] and run on both backends: SQLite in a
//! temporary directory, and PostgreSQL on a database of the test's own (helpers/postgres.rs;
//! skipped, loudly, without PostgreSQL binaries, and required in CI). Each case takes a
//! [`Backend`] and may open several handles on the one ledger, as the nodes of a fleet (or a
//! restarted daemon) do. What only one backend promises is tested beside it:
//! src/ledger/sqlite/tests.rs and tests/it/postgres_ledger.rs.

mod after;
mod claims;
mod files;
mod retention;
mod uploads;

use crate::helpers::postgres;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;
use vodup::config::{AccountName, LedgerLocation};
use vodup::ledger::{
    Claim, FileIdentity, FileKey, FileRecord, FileState, FileVersion, Inode, Lease, Ledger,
    LedgerError, NewFile, Postgres, RecordedError, Upload, Wanted, WatchRoot,
};
use vodup::protocol::Signature;

/// The account of the test files.
pub const A: &str = "AKIDa@vod.example";
/// Another account.
pub const B: &str = "AKIDb@vod.example";
pub const PART: u64 = 1_048_576;
/// The size of a test file unless told: three parts, the last short.
pub const SIZE: u64 = 3_000_000;

/// One ledger, on one backend.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None`, after the helper's loud message, without PostgreSQL.
    fn postgres() -> Option<Backend> {
        Some(Backend::Postgres(postgres::shared()?.create_database()))
    }

    /// A handle of its own on this ledger (its own thread, or its own pool), which knows the
    /// watch [`drop_watch`].
    pub async fn node(&self) -> Ledger {
        let ledger = match self {
            Backend::Sqlite(dir) => Ledger::open(&dir.path().join("ledger.db")).unwrap(),
            Backend::Postgres(url) => {
                let LedgerLocation::Postgres(url) = LedgerLocation::parse(url).unwrap() else {
                    panic!("{url} is not PostgreSQL");
                };
                Ledger::from(Postgres::open(&url).await.unwrap())
            }
        };
        ledger.know_watches(&[drop_watch()]);
        ledger
    }
}

/// Each case, as a test on each backend: `on_sqlite::CASE` and `on_postgres::CASE`.
macro_rules! contract {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = super::Backend::postgres() else { return };
                    super::$module::$case(&backend).await;
                }
            )*
        }
    };
}

contract! {
    files::enqueue_is_idempotent_per_file_version,
    files::a_file_already_uploaded_under_another_path_is_that_upload,
    files::a_waiting_empty_file_gives_way_to_its_version_with_content,
    files::a_set_aside_version_is_taken_again_when_it_settles_anew,
    files::a_revived_row_keeps_its_hash_only_for_the_same_inode,
    files::failed_files_are_requeued_by_path_latest_version_only,
    files::a_requeued_file_forgets_its_account_until_an_attempt_records_one,
    files::a_failure_keeps_code_message_and_description_until_done,
    files::paths_that_are_not_utf8_are_stored_and_found_exactly,
    claims::claims_take_owed_files_oldest_first_once_each,
    claims::a_claim_for_one_part_files_takes_none_past_a_larger_file_still_waiting,
    claims::a_lapsed_claim_is_taken_over_and_every_write_of_the_old_holder_is_fenced,
    claims::a_restarted_node_releases_what_its_previous_run_held,
    claims::a_done_file_whose_action_has_not_run_is_owed_and_claimed_for_it,
    claims::taking_a_file_owed_an_upload_begins_an_attempt,
    claims::an_old_holder_of_an_action_is_fenced_with_its_hooks,
    uploads::an_upload_is_recorded_confirmed_and_finished,
    uploads::reconcile_makes_the_service_list_the_truth,
    uploads::signatures_are_kept_per_account_and_content,
    uploads::finishing_for_one_account_keeps_another_accounts_upload_of_the_same_content,
    after::a_disposal_intent_holds_its_hooks_until_the_outcome_is_recorded,
    after::a_failed_file_whose_disposal_is_under_way_is_not_requeued,
    after::a_taken_delivery_is_not_taken_again_until_its_hold_passes,
    retention::old_ended_rows_are_forgotten_once_their_source_left_the_path,
}

/// The watch the test files are found in, at `/drop` on this host.
pub fn drop_watch() -> WatchRoot {
    WatchRoot {
        name: "drop".into(),
        path: PathBuf::from("/drop"),
    }
}

/// The drop watch, as the list [`Wanted::watches`] takes.
pub static WATCHES: LazyLock<Vec<WatchRoot>> = LazyLock::new(|| vec![drop_watch()]);

/// The accounts the test nodes have: `A` and `B`.
pub static ACCOUNTS: LazyLock<Vec<String>> = LazyLock::new(|| vec![A.into(), B.into()]);

pub fn identity(size: u64, mtime_ns: i64) -> FileIdentity {
    FileIdentity {
        inode: Inode { dev: 1, ino: 7 },
        version: FileVersion { size, mtime_ns },
    }
}

/// `name` in the drop watch: inode 7, [`SIZE`] bytes, mtime 42, for account `A`.
pub fn watched(name: &str) -> NewFile {
    NewFile {
        path: drop_watch().path.join(name),
        identity: identity(SIZE, 42),
        part_size: PART,
        watch: Some(drop_watch()),
        processing: "{}".into(),
        state: FileState::Queued,
        account: Some(AccountName::new(A)),
    }
}

/// `name` in the drop watch, `size` bytes.
pub fn sized(name: &str, size: u64) -> NewFile {
    let mut file = watched(name);
    file.identity.version.size = size;
    file
}

/// A file given to `vodup upload` (no watch).
pub fn named(path: &Path) -> NewFile {
    NewFile {
        path: path.to_owned(),
        watch: None,
        ..watched("x")
    }
}

pub fn lease(node: &str, secs: u64) -> Lease {
    Lease {
        node: node.into(),
        length: Duration::from_secs(secs),
    }
}

/// Files of the drop watch, of the test accounts, at most `limit`.
pub fn wanted(limit: usize) -> Wanted<'static> {
    Wanted {
        limit,
        watches: &WATCHES,
        queued_before: None,
        one_part: false,
        accounts: &ACCOUNTS,
    }
}

/// A claim on `key` for the node `here`, as `vodup upload` takes one.
pub async fn claim(l: &Ledger, key: FileKey) -> Claim {
    l.claim(key, &lease("here", 30))
        .await
        .unwrap()
        .expect("claimable")
        .0
}

/// A claim on a file of its own, for writes about a content rather than one file.
pub async fn any_claim(l: &Ledger) -> Claim {
    let f = l.enqueue(named(Path::new("/any.mp4"))).await.unwrap();
    claim(l, f.key).await
}

pub fn upload(account: &str, sha: &str) -> Upload {
    Upload {
        account: account.into(),
        sha: sha.into(),
        size: SIZE,
        part_size: PART,
    }
}

pub async fn confirm_part(l: &Ledger, account: &str, sha: &str, offset: u64, len: u64) {
    let claim = any_claim(l).await;
    l.confirm_parts(claim, &upload(account, sha), vec![(offset, len)], None)
        .await
        .unwrap();
}

pub fn signature(encoded: &str, expires_at: u64) -> Signature {
    Signature {
        encoded: encoded.into(),
        expires_at,
    }
}

pub async fn store_signature(l: &Ledger, account: &str, sha: &str, encoded: &str, expires: u64) {
    let claim = any_claim(l).await;
    let up = upload(account, sha);
    l.store_signature(claim, &up, &signature(encoded, expires))
        .await
        .unwrap();
}

pub fn error(code: i64, message: &str) -> RecordedError {
    RecordedError {
        code,
        message: message.into(),
        code_desc: String::new(),
    }
}

/// The file's row as it stands.
pub async fn row(l: &Ledger, key: FileKey) -> FileRecord {
    l.file(key).await.unwrap().expect("the row")
}

/// The keys of what a claim took, in order.
pub fn keys(taken: &[(Claim, FileRecord)]) -> Vec<FileKey> {
    taken.iter().map(|(c, _)| c.key).collect()
}

pub fn fenced<T: std::fmt::Debug>(result: Result<T, LedgerError>, key: FileKey) -> bool {
    matches!(result, Err(LedgerError::Fenced { key: k }) if k == key)
}

/// The rows still owed an upload, oldest first.
pub async fn unfinished(l: &Ledger) -> Vec<FileRecord> {
    let rows = l.files().await.unwrap().into_iter();
    rows.filter(|r| r.state.is_active()).rev().collect()
}
