//! The client side of the UGC upload protocol (PROTOCOL.md): the part plan, the signature, the wire
//! types, the HTTP client, and the one function that classifies every outcome.
//!
//! This layer owns the retry *policy* (which outcomes retry, how long to wait); it owns no state of
//! an upload: the upload engine drives the calls and the ledger remembers.

pub mod client;
pub mod outcome;
pub mod plan;
pub mod retry;
pub mod signature;
pub mod wire;

pub use client::{Client, ClientError, PartBody, Timeouts};
pub use outcome::{
    classify, Action, CallError, Pace, ServiceError, Verdict, SIGNATURE_CODE as SIGNATURE_REFUSED,
};
pub use plan::{Part, PartSize};
pub use retry::{Attempts, RetryPolicy};
pub use signature::{Claims, Processing, SecretKey, Signature};
pub use wire::{FinishAnswer, HeldPart, InitAnswer, InitRequest, PartRequest};
