//! vodup: resumable, exactly-once uploads of video files to a VOD service.
pub mod hash;
pub mod protocol;
