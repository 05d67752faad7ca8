//! The one integration-test binary: every test drives the real emulator over TCP.

mod cli;
mod crash;
mod daemon;
mod helpers;
mod operations;
mod upload;
