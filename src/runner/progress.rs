//! Live counters shared by the request tasks, and the progress line drawn from them.
//!
//! The line is drawn by a thread of its own that reads the counters once a second: the load
//! point's runtime never formats, locks a terminal or writes to stderr for it, so a slow
//! terminal cannot delay a send. On a terminal the line is an `indicatif` bar rewritten in
//! place (cut to the terminal's width, coloured unless `NO_COLOR`); elsewhere (CI logs, a
//! pipe) it is a plain line every ten seconds. It says how far the cell is, `draining N`
//! once its sending window has ended while N of the window's requests are still in flight,
//! and, in a run of many cells, the time left for the whole run.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loadtest_base::clock::Clock;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub done: AtomicU64,
    /// Ended with an error (not counting cancellations).
    pub failed: AtomicU64,
    /// Cut by the client (after the window, the drain limit, Ctrl-C, a lost server).
    pub cancelled: AtomicU64,
    /// Requests of the measurement window still in flight (the drain waits for them).
    followed: AtomicU64,
    /// Requests in a row, by finish, that could not connect: the server is gone.
    connect_streak: AtomicU64,
    /// Turns of conversations that were cut short (never sent).
    pub not_sent: AtomicU64,
    /// TTFTs (µs) of requests finished since the progress thread last looked, for the live
    /// line's median only (the results come from the records).
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
            .saturating_sub(self.cancelled.load(Ordering::Relaxed))
    }

    /// Requests in a row that could not connect.
    pub fn connect_streak(&self) -> u64 {
        self.connect_streak.load(Ordering::Relaxed)
    }

    pub fn finished(&self, end: End, ttft_ns: Option<u64>, followed: bool, refused: bool) {
        if followed {
            self.followed.fetch_sub(1, Ordering::Relaxed);
        }
        if refused {
            self.connect_streak.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connect_streak.store(0, Ordering::Relaxed);
        }
        // failed first: `succeeded` (done − failed − cancelled) never counts a failure as a
        // success
        match end {
            End::Ok => {}
            End::Failed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            End::Cancelled => {
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        // `try_lock`: a request task never waits for the progress thread (which holds the
        // lock only to swap the vector out); a sample lost then only thins the live median
        if let Some(t) = ttft_ns
            && let Ok(mut recent) = self.recent_ttft_us.try_lock()
        {
            recent.push(t / 1000);
        }
    }

    /// The median TTFT of the requests finished since the last call; sorted outside the
    /// lock, so a request task never waits for the sort.
    fn take_recent_p50_ms(&self) -> Option<f64> {
        let mut v = std::mem::take(&mut *self.recent_ttft_us.lock().expect("live lock"));
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[v.len() / 2] as f64 / 1000.0)
    }
}

/// How a request ended, as the live counters count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Ok,
    Failed,
    Cancelled,
}

/// What the caller of a cell wants from its progress line.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// No line at all.
    pub quiet: bool,
    /// Printed before the line (e.g. the cell of an experiment).
    pub label: String,
    /// In a run of many cells: what is left of the run after this cell.
    pub run: Option<RunEta>,
}

impl Spec {
    pub fn quiet() -> Self {
        Spec {
            quiet: true,
            ..Spec::default()
        }
    }
}

/// The rest of a run after the current cell, for its ETA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunEta {
    /// Cells still to run after this one.
    pub cells_after: usize,
    /// Their planned sending time, seconds (`experiment::planned`).
    pub later_s: f64,
    /// Wall time per planned second of the cells run so far (≥ 1: drains, start-ups and
    /// reports take time beyond the plan); 1 before any cell has run.
    pub pace: f64,
}

impl RunEta {
    /// Seconds left in the run: this cell's planned sending still to come, and the later
    /// cells', stretched by the pace seen so far. `None` while this cell drains (its end is
    /// then the server's to say).
    pub fn left_s(&self, cell_left_s: Option<f64>) -> Option<f64> {
        cell_left_s.map(|c| (c.max(0.0) + self.later_s) * self.pace.max(1.0))
    }
}

/// The run's side of its ETA: the planned sending time of each cell still to run, in run
/// order, and how much wall time the cells run so far took per planned second.
#[derive(Debug, Clone)]
pub struct RunClock {
    started: Instant,
    planned_s: Vec<f64>,
    next: usize,
}

impl RunClock {
    pub fn new(planned_s: Vec<f64>) -> Self {
        Self {
            started: Instant::now(),
            planned_s,
            next: 0,
        }
    }

    /// The ETA the next cell's line shows.
    pub fn next_cell(&self) -> RunEta {
        self.eta_at(self.started.elapsed().as_secs_f64())
    }

    /// `next_cell` with `elapsed_s` since the run started.
    fn eta_at(&self, elapsed_s: f64) -> RunEta {
        let later = self.planned_s.get(self.next + 1..).unwrap_or(&[]);
        let done_s: f64 = self.planned_s[..self.next.min(self.planned_s.len())]
            .iter()
            .sum();
        RunEta {
            cells_after: later.len(),
            later_s: later.iter().sum(),
            // the first cells' start-up and drain say how the plan stretches; before any
            // cell has run, nothing does
            pace: if done_s > 0.0 {
                (elapsed_s / done_s).clamp(1.0, 100.0)
            } else {
                1.0
            },
        }
    }

    /// The cell `next_cell` was asked for has ended.
    pub fn cell_done(&mut self) {
        self.next += 1;
    }
}

/// What the line shows at one moment; `render` turns it into text.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub elapsed_s: f64,
    pub sent: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// The window's requests still in flight (shown once draining).
    pub followed: u64,
    pub ttft_p50_ms: Option<f64>,
}

/// The plan of the cell the line follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellPlan {
    /// Scheduled requests (`None`: a closed loop, which has no count).
    pub requests: Option<usize>,
    /// When sending is planned to end, s from the start.
    pub planned_s: f64,
}

/// Where the cell is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Sending,
    /// The sending window has ended; the window's requests are followed to their end, for
    /// at most this long (s), if there is a limit.
    Draining {
        limit_s: Option<f64>,
    },
}

/// `1m05s`, `2h03m`, `42s`.
pub fn human_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The progress line's text (without the label).
pub fn render(plan: &CellPlan, phase: Phase, run: Option<&RunEta>, s: &Snapshot) -> String {
    let ttft = s
        .ttft_p50_ms
        .map_or_else(|| "-".into(), |t| format!("{t:.1} ms"));
    let in_flight = s.sent.saturating_sub(s.done);
    let (head, cell_left) = match phase {
        Phase::Sending => (
            format!(
                "[{:6.1}s / {:.0}s] sent {}{} ({:.1} req/s)",
                s.elapsed_s,
                plan.planned_s,
                s.sent,
                plan.requests.map(|n| format!("/{n}")).unwrap_or_default(),
                s.sent as f64 / s.elapsed_s.max(1e-9),
            ),
            Some(plan.planned_s - s.elapsed_s),
        ),
        Phase::Draining { limit_s } => (
            format!(
                "[{:6.1}s] draining {}{}",
                s.elapsed_s,
                s.followed,
                limit_s.map_or(String::new(), |l| format!(" (limit {l:.0}s)")),
            ),
            None,
        ),
    };
    let more = |n: usize| format!("({n} more cell{})", if n == 1 { "" } else { "s" });
    let run = match run {
        None => String::new(),
        Some(r) => match (r.left_s(cell_left), r.cells_after) {
            (Some(left), 0) => format!("  run ~{} left", human_duration(left)),
            (Some(left), n) => format!("  run ~{} left {}", human_duration(left), more(n)),
            (None, 0) => "  run: last cell".into(),
            (None, n) => format!(
                "  run >{} left {}",
                human_duration(r.later_s * r.pace.max(1.0)),
                more(n)
            ),
        },
    };
    let cancelled = match s.cancelled {
        0 => String::new(),
        n => format!("  cancelled {n}"),
    };
    format!(
        "{head}  done {}  in flight {in_flight}  errors {}{cancelled}  ttft p50 {ttft}{run}",
        s.done, s.failed
    )
}

/// Where lines go.
enum Sink {
    /// Nothing shown (quiet); the thread still empties the TTFT buffer.
    Hidden,
    /// A terminal: one bar rewritten in place.
    Bar(ProgressBar),
    /// Anything else: a line every `every` ticks.
    Lines {
        out: Box<dyn Write + Send>,
        every: u64,
    },
}

enum Msg {
    Draining(Option<Duration>),
}

/// The progress line of one cell, drawn by its own thread; `finish` (or drop) ends it.
pub struct ProgressLine {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    /// Start the line for a cell on stderr: a bar on a terminal, a line every ten seconds
    /// otherwise, nothing when quiet.
    pub fn start(spec: &Spec, plan: CellPlan, live: Arc<Live>, clock: Clock) -> Self {
        let sink = if spec.quiet {
            Sink::Hidden
        } else if std::io::stderr().is_terminal() {
            Sink::Bar(bar(&spec.label, ProgressDrawTarget::stderr()))
        } else {
            Sink::Lines {
                out: Box::new(std::io::stderr()),
                every: 10,
            }
        };
        Self::with_sink(spec, plan, live, clock, sink, Duration::from_secs(1))
    }

    fn with_sink(
        spec: &Spec,
        plan: CellPlan,
        live: Arc<Live>,
        clock: Clock,
        sink: Sink,
        tick: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let mut drawer = Drawer {
            label: spec.label.clone(),
            run: spec.run,
            plan,
            phase: Phase::Sending,
            live,
            clock,
            sink,
            ticks: 0,
            last_ttft: None,
        };
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || drawer.run(rx, tick))
            .expect("spawn the progress thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// From now on the line says the cell is draining, and how many are left.
    pub fn draining(&self, limit: Option<Duration>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Draining(limit));
        }
    }

    /// Draw the last line and end the thread.
    pub fn finish(&mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bar(label: &str, target: ProgressDrawTarget) -> ProgressBar {
    // one `set_message` per update, one draw: the gauge is part of the message
    let style = ProgressStyle::with_template("{prefix}{wide_msg}").expect("a valid template");
    let bar = ProgressBar::with_draw_target(None, target).with_style(style);
    bar.set_prefix(label.to_string());
    bar
}

/// `[=====>    ] `: the share of the planned sending time gone by (full once draining).
fn gauge(plan: CellPlan, phase: Phase, elapsed_s: f64) -> String {
    const W: usize = 20;
    let done = match phase {
        Phase::Draining { .. } => W,
        Phase::Sending if plan.planned_s <= 0.0 => W,
        Phase::Sending => ((elapsed_s / plan.planned_s).clamp(0.0, 1.0) * W as f64) as usize,
    };
    let head = if done < W { ">" } else { "" };
    format!(
        "[{}{head}{}] ",
        "=".repeat(done),
        " ".repeat(W - done - head.len())
    )
}

/// The progress thread's state.
struct Drawer {
    label: String,
    run: Option<RunEta>,
    plan: CellPlan,
    phase: Phase,
    live: Arc<Live>,
    clock: Clock,
    sink: Sink,
    ticks: u64,
    last_ttft: Option<f64>,
}

impl Drawer {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, tick: Duration) {
        let mut next = Instant::now() + tick;
        loop {
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Msg::Draining(limit)) => {
                    self.phase = Phase::Draining {
                        limit_s: limit.map(|d| d.as_secs_f64()),
                    };
                    // the change is worth a line at once, even in a log
                    self.draw(true);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    next += tick;
                    self.ticks += 1;
                    self.draw(false);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.draw(true);
        if let Sink::Bar(b) = &self.sink {
            b.finish();
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        if let Some(t) = self.live.take_recent_p50_ms() {
            self.last_ttft = Some(t);
        }
        Snapshot {
            elapsed_s: self.clock.now_ns() as f64 / 1e9,
            sent: self.live.sent.load(Ordering::Relaxed),
            done: self.live.done.load(Ordering::Relaxed),
            failed: self.live.failed.load(Ordering::Relaxed),
            cancelled: self.live.cancelled.load(Ordering::Relaxed),
            followed: self.live.followed_in_flight(),
            ttft_p50_ms: self.last_ttft,
        }
    }

    fn draw(&mut self, now: bool) {
        let s = self.snapshot();
        let line = render(&self.plan, self.phase, self.run.as_ref(), &s);
        match &mut self.sink {
            Sink::Hidden => {}
            Sink::Bar(b) => b.set_message(gauge(self.plan, self.phase, s.elapsed_s) + &line),
            Sink::Lines { out, every } => {
                if now || self.ticks.is_multiple_of(*every) {
                    // one write per line: lines of other threads never cut into it
                    let _ = out.write_all(format!("{}{line}\n", self.label).as_bytes());
                    let _ = out.flush();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(elapsed_s: f64, sent: u64, done: u64, followed: u64) -> Snapshot {
        Snapshot {
            elapsed_s,
            sent,
            done,
            failed: 0,
            cancelled: 0,
            followed,
            ttft_p50_ms: Some(12.34),
        }
    }

    const PLAN: CellPlan = CellPlan {
        requests: Some(250),
        planned_s: 25.0,
    };

    #[test]
    fn sending_line_shows_progress_against_the_plan_and_the_run_eta() {
        let run = RunEta {
            cells_after: 3,
            later_s: 75.0,
            pace: 1.2,
        };
        let line = render(&PLAN, Phase::Sending, Some(&run), &snap(10.0, 100, 90, 10));
        assert!(
            line.starts_with("[  10.0s / 25s] sent 100/250 (10.0 req/s)"),
            "{line}"
        );
        assert!(line.contains("in flight 10"), "{line}");
        assert!(line.contains("ttft p50 12.3 ms"), "{line}");
        // (25 − 10 + 75) × 1.2 = 108 s
        assert!(line.ends_with("run ~1m48s left (3 more cells)"), "{line}");
    }

    #[test]
    fn draining_line_names_the_window_requests_still_in_flight() {
        let line = render(
            &PLAN,
            Phase::Draining {
                limit_s: Some(300.0),
            },
            Some(&RunEta {
                cells_after: 2,
                later_s: 50.0,
                pace: 1.0,
            }),
            &snap(27.0, 250, 213, 37),
        );
        assert!(
            line.starts_with("[  27.0s] draining 37 (limit 300s)"),
            "{line}"
        );
        // the drain's end is unknown: the rest of the run is a lower bound
        assert!(line.ends_with("run >50s left (2 more cells)"), "{line}");
        let last = render(
            &PLAN,
            Phase::Draining { limit_s: None },
            Some(&RunEta {
                cells_after: 0,
                later_s: 0.0,
                pace: 1.0,
            }),
            &snap(27.0, 250, 249, 1),
        );
        assert!(last.contains("draining 1  done 249"), "{last}");
        assert!(last.ends_with("run: last cell"), "{last}");
    }

    #[test]
    fn the_run_clock_counts_the_cells_after_and_learns_the_pace() {
        let mut c = RunClock::new(vec![25.0, 25.0, 50.0]);
        assert_eq!(
            c.eta_at(3.0),
            RunEta {
                cells_after: 2,
                later_s: 75.0,
                pace: 1.0
            }
        );
        c.cell_done();
        // the first 25 s cell took 40 s with its server start and drain
        assert_eq!(
            c.eta_at(40.0),
            RunEta {
                cells_after: 1,
                later_s: 50.0,
                pace: 1.6
            }
        );
        c.cell_done();
        let last = c.eta_at(80.0);
        assert_eq!((last.cells_after, last.later_s), (0, 0.0));
        c.cell_done();
        assert_eq!(c.eta_at(200.0).cells_after, 0);
    }

    #[test]
    fn cancellations_are_not_errors_on_the_line_nor_successes() {
        let live = Live::default();
        live.sent.store(3, Ordering::Relaxed);
        live.finished(End::Ok, None, false, false);
        live.finished(End::Failed, None, false, false);
        live.finished(End::Cancelled, None, false, false);
        assert_eq!(live.succeeded(), 1);
        let s = Snapshot {
            elapsed_s: 1.0,
            sent: 3,
            done: 3,
            failed: live.failed.load(Ordering::Relaxed),
            cancelled: live.cancelled.load(Ordering::Relaxed),
            followed: 0,
            ttft_p50_ms: None,
        };
        let line = render(&PLAN, Phase::Draining { limit_s: None }, None, &s);
        assert!(line.contains("errors 1  cancelled 1  ttft p50 -"), "{line}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(42.4), "42s");
        assert_eq!(human_duration(65.0), "1m05s");
        assert_eq!(human_duration(7380.0), "2h03m");
        assert_eq!(human_duration(-3.0), "0s");
    }

    /// A writer that hands every line to the test as it is written.
    struct Lines(mpsc::Sender<String>);
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_thread_draws_from_the_counters_and_says_draining_at_once() {
        let live = Arc::new(Live::default());
        live.sent.store(5, Ordering::Relaxed);
        for _ in 0..3 {
            live.follow(true);
        }
        live.finished(End::Ok, Some(40_000_000), false, false);
        let (tx, rx) = mpsc::channel();
        let spec = Spec {
            quiet: false,
            label: "cell 1/2: ".into(),
            run: None,
        };
        let mut line = ProgressLine::with_sink(
            &spec,
            PLAN,
            live.clone(),
            Clock::start(),
            Sink::Lines {
                out: Box::new(Lines(tx)),
                every: 1,
            },
            Duration::from_millis(5),
        );
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(first.starts_with("cell 1/2: ["), "{first}");
        assert!(
            first.contains("sent 5/250") && first.contains("ttft p50 40.0 ms"),
            "{first}"
        );
        line.draining(Some(Duration::from_secs(60)));
        let drained = loop {
            let l = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if l.contains("draining") {
                break l;
            }
        };
        assert!(drained.contains("draining 3 (limit 60s)"), "{drained}");
        line.finish();
    }

    #[test]
    fn a_quiet_line_still_empties_the_ttft_buffer() {
        let live = Arc::new(Live::default());
        let mut line = ProgressLine::with_sink(
            &Spec::quiet(),
            PLAN,
            live.clone(),
            Clock::start(),
            Sink::Hidden,
            Duration::from_millis(1),
        );
        live.finished(End::Ok, Some(1_000_000), false, false);
        line.finish();
        assert!(live.recent_ttft_us.lock().unwrap().is_empty());
    }

    #[test]
    fn the_gauge_fills_with_the_planned_sending_time() {
        assert_eq!(
            gauge(PLAN, Phase::Sending, 0.0),
            format!("[>{}] ", " ".repeat(19))
        );
        assert_eq!(
            gauge(PLAN, Phase::Sending, 12.5),
            format!("[{}>{}] ", "=".repeat(10), " ".repeat(9))
        );
        let full = format!("[{}] ", "=".repeat(20));
        assert_eq!(gauge(PLAN, Phase::Sending, 99.0), full);
        assert_eq!(gauge(PLAN, Phase::Draining { limit_s: None }, 1.0), full);
    }

    #[test]
    fn the_bar_draws_to_a_terminal_without_blocking_its_caller() {
        let bar = bar("x: ", ProgressDrawTarget::hidden());
        let live = Arc::new(Live::default());
        let mut line = ProgressLine::with_sink(
            &Spec::default(),
            PLAN,
            live,
            Clock::start(),
            Sink::Bar(bar.clone()),
            Duration::from_millis(1),
        );
        line.draining(None);
        line.finish();
        assert!(bar.is_finished());
        let msg = bar.message();
        assert!(msg.starts_with(&format!("[{}] [", "=".repeat(20))), "{msg}");
        assert!(msg.contains("draining 0"), "{msg}");
    }
}
