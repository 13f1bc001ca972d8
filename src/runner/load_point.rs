//! One load point: release requests on schedule, cap concurrency without dropping arrivals,
//! execute them, follow the measurement window's requests to their end (bounded by the
//! drain limit), hand every record to the writer, stop cleanly on Ctrl-C or the end of a
//! duration, and account for every request, a cancelled one with the reason it was cut.

use super::pacer::Pacer;
use super::progress::{Live, ProgressPrinter};
use crate::client::{Job, Pool, Presend, RequestSpec, Timeouts, execute};
use loadtest_analysis::record::{CancelReason, ErrorKind, RequestRecord};
use loadtest_base::clock::Clock;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// How long, by default, the window's requests may take to finish after the last send
/// before what is left is cut (and right-censored). Long enough for a saturated queue to
/// empty in the shipped examples (the quickstart's 40 req/s cell needs ~20 s, the seed's
/// 60 req/s point ~200 s); a deeper overload shows as censored figures, not dropped ones.
pub const DEFAULT_DRAIN_S: f64 = 300.0;

/// This many requests in a row that could not connect, and the server is taken for gone:
/// sending stops (the rest of the schedule is not sent) instead of hammering a dead port
/// until the duration ends.
pub const SERVER_LOST_AFTER: u64 = 20;

/// One server endpoint and the prepared requests for it (their bytes carry its `Host`).
pub struct Target {
    pub pool: Arc<Pool>,
    /// Request `i` sends `specs[i % specs.len()]`.
    pub specs: Arc<[RequestSpec]>,
}

pub struct LoadPoint {
    /// Request `i` goes to `targets[i % targets.len()]`: several targets are DP replicas
    /// without a router, served round-robin by the client.
    pub targets: Arc<[Target]>,
    /// Intended send offsets (ns), ascending.
    pub schedule: Arc<[u64]>,
    pub max_concurrency: Option<usize>,
    pub timeouts: Timeouts,
    /// After the last arrival, how long the followed requests may take before whatever is
    /// still in flight is cancelled (reason `drain_limit`). `None`: wait for all (bounded
    /// by the request timeout).
    pub drain: Option<Duration>,
    /// Requests intended before this offset (ns; the measurement window's end) are
    /// followed to their end; once none of them is in flight, later ones are cancelled
    /// (reason `after_window`). `None`: every request is followed.
    pub follow_until_ns: Option<u64>,
    /// A duration-bounded run stops sending at this offset: arrivals still waiting for a
    /// concurrency slot then are not sent (and counted so), instead of stretching the run.
    pub send_until: Option<Duration>,
    /// A closed loop: keep `max_concurrency` requests in flight until `send_until`, the
    /// schedule empty. Request `i` is intended the moment a slot frees, so its queue delay
    /// is the client's own lateness, not the time it waited for a slot.
    pub closed_loop: bool,
    pub quiet: bool,
    /// Printed before the progress line (e.g. the cell of an experiment).
    pub label: String,
}

pub struct Outcome {
    /// How many scheduled requests were never sent (interrupted first, or the server lost).
    pub not_sent: u64,
    /// Sending stopped because the server stopped accepting connections, and when (s).
    pub server_lost_at_s: Option<f64>,
    /// When sending ended (s from the start), and when the plan said it would: far apart,
    /// the client (or the machine) could not keep up with its own schedule.
    pub sending_s: f64,
    pub planned_sending_s: f64,
    pub interrupted: bool,
    pub clock: Clock,
    /// The pacer thread ran at a real-time priority (sub-millisecond send lag on a busy core).
    pub pacer_realtime: bool,
}

/// An arrival as the pacer released it: sent already when a concurrency slot and an idle
/// connection were free at its due time, otherwise left to the runtime.
struct Released {
    i: usize,
    sent: Option<(Presend, OwnedSemaphorePermit)>,
}

/// Run the load point. Records go to `sink` as they finish; the caller owns the sink's
/// other end (the writer thread), so nothing is held back here.
pub async fn run(
    lp: LoadPoint,
    clock: Clock,
    sink: std::sync::mpsc::Sender<RequestRecord>,
    interrupt: watch::Receiver<bool>,
) -> Outcome {
    let (arrive_tx, mut arrive_rx) = mpsc::unbounded_channel::<Released>();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let sem = Arc::new(Semaphore::new(
        lp.max_concurrency.unwrap_or(Semaphore::MAX_PERMITS),
    ));
    // A slot is taken with `try_acquire`, which fails while arrivals wait for one: an
    // arrival never overtakes one the runtime is already waiting with for a slot.
    let release = {
        let (targets, sem) = (lp.targets.clone(), sem.clone());
        move |i: usize| {
            let target = &targets[i % targets.len()];
            let sent = sem.clone().try_acquire_owned().ok().and_then(|permit| {
                let spec = &target.specs[i % target.specs.len()];
                Some((
                    Presend::try_send(&target.pool, &clock, &spec.bytes)?,
                    permit,
                ))
            });
            Released { i, sent }
        }
    };
    let closed = lp.closed_loop;
    // a closed loop has no schedule to keep (its channel's sender is dropped unused)
    let mut pacer = (!closed).then(|| Pacer::start(clock, lp.schedule.clone(), arrive_tx, release));
    let planned_s = match (closed, lp.send_until) {
        (true, Some(d)) => d.as_secs_f64(),
        _ => lp.schedule.last().copied().unwrap_or(0) as f64 / 1e9,
    };
    let mut progress = ProgressPrinter::new(
        lp.quiet,
        (!closed).then_some(lp.schedule.len()),
        planned_s,
        lp.label.clone(),
    );
    let reason = Arc::new(Mutex::new(None));
    let launch = Launch {
        targets: lp.targets.clone(),
        timeouts: lp.timeouts,
        clock,
        sink: sink.clone(),
        live: live.clone(),
        cancel: cancel_rx.clone(),
        reason: reason.clone(),
        follow_until_ns: lp.follow_until_ns,
    };
    // Cancel everything in flight, saying why (the first reason given stands).
    let cancel = |why: CancelReason| {
        reason.lock().expect("reason lock").get_or_insert(why);
        let _ = cancel_tx.send(true);
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut interrupt = interrupt;
    // a second handle for the wait inside the arrival branch (the outer select holds one)
    let mut interrupt_inner = interrupt.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut released = 0usize;
    let mut interrupted = false;
    let mut server_lost_at_s = None;
    let send_deadline = lp
        .send_until
        .map(|d| tokio::time::Instant::from_std(clock.origin()) + d);

    // Phase 1: release arrivals until the schedule ends or we are interrupted.
    loop {
        tokio::select! {
            biased;
            _ = interrupt.wait_for(|i| *i) => { interrupted = true; break; }
            _ = sleep_until_opt(send_deadline) => break,
            _ = ticker.tick() => {
                progress.tick(&live, clock.now_ns() as f64 / 1e9);
                if live.connect_streak() >= SERVER_LOST_AFTER {
                    server_lost_at_s = Some(clock.now_ns() as f64 / 1e9);
                    break;
                }
            }
            // reap finished tasks as we go, so a long run holds no dead handles
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            p = sem.clone().acquire_owned(), if closed => {
                let permit = p.expect("semaphore never closed");
                launch.spawn(&mut tasks, released, clock.now_ns(), None, permit);
                released += 1;
            }
            next = arrive_rx.recv(), if !closed => {
                let Some(Released { i, sent }) = next else { break };
                released += 1;
                let (pre, permit) = match sent {
                    Some((pre, permit)) => (Some(pre), permit),
                    // The cap: wait for a slot; later arrivals queue in the channel, never
                    // dropped, and their lateness is measured as queue_delay.
                    None => (None, tokio::select! {
                        biased;
                        _ = interrupt_inner.wait_for(|i| *i) => { interrupted = true; released -= 1; break; }
                        _ = sleep_until_opt(send_deadline) => { released -= 1; break; }
                        p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
                    }),
                };
                launch.spawn(&mut tasks, i, lp.schedule[i], pre, permit);
            }
        }
    }
    let sending_s = clock.now_ns() as f64 / 1e9;
    let pacer_realtime = pacer.as_ref().is_some_and(Pacer::realtime);
    if let Some(p) = pacer.as_mut() {
        p.stop();
    }
    // Arrivals the pacer sent itself are in flight even if we stopped before taking them;
    // the ones it only released, and the rest of the schedule, are not sent.
    while let Ok(Released { i, sent }) = arrive_rx.try_recv() {
        if let Some((pre, permit)) = sent {
            released += 1;
            launch.spawn(&mut tasks, i, lp.schedule[i], Some(pre), permit);
        }
    }
    // (a closed loop schedules nothing ahead, so it leaves nothing unsent)
    let not_sent = if closed {
        0
    } else {
        (lp.schedule.len() - released) as u64
    };

    // Phase 2: follow the window's requests to their end; cancel the rest once they are
    // done, everything on interrupt or when the drain limit ends.
    let drain_deadline = lp.drain.map(|d| tokio::time::Instant::now() + d);
    progress.draining(lp.drain);
    if interrupted {
        cancel(CancelReason::Interrupted);
    } else if server_lost_at_s.is_some() {
        cancel(CancelReason::ServerLost);
    }
    loop {
        if !*cancel_tx.borrow() && !tasks.is_empty() && live.followed_in_flight() == 0 {
            cancel(CancelReason::AfterWindow);
        }
        tokio::select! {
            biased;
            _ = interrupt.wait_for(|i| *i), if !interrupted => {
                interrupted = true;
                cancel(CancelReason::Interrupted);
            }
            _ = sleep_until_opt(drain_deadline), if !*cancel_tx.borrow() => {
                cancel(CancelReason::DrainLimit);
            }
            _ = ticker.tick() => progress.tick(&live, clock.now_ns() as f64 / 1e9),
            j = tasks.join_next() => if j.is_none() { break },
        }
    }
    progress.finish();
    Outcome {
        not_sent,
        server_lost_at_s,
        sending_s,
        planned_sending_s: planned_s,
        interrupted,
        clock,
        pacer_realtime,
    }
}

/// What every request task needs, cloned into it.
struct Launch {
    targets: Arc<[Target]>,
    timeouts: Timeouts,
    clock: Clock,
    sink: std::sync::mpsc::Sender<RequestRecord>,
    live: Arc<Live>,
    cancel: watch::Receiver<bool>,
    /// Why the cancel signal was sent, stamped on the records it cut.
    reason: Arc<Mutex<Option<CancelReason>>>,
    follow_until_ns: Option<u64>,
}

impl Launch {
    /// Execute request `i` in its own task; its record goes to the sink.
    fn spawn(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        i: usize,
        t_intended_ns: u64,
        pre: Option<Presend>,
        permit: OwnedSemaphorePermit,
    ) {
        self.live.sent.fetch_add(1, Ordering::Relaxed);
        let followed = self.follow_until_ns.is_none_or(|f| t_intended_ns < f);
        self.live.follow(followed);
        let (targets, sink, live, clock, reason) = (
            self.targets.clone(),
            self.sink.clone(),
            self.live.clone(),
            self.clock,
            self.reason.clone(),
        );
        let mut cancel = self.cancel.clone();
        let timeouts = self.timeouts;
        tasks.spawn(async move {
            let target = &targets[i % targets.len()];
            let spec = &target.specs[i % target.specs.len()];
            let job = Job {
                id: i as u64,
                t_intended_ns,
                spec,
                pre,
            };
            let mut rec = execute(&target.pool, &clock, timeouts, job, &mut cancel).await;
            drop(permit);
            if let Some(e) = rec
                .error
                .as_mut()
                .filter(|e| e.kind == ErrorKind::Cancelled)
            {
                let why = *reason.lock().expect("reason lock");
                // a cool-down request the drain limit caught is in no figure either way
                e.cancel_reason = match why {
                    Some(CancelReason::DrainLimit) if !followed => Some(CancelReason::AfterWindow),
                    other => other,
                };
            }
            let refused = rec
                .error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Connect);
            live.finished(rec.is_ok(), rec.ttft_ns(), followed, refused);
            let _ = sink.send(rec);
        });
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
