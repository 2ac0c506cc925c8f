//! Generated blob content. A large blob is one random block repeated, so the
//! bench holds a single block in memory whatever the blob's size, sends slices of
//! it without copying, knows its digest before the clock starts, and checks a
//! pulled byte against the block instead of hashing the stream (which would
//! make the client, not the registry, the bottleneck).

use crate::oci::Algorithm;
use bytes::Bytes;

/// Largest block a payload repeats.
const MAX_BLOCK: u64 = 16 << 20;

pub struct Payload {
    block: Bytes,
    size: u64,
    digest: String,
}

/// Random bytes (unique per run, so a registry never already holds them).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: still unique enough per run for a benchmark.
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
        for b in &mut bytes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    bytes
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    let mut hasher = Algorithm::Sha256.hasher();
    hasher.update(bytes);
    hasher.finish().to_string()
}

impl Payload {
    /// A `size`-byte payload; hashing it takes a moment for large sizes, so
    /// call it before timing anything.
    pub fn generate(size: u64) -> Payload {
        let block_len = size.clamp(1, MAX_BLOCK) as usize;
        let block = Bytes::from(random_bytes(block_len));
        let mut hasher = Algorithm::Sha256.hasher();
        let mut left = size;
        while left > 0 {
            let n = left.min(block_len as u64) as usize;
            hasher.update(&block[..n]);
            left -= n as u64;
        }
        Payload {
            block,
            size,
            digest: hasher.finish().to_string(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Up to `max` bytes from `offset`, stopping at the block's end and the
    /// payload's; a slice of the block, not a copy.
    pub fn slice(&self, offset: u64, max: usize) -> Bytes {
        let block_len = self.block.len() as u64;
        let pos = (offset % block_len) as usize;
        let left = self.size.saturating_sub(offset);
        let n = (max as u64).min(left).min(block_len - pos as u64) as usize;
        self.block.slice(pos..pos + n)
    }

    /// Whether `chunk` is what the payload holds at `offset`.
    pub fn matches_at(&self, offset: u64, chunk: &[u8]) -> bool {
        if offset + chunk.len() as u64 > self.size {
            return false;
        }
        let block_len = self.block.len() as u64;
        let (mut offset, mut chunk) = (offset, chunk);
        while !chunk.is_empty() {
            let pos = (offset % block_len) as usize;
            let n = chunk.len().min(self.block.len() - pos);
            if chunk[..n] != self.block[pos..pos + n] {
                return false;
            }
            chunk = &chunk[n..];
            offset += n as u64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_and_checks_agree_with_the_whole() {
        let p = Payload::generate(2 * MAX_BLOCK + 1000);
        let mut whole = Vec::new();
        let mut offset = 0;
        while offset < p.size() {
            let s = p.slice(offset, 3 << 20);
            assert!(!s.is_empty());
            assert!(p.matches_at(offset, &s));
            offset += s.len() as u64;
            whole.extend_from_slice(&s);
        }
        assert_eq!(whole.len() as u64, p.size());
        assert_eq!(digest_of(&whole), p.digest());
        // A chunk spanning a block boundary, a wrong byte, and bytes past the end.
        let at = MAX_BLOCK - 10;
        let span = &whole[at as usize..at as usize + 20];
        assert!(p.matches_at(at, span));
        let mut wrong = span.to_vec();
        wrong[15] ^= 1;
        assert!(!p.matches_at(at, &wrong));
        assert!(!p.matches_at(p.size() - 1, &[0, 0]));
    }

    #[test]
    fn small_payloads_are_one_block() {
        let p = Payload::generate(5);
        assert_eq!(p.slice(0, 100).len(), 5);
        assert_eq!(p.slice(5, 100).len(), 0);
    }
}
