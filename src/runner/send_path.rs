//! How each arrival of an open loop went out: written by the pacer thread at its due time,
//! or handed to the runtime, and why (no free concurrency slot, no idle connection, a
//! socket that took nothing yet, TLS). The runtime's sends wait their turn behind its
//! other work and its own place in the OS's run queue, so they are the ones a busy machine
//! makes late; these counts say which reason to look at. Counted by the pacer thread with
//! relaxed atomics (it is the only writer), read once it has stopped.

pub use crate::store::cell_report::SendPaths;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter {
    pacer: AtomicU64,
    no_slot: AtomicU64,
    no_idle: AtomicU64,
    not_writable: AtomicU64,
    tls: AtomicU64,
    take_max_ns: AtomicU64,
    late_max_ns: AtomicU64,
    woke_late: AtomicU64,
    slow_takes: AtomicU64,
}

/// A wake-up of the pacer later than this is the OS's (or the hypervisor's) doing: the
/// thread sleeps to just before the due time and spins the rest, at a real-time priority
/// when it may.
pub const WOKE_LATE_NS: u64 = 500_000;

/// Why the pacer handed an arrival to the runtime, or that it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Pacer,
    NoSlot,
    NoIdle,
    NotWritable,
    Tls,
}

impl Counter {
    pub fn count(&self, path: Path) {
        let c = match path {
            Path::Pacer => &self.pacer,
            Path::NoSlot => &self.no_slot,
            Path::NoIdle => &self.no_idle,
            Path::NotWritable => &self.not_writable,
            Path::Tls => &self.tls,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// How long taking an idle connection took (the pool's lock, the liveness check).
    pub fn took(&self, ns: u64) {
        self.take_max_ns.fetch_max(ns, Ordering::Relaxed);
        if ns > WOKE_LATE_NS {
            self.slow_takes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How late the pacer got to an arrival (its wake-up, before any send work).
    pub fn late(&self, ns: u64) {
        self.late_max_ns.fetch_max(ns, Ordering::Relaxed);
        if ns > WOKE_LATE_NS {
            self.woke_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn report(&self) -> SendPaths {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SendPaths {
            by_pacer: g(&self.pacer),
            no_free_slot: g(&self.no_slot),
            no_idle_connection: g(&self.no_idle),
            socket_not_writable: g(&self.not_writable),
            tls: g(&self.tls),
            pacer_take_max_ms: g(&self.take_max_ns) as f64 / 1e6,
            pacer_late_max_ms: g(&self.late_max_ns) as f64 / 1e6,
            pacer_woke_late: g(&self.woke_late),
            pacer_slow_takes: g(&self.slow_takes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_counted_apart_and_the_slowest_take_kept() {
        let c = Counter::default();
        for p in [
            Path::Pacer,
            Path::Pacer,
            Path::NoSlot,
            Path::NoIdle,
            Path::NotWritable,
            Path::Tls,
        ] {
            c.count(p);
        }
        c.took(1_500_000);
        c.took(200_000);
        c.late(400_000);
        c.late(3_000_000);
        let r = c.report();
        assert_eq!((r.by_pacer, r.by_runtime()), (2, 4));
        assert_eq!(
            (
                r.no_free_slot,
                r.no_idle_connection,
                r.socket_not_writable,
                r.tls
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(r.pacer_take_max_ms, 1.5);
        assert_eq!((r.pacer_late_max_ms, r.pacer_woke_late), (3.0, 1));
        assert_eq!(r.pacer_slow_takes, 1);
    }
}
