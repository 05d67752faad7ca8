//! vodup: resumable, exactly-once uploads of video files to a VOD service.
//!
//! [`hash`] reads a file once for its SHA-1 and part MD5s; [`protocol`] speaks the UGC upload
//! protocol (part plan, signature); [`emulator`] is a strict local implementation of the service,
//! with fault injection, used by the tests, the benchmarks and the `vod-emulator` binary.
pub mod emulator;
pub mod hash;
pub mod protocol;
