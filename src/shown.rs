//! Paths as people see them: in `vodup status`, human logs, errors and JSON documents.
//!
//! A file name may hold any byte but `/` and NUL: newlines, terminal escapes, bytes that are not
//! UTF-8. Printed raw, such a name forges lines in a table or a log. [`Shown`] prints control
//! characters as escapes (`\n`, `\t`, `\e`, `\u{7f}`), bytes that are not UTF-8 as `\xFF`, and a
//! backslash as `\\`, so the text is one line and names exactly one file. The ledger keeps the
//! bytes themselves; this module only renders them.

use serde::Serializer;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// A path rendered for people: one line, escaped (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a Path);

/// `path`, rendered for people.
pub fn shown(path: &Path) -> Shown<'_> {
    Shown(path)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.as_os_str().as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    '\u{1b}' => f.write_str("\\e")?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// Any text for people (a service's message, say), rendered on one line the same way.
pub fn line(text: &str) -> Shown<'_> {
    Shown(Path::new(text))
}

/// Serialize a path as its escaped text (a JSON string must be text; the raw bytes may not be).
pub fn serialize_path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Shown(path))
}

pub fn serialize_opt_path<S: Serializer>(
    path: &Option<std::path::PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serialize_path(path, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn text(bytes: &[u8]) -> String {
        shown(Path::new(OsStr::from_bytes(bytes))).to_string()
    }

    #[test]
    fn plain_names_are_shown_as_they_are() {
        assert_eq!(
            text("/drop/Été 2026/a b.mp4".as_bytes()),
            "/drop/Été 2026/a b.mp4"
        );
    }

    #[test]
    fn control_characters_and_bad_bytes_are_escaped_on_one_line() {
        assert_eq!(
            text(b"/d/a\nINFO forged\tline\x1b[31m.mp4"),
            "/d/a\\nINFO forged\\tline\\e[31m.mp4"
        );
        assert_eq!(text(b"/d/bad\xffname.mp4"), "/d/bad\\xFFname.mp4");
        assert_eq!(text(b"/d/back\\slash\x7f"), "/d/back\\\\slash\\u{7f}");
    }

    #[test]
    fn distinct_names_never_show_alike() {
        // The escape of a bad byte and the literal text of that escape stay distinct.
        assert_ne!(text(b"/d/\xff"), text(b"/d/\\xFF"));
        assert_ne!(text(b"/d/a\nb"), text(b"/d/a\\nb"));
    }
}
