//! Prometheus metrics: the counters the engine and the daemon move, and their exposition text
//! (served at `/metrics` by [`crate::http`]).
//!
//! Exposition is `prometheus-client`'s; this module only names the metrics and says when they
//! move. Files by state and pending hooks come from the ledger at scrape time, so they are right
//! even for work done before this process started. The daemon's metrics all carry its `node`
//! label, so a fleet's series stay apart (files by state are the shared ledger's, seen from each
//! node).

use crate::ledger::Ledger;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabels {
    /// `confirmed`, `retried` or `failed`.
    pub outcome: &'static str,
    /// The service's code, `0` on success, or the negated HTTP status / `0` for transport errors.
    pub code: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Nodes not seen for this long are left out of `node_seen_age_seconds` (retired ones).
const PEERS_SHOWN_FOR: i64 = 7 * 86_400;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    outcome: &'static str,
}

/// Cheap to clone; every clone moves the same metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    files: Family<StateLabels, Gauge>,
    bytes_confirmed: Counter,
    parts: Family<PartLabels, Counter>,
    instant_uploads: Counter,
    upload_seconds: Histogram,
    parts_in_flight: Gauge,
    parts_window: Gauge,
    queue_length: Gauge,
    last_error_time: Gauge<f64, AtomicU64>,
    hooks: Family<HookLabels, Counter>,
    hooks_pending: Gauge,
    hooks_oldest_pending: Gauge,
    disposals_failing: Gauge,
    disposal_failures: Counter,
    forgotten: Counter,
    queue_oldest: Gauge,
    node_seen_age: Family<PeerLabels, Gauge>,
    lease: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_registry(Registry::with_prefix("vodup"))
    }

    /// Metrics whose every series carries `node="NAME"`.
    pub fn for_node(node: &str) -> Metrics {
        let label = (Cow::Borrowed("node"), Cow::Owned(node.to_owned()));
        Metrics::with_registry(Registry::with_prefix_and_labels(
            "vodup",
            std::iter::once(label),
        ))
    }

    fn with_registry(mut registry: Registry) -> Metrics {
        let inner = Inner {
            files: Family::default(),
            bytes_confirmed: Counter::default(),
            parts: Family::default(),
            instant_uploads: Counter::default(),
            upload_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            parts_in_flight: Gauge::default(),
            parts_window: Gauge::default(),
            queue_length: Gauge::default(),
            last_error_time: Gauge::default(),
            hooks: Family::default(),
            hooks_pending: Gauge::default(),
            hooks_oldest_pending: Gauge::default(),
            disposals_failing: Gauge::default(),
            disposal_failures: Counter::default(),
            forgotten: Counter::default(),
            queue_oldest: Gauge::default(),
            node_seen_age: Family::default(),
            lease: Gauge::default(),
            registry: Registry::default(),
        };
        inner.register_uploads(&mut registry);
        inner.register_after(&mut registry);
        let r = &mut registry;
        r.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    pub fn part_confirmed(&self, len: u64) {
        self.inner.bytes_confirmed.inc_by(len);
        self.part(PartLabels {
            outcome: "confirmed",
            code: 0,
        });
    }

    pub fn part_retried(&self, code: i64) {
        self.part(PartLabels {
            outcome: "retried",
            code,
        });
        self.error_now();
    }

    pub fn part_failed(&self, code: i64) {
        self.part(PartLabels {
            outcome: "failed",
            code,
        });
        self.error_now();
    }

    fn part(&self, labels: PartLabels) {
        self.inner.parts.get_or_create(&labels).inc();
    }

    /// A call failed (any call): remember when, for alerting on staleness.
    pub fn error_now(&self) {
        self.inner
            .last_error_time
            .set(crate::clock::unix_now() as f64);
    }

    pub fn file_done(&self, instant: bool, seconds: f64) {
        if instant {
            self.inner.instant_uploads.inc();
        }
        self.inner.upload_seconds.observe(seconds);
    }

    /// A part took its slot; the slot is given back when the guard drops.
    pub fn part_started(&self) -> InFlight {
        self.inner.parts_in_flight.inc();
        InFlight(self.inner.parts_in_flight.clone())
    }

    pub fn set_parts_window(&self, n: usize) {
        self.inner.parts_window.set(n as i64);
    }

    /// This node's lease, for the alert on silent nodes.
    pub fn set_lease(&self, lease: std::time::Duration) {
        self.inner
            .lease
            .set(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX));
    }

    /// An after-upload action failed (it is tried again later).
    pub fn disposal_failed(&self) {
        self.inner.disposal_failures.inc();
    }

    /// Retention forgot `rows` rows of the ledger.
    pub fn rows_forgotten(&self, rows: u64) {
        self.inner.forgotten.inc_by(rows);
    }

    pub fn hook_delivered(&self, ok: bool) {
        let outcome = if ok { "delivered" } else { "failed" };
        self.inner
            .hooks
            .get_or_create(&HookLabels { outcome })
            .inc();
    }

    /// The exposition text, with the ledger-derived gauges refreshed.
    pub async fn render(&self, ledger: &Ledger) -> Result<String, crate::ledger::LedgerError> {
        // A state no row is in any more is dropped, not left at its last count.
        self.inner.files.clear();
        self.inner.queue_length.set(0);
        for (state, count) in ledger.count_by_state().await? {
            let labels = StateLabels {
                state: state.as_str(),
            };
            self.inner.files.get_or_create(&labels).set(count as i64);
            if state == crate::ledger::FileState::Queued {
                // The queue is the ledger's queued files (every node's, in a fleet).
                self.inner.queue_length.set(count as i64);
            }
        }
        self.inner
            .hooks_pending
            .set(ledger.pending_hooks().await? as i64);
        let now = crate::clock::unix_now_i64();
        let age = |since: Option<i64>| since.map_or(0, |t| now.saturating_sub(t).max(0));
        let health = ledger.health().await?;
        self.inner
            .disposals_failing
            .set(i64::try_from(health.disposals_failing).unwrap_or(i64::MAX));
        self.inner.queue_oldest.set(age(health.oldest_queued_at));
        self.inner
            .hooks_oldest_pending
            .set(age(health.oldest_pending_hook_at));
        self.inner.node_seen_age.clear();
        for node in ledger.nodes().await? {
            let seen = age(Some(node.seen_at));
            if seen <= PEERS_SHOWN_FOR {
                let labels = PeerLabels { peer: node.name };
                self.inner.node_seen_age.get_or_create(&labels).set(seen);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("writing to a String does not fail");
        Ok(text)
    }
}

/// One part in flight; dropping it decrements the gauge.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
impl Inner {
    /// The upload engine's and the queue's metrics.
    fn register_uploads(&self, r: &mut Registry) {
        r.register("files", "Files in the ledger by state", self.files.clone());
        r.register(
            "bytes_confirmed",
            "Part bytes the service confirmed",
            self.bytes_confirmed.clone(),
        );
        r.register(
            "parts",
            "Part uploads by outcome and code",
            self.parts.clone(),
        );
        r.register(
            "instant_uploads",
            "Files completed by instant upload",
            self.instant_uploads.clone(),
        );
        r.register(
            "upload_duration_seconds",
            "Time from upload start to done",
            self.upload_seconds.clone(),
        );
        r.register(
            "parts_in_flight",
            "Parts being sent now",
            self.parts_in_flight.clone(),
        );
        r.register(
            "parts_in_flight_limit",
            "Parts allowed in flight now (parts_in_flight, or the window \"auto\" found)",
            self.parts_window.clone(),
        );
        r.register(
            "queue_length",
            "Files queued in the ledger, waiting for a node to take them",
            self.queue_length.clone(),
        );
        r.register(
            "last_error_time_seconds",
            "Unix time of the last failed call",
            self.last_error_time.clone(),
        );
    }

    /// The after-upload step's, the hooks' and the fleet's metrics.
    fn register_after(&self, r: &mut Registry) {
        r.register(
            "hook_deliveries",
            "Completion hook deliveries by outcome",
            self.hooks.clone(),
        );
        r.register(
            "hooks_pending",
            "Completion hook deliveries not yet delivered",
            self.hooks_pending.clone(),
        );
        r.register(
            "hooks_oldest_pending_seconds",
            "Age of the oldest completion hook delivery not yet delivered (0: none)",
            self.hooks_oldest_pending.clone(),
        );
        r.register(
            "disposals_failing",
            "Uploaded files whose after-upload action failed and waits to be tried again",
            self.disposals_failing.clone(),
        );
        r.register(
            "disposal_failures",
            "After-upload actions (move, delete) that failed on this node",
            self.disposal_failures.clone(),
        );
        r.register(
            "ledger_forgotten_rows",
            "Rows of old files this node's retention (forget_after) forgot",
            self.forgotten.clone(),
        );
        r.register(
            "queue_oldest_seconds",
            "Age of the oldest file still queued in the ledger (0: none)",
            self.queue_oldest.clone(),
        );
        r.register(
            "node_seen_age_seconds",
            "Seconds since each node of the ledger (this one included) last renewed its claims; \
             nodes unseen for 7 days are left out",
            self.node_seen_age.clone(),
        );
        r.register(
            "lease_seconds",
            "This node's lease: a node silent for longer loses its files to others",
            self.lease.clone(),
        );
    }
}
