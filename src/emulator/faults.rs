//! Fault injection (PROTOCOL.md §7): which request gets which fault.
//!
//! Owns the fault set ([`Faults`], settable at start and at run time) and the seeded RNG that draws
//! from it, so a run is deterministic for a given order of requests. It only *decides*; the
//! dispatcher carries the decision out before the action touches any state, so an injected fault
//! never stores a part.

use super::params::Action;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// Codes of `retryable_rate` faults when `retryable_codes` is empty.
pub const DEFAULT_RETRYABLE_CODES: [i64; 3] = [-10004, -10005, 6200];
/// Codes of `final_rate` faults when `final_codes` is empty.
pub const DEFAULT_FINAL_CODES: [i64; 2] = [-10003, 4300];

/// The fault set. Rates are probabilities in `0..=1`, drawn per request in scope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer a JSON error with canRetry 1 (a code of `retryable_codes`).
    pub retryable_rate: f64,
    /// Answer a JSON error with canRetry 0 (a code of `final_codes`).
    pub final_rate: f64,
    /// Answer HTTP 500 with a non-JSON body.
    pub http_500_rate: f64,
    /// Answer HTTP 503 with a non-JSON body.
    pub http_503_rate: f64,
    /// Close the TCP connection without an answer after reading `drop_after_bytes` body bytes.
    pub drop_rate: f64,
    pub drop_after_bytes: u64,
    /// Delay added to every request in scope, in milliseconds.
    pub latency_ms: u64,
    /// Hold a request `stall_ms` milliseconds before handling it.
    pub stall_rate: f64,
    pub stall_ms: u64,
    /// Codes of retryable faults; empty means [`DEFAULT_RETRYABLE_CODES`].
    pub retryable_codes: Vec<i64>,
    /// Codes of final faults; empty means [`DEFAULT_FINAL_CODES`].
    pub final_codes: Vec<i64>,
    /// Actions in scope (`InitUploadEx`, `UploadPartEx`, `FinishUploadEx`); empty means all.
    pub actions: Vec<String>,
    /// Only requests whose `fileSha` is this one; `None` means every file.
    pub file_sha: Option<String>,
}

/// Why a fault set is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    #[error("`{name}` must be a probability between 0 and 1, not {value}")]
    Rate { name: &'static str, value: f64 },
    #[error("unknown action `{0}` in `actions`")]
    Action(String),
    #[error("`file_sha` must be 40 lowercase hex characters")]
    FileSha,
    #[error("code {0} is not an error code (it must be negative or at least 4000)")]
    Code(i64),
}

impl Faults {
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, value) in self.rates() {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::Rate { name, value });
            }
        }
        if let Some(bad) = self.actions.iter().find(|a| Action::from_name(a).is_none()) {
            return Err(FaultsError::Action(bad.clone()));
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if let Some(sha) = &self.file_sha {
            if sha.len() != 40 || !sha.bytes().all(lower_hex) {
                return Err(FaultsError::FileSha);
            }
        }
        let codes = self.retryable_codes.iter().chain(&self.final_codes);
        if let Some(&code) = codes.into_iter().find(|&&c| (0..4000).contains(&c)) {
            return Err(FaultsError::Code(code));
        }
        Ok(())
    }

    fn rates(&self) -> [(&'static str, f64); 6] {
        [
            ("retryable_rate", self.retryable_rate),
            ("final_rate", self.final_rate),
            ("http_500_rate", self.http_500_rate),
            ("http_503_rate", self.http_503_rate),
            ("drop_rate", self.drop_rate),
            ("stall_rate", self.stall_rate),
        ]
    }

    fn is_idle(&self) -> bool {
        self.latency_ms == 0 && self.rates().iter().all(|(_, rate)| *rate == 0.0)
    }

    fn in_scope(&self, action: Action, file_sha: Option<&str>) -> bool {
        let action_ok = self.actions.is_empty() || self.actions.iter().any(|a| a == action.name());
        let sha_ok = self.file_sha.is_none() || self.file_sha.as_deref() == file_sha;
        action_ok && sha_ok
    }
}

/// An injected outcome that replaces the action's own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Close the connection after reading this many body bytes.
    Drop { after_bytes: u64 },
    /// An HTTP error status (500 or 503) with a non-JSON body.
    Status(u16),
    /// A JSON answer with this code and `canRetry`.
    Answer { code: i64, can_retry: bool },
}

impl Injected {
    /// The key of this kind in the stats' `faults_injected`.
    pub fn kind(self) -> &'static str {
        match self {
            Injected::Drop { .. } => "drop",
            Injected::Status(500) => "http_500",
            Injected::Status(_) => "http_503",
            Injected::Answer {
                can_retry: true, ..
            } => "retryable",
            Injected::Answer { .. } => "final",
        }
    }
}

/// What to do with one request: wait `delay`, then either inject `outcome` or handle it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    pub stalled: bool,
    pub outcome: Option<Injected>,
}

/// The current fault set and its RNG.
#[derive(Debug)]
pub struct FaultInjector {
    seed: u64,
    inner: Mutex<(Faults, StdRng)>,
}

impl FaultInjector {
    pub fn new(faults: Faults, seed: u64) -> FaultInjector {
        FaultInjector {
            seed,
            inner: Mutex::new((faults, StdRng::seed_from_u64(seed))),
        }
    }

    pub fn faults(&self) -> Faults {
        self.inner.lock().expect("fault lock").0.clone()
    }

    /// Replace the fault set and re-seed the RNG, so what follows is reproducible on its own.
    pub fn set(&self, faults: Faults) {
        *self.inner.lock().expect("fault lock") = (faults, StdRng::seed_from_u64(self.seed));
    }

    /// Draw the decision for one request. Requests out of scope draw nothing.
    pub fn decide(&self, action: Action, file_sha: Option<&str>) -> Decision {
        let mut guard = self.inner.lock().expect("fault lock");
        let (faults, rng) = &mut *guard;
        if faults.is_idle() || !faults.in_scope(action, file_sha) {
            return Decision::default();
        }
        // Always draw the same count, in the same order, whatever fires.
        let draws: [f64; 7] = std::array::from_fn(|_| rng.gen());
        let [drop, s500, s503, fin, retry, stall, pick] = draws;
        let stalled = stall < faults.stall_rate;
        let delay = faults.latency_ms + if stalled { faults.stall_ms } else { 0 };
        let pick_code = |codes: &[i64], defaults: &[i64]| {
            let codes = if codes.is_empty() { defaults } else { codes };
            codes[((pick * codes.len() as f64) as usize).min(codes.len() - 1)]
        };
        let outcome = if drop < faults.drop_rate {
            Some(Injected::Drop {
                after_bytes: faults.drop_after_bytes,
            })
        } else if s500 < faults.http_500_rate {
            Some(Injected::Status(500))
        } else if s503 < faults.http_503_rate {
            Some(Injected::Status(503))
        } else if fin < faults.final_rate {
            let code = pick_code(&faults.final_codes, &DEFAULT_FINAL_CODES);
            Some(Injected::Answer {
                code,
                can_retry: false,
            })
        } else if retry < faults.retryable_rate {
            let code = pick_code(&faults.retryable_codes, &DEFAULT_RETRYABLE_CODES);
            Some(Injected::Answer {
                code,
                can_retry: true,
            })
        } else {
            None
        };
        Decision {
            delay: Duration::from_millis(delay),
            stalled,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    fn mixed() -> Faults {
        Faults {
            retryable_rate: 0.3,
            final_rate: 0.1,
            http_500_rate: 0.05,
            http_503_rate: 0.05,
            drop_rate: 0.05,
            stall_rate: 0.1,
            stall_ms: 20,
            ..Faults::default()
        }
    }

    fn run(injector: &FaultInjector, n: usize) -> Vec<Decision> {
        (0..n)
            .map(|_| injector.decide(Action::Part, Some(SHA)))
            .collect()
    }

    #[test]
    fn same_seed_gives_the_same_decisions() {
        let a = run(&FaultInjector::new(mixed(), 42), 500);
        let b = run(&FaultInjector::new(mixed(), 42), 500);
        assert_eq!(a, b);
        let c = run(&FaultInjector::new(mixed(), 43), 500);
        assert_ne!(a, c);
        let fired = a.iter().filter(|d| d.outcome.is_some()).count();
        assert!((150..350).contains(&fired), "{fired} of 500 faults fired");
    }

    #[test]
    fn setting_faults_reseeds_the_rng() {
        let injector = FaultInjector::new(mixed(), 7);
        let first = run(&injector, 50);
        injector.set(mixed());
        assert_eq!(run(&injector, 50), first);
    }

    #[test]
    fn certain_rates_always_fire_with_their_retry_flag() {
        let retry = FaultInjector::new(
            Faults {
                retryable_rate: 1.0,
                ..Faults::default()
            },
            1,
        );
        for d in run(&retry, 20) {
            let Some(Injected::Answer { code, can_retry }) = d.outcome else {
                panic!("{d:?}")
            };
            assert!(can_retry && DEFAULT_RETRYABLE_CODES.contains(&code));
        }
        let fin = FaultInjector::new(
            Faults {
                final_rate: 1.0,
                final_codes: vec![4300],
                ..Faults::default()
            },
            1,
        );
        let expected = Some(Injected::Answer {
            code: 4300,
            can_retry: false,
        });
        assert!(run(&fin, 20).iter().all(|d| d.outcome == expected));
    }

    #[test]
    fn scope_limits_actions_and_file() {
        let injector = FaultInjector::new(
            Faults {
                http_503_rate: 1.0,
                actions: vec!["UploadPartEx".into()],
                file_sha: Some(SHA.into()),
                ..Faults::default()
            },
            1,
        );
        let other = "0".repeat(40);
        assert_eq!(injector.decide(Action::Init, Some(SHA)).outcome, None);
        assert_eq!(injector.decide(Action::Part, Some(&other)).outcome, None);
        assert_eq!(injector.decide(Action::Part, None).outcome, None);
        assert_eq!(
            injector.decide(Action::Part, Some(SHA)).outcome,
            Some(Injected::Status(503))
        );
    }

    #[test]
    fn latency_and_stall_add_up() {
        let injector = FaultInjector::new(
            Faults {
                latency_ms: 5,
                stall_rate: 1.0,
                stall_ms: 100,
                ..Faults::default()
            },
            1,
        );
        let d = injector.decide(Action::Finish, Some(SHA));
        assert_eq!(d.delay, Duration::from_millis(105));
        assert!(d.stalled && d.outcome.is_none());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad_rate = Faults {
            drop_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad_rate
            .validate()
            .unwrap_err()
            .to_string()
            .contains("drop_rate"));
        let bad_action = Faults {
            actions: vec!["Upload".into()],
            ..Faults::default()
        };
        assert_eq!(
            bad_action.validate(),
            Err(FaultsError::Action("Upload".into()))
        );
        let bad_code = Faults {
            retryable_codes: vec![1],
            ..Faults::default()
        };
        assert_eq!(bad_code.validate(), Err(FaultsError::Code(1)));
        assert!(mixed().validate().is_ok());
    }

    #[test]
    fn json_refuses_unknown_fields_and_fills_defaults() {
        let f: Faults = serde_json::from_str(r#"{"final_rate": 1.0}"#).unwrap();
        assert_eq!(f.final_rate, 1.0);
        assert!(f.actions.is_empty());
        assert!(serde_json::from_str::<Faults>(r#"{"final": 1.0}"#).is_err());
    }
}
