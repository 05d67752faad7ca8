//! The SQLite ledger's own thread. SQLite has one writer, so the ledger's calls run one after
//! another whatever thread runs them; here they queue to one thread that keeps the connection
//! warm and, in a burst, runs call after call without sleeping. On the blocking pool each call
//! woke a thread of its own, and those threads then queued on the connection's lock: two or three
//! context switches per call, the largest cost of a small file.

use super::Sqlite;
use crate::ledger::LedgerError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use tokio::sync::oneshot;

type Call = Box<dyn FnOnce(&Sqlite) + Send>;

/// The queue to the ledger thread; cheap to clone. The thread ends once every clone is dropped.
#[derive(Debug, Clone)]
pub struct Worker {
    queue: mpsc::Sender<Call>,
}

impl Worker {
    /// Start the thread that runs every call on `sqlite`.
    pub fn start(sqlite: Sqlite) -> Worker {
        let (queue, calls) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("vodup-ledger".into())
            .spawn(move || {
                for call in calls {
                    // A call that panics drops its answer (its caller gets an error); the thread
                    // goes on with the next.
                    let _ = catch_unwind(AssertUnwindSafe(|| call(&sqlite)));
                }
            })
            .expect("the ledger thread starts");
        Worker { queue }
    }

    /// Run `call` on the ledger thread, after the calls queued before it, and wait for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Sqlite) -> T + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Box::new(move |sqlite| {
                let _ = answer.send(call(sqlite));
            }))
            .map_err(|_| LedgerError::Task("the ledger thread has ended".into()))?;
        answered
            .await
            .map_err(|_| LedgerError::Task("a ledger call panicked".into()))
    }
}
