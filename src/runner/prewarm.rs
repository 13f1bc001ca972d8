//! Connections opened ahead of the schedule, so an arrival finds one idle at its due time.
//!
//! The pacer thread sends at the due time only on an idle pooled connection (`Presend`);
//! an arrival that finds none is handed to the runtime, which opens a connection and sends
//! late by the runtime's backlog plus a handshake: 1–8 ms at a trace's bursts on two shared
//! cores, the whole of the replay's send error above its p95. This task looks
//! [`LOOKAHEAD`] ahead in the schedule and keeps, per endpoint, as many connections idle
//! as arrivals are due there by then (no more than the free concurrency slots: an arrival
//! waiting for a slot gets the connection its slot's request gives back).
//!
//! A connection opened here is not any request's: no request's `connect_ns` carries its
//! handshake, which is the point (it is not part of the request's latency). One that fails
//! to connect is not an error of any request either; the requests find out for themselves
//! when they open their own, and this task backs off.

use super::load_point::Target;
use loadtest_base::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// How far ahead connections are opened: longer than the runtime's stalls on a busy
/// two-core machine (a trace replay beside a build saw sends 8–12 ms late with 25 ms), short
/// enough that a connection opened for an arrival is used long before a server's idle
/// timeout (uvicorn: 5 s) or the pool's own (4 s). At most rate × this many connections are
/// open early.
pub const LOOKAHEAD: Duration = Duration::from_millis(100);

/// How often the schedule is looked at (the runtime's timer granularity).
const TICK: Duration = Duration::from_millis(1);

/// After a connection could not be opened, wait this long before trying again.
const BACKOFF: Duration = Duration::from_millis(100);

/// The running task; it stops when this is dropped, or when the schedule is past.
pub struct Prewarm(JoinHandle<()>);

impl Drop for Prewarm {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start keeping connections ready for `schedule` (ns offsets on `clock`; arrival `i` goes
/// to `targets[i % targets.len()]`).
pub fn spawn(
    targets: Arc<[Target]>,
    schedule: Arc<[u64]>,
    slots: Arc<Semaphore>,
    clock: Clock,
    connect_timeout: Duration,
) -> Prewarm {
    Prewarm(tokio::spawn(async move {
        let lookahead = LOOKAHEAD.as_nanos() as u64;
        loop {
            let now = clock.now_ns();
            let next = schedule.partition_point(|&t| t <= now);
            if next == schedule.len() || targets.is_empty() {
                return;
            }
            let end = schedule.partition_point(|&t| t <= now + lookahead);
            let free = slots.available_permits();
            let mut failed = false;
            for (k, target) in targets.iter().enumerate() {
                let want = due_at(k, targets.len(), next, end).min(free);
                if !fill(target, want, connect_timeout).await {
                    failed = true;
                }
            }
            tokio::time::sleep(if failed { BACKOFF } else { TICK }).await;
        }
    }))
}

/// Before the clock starts: open the connections the first [`LOOKAHEAD`] of `schedule`
/// needs (at most `slots`), so the first arrivals find them too. A server that cannot be
/// reached costs one connect timeout here; its requests then report it themselves.
pub async fn before_start(
    targets: &[Target],
    schedule: &[u64],
    slots: usize,
    connect_timeout: Duration,
) {
    let end = schedule.partition_point(|&t| t <= LOOKAHEAD.as_nanos() as u64);
    for (k, target) in targets.iter().enumerate() {
        let want = due_at(k, targets.len(), 0, end).min(slots);
        if !fill(target, want, connect_timeout).await {
            return;
        }
    }
}

/// How many of arrivals `next..end` go to target `k` of `n` (round robin by index).
fn due_at(k: usize, n: usize, next: usize, end: usize) -> usize {
    let below = |x: usize| x / n + usize::from(x % n > k);
    below(end) - below(next)
}

/// Open connections until `target`'s pool holds `want` idle ones that stay fresh past the
/// lookahead (an idle one the pool would drop as too old at the arrival's time does not
/// count: that was why an isolated arrival after a lull found none). `false`: one could
/// not be opened.
async fn fill(target: &Target, want: usize, timeout: Duration) -> bool {
    let have = target.pool.fresh_idle(2 * LOOKAHEAD);
    for _ in have..want.min(target.pool.capacity()) {
        match target.pool.connect(timeout).await {
            Ok(c) => target.pool.put(c.stream),
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::due_at;

    #[test]
    fn arrivals_are_counted_per_round_robin_target() {
        for n in 1..5 {
            for next in 0..12 {
                for end in next..14 {
                    for k in 0..n {
                        let want = (next..end).filter(|i| i % n == k).count();
                        assert_eq!(due_at(k, n, next, end), want, "k {k} n {n} {next}..{end}");
                    }
                }
            }
        }
    }
}
