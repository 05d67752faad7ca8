//! The running SHA-1 of an upload's parts in offset order, kept off the parts' answer path.
//!
//! A part is answered as soon as it is stored; its bytes are then handed to the upload's
//! [`Prefix`] on a blocking thread. They are hashed at once if they extend the contiguous prefix
//! (with any waiting parts that follow them), or kept until the gap before them fills, up to
//! [`WAITING_MAX`] bytes (past that, finish reads them back from disk). Whoever holds the chain
//! hashes what others hand in meanwhile, so no thread waits on another's hashing, and the parts
//! of one file are answered at the pace they are stored, not at the pace of one SHA-1 chain:
//! answers spaced by a SHA-1 each made the client's next parts arrive one by one, too few for a
//! multi-buffer MD5 pass.
//!
//! [`Prefix::digest`] catches the chain up with the parts held, reading from disk what it never
//! got, and first checks that what it hashed is exactly those parts, by offset and MD5: a part
//! replaced after it was hashed restarts the chain from offset 0 rather than leave a wrong
//! digest. Each incarnation of an upload gets a fresh `Prefix`; the generation each part carries
//! (bytes of an earlier incarnation are dropped) is a second guard.

use crate::emulator::disk::{DiskError, HeldPart};
use bytes::Bytes;
use sha1::Digest as _;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Bytes of out-of-order parts kept in memory per upload, waiting for the gap before them.
pub const WAITING_MAX: usize = 64 << 20;

/// A stored part's bytes, handed to the chain.
#[derive(Debug)]
pub struct Fed {
    pub generation: u64,
    pub offset: u64,
    pub md5: String,
    pub bytes: Vec<Bytes>,
}

impl Fed {
    fn len(&self) -> usize {
        self.bytes.iter().map(Bytes::len).sum()
    }
}

/// One upload's running SHA-1, shared by its part requests and its finish.
#[derive(Debug, Default)]
pub struct Prefix {
    /// Parts handed in while another thread held the chain.
    inbox: Mutex<Vec<Fed>>,
    chain: Mutex<Chain>,
}

#[derive(Debug, Default)]
struct Chain {
    generation: u64,
    hasher: sha1::Sha1,
    /// The first offset not hashed yet.
    next: u64,
    /// Every part hashed, in order: (offset, MD5).
    hashed: Vec<(u64, String)>,
    /// Parts past a gap, by offset.
    waiting: BTreeMap<u64, Fed>,
    waiting_bytes: usize,
}

impl Prefix {
    /// Hand in a stored part's bytes. Blocking (it may hash), but never waits for another
    /// thread's hashing: if the chain is busy, its holder takes the part.
    pub fn feed(&self, fed: Fed) {
        lock(&self.inbox).push(fed);
        loop {
            let mut chain = match self.chain.try_lock() {
                Ok(chain) => chain,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            self.drain_into(&mut chain);
            drop(chain);
            // A part handed in after the drain, whose feeder found the chain still held.
            if lock(&self.inbox).is_empty() {
                return;
            }
        }
    }

    /// The SHA-1 (lowercase hex) of `held`, every part of an upload of `size` bytes in
    /// incarnation `generation`, reading from disk (`read(offset, len)`) what was never fed.
    /// Blocking.
    pub fn digest(
        &self,
        generation: u64,
        held: &BTreeMap<u64, HeldPart>,
        size: u64,
        mut read: impl FnMut(u64, u64) -> Result<Vec<u8>, DiskError>,
    ) -> Result<String, DiskError> {
        let mut chain = lock(&self.chain);
        self.drain_into(&mut chain);
        let same = |(offset, md5): &(u64, String)| held.get(offset).is_some_and(|h| &h.md5 == md5);
        if chain.generation != generation || !chain.hashed.iter().all(same) {
            *chain = Chain::new(generation);
        }
        while chain.next < size {
            let offset = chain.next;
            let part = held
                .get(&offset)
                .expect("finish checked every part is held");
            match chain.waiting.remove(&offset) {
                Some(fed) if fed.md5 == part.md5 => {
                    chain.waiting_bytes -= fed.len();
                    chain.hash(&fed.bytes, offset, part.len, &part.md5);
                }
                _ => {
                    let bytes = read(offset, part.len)?;
                    chain.hash(&[Bytes::from(bytes)], offset, part.len, &part.md5);
                }
            }
        }
        Ok(hex::encode(chain.hasher.clone().finalize()))
    }

    fn drain_into(&self, chain: &mut Chain) {
        loop {
            let fed = std::mem::take(&mut *lock(&self.inbox));
            if fed.is_empty() {
                return;
            }
            fed.into_iter().for_each(|fed| chain.take(fed));
        }
    }
}

impl Chain {
    /// Nothing hashed yet, for incarnation `generation`.
    fn new(generation: u64) -> Chain {
        Chain {
            generation,
            ..Chain::default()
        }
    }

    fn take(&mut self, fed: Fed) {
        if fed.generation < self.generation {
            return;
        }
        if fed.generation > self.generation {
            *self = Chain::new(fed.generation);
        }
        if fed.offset < self.next {
            return; // hashed already: if it was replaced, `digest` finds the MD5 changed
        }
        if fed.offset > self.next {
            let len = fed.len();
            if self.waiting_bytes + len <= WAITING_MAX {
                self.waiting_bytes += len;
                if let Some(old) = self.waiting.insert(fed.offset, fed) {
                    self.waiting_bytes -= old.len();
                }
            }
            return;
        }
        self.hash(&fed.bytes, fed.offset, fed.len() as u64, &fed.md5);
        while let Some(fed) = self.waiting.remove(&self.next) {
            self.waiting_bytes -= fed.len();
            self.hash(&fed.bytes, fed.offset, fed.len() as u64, &fed.md5);
        }
    }

    fn hash(&mut self, bytes: &[Bytes], offset: u64, len: u64, md5: &str) {
        bytes.iter().for_each(|chunk| self.hasher.update(chunk));
        self.hashed.push((offset, md5.to_owned()));
        self.next = offset + len;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{md5_hex, sha1_hex};

    const PART: usize = 1000;

    fn file() -> Vec<u8> {
        (0..PART * 5 + 123).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn parts(data: &[u8]) -> Vec<(u64, &[u8])> {
        data.chunks(PART)
            .enumerate()
            .map(|(i, c)| ((i * PART) as u64, c))
            .collect()
    }

    fn held(data: &[u8]) -> BTreeMap<u64, HeldPart> {
        parts(data)
            .into_iter()
            .map(|(offset, c)| {
                let h = HeldPart {
                    len: c.len() as u64,
                    md5: md5_hex(c),
                };
                (offset, h)
            })
            .collect()
    }

    fn fed(generation: u64, offset: u64, bytes: &[u8]) -> Fed {
        let chunks = bytes.chunks(300).map(Bytes::copy_from_slice).collect();
        Fed {
            generation,
            offset,
            md5: md5_hex(bytes),
            bytes: chunks,
        }
    }

    /// Finish's digest, counting the parts it had to read back.
    fn digest(prefix: &Prefix, generation: u64, data: &[u8]) -> (String, Vec<u64>) {
        let mut read_back = Vec::new();
        let sha = prefix
            .digest(generation, &held(data), data.len() as u64, |offset, len| {
                read_back.push(offset);
                Ok(data[offset as usize..(offset + len) as usize].to_vec())
            })
            .unwrap();
        (sha, read_back)
    }

    #[test]
    fn parts_fed_in_any_order_are_hashed_once_in_offset_order() {
        let data = file();
        let prefix = Prefix::default();
        let mut order = parts(&data);
        order.reverse();
        order.swap(1, 4);
        for (offset, bytes) in order {
            prefix.feed(fed(1, offset, bytes));
        }
        assert_eq!(lock(&prefix.chain).next, data.len() as u64);
        assert_eq!(lock(&prefix.chain).waiting_bytes, 0);
        assert_eq!(digest(&prefix, 1, &data), (sha1_hex(&data), vec![]));
    }

    #[test]
    fn parts_never_fed_are_read_back_at_the_digest() {
        let data = file();
        let prefix = Prefix::default();
        for (offset, bytes) in parts(&data) {
            if offset != 2 * PART as u64 {
                prefix.feed(fed(1, offset, bytes));
            }
        }
        let (sha, read_back) = digest(&prefix, 1, &data);
        assert_eq!(sha, sha1_hex(&data));
        assert_eq!(
            read_back,
            [2 * PART as u64],
            "the parts after it were waiting"
        );
    }

    #[test]
    fn a_part_replaced_after_it_was_hashed_restarts_the_chain() {
        let data = file();
        let prefix = Prefix::default();
        let mut other = data.clone();
        other[PART + 5] ^= 0xff;
        for (offset, bytes) in parts(&other) {
            prefix.feed(fed(1, offset, bytes));
        }
        // The service now holds the first version's part at PART (re-sent, MD5 checked).
        let (sha, read_back) = digest(&prefix, 1, &data);
        assert_eq!(sha, sha1_hex(&data));
        assert_eq!(read_back.len(), parts(&data).len(), "every part read back");
    }

    #[test]
    fn parts_of_an_earlier_incarnation_are_ignored() {
        let data = file();
        let prefix = Prefix::default();
        let stale = vec![0u8; PART];
        prefix.feed(fed(1, 0, &stale));
        for (offset, bytes) in parts(&data) {
            prefix.feed(fed(2, offset, bytes));
        }
        prefix.feed(fed(1, 0, &stale));
        assert_eq!(digest(&prefix, 2, &data), (sha1_hex(&data), vec![]));
        let (sha, read_back) = digest(&prefix, 3, &data);
        assert_eq!(sha, sha1_hex(&data), "a later incarnation starts over");
        assert_eq!(read_back.len(), parts(&data).len());
    }

    #[test]
    fn parts_past_a_gap_wait_in_memory_only_up_to_the_cap() {
        let prefix = Prefix::default();
        let big = vec![7u8; WAITING_MAX / 2 + 1];
        prefix.feed(fed(1, 10, &big));
        prefix.feed(fed(1, 20, &big));
        let chain = lock(&prefix.chain);
        assert_eq!(chain.waiting.len(), 1);
        assert_eq!(chain.waiting_bytes, big.len());
    }

    #[test]
    fn parts_fed_from_many_threads_at_once_all_reach_the_chain() {
        let data: Vec<u8> = (0..PART * 64).map(|i| (i % 253) as u8).collect();
        let prefix = Prefix::default();
        std::thread::scope(|s| {
            for (offset, bytes) in parts(&data) {
                let prefix = &prefix;
                s.spawn(move || prefix.feed(fed(1, offset, bytes)));
            }
        });
        assert!(lock(&prefix.inbox).is_empty(), "no part left in the inbox");
        assert_eq!(lock(&prefix.chain).next, data.len() as u64);
        assert_eq!(digest(&prefix, 1, &data), (sha1_hex(&data), vec![]));
    }
}
