//! The one integration-test binary: every behaviour module, and the fixtures they share. Every
//! test drives the real emulator over TCP.

mod accounts;
mod cli;
mod client;
mod completions;
mod crash;
mod daemon;
mod emulator;
mod fleet;
mod helpers;
mod intake;
mod ledger_age;
mod ledger_contract;
mod operations;
mod page;
mod postgres_ledger;
mod service;
mod sidecar;
mod terminal;
mod upload;
