//! One load point split over several client machines: shard `I` of `N` sends the entries
//! of the one-machine schedule whose index falls to it (`i % N == I`), with their own
//! prompts and intended times, so the union of the `N` shards *is* the one-machine run.
//! Every `N`-th entry (not a contiguous block) keeps each shard's share even over time.

use std::fmt;

/// Shard `index` of `count` (0-based). [`Shard::WHOLE`] is the unsplit load point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, `I` 0-based; `Err` says what is wrong with the text.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not `I/N` (e.g. `0/2`: the first of two shards)"))?;
        let num = |t: &str, what: &str| {
            t.trim().parse::<u32>().map_err(|_| {
                format!(
                    "`{s}`: the {what} `{t}` is not a whole number from 0 to {}",
                    u32::MAX
                )
            })
        };
        let (index, count) = (num(i, "shard index")?, num(n, "shard count")?);
        if count == 0 {
            return Err(format!("`{s}`: a load point has at least one shard"));
        }
        if index >= count {
            return Err(format!(
                "`{s}`: shards are numbered from 0, so shard {index} of {count} does not exist (the last is {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether schedule entry `i` is this shard's.
    pub fn owns(self, i: u64) -> bool {
        i % u64::from(self.count) == u64::from(self.index)
    }

    /// The schedule entry this shard's `local`-th entry is.
    pub fn entry(self, local: usize) -> usize {
        self.index as usize + local * self.count as usize
    }

    /// This shard's entries of `schedule`, in order.
    pub fn take<T: Copy>(self, schedule: &[T]) -> Vec<T> {
        schedule
            .iter()
            .skip(self.index as usize)
            .step_by(self.count as usize)
            .copied()
            .collect()
    }

    /// This shard's part of `total` (a concurrency cap): an even split, the remainder to
    /// the first shards, so the parts add up to `total`.
    pub fn share(self, total: usize) -> usize {
        let n = self.count as usize;
        total / n + usize::from((self.index as usize) < total % n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse("0/1"), Ok(Shard::WHOLE));
        for bad in ["3/3", "1/0", "a/2", "1", "-1/2", "1/2/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(Shard::parse("3/3").unwrap_err().contains("the last is 2"));
    }

    proptest! {
        /// The shards of a schedule are a partition of it: every entry in exactly one,
        /// each shard's in order, and `entry` maps a shard's position back to the original.
        #[test]
        fn shards_partition_the_schedule(len in 0usize..300, count in 1u32..9) {
            let schedule: Vec<u64> = (0..len as u64).map(|i| i * 7 + 3).collect();
            let mut seen = vec![0u32; len];
            for index in 0..count {
                let s = Shard { index, count };
                let mine = s.take(&schedule);
                for (local, t) in mine.iter().enumerate() {
                    let e = s.entry(local);
                    prop_assert_eq!(schedule[e], *t);
                    prop_assert!(s.owns(e as u64));
                    seen[e] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&k| k == 1));
        }

        #[test]
        fn shares_add_up(total in 0usize..10_000, count in 1u32..64) {
            let parts: Vec<usize> = (0..count).map(|index| Shard { index, count }.share(total)).collect();
            prop_assert_eq!(parts.iter().sum::<usize>(), total);
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
        }
    }
}
