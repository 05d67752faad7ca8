//! The daemon's long-lived tasks, in one `JoinSet`, each spawned under a name. A task that ends
//! well is simply gone (the watchdog outside systemd, the reloader without a config file); the
//! first task that returns an error ends the daemon and is reported with its name
//! ([`Error::Task`]); a task that panics makes the daemon panic. The shutdown — cancel, let the
//! tasks finish up to the deadline, abort what is left — happens here and nowhere else.
//!
//! What each task does at the cancellation is its own: the scheduler lets its files finish their
//! parts in flight, the hook runner stops between deliveries, the exporter closes its listener;
//! tasks with nothing to finish (watchdog, reloader) run under [`CancellationToken::run_until_cancelled`].

use crate::error::Error;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub struct Tasks {
    set: JoinSet<Result<(), Error>>,
    names: HashMap<Id, &'static str>,
    cancel: CancellationToken,
    /// The first error a task returned: the daemon's result.
    failed: Option<Error>,
}

impl Tasks {
    pub fn new(cancel: CancellationToken) -> Tasks {
        Tasks {
            set: JoinSet::new(),
            names: HashMap::new(),
            cancel,
            failed: None,
        }
    }

    /// Run `task` in the set under `name`.
    /// [`Tasks::spawn`] for a task that cannot fail: it ends only when it is done.
    pub fn spawn_infallible(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn(name, async move {
            task.await;
            Ok::<(), Error>(())
        });
    }

    pub fn spawn<E: Into<Error>>(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let handle = self
            .set
            .spawn(async move { task.await.map_err(Into::into) });
        self.names.insert(handle.id(), name);
    }

    /// Until `shutdown` resolves or a task fails.
    pub async fn until(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        while self.failed.is_none() {
            tokio::select! {
                () = &mut shutdown => return,
                Some(joined) = self.set.join_next_with_id() => self.ended(joined),
            }
        }
    }

    /// Cancel every task and let them finish up to `deadline`; then abort the rest (parts in
    /// flight are simply not confirmed). The first error a task returned, if any.
    pub async fn shut_down(mut self, deadline: Duration) -> Result<(), Error> {
        self.cancel.cancel();
        let running: Vec<_> = self.names.values().copied().collect();
        info!(tasks = ?running, ?deadline, "stopping: draining tasks");
        let expired = tokio::time::sleep(deadline);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                joined = self.set.join_next_with_id() => match joined {
                    Some(joined) => self.ended(joined),
                    None => break,
                },
                () = &mut expired => {
                    let left: Vec<_> = self.names.values().copied().collect();
                    warn!(tasks = ?left, "shutdown deadline passed: abandoning what is in flight");
                    self.set.shutdown().await;
                    break;
                }
            }
        }
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A task ended: keep its error (the first only; later ones are logged), or go on panicking.
    fn ended(&mut self, joined: Result<(Id, Result<(), Error>), JoinError>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let task = self.names.remove(&id).unwrap_or("unnamed");
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) if self.failed.is_some() => {
                error!(task, error = %e, "task failed while stopping")
            }
            Ok((_, Err(e))) => {
                error!(task, error = %e, "task failed: stopping");
                self.failed = Some(Error::Task {
                    task,
                    error: Box::new(e),
                });
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                error!(task, "task panicked");
                std::panic::resume_unwind(e.into_panic())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_task_ends_the_wait_and_is_reported_with_its_name() {
        let cancel = CancellationToken::new();
        let mut tasks = Tasks::new(cancel.clone());
        tasks.spawn("done early", async { Ok::<_, Error>(()) });
        let token = cancel.clone();
        tasks.spawn("patient", async move {
            token.cancelled().await;
            Ok::<_, Error>(())
        });
        tasks.spawn("broken", async {
            Err(Error::Watch {
                path: "/drop".into(),
                message: "out of order".into(),
            })
        });
        tasks.until(std::future::pending()).await;
        let error = tasks.shut_down(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(error, Error::Task { task: "broken", .. }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "broken: watch /drop: out of order");
        assert!(cancel.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_still_running_at_the_deadline_is_aborted() {
        let mut tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("deaf", std::future::pending::<Result<(), Error>>());
        tasks.until(async {}).await;
        let stopped = tokio::time::timeout(
            Duration::from_secs(11),
            tasks.shut_down(Duration::from_secs(10)),
        )
        .await;
        assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    }

    #[tokio::test]
    #[should_panic(expected = "the task's own panic")]
    async fn a_panicking_task_is_still_a_panic() {
        let mut tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("panics", async {
            panic!("the task's own panic");
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        });
        tasks.until(std::future::pending()).await;
    }
}
