//! The one integration-test binary: every behaviour module, and the fixtures they share.

mod emulator;
mod helpers;
