//! Live counters shared by the request tasks, and the progress line printed from them.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Requests of the measurement window still in flight (the drain waits for them).
    followed: AtomicU64,
    /// Requests in a row, by finish, that could not connect: the server is gone.
    connect_streak: AtomicU64,
    /// Turns of conversations that were cut short (never sent).
    pub not_sent: AtomicU64,
    /// TTFTs (µs) of requests finished since the last progress line.
    recent_ttft_us: Mutex<Vec<u64>>,
}

impl Live {
    /// A request was sent; `followed`: it belongs to the window, the drain waits for it.
    pub fn follow(&self, followed: bool) {
        if followed {
            self.followed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Undo a `follow` that ended without a request (a conversation between turns).
    pub fn unfollow(&self, followed: bool) {
        if followed {
            self.followed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn followed_in_flight(&self) -> u64 {
        self.followed.load(Ordering::Relaxed)
    }

    /// Requests that completed without an error so far.
    pub fn succeeded(&self) -> u64 {
        let done = self.done.load(Ordering::Relaxed);
        done.saturating_sub(self.failed.load(Ordering::Relaxed))
    }

    /// Requests in a row that could not connect.
    pub fn connect_streak(&self) -> u64 {
        self.connect_streak.load(Ordering::Relaxed)
    }

    pub fn finished(&self, ok: bool, ttft_ns: Option<u64>, followed: bool, refused: bool) {
        if followed {
            self.followed.fetch_sub(1, Ordering::Relaxed);
        }
        if refused {
            self.connect_streak.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connect_streak.store(0, Ordering::Relaxed);
        }
        // failed first: `succeeded` (done − failed) never counts a failure as a success
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = ttft_ns {
            self.recent_ttft_us
                .lock()
                .expect("live lock")
                .push(t / 1000);
        }
    }

    fn take_recent_p50_ms(&self) -> Option<f64> {
        let mut v = std::mem::take(&mut *self.recent_ttft_us.lock().expect("live lock"));
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[v.len() / 2] as f64 / 1000.0)
    }
}

/// Prints one progress line a second on a terminal (rewritten in place), one every ten
/// seconds otherwise; nothing when quiet.
pub struct ProgressPrinter {
    tty: bool,
    quiet: bool,
    planned: Option<usize>,
    ticks: u64,
    last_ttft: Option<f64>,
    label: String,
    /// When the last arrival is due (s): elapsed is shown against it.
    planned_s: f64,
    /// Sending is over and the window's requests are being followed to their end, with
    /// this limit (s), if any.
    draining: Option<Option<f64>>,
}

impl ProgressPrinter {
    pub fn new(quiet: bool, planned: Option<usize>, planned_s: f64, label: String) -> Self {
        Self {
            label,
            planned_s,
            tty: std::io::stderr().is_terminal(),
            quiet,
            planned,
            ticks: 0,
            last_ttft: None,
            draining: None,
        }
    }

    /// From now on the line says the cell is draining, and how many are left.
    pub fn draining(&mut self, limit: Option<std::time::Duration>) {
        self.draining = Some(limit.map(|d| d.as_secs_f64()));
    }

    pub fn tick(&mut self, live: &Live, elapsed_s: f64) {
        self.ticks += 1;
        if let Some(t) = live.take_recent_p50_ms() {
            self.last_ttft = Some(t);
        }
        if self.quiet || (!self.tty && !self.ticks.is_multiple_of(10)) {
            return;
        }
        let sent = live.sent.load(Ordering::Relaxed);
        let done = live.done.load(Ordering::Relaxed);
        let failed = live.failed.load(Ordering::Relaxed);
        let planned = self.planned.map(|n| format!("/{n}")).unwrap_or_default();
        let ttft = self
            .last_ttft
            .map(|t| format!("{t:.1} ms"))
            .unwrap_or_else(|| "-".into());
        let msg = match self.draining {
            Some(limit) => format!(
                "{}[{elapsed_s:6.1}s] draining: {} sent up to the window's end still running{}  done {done}  in flight {}  errors {failed}  ttft p50 {ttft}",
                self.label,
                live.followed_in_flight(),
                limit.map_or(String::new(), |l| format!(" (drain limit {l:.0}s)")),
                sent.saturating_sub(done),
            ),
            None => format!(
                "{}[{elapsed_s:6.1}s / {:.0}s] sent {sent}{planned} ({:.1} req/s)  done {done}  in flight {}  errors {failed}  ttft p50 {ttft}",
                self.label,
                self.planned_s,
                sent as f64 / elapsed_s.max(1e-9),
                sent.saturating_sub(done),
            ),
        };
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{msg}");
        } else {
            let _ = writeln!(e, "{msg}");
        }
        let _ = e.flush();
    }

    pub fn finish(&self) {
        if self.tty && !self.quiet {
            let _ = writeln!(std::io::stderr());
        }
    }
}
