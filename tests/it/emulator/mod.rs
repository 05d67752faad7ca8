//! The emulator over real TCP, driven by raw HTTP: uploads and resume, every error code, faults.

mod errors;
mod faults;
mod uploads;

/// 1 MiB and 512 KiB, the two part sizes.
const MIB: usize = 1_048_576;
const HALF: usize = 524_288;

/// The part of `data` at `index` for part size `part`.
fn part_of(data: &[u8], part: usize, index: usize) -> &[u8] {
    &data[index * part..data.len().min((index + 1) * part)]
}
