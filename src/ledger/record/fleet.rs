//! The fleet's side of the ledger boundary: a node's claim on a file, its lease, what it takes,
//! and what the ledger knows of each node.

use super::{FileKey, WatchRoot};
use serde::Serialize;

/// A node's hold on one file: the file and the claim epoch it was taken at. Every write for a
/// file under way takes its claim, and the ledger refuses it ([`crate::ledger::LedgerError::Fenced`])
/// once another node took the file over (a newer epoch): a node frozen past its lease finds out
/// at its next write, and stops there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    pub key: FileKey,
    pub epoch: i64,
}

/// A node of the fleet as the ledger last heard of it (`vodup nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// When it last renewed its claims (Unix seconds, by the ledger's clock).
    pub seen_at: i64,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Files it holds a live claim on.
    pub holds: u64,
    /// The watch folders it refused at its last start or reload, one line each (`PATH: why`).
    pub refused: Option<String>,
    /// The process that runs it ([`instance`]); none once it stopped cleanly.
    pub instance: Option<String>,
    /// The accounts its config has, one per line, as of its last start.
    pub accounts: Option<String>,
}

/// This process among the runs of a node name: `host:pid:random`, drawn once per process. The
/// ledger records it with the node a daemon runs, so a second process under a name that is alive
/// is told apart from a restart of the first.
pub fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let random: u32 = rand::random();
        format!("{host}:{}:{random:08x}", std::process::id())
    })
}

/// What [`crate::ledger::Ledger::start_node`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStart {
    /// The name is this process's now; the claims a previous run left are released.
    Started,
    /// Another process (`instance`) runs under this name, or did until it stopped without saying
    /// so: it renewed at `seen_at` (Unix seconds, the ledger's clock), `age` seconds ago.
    InUse {
        instance: String,
        seen_at: i64,
        age: i64,
    },
}

/// Who takes files: this node's name in the ledger, and how long a claim lasts unrenewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub length: std::time::Duration,
}

impl Lease {
    /// This host's: the config's `node` (default: the host name) and `lease`.
    pub fn of(config: &crate::config::Config) -> Lease {
        let node = config.node.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        });
        Lease {
            node,
            length: config.lease,
        }
    }
}

/// What [`crate::ledger::Ledger::claim_next`] may take.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// At most this many files.
    pub limit: usize,
    /// Only files of these watches (the ones this node watches).
    pub watches: &'a [WatchRoot],
    /// Only files queued before this (Unix seconds): the ones that waited long enough to run
    /// beside the files already running.
    pub queued_before: Option<i64>,
    /// Only files of one part (no larger than their part size) queued before every larger file
    /// still waiting: the room left is a share of a place, which only such a file fits (see the
    /// scheduler), and a small file must not overtake a larger one into it.
    pub one_part: bool,
    /// Only files of these accounts (or of none yet): a file of an account this node lacks is
    /// left to a node that has it. SQLite serves one host, which takes every file (one whose
    /// account left the config fails there with the reason, for `vodup retry`).
    pub accounts: &'a [String],
}
