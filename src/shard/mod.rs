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

pub use crate::store::shard_json::{MergePlan, ShardRecord};

/// A stable digest of the text that pins a plan down (FNV-1a, 64 bits, hex): shards
/// compare theirs, so the text must be the same on every machine for the same plan.
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
