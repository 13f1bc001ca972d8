//! One load point: release requests on schedule, cap concurrency without dropping arrivals,
//! execute them, hand every record to the writer, stop cleanly on Ctrl-C or the end of a
//! duration, and account for every request.

use super::pacer::Pacer;
use super::progress::{Live, ProgressPrinter};
use crate::client::{Pool, RequestSpec, Timeouts, execute};
use crate::clock::Clock;
use crate::record::RequestRecord;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};

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
    /// After the last arrival, how long in-flight requests may take before they are
    /// cancelled. `None`: wait for all (bounded by the request timeout).
    pub drain: Option<Duration>,
    /// A duration-bounded run stops sending at this offset: arrivals still waiting for a
    /// concurrency slot then are not sent (and counted so), instead of stretching the run.
    pub send_until: Option<Duration>,
    pub quiet: bool,
    /// Printed before the progress line (e.g. the cell of an experiment).
    pub label: String,
}

pub struct Outcome {
    /// How many scheduled requests were never sent (interrupted first).
    pub not_sent: u64,
    pub interrupted: bool,
    pub clock: Clock,
}

/// Run the load point. Records go to `sink` as they finish; the caller owns the sink's
/// other end (the writer thread), so nothing is held back here.
pub async fn run(
    lp: LoadPoint,
    clock: Clock,
    sink: std::sync::mpsc::Sender<RequestRecord>,
    interrupt: watch::Receiver<bool>,
) -> Outcome {
    let (arrive_tx, mut arrive_rx) = mpsc::unbounded_channel::<usize>();
    let mut pacer = Pacer::start(clock, lp.schedule.clone(), arrive_tx);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let sem = Arc::new(Semaphore::new(
        lp.max_concurrency.unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let planned_s = lp.schedule.last().copied().unwrap_or(0) as f64 / 1e9;
    let mut progress = ProgressPrinter::new(
        lp.quiet,
        Some(lp.schedule.len()),
        planned_s,
        lp.label.clone(),
    );
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut interrupt = interrupt;
    // a second handle for the wait inside the arrival branch (the outer select holds one)
    let mut interrupt_inner = interrupt.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut released = 0usize;
    let mut interrupted = false;
    let send_deadline = lp
        .send_until
        .map(|d| tokio::time::Instant::from_std(clock.origin()) + d);

    // Phase 1: release arrivals until the schedule ends or we are interrupted.
    loop {
        tokio::select! {
            biased;
            _ = interrupt.wait_for(|i| *i) => { interrupted = true; break; }
            _ = sleep_until_opt(send_deadline) => break,
            _ = ticker.tick() => progress.tick(&live, clock.now_ns() as f64 / 1e9),
            // reap finished tasks as we go, so a long run holds no dead handles
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = arrive_rx.recv() => {
                let Some(i) = next else { break };
                released += 1;
                // The cap: wait for a slot; later arrivals queue in the channel, never dropped,
                // and their lateness is measured as queue_delay.
                let permit = tokio::select! {
                    biased;
                    _ = interrupt_inner.wait_for(|i| *i) => { interrupted = true; released -= 1; break; }
                    _ = sleep_until_opt(send_deadline) => { released -= 1; break; }
                    p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
                };
                live.sent.fetch_add(1, Ordering::Relaxed);
                let (targets, sink, live) = (lp.targets.clone(), sink.clone(), live.clone());
                let mut cancel = cancel_rx.clone();
                let t_intended = lp.schedule[i];
                let timeouts = lp.timeouts;
                tasks.spawn(async move {
                    let target = &targets[i % targets.len()];
                    let spec = &target.specs[i % target.specs.len()];
                    let rec = execute(&target.pool, &clock, timeouts, i as u64, t_intended, spec, &mut cancel).await;
                    drop(permit);
                    live.finished(rec.is_ok(), rec.ttft_ns());
                    let _ = sink.send(rec);
                });
            }
        }
    }
    pacer.stop();
    // Arrivals the pacer released but we did not send yet are not sent; neither is the rest.
    let not_sent = (lp.schedule.len() - released) as u64;

    // Phase 2: drain in-flight requests; cancel them on interrupt or when the drain ends.
    let drain_deadline = lp.drain.map(|d| tokio::time::Instant::now() + d);
    if interrupted {
        let _ = cancel_tx.send(true);
    }
    loop {
        tokio::select! {
            biased;
            _ = interrupt.wait_for(|i| *i), if !interrupted => {
                interrupted = true;
                let _ = cancel_tx.send(true);
            }
            _ = sleep_until_opt(drain_deadline), if !*cancel_tx.borrow() => {
                let _ = cancel_tx.send(true);
            }
            _ = ticker.tick() => progress.tick(&live, clock.now_ns() as f64 / 1e9),
            j = tasks.join_next() => if j.is_none() { break },
        }
    }
    progress.finish();
    Outcome {
        not_sent,
        interrupted,
        clock,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
