//! The thread the [`Settler`] lives on: the intake hands it what it notices, and it looks at its
//! files (every [`SETTLE_POLL`], and at the end of each file's quiet period) on its own time,
//! with blocking `stat`s that never hold up the intake's task, sending back what settled. It
//! ends when its handle is dropped. What settling means is [`super::settle`]'s.

use super::settle::{Evidence, Polled, Rule, Settler};
use crate::ledger::FileVersion;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// How often every settling file is looked at: for changes and removals no event tells of, and
/// for files no event or scan looked at. (Each file is also judged at the end of its quiet period.)
pub const SETTLE_POLL: Duration = Duration::from_secs(1);
/// How long after the first of them the files whose quiet period ended are judged: the ends that
/// fall this close together are judged in one look.
const DUE_SLACK: Duration = Duration::from_millis(5);

/// What the intake tells the settler (see [`Settler`]'s methods of the same names).
enum Told {
    Note(
        PathBuf,
        Option<Evidence>,
        Option<FileVersion>,
        Rule,
        Instant,
    ),
    Found(PathBuf, Option<FileVersion>, Rule, Instant),
    Renamed(PathBuf, PathBuf),
    EvidenceLost,
}

/// The intake's handle on the settler's thread.
pub struct Settling {
    tell: mpsc::Sender<Told>,
}

impl Settling {
    /// Start the thread; what settles comes out of the receiver.
    pub fn start() -> std::io::Result<(Settling, UnboundedReceiver<Polled>)> {
        let (tell, told) = mpsc::channel();
        let (settled, out) = unbounded_channel();
        std::thread::Builder::new()
            .name("vodup-settle".into())
            .spawn(move || run(&told, &settled))?;
        Ok((Settling { tell }, out))
    }

    pub fn note(
        &self,
        path: PathBuf,
        evidence: Option<Evidence>,
        version: Option<FileVersion>,
        rule: Rule,
    ) {
        self.send(Told::Note(path, evidence, version, rule, Instant::now()));
    }

    pub fn found(&self, path: PathBuf, version: Option<FileVersion>, rule: Rule, at: Instant) {
        self.send(Told::Found(path, version, rule, at));
    }

    pub fn renamed(&self, from: PathBuf, to: PathBuf) {
        self.send(Told::Renamed(from, to));
    }

    pub fn evidence_lost(&self) {
        self.send(Told::EvidenceLost);
    }

    fn send(&self, told: Told) {
        // The thread ends only once this handle is dropped.
        let _ = self.tell.send(told);
    }
}

fn run(told: &mpsc::Receiver<Told>, settled: &UnboundedSender<Polled>) {
    let mut settler = Settler::default();
    let mut next_poll = Instant::now();
    loop {
        // Everything told so far is heard before the next look, however long looks take.
        loop {
            match told.try_recv() {
                Ok(told) => hear(&mut settler, told),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        let due = settler.next_due().map(|due| due + DUE_SLACK);
        let wake = due.map_or(next_poll, |due| due.min(next_poll));
        if !settler.is_empty() && wake <= now {
            // Looked at before anything more is heard, so a stream of events never starves it.
            let polled = match next_poll <= now {
                true => {
                    let polled = settler.poll(now, FileVersion::at);
                    // From the end of this poll: a slow one does not run into the next.
                    next_poll = Instant::now() + SETTLE_POLL;
                    polled
                }
                false => settler.due(now, FileVersion::at),
            };
            let found = !polled.ready.is_empty() || !polled.empty.is_empty();
            if found && settled.send(polled).is_err() {
                return;
            }
            continue;
        }
        let heard = match settler.is_empty() {
            // Nothing to look at: wait for the intake.
            true => told.recv().map_err(|_| RecvTimeoutError::Disconnected),
            false => told.recv_timeout(wake - now),
        };
        match heard {
            Ok(told) => hear(&mut settler, told),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn hear(settler: &mut Settler, told: Told) {
    match told {
        Told::Note(path, evidence, version, rule, at) => {
            settler.note(path, evidence, version, rule, at)
        }
        Told::Found(path, version, rule, at) => settler.found(path, version, rule, at),
        Told::Renamed(from, to) => settler.renamed(&from, &to),
        Told::EvidenceLost => settler.evidence_lost(),
    }
}
