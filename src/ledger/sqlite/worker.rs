//! The SQLite ledger's own thread. SQLite has one writer, so the ledger's calls run one after
//! another whatever thread runs them; here they queue to one thread that keeps the connection
//! warm. On the blocking pool each call woke a thread of its own, and those threads then queued
//! on the connection's lock: two or three context switches per call, the largest cost of a small
//! file.
//!
//! Group commit: calls that queued while the thread was busy run as one batch, in one immediate
//! transaction where each call's write is a savepoint (a call that fails rolls back its own
//! savepoint only). The answers wait for the batch's commit, so no caller hears "recorded" before
//! it is; a commit that fails answers every call of the batch with the error. A batch holding a
//! durable call (an after-upload intent) commits with `synchronous=FULL`.

use super::Sqlite;
use crate::ledger::BackendError;
use crate::ledger::Result;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Calls run in one batch, at most.
const BATCH: usize = 64;

/// A queued call: runs on the connection and returns how to answer its caller once the outcome
/// of its transaction is known (`Some(why)`: the batch did not commit).
struct Call {
    run: Box<dyn FnOnce(&Sqlite) -> Answer + Send>,
    durable: bool,
}

type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

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
            .spawn(move || serve(&sqlite, &calls))
            .expect("the ledger thread starts");
        Worker { queue }
    }

    /// Run `call` on the ledger thread, after the calls queued before it, and wait for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Sqlite) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.queue_call(call, false).await
    }

    /// [`Worker::run`] for a write that must survive a power cut once answered.
    pub async fn run_durable<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Sqlite) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.queue_call(call, true).await
    }

    async fn queue_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Sqlite) -> Result<T> + Send + 'static,
        durable: bool,
    ) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let run = Box::new(move |sqlite: &Sqlite| -> Answer {
            let result = call(sqlite);
            Box::new(move |uncommitted: Option<&str>| {
                let result = match uncommitted {
                    Some(why) => Err(BackendError::Task(format!("not committed: {why}")).into()),
                    None => result,
                };
                let _ = answer.send(result);
            })
        });
        self.queue
            .send(Call { run, durable })
            .map_err(|_| BackendError::Task("the ledger thread has ended".into()))?;
        answered
            .await
            .map_err(|_| BackendError::Task("a ledger call panicked".into()))?
    }
}

/// The ledger thread: each call alone when it is the only one waiting, else a batch of the calls
/// waiting.
fn serve(sqlite: &Sqlite, calls: &mpsc::Receiver<Call>) {
    while let Ok(first) = calls.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        // A transaction left open (a rollback that failed) would swallow every later write:
        // nothing is answered as recorded until the connection is clean again.
        if let Err(e) = sqlite.idle() {
            let why = format!("a transaction is stuck open on the ledger: {e}");
            for answer in batch.into_iter().filter_map(|c| run(sqlite, c)) {
                answer(Some(&why));
            }
            continue;
        }
        let durable = batch.iter().any(|c| c.durable);
        if batch.len() == 1 || sqlite.begin_batch(durable).is_err() {
            alone(sqlite, batch);
            continue;
        }
        let mut calls = batch.into_iter();
        let mut answers = Vec::new();
        for call in calls.by_ref() {
            answers.extend(run(sqlite, call));
            if !sqlite.in_transaction() {
                // SQLite rolled the batch back by itself (a full disk, say): the rest run alone.
                break;
            }
        }
        let committed = sqlite.end_batch(durable).map_err(|e| e.to_string());
        for answer in answers {
            answer(committed.as_ref().err().map(String::as_str));
        }
        alone(sqlite, calls.collect());
    }
}

/// Each call in a transaction of its own.
fn alone(sqlite: &Sqlite, calls: Vec<Call>) {
    for call in calls {
        if let Some(answer) = run(sqlite, call) {
            answer(None);
        }
    }
}

/// Run one call; a call that panics is not answered (its caller gets an error), and the thread
/// goes on with the next.
fn run(sqlite: &Sqlite, call: Call) -> Option<Answer> {
    catch_unwind(AssertUnwindSafe(|| (call.run)(sqlite))).ok()
}
