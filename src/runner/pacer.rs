//! The pacer: a dedicated OS thread that releases request `i` at its intended time.
//!
//! `tokio::time::sleep` is millisecond-grained and shares the runtime with the responses it
//! must read; a thread with a tight timer slack that sleeps to just before each deadline and
//! spins the rest keeps the schedule to microseconds. At each due time it calls the release
//! function (which may send the request itself, see `load_point`) and hands the result to
//! the runtime over an unbounded channel: a late runtime shows up as `queue_delay`, never as
//! a lost arrival.

use loadtest_base::clock::{self, Clock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

pub struct Pacer {
    stop: Arc<AtomicBool>,
    /// Whether the thread got a real-time priority (see `clock::try_realtime_priority`).
    realtime: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    /// Start releasing `schedule` (ns offsets on `clock`): `release(i)` at arrival `i`'s
    /// time, its result into `tx`.
    pub fn start<T: Send + 'static>(
        clock: Clock,
        schedule: Arc<[u64]>,
        tx: mpsc::UnboundedSender<T>,
        mut release: impl FnMut(usize) -> T + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let realtime = Arc::new(AtomicBool::new(false));
        let realtime2 = realtime.clone();
        let handle = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                clock::tighten_timer_slack();
                realtime2.store(
                    clock::try_realtime_priority(clock::PACER_PRIORITY),
                    Ordering::Relaxed,
                );
                for (i, &t) in schedule.iter().enumerate() {
                    // Sleep in slices so a stop request is honoured within 50 ms.
                    let due = clock.instant_at(t);
                    loop {
                        if stop2.load(Ordering::Relaxed) {
                            return;
                        }
                        let now = std::time::Instant::now();
                        if due <= now {
                            break;
                        }
                        let slice = (due - now).min(std::time::Duration::from_millis(50));
                        clock::sleep_until(now + slice);
                    }
                    if tx.send(release(i)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn pacer thread");
        Self {
            stop,
            realtime,
            handle: Some(handle),
        }
    }

    /// Whether the pacer runs at a real-time priority (known once it started).
    pub fn realtime(&self) -> bool {
        self.realtime.load(Ordering::Relaxed)
    }

    /// Stop releasing (Ctrl-C, or the run ended early). Arrivals already released stay.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop();
    }
}
