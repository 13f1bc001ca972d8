//! One load point: release requests on schedule, cap concurrency without dropping arrivals,
//! execute them, follow the measurement window's requests to their end (bounded by the
//! drain limit), hand every record to the writer, stop cleanly on Ctrl-C or the end of a
//! duration, and account for every request, a cancelled one with the reason it was cut.

use super::pacer::Pacer;
use super::prewarm;
use super::progress::{self, CellPlan, End, Live, ProgressLine};
use super::watchdog::{self, Verdict};
use crate::client::headers::Headers;
use crate::client::{Job, Pool, Presend, RequestSpec, Server, Timeouts, execute};
use loadtest_analysis::record::{CancelReason, ErrorKind, RequestRecord, Turn};
use loadtest_base::clock::Clock;
use loadtest_base::shard::Shard;
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
    /// The headers the requests carry: their values are hidden in the server's errors.
    pub headers: Arc<Headers>,
    /// Prompts in order, a conversation's turns together (see `Target::spec`).
    pub specs: Arc<[RequestSpec]>,
}

impl Target {
    /// What schedule entry `i` sends as its turn `k` (of `turns`; 1 for one request per
    /// entry): entries cycle through the prepared conversations, turns in their order.
    fn spec(&self, i: usize, k: u32, turns: u32) -> &RequestSpec {
        &self.specs[crate::workload::prompt_index(i, k, turns, self.specs.len())]
    }
}

pub struct LoadPoint {
    /// Request `i` goes to `targets[i % targets.len()]`: several targets are DP replicas
    /// without a router, served round-robin by the client.
    pub targets: Arc<[Target]>,
    /// Intended send offsets (ns), ascending: this shard's entries of the load point's
    /// schedule (all of them unsharded).
    pub schedule: Arc<[u64]>,
    /// Which part of the load point's schedule `schedule` is: its `i`-th arrival is entry
    /// `shard.entry(i)`, which picks the request's prompt, endpoint and id, so a shard's
    /// requests are the very ones the whole load point would send.
    pub shard: Shard,
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
    /// The progress line: quiet or not, its label, the run around the cell.
    pub progress: progress::Spec,
    /// Probe these servers' `/health` this often (`watchdog`); `None`: never.
    pub health_probe: Option<(Vec<Server>, Duration)>,
    /// Requests per schedule entry: a multi-turn conversation's turns (1: one request).
    /// Entry `i`'s turn `k` is request `i * turns + k`, sent `think` after turn `k − 1`
    /// ended.
    pub turns: u32,
    pub think: Duration,
}

/// Sending stopped early on the server's account: when (s from the start) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLost {
    pub at_s: f64,
    pub why: String,
}

pub struct Outcome {
    /// How many scheduled requests were never sent (interrupted first, or the server lost).
    pub not_sent: u64,
    /// Sending stopped because the server was lost (refusing connections, or not answering).
    pub server_lost: Option<ServerLost>,
    /// When sending ended (s from the start), and when the plan said it would: far apart,
    /// the client (or the machine) could not keep up with its own schedule.
    pub sending_s: f64,
    pub planned_sending_s: f64,
    pub interrupted: bool,
    pub clock: Clock,
    /// The pacer thread ran at a real-time priority (sub-millisecond send lag on a busy core).
    pub pacer_realtime: bool,
    /// How the arrivals went out (all zero for a closed loop, which has no pacer).
    pub send_paths: super::send_path::SendPaths,
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
    let sem = Arc::new(Semaphore::new(
        lp.max_concurrency.unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let closed = lp.closed_loop;
    // a closed loop has no schedule to keep (its channel's sender is dropped unused)
    let paths = Arc::new(super::send_path::Counter::default());
    let mut pacer = (!closed).then(|| {
        let release = releaser(
            lp.targets.clone(),
            lp.schedule.clone(),
            lp.shard,
            sem.clone(),
            clock,
            lp.turns,
            paths.clone(),
        );
        Pacer::start(clock, lp.schedule.clone(), arrive_tx, release)
    });
    let prewarm = (!closed).then(|| {
        prewarm::spawn(
            lp.targets.clone(),
            lp.schedule.clone(),
            sem.clone(),
            clock,
            lp.timeouts.connect,
        )
    });
    let planned_s = match (closed, lp.send_until) {
        (true, Some(d)) => d.as_secs_f64(),
        _ => lp.schedule.last().copied().unwrap_or(0) as f64 / 1e9,
    };
    let mut run = Running::start(&lp, clock, sink, interrupt, sem, planned_s).await;
    let send_deadline = lp
        .send_until
        .map(|d| tokio::time::Instant::from_std(clock.origin()) + d);
    run.release_arrivals(&mut arrive_rx, closed, send_deadline)
        .await;

    let sending_s = clock.now_ns() as f64 / 1e9;
    drop(prewarm);
    let pacer_realtime = pacer.as_ref().is_some_and(Pacer::realtime);
    if let Some(p) = pacer.as_mut() {
        p.stop();
    }
    run.launch_presents(&mut arrive_rx);
    // (a closed loop schedules nothing ahead, so it leaves nothing unsent)
    let never_started = if closed {
        0
    } else {
        (lp.schedule.len() - run.released) as u64
    };
    run.follow_to_end(lp.drain).await;
    // every turn of a conversation that never started, and the turns of those cut short
    let not_sent =
        never_started * u64::from(lp.turns.max(1)) + run.live.not_sent.load(Ordering::Relaxed);
    Outcome {
        not_sent,
        server_lost: run.server_lost.clone(),
        sending_s,
        planned_sending_s: planned_s,
        interrupted: run.interrupted,
        clock,
        pacer_realtime,
        send_paths: paths.report(),
    }
}

/// What the pacer thread does with arrival `i` at its due time. A slot is taken with
/// `try_acquire`, which fails while arrivals wait for one: an arrival never overtakes one
/// the runtime is already waiting with for a slot.
fn releaser(
    targets: Arc<[Target]>,
    schedule: Arc<[u64]>,
    shard: Shard,
    sem: Arc<Semaphore>,
    clock: Clock,
    turns: u32,
    paths: Arc<super::send_path::Counter>,
) -> impl FnMut(usize) -> Released + Send + 'static {
    use super::send_path::Path;
    move |i: usize| {
        paths.late(clock.now_ns().saturating_sub(schedule[i]));
        let entry = shard.entry(i);
        let target = &targets[entry % targets.len()];
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            paths.count(Path::NoSlot);
            return Released { i, sent: None };
        };
        if target.pool.is_tls() {
            paths.count(Path::Tls);
            return Released { i, sent: None };
        }
        // the bytes the runtime will finish: the same spec `Launch::request` takes
        let spec = target.spec(entry, 0, turns);
        let t0 = std::time::Instant::now();
        let pre = Presend::try_send(&target.pool, &clock, &spec.bytes);
        paths.took(t0.elapsed().as_nanos() as u64);
        paths.count(match &pre {
            None => Path::NoIdle,
            Some(p) if p.written == 0 => Path::NotWritable,
            Some(_) => Path::Pacer,
        });
        Released {
            i,
            sent: pre.map(|p| (p, permit)),
        }
    }
}

/// What the sending loop acts on.
enum Next {
    /// A closed loop's slot came free: a request goes now.
    FreeSlot(OwnedSemaphorePermit),
    Arrival(Released),
}

/// Tells every request in flight to stop, and why.
struct Canceller {
    tx: watch::Sender<bool>,
    /// Stamped on the records the signal cut; the first reason given stands.
    reason: Arc<Mutex<Option<CancelReason>>>,
}

impl Canceller {
    fn cancel(&self, why: CancelReason) {
        self.reason.lock().expect("reason lock").get_or_insert(why);
        let _ = self.tx.send(true);
    }

    fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }
}

/// A load point under way: what its two phases (sending, then following what is in
/// flight to its end) share.
struct Running {
    clock: Clock,
    schedule: Arc<[u64]>,
    shard: Shard,
    launch: Launch,
    /// Every request task; finished ones are reaped as we go, so a long run holds no dead
    /// handles.
    tasks: tokio::task::JoinSet<()>,
    live: Arc<Live>,
    /// Drawn by its own thread from `live`: nothing here waits for a terminal.
    progress: ProgressLine,
    ticker: tokio::time::Interval,
    /// The concurrency cap, shared with the pacer thread.
    sem: Arc<Semaphore>,
    canceller: Canceller,
    interrupt: watch::Receiver<bool>,
    interrupted: bool,
    /// Requests launched (the rest of the schedule was not sent); a closed loop's ids.
    released: usize,
    server_lost: Option<ServerLost>,
    /// The watchdog's verdict; it stops when `_watchdog_stop` is dropped with this.
    health: Option<Arc<Verdict>>,
    _watchdog_stop: watch::Sender<bool>,
}

impl Running {
    async fn start(
        lp: &LoadPoint,
        clock: Clock,
        sink: std::sync::mpsc::Sender<RequestRecord>,
        interrupt: watch::Receiver<bool>,
        sem: Arc<Semaphore>,
        planned_s: f64,
    ) -> Self {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let live = Arc::new(Live::default());
        let progress = ProgressLine::start(
            &lp.progress,
            CellPlan {
                requests: (!lp.closed_loop).then_some(lp.schedule.len()),
                planned_s,
            },
            live.clone(),
            clock,
        );
        let reason = Arc::new(Mutex::new(None));
        let launch = Launch {
            targets: lp.targets.clone(),
            timeouts: lp.timeouts,
            clock,
            sink,
            live: live.clone(),
            cancel: cancel_rx,
            reason: reason.clone(),
            follow_until_ns: lp.follow_until_ns,
            turns: lp.turns.max(1),
            think_ns: lp.think.as_nanos() as u64,
            send_until_ns: lp.send_until.map(|d| d.as_nanos() as u64),
        };
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        let (watchdog_stop, stopped) = watch::channel(false);
        let health = lp.health_probe.as_ref().map(|(servers, every)| {
            watchdog::spawn(servers.clone(), *every, live.clone(), stopped)
        });
        Self {
            clock,
            schedule: lp.schedule.clone(),
            shard: lp.shard,
            launch,
            tasks: tokio::task::JoinSet::new(),
            live,
            progress,
            ticker,
            sem,
            canceller: Canceller {
                tx: cancel_tx,
                reason,
            },
            interrupt,
            interrupted: false,
            released: 0,
            server_lost: None,
            health,
            _watchdog_stop: watchdog_stop,
        }
    }

    /// Phase 1: launch arrivals (or, in a closed loop, a request per free slot) until the
    /// schedule ends, sending time is up, the server is lost or we are interrupted.
    async fn release_arrivals(
        &mut self,
        arrive_rx: &mut mpsc::UnboundedReceiver<Released>,
        closed: bool,
        send_deadline: Option<tokio::time::Instant>,
    ) {
        loop {
            // the select only says what happened: its branches borrow `self` until it ends
            let next = tokio::select! {
                biased;
                _ = self.interrupt.wait_for(|i| *i) => {
                    self.interrupted = true;
                    return;
                }
                _ = sleep_until_opt(send_deadline) => return,
                _ = self.ticker.tick() => {
                    self.server_lost = self.server_lost.take().or_else(|| {
                        server_lost(&self.live, self.health.as_deref(), self.clock)
                    });
                    if self.server_lost.is_some() {
                        return;
                    }
                    continue;
                }
                Some(j) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    surface_panic(j);
                    continue;
                }
                p = self.sem.clone().acquire_owned(), if closed => {
                    Next::FreeSlot(p.expect("semaphore never closed"))
                }
                next = arrive_rx.recv(), if !closed => match next {
                    Some(arrival) => Next::Arrival(arrival),
                    None => return,
                },
            };
            match next {
                Next::FreeSlot(permit) => {
                    let t_intended_ns = self.clock.now_ns();
                    self.launch(self.released, t_intended_ns, None, permit);
                }
                Next::Arrival(Released { i, sent }) => {
                    let Some((pre, permit)) = self.slot(sent, send_deadline).await else {
                        return;
                    };
                    self.launch(i, self.schedule[i], pre, permit);
                }
            }
        }
    }

    /// The concurrency slot of an arrival: the one it was sent with, else the next to free
    /// up. `None`: we stopped while waiting (interrupted, or sending time is up).
    async fn slot(
        &mut self,
        sent: Option<(Presend, OwnedSemaphorePermit)>,
        send_deadline: Option<tokio::time::Instant>,
    ) -> Option<(Option<Presend>, OwnedSemaphorePermit)> {
        if let Some((pre, permit)) = sent {
            return Some((Some(pre), permit));
        }
        // The cap: wait for a slot; later arrivals queue in the channel, never dropped, and
        // their lateness is measured as queue_delay.
        tokio::select! {
            biased;
            _ = self.interrupt.wait_for(|i| *i) => {
                self.interrupted = true;
                None
            }
            _ = sleep_until_opt(send_deadline) => None,
            p = self.sem.clone().acquire_owned() => {
                Some((None, p.expect("semaphore never closed")))
            }
        }
    }

    /// Arrivals the pacer sent itself are in flight even if we stopped before taking them;
    /// the ones it only released, and the rest of the schedule, are not sent.
    fn launch_presents(&mut self, arrive_rx: &mut mpsc::UnboundedReceiver<Released>) {
        while let Ok(Released { i, sent }) = arrive_rx.try_recv() {
            if let Some((pre, permit)) = sent {
                self.launch(i, self.schedule[i], Some(pre), permit);
            }
        }
    }

    fn launch(
        &mut self,
        i: usize,
        t_intended_ns: u64,
        pre: Option<Presend>,
        permit: OwnedSemaphorePermit,
    ) {
        // the load point's entry: its prompt, endpoint and id (the same `i` unsharded)
        let entry = self.shard.entry(i);
        self.launch
            .spawn(&mut self.tasks, entry, t_intended_ns, pre, permit);
        self.released += 1;
    }

    /// Phase 2: follow the window's requests to their end; cancel the rest once they are
    /// done, everything on interrupt or when the drain limit ends.
    async fn follow_to_end(&mut self, drain: Option<Duration>) {
        let drain_deadline = drain.map(|d| tokio::time::Instant::now() + d);
        self.progress.draining(drain);
        if self.interrupted {
            self.canceller.cancel(CancelReason::Interrupted);
        } else if self.server_lost.is_some() {
            self.canceller.cancel(CancelReason::ServerLost);
        }
        loop {
            if !self.canceller.is_cancelled()
                && !self.tasks.is_empty()
                && self.live.followed_in_flight() == 0
            {
                self.canceller.cancel(CancelReason::AfterWindow);
            }
            tokio::select! {
                biased;
                _ = self.interrupt.wait_for(|i| *i), if !self.interrupted => {
                    self.interrupted = true;
                    self.canceller.cancel(CancelReason::Interrupted);
                }
                _ = sleep_until_opt(drain_deadline), if !self.canceller.is_cancelled() => {
                    self.canceller.cancel(CancelReason::DrainLimit);
                }
                _ = self.ticker.tick() => {
                    // a server that hangs while the drain waits: cut what it holds
                    if !self.canceller.is_cancelled() && self.server_lost.is_none() {
                        self.server_lost = server_lost(&self.live, self.health.as_deref(), self.clock);
                        if self.server_lost.is_some() {
                            self.canceller.cancel(CancelReason::ServerLost);
                        }
                    }
                }
                j = self.tasks.join_next() => match j {
                    None => break,
                    Some(j) => surface_panic(j),
                },
            }
        }
        self.progress.finish();
    }
}

/// Whether the server is lost: refused connections in a row, or the watchdog's verdict.
fn server_lost(live: &Live, health: Option<&Verdict>, clock: Clock) -> Option<ServerLost> {
    let why = if live.connect_streak() >= SERVER_LOST_AFTER {
        Some(format!(
            "the server stopped accepting connections ({SERVER_LOST_AFTER} refused in a row)"
        ))
    } else {
        health.and_then(Verdict::lost)
    };
    why.map(|why| ServerLost {
        at_s: clock.now_ns() as f64 / 1e9,
        why,
    })
}

/// What every request task needs, cloned into it.
#[derive(Clone)]
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
    /// Requests per schedule entry (a conversation's turns; 1 otherwise).
    turns: u32,
    think_ns: u64,
    /// No turn is sent after this offset (duration-bounded runs).
    send_until_ns: Option<u64>,
}

impl Launch {
    /// Execute schedule entry `i` in its own task, its records going to the sink: one
    /// request, or a conversation's turns one after another.
    fn spawn(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        i: usize,
        t_intended_ns: u64,
        pre: Option<Presend>,
        permit: OwnedSemaphorePermit,
    ) {
        // counted before the task runs: the drain must never see a request launched but
        // not yet followed (it would cancel it as past the window)
        let followed = self.count_send(t_intended_ns, false);
        let me = self.clone();
        tasks.spawn(async move {
            me.conversation(i, t_intended_ns, pre, followed).await;
            // a conversation holds its concurrency slot between turns too
            drop(permit);
        });
    }

    /// A request is sent at `t_intended_ns`: count it, and follow it when it belongs to
    /// the window; `held`: a follow held over the think time before it is released (after
    /// this one is taken, so the count never dips to zero in between).
    fn count_send(&self, t_intended_ns: u64, held: bool) -> bool {
        self.live.sent.fetch_add(1, Ordering::Relaxed);
        let followed = self.follow_until_ns.is_none_or(|f| t_intended_ns < f);
        self.live.follow(followed);
        self.live.unfollow(held);
        followed
    }

    /// Turn 0 at its intended time, each later turn `think` after the previous one ended,
    /// until the turns are done, sending time is up or the run cancels what is left
    /// (those turns are not sent, and counted so).
    async fn conversation(
        mut self,
        i: usize,
        t_intended_ns: u64,
        pre: Option<Presend>,
        followed: bool,
    ) {
        let mut last = self.request(i, 0, t_intended_ns, pre, followed).await;
        for k in 1..self.turns {
            let due = last.t_end_ns + self.think_ns;
            let held = self.follow_until_ns.is_none_or(|f| due < f);
            if last.cancelled
                || self.send_until_ns.is_some_and(|u| due >= u)
                || !self.think_until(due, held).await
            {
                let unsent = u64::from(self.turns - k);
                self.live.not_sent.fetch_add(unsent, Ordering::Relaxed);
                return;
            }
            let followed = self.count_send(due, held);
            last = self.request(i, k, due, None, followed).await;
        }
    }

    /// Wait until `due` (offset, ns) between turns; `false` when the run cancelled first.
    /// A conversation whose next turn falls in the window (`held`) counts as followed
    /// meanwhile, so the drain does not cut it short; the next `count_send` releases that.
    async fn think_until(&mut self, due: u64, held: bool) -> bool {
        self.live.follow(held);
        let at = tokio::time::Instant::from_std(self.clock.origin()) + Duration::from_nanos(due);
        let cancel = &mut self.cancel;
        let cancelled = async move {
            // nobody left to cancel: only the time matters
            if cancel.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let go = tokio::select! {
            biased;
            _ = cancelled => false,
            _ = tokio::time::sleep_until(at) => true,
        };
        if !go {
            self.live.unfollow(held);
        }
        go
    }

    /// Send request (entry `i`, turn `k`; counted by `count_send`) and hand its record to
    /// the sink; what the next turn needs of it comes back.
    async fn request(
        &mut self,
        i: usize,
        k: u32,
        t_intended_ns: u64,
        pre: Option<Presend>,
        followed: bool,
    ) -> Ended {
        let target = &self.targets[i % self.targets.len()];
        let spec = target.spec(i, k, self.turns);
        let job = Job {
            id: (i as u64) * u64::from(self.turns) + u64::from(k),
            t_intended_ns,
            spec,
            pre,
        };
        let mut rec = execute(
            &target.pool,
            &self.clock,
            self.timeouts,
            job,
            &mut self.cancel,
        )
        .await;
        if let Some(e) = rec.error.as_mut() {
            // a server that echoes the request's headers in its error must not put the key
            // into the records
            target.headers.redact_in_place(&mut e.message);
        }
        if self.turns > 1 {
            rec.turn = Some(Turn {
                session: u32::try_from(i).unwrap_or(u32::MAX),
                index: u16::try_from(k).unwrap_or(u16::MAX),
            });
        }
        if let Some(e) = rec
            .error
            .as_mut()
            .filter(|e| e.kind == ErrorKind::Cancelled)
        {
            let why = *self.reason.lock().expect("reason lock");
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
        let end = if rec.is_ok() {
            End::Ok
        } else if rec.is_cancelled() {
            End::Cancelled
        } else {
            End::Failed
        };
        self.live.finished(end, rec.ttft_ns(), followed, refused);
        let ended = Ended {
            t_end_ns: rec.t_end_ns,
            cancelled: rec
                .error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Cancelled),
        };
        let _ = self.sink.send(rec);
        ended
    }
}

/// How a request ended, as far as its conversation's next turn cares.
struct Ended {
    t_end_ns: u64,
    cancelled: bool,
}

/// A request task that panicked would take its record with it: a bug, never to pass
/// silently as a request that was not sent. Re-raised here, with its own message.
fn surface_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
