//! The pacer: a dedicated OS thread that releases request `i` at its intended time.
//!
//! `tokio::time::sleep` is millisecond-grained and shares the runtime with the responses it
//! must read; a thread with a tight timer slack that sleeps to just before each deadline and
//! spins the rest keeps the schedule to microseconds. It hands indices to the runtime over
//! an unbounded channel: a late runtime shows up as `queue_delay`, never as a lost arrival.

use crate::clock::{self, Clock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

pub struct Pacer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    /// Start releasing `schedule` (ns offsets on `clock`) into `tx`.
    pub fn start(clock: Clock, schedule: Arc<[u64]>, tx: mpsc::UnboundedSender<usize>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                clock::tighten_timer_slack();
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
                    if tx.send(i).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn pacer thread");
        Self {
            stop,
            handle: Some(handle),
        }
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
