//! vodup: resumable, exactly-once uploads of video files to a VOD service over the UGC upload
//! protocol.
//!
//! How a file flows: the daemon's intake notices it and waits until it is fully written; the [`ledger`] records it; the upload engine ([`upload`]) hashes it once
//! ([`hash`]), signs it and speaks the protocol ([`protocol`]) to init, send the missing parts
//! concurrently and finish; the ledger records every part the service confirmed, so a restart
//! resumes from there. The [`daemon`] wires these tasks together (and [`http`] shows their progress
//! on a status page and as metrics); [`emulator`] is a faithful implementation of the service for
//! tests, benchmarks and trying a config. [`cli`] is the command line; [`manual`] renders its man
//! pages and shell completions.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod error;
pub mod hash;
pub mod hooks;
pub mod http;
pub mod ledger;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod progress;
pub mod protocol;
pub mod ratelimit;
pub mod shown;
pub mod source;
pub mod status;
pub mod upload;
