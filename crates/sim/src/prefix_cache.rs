//! One engine's KV block pool with vLLM V1's automatic prefix caching: full blocks of a
//! prompt are known by a chained hash, blocks are shared by reference count, and a freed
//! block keeps its hash (stays cached) until it is reused for something else.
//!
//! As vLLM's `BlockPool`, every free block sits in one queue in the order it was freed
//! (never-used blocks first); a new block is taken from the head, and taking a cached block
//! evicts its hash. So a cached block is evicted least recently used first, and only when a
//! new block is needed. A block in use (reference count > 0) is not in the queue and can
//! never be evicted. The queue holds runs of plain blocks as counts, so a pool of 2^30
//! blocks (the `zero` profile) costs nothing.
//!
//! Pure and deterministic: no clock, no randomness; the order of calls fixes everything.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The hash of one full block of tokens, chained over every block before it (so equal hashes
/// mean equal prefixes, as vLLM's `hash_block_tokens`).
pub type BlockHash = u64;

/// The chained hashes of every full block of `ids`, `block_size` tokens each. A partial last
/// block has no hash (vLLM caches full blocks only).
pub fn block_hashes(ids: &[u32], block_size: u32) -> Vec<BlockHash> {
    chain(ids, block_size, 0)
}

/// [`block_hashes`] of a request with a `cache_salt`: vLLM mixes the salt into its first
/// block's hash, so every chained hash after it differs from the unsalted prompt's and from
/// another salt's; here the salt's hash is the first block's parent.
pub fn salted_block_hashes(ids: &[u32], block_size: u32, salt: &str) -> Vec<BlockHash> {
    chain(ids, block_size, hasher().hash_one(salt))
}

// SipHash with fixed keys: the same ids give the same hashes in every process, so a
// simulated run is reproducible (vLLM seeds its first parent hash instead).
fn hasher() -> BuildHasherDefault<std::collections::hash_map::DefaultHasher> {
    BuildHasherDefault::default()
}

fn chain(ids: &[u32], block_size: u32, mut parent: BlockHash) -> Vec<BlockHash> {
    let build = hasher();
    ids.chunks_exact(block_size.max(1) as usize)
        .map(|block| {
            let mut h = build.build_hasher();
            h.write_u64(parent);
            for &id in block {
                h.write_u32(id);
            }
            parent = h.finish();
            parent
        })
        .collect()
}

/// The prefix cache's counters (`prefix_cache_queries_total`, `prefix_cache_hits_total`)
/// for `prompts` prompts in `groups` prefix groups (vLLM's `prefix_repetition`): each
/// prompt is `prefix` tokens its group shares, then `suffix` tokens of its own; blocks of
/// `block_size`. Valid when nothing is evicted and a group's first prompt is scheduled before
/// the others look up (one engine, FCFS, a prefix within the token budget).
///
/// Every prompt queries all its `prefix + suffix` tokens. A group's first prompt finds
/// nothing; each later one finds the full blocks of the prefix, ⌊P/B⌋·B tokens (the block
/// that straddles prefix and suffix differs), but never its whole prompt: at most
/// ⌊(P+S−1)/B⌋ blocks, so the last token is computed.
pub fn closed_form_counters(
    groups: u64,
    prompts: u64,
    prefix: u64,
    suffix: u64,
    block_size: u64,
) -> (u64, u64) {
    let len = prefix + suffix;
    let per_hit = (prefix / block_size).min(len.saturating_sub(1) / block_size) * block_size;
    let misses = groups.min(prompts);
    (prompts * len, (prompts - misses) * per_hit)
}

/// A free block in the eviction queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Free {
    /// This many blocks without a hash (never used, a partial block, or caching off).
    Plain(u32),
    /// One block that still holds the KV of this hash: a later request may reuse it.
    Cached(BlockHash),
}

/// A block registered under its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Running requests using it.
    refs: u32,
    /// Its place in the free queue while `refs == 0`.
    queued_at: Option<u64>,
}

/// The blocks one request holds: its cached (hashed) blocks, shared, and its plain ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Hashes of the cached blocks it references, in block order.
    pub cached: Vec<BlockHash>,
    /// Blocks only it uses (a partial block, output tokens, a duplicate of a cached block).
    pub plain: u32,
    /// Prompt blocks looked at for registration so far (the next full block to cache).
    pub registered: u32,
}

impl Held {
    pub fn blocks(&self) -> u32 {
        self.cached.len() as u32 + self.plain
    }
}

#[derive(Debug, Clone)]
pub struct BlockPool {
    total: u32,
    enabled: bool,
    /// Free blocks, oldest first, keyed by the order they were freed in.
    queue: BTreeMap<u64, Free>,
    free: u32,
    next_stamp: u64,
    cached: HashMap<BlockHash, Entry>,
    evictions: u64,
}

impl BlockPool {
    pub fn new(total: u32, enabled: bool) -> Self {
        let mut queue = BTreeMap::new();
        queue.insert(0, Free::Plain(total));
        Self {
            total,
            enabled,
            queue,
            free: total,
            next_stamp: 1,
            cached: HashMap::new(),
            evictions: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Free blocks, cached ones included (they are reclaimable).
    pub fn free(&self) -> u32 {
        self.free
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// Cached blocks evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Whether a block of this hash is cached (in use or free).
    pub fn contains(&self, h: BlockHash) -> bool {
        self.cached.contains_key(&h)
    }

    /// Blocks registered under a hash that some request uses: counted once however many
    /// requests share them.
    pub fn cached_in_use(&self) -> u32 {
        self.cached.values().filter(|e| e.refs > 0).count() as u32
    }

    /// References held on cached blocks, over every request.
    pub fn refs(&self) -> u64 {
        self.cached.values().map(|e| e.refs as u64).sum()
    }

    /// The longest run of leading `hashes` that is cached, at most `max_blocks` long, and how
    /// many of those blocks are free now (touching them takes them off the free queue).
    pub fn lookup(&self, hashes: &[BlockHash], max_blocks: usize) -> (usize, u32) {
        if !self.enabled {
            return (0, 0);
        }
        let mut free = 0;
        let n = hashes
            .iter()
            .take(max_blocks)
            .take_while(|h| match self.cached.get(h) {
                Some(e) => {
                    free += u32::from(e.refs == 0);
                    true
                }
                None => false,
            })
            .count();
        (n, free)
    }

    /// Take references on cached blocks found by `lookup`.
    pub fn touch(&mut self, hashes: &[BlockHash], held: &mut Held) {
        for &h in hashes {
            let e = self.cached.get_mut(&h).expect("touch a cached block");
            if e.refs == 0 {
                let at = e.queued_at.take().expect("a free cached block is queued");
                self.queue.remove(&at);
                self.free -= 1;
            }
            e.refs += 1;
            held.cached.push(h);
        }
    }

    /// Take `n` new blocks from the head of the free queue (evicting cached ones reached
    /// there), as plain blocks of `held`. The caller checked `n <= free()`.
    pub fn allocate(&mut self, n: u32, held: &mut Held) {
        assert!(n <= self.free, "allocate {n} of {} free", self.free);
        let mut left = n;
        while left > 0 {
            let mut head = self.queue.first_entry().expect("free blocks are queued");
            match *head.get() {
                Free::Plain(k) if k > left => {
                    *head.get_mut() = Free::Plain(k - left);
                    left = 0;
                }
                Free::Plain(k) => {
                    head.remove();
                    left -= k;
                }
                Free::Cached(h) => {
                    head.remove();
                    self.cached.remove(&h);
                    self.evictions += 1;
                    left -= 1;
                }
            }
        }
        self.free -= n;
        held.plain += n;
    }

    /// Register the request's full prompt blocks below `full_blocks` under their hashes
    /// (vLLM caches a block when it is allocated for tokens that fill it, so a request
    /// scheduled later in the same step already finds it). A hash cached meanwhile by
    /// another request leaves this block a plain duplicate.
    pub fn register(&mut self, hashes: &[BlockHash], full_blocks: u32, held: &mut Held) {
        if !self.enabled {
            return;
        }
        let upto = (full_blocks as usize).min(hashes.len());
        while (held.registered as usize) < upto {
            let h = hashes[held.registered as usize];
            held.registered += 1;
            if self.cached.contains_key(&h) || held.plain == 0 {
                continue;
            }
            self.cached.insert(
                h,
                Entry {
                    refs: 1,
                    queued_at: None,
                },
            );
            held.plain -= 1;
            held.cached.push(h);
        }
    }

    /// Give back every block of `held`. As vLLM frees a request's blocks tail first, its
    /// last blocks are queued first and so evicted before its prefix.
    pub fn release(&mut self, held: &mut Held) {
        if held.plain > 0 {
            self.push(Free::Plain(held.plain));
        }
        for h in std::mem::take(&mut held.cached).into_iter().rev() {
            let e = self.cached.get_mut(&h).expect("release a cached block");
            e.refs -= 1;
            if e.refs == 0 {
                let at = self.next_stamp;
                e.queued_at = Some(at);
                self.push_at(at, Free::Cached(h));
            }
        }
        *held = Held::default();
    }

    /// Forget every cached block nobody uses (`POST /reset_prefix_cache`): their KV stays
    /// where it is in the free queue, but no request will find it again. Blocks in use keep
    /// their hash (vLLM refuses a reset while any is; between cells nothing is). Returns how
    /// many were forgotten.
    pub fn reset(&mut self) -> usize {
        let idle: Vec<(BlockHash, u64)> = self
            .cached
            .iter()
            .filter_map(|(h, e)| e.queued_at.map(|at| (*h, at)))
            .collect();
        for (h, at) in &idle {
            self.cached.remove(h);
            self.queue.insert(*at, Free::Plain(1));
        }
        idle.len()
    }

    fn push(&mut self, f: Free) {
        let at = self.next_stamp;
        self.push_at(at, f);
    }

    fn push_at(&mut self, at: u64, f: Free) {
        self.next_stamp = at + 1;
        self.free += match f {
            Free::Plain(k) => k,
            Free::Cached(_) => 1,
        };
        // a plain run after a plain run is one longer run: the queue stays short
        if let (Free::Plain(k), Some(mut last)) = (f, self.queue.last_entry())
            && let Free::Plain(j) = last.get_mut()
        {
            *j += k;
            return;
        }
        self.queue.insert(at, f);
    }

    /// Blocks are conserved: free (queued) + cached in use + plain held by requests = total.
    pub fn check(&self, plain_held: u64) -> Result<(), String> {
        let queued: u64 = self
            .queue
            .values()
            .map(|f| match f {
                Free::Plain(k) => *k as u64,
                Free::Cached(_) => 1,
            })
            .sum();
        if queued != self.free as u64 {
            return Err(format!(
                "queue holds {queued} blocks, free says {}",
                self.free
            ));
        }
        let in_use = self.cached_in_use() as u64;
        if queued + in_use + plain_held != self.total as u64 {
            return Err(format!(
                "blocks: {queued} free + {in_use} cached in use + {plain_held} plain held != {}",
                self.total
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_prefixes_hash_equal_and_a_partial_block_has_no_hash() {
        let a = block_hashes(&[1, 2, 3, 4, 5, 6, 7], 2);
        let b = block_hashes(&[1, 2, 3, 4, 9, 9], 2);
        assert_eq!(a.len(), 3);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        // chained: the same block after a different prefix is a different block
        let c = block_hashes(&[0, 0, 3, 4], 2);
        assert_ne!(a[1], c[1]);
    }

    #[test]
    fn a_salt_keeps_equal_prefixes_apart_and_equal_salts_together() {
        let ids = [1, 2, 3, 4, 5, 6];
        let a = block_hashes(&ids, 2);
        let (x, y) = (
            salted_block_hashes(&ids, 2, "cell-1"),
            salted_block_hashes(&ids, 2, "cell-2"),
        );
        // no block of one salt is another's, nor the unsalted prompt's
        assert!(x.iter().all(|h| !y.contains(h) && !a.contains(h)));
        // the same salt shares the prefix, as vLLM's salted requests do with each other
        let longer = salted_block_hashes(&[1, 2, 3, 4, 5, 6, 7, 8], 2, "cell-1");
        assert_eq!(longer[..3], x[..]);
    }

    #[test]
    fn eviction_takes_the_least_recently_freed_cached_block() {
        let mut p = BlockPool::new(4, true);
        let (mut a, mut b) = (Held::default(), Held::default());
        p.allocate(1, &mut a);
        p.register(&[10], 1, &mut a);
        p.allocate(1, &mut b);
        p.register(&[20], 1, &mut b);
        p.release(&mut a); // 10 freed first
        p.release(&mut b);
        let mut c = Held::default();
        p.allocate(2, &mut c); // the two never-used blocks
        assert!(p.contains(10) && p.contains(20));
        p.allocate(1, &mut c);
        assert!(!p.contains(10) && p.contains(20), "10 was freed earlier");
        assert_eq!(p.evictions(), 1);
        p.check(c.plain as u64).unwrap();
    }
}
