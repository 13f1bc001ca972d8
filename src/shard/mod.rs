//! One load point sent from several machines (`bench --shard I/N --start-at T`).
//!
//! Each shard sends its entries of the one-machine schedule (`loadtest_base::shard`) from
//! a common wall-clock instant (`runner::start`), after checking its clock can be trusted for that
//! (`clock`), and writes a normal cell folder plus `shard.json` (`store::shard_json`): who it was,
//! when it really started, its clock, and the plan every shard must share.
//! `merge` makes the shards' folders one cell again, with figures computed over the union
//! of their records.

pub mod clock;
pub mod merge;

pub use crate::store::shard_json::{MergePlan, PlanDigests, ShardRecord};

/// A stable digest (FNV-1a, 64 bits, hex) of what pins a plan down: shards compare
/// theirs, so what is fed must be the same on every machine for the same plan (contents,
/// not paths).
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Feed `b`, its length first (so `ab`+`c` and `a`+`bc` differ).
    pub fn feed(&mut self, b: &[u8]) -> &mut Self {
        for x in (b.len() as u64).to_le_bytes().iter().chain(b) {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The digest of one text.
pub fn digest(text: &str) -> String {
    Digest::default().feed(text.as_bytes()).hex()
}

#[cfg(test)]
mod tests {
    use super::{Digest, digest};

    #[test]
    fn digests_tell_texts_and_their_boundaries_apart() {
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
        let two = |x: &str, y: &str| {
            Digest::default()
                .feed(x.as_bytes())
                .feed(y.as_bytes())
                .hex()
        };
        assert_ne!(two("ab", "c"), two("a", "bc"));
    }
}
