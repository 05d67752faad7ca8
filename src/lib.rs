//! vodup: resumable, exactly-once uploads of video files to a VOD service.
pub mod config;
pub mod hash;
pub mod ledger;
pub mod protocol;
