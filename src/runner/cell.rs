//! One measured cell: prepare the requests for each endpoint, run the load point with the
//! monitors beside it on the same clock, and store the raw records and tables in the cell's
//! folder. Shared by `bench` (one cell) and `run` (a matrix of them).

use super::load_point::{self, LoadPoint, ServerLost, Target};
use super::prewarm;
use super::usage::{ProcessUsage, current_rss_bytes};
use crate::client::{Pool, RequestSpec, Server, Timeouts};
use crate::experiment::cell_plan::LoadPlan;
use crate::monitor;
use crate::store::cell_report::{CellInfo, CellReport, ClientUsage, MonitorReport, PrefixCache};
use crate::store::layout::CellDir;
use crate::store::requests_table::{EVENT_ROWS_PER_GROUP, EventsWriter};
use crate::store::{self, jsonl, jsonl::JsonlWriter};
use crate::workload::Prompt;
use crate::workload::body::{self, BodyOptions};
use anyhow::Result;
use loadtest_analysis::record::{CompactRecord, RequestRecord};
use loadtest_analysis::server_metrics::server_stats;
use loadtest_analysis::summary::{self, RunSummary, Scope, goodput::Slo};
use loadtest_base::clock::{Clock, Raised};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct CellSpec<'a> {
    /// The servers, reached (each carries its connector and headers).
    pub endpoints: &'a [Server],
    pub prompts: &'a [Prompt],
    pub body: &'a BodyOptions,
    /// How requests arrive, when sending stops, the window, the timeouts and the drain.
    pub load: &'a LoadPlan,
    /// The arrival schedule (`LoadPlan::schedule`), made once by the caller.
    pub schedule: Arc<[u64]>,
    pub connect_timeout: Duration,
    pub slos: &'a [Slo],
    /// Percentiles reported beyond the standard ones (`--metric-percentiles`).
    pub percentiles: &'a [f64],
    /// The progress line: quiet or not, its label, the run around the cell.
    pub progress: super::progress::Spec,
    pub client_threads: usize,
    /// Probe `/health` this often during the cell (`runner::watchdog`); `None`: never.
    pub health_probe: Option<Duration>,
    /// Requests per schedule entry: a conversation's turns (`PromptSpec::turns`), else 1.
    pub turns: u32,
    /// Scrape `/metrics` at this interval (`None`: no monitors, as in `bench`).
    pub metrics_interval: Option<Duration>,
    pub gpu: bool,
    /// The tokenizer is the served model's (not the built-in approximation): a prompt-length
    /// disagreement with the server is then worth a warning.
    pub exact_tokenizer: bool,
    /// Start when the wall clock reads this (ns since the epoch; `bench --start-at`), the
    /// connections opened before; `None`: at once.
    pub start_at_unix_ns: Option<i64>,
}

pub struct CellResult {
    pub summary: RunSummary,
    /// The wall-clock time (ns since the Unix epoch) of the cell's clock zero.
    pub clock_zero_unix_ns: i64,
    /// Sending stopped because the server was lost (refusing connections, or not answering
    /// its health probes), when and why.
    pub server_lost: Option<ServerLost>,
    /// The launched server's process exited during the cell (its status), when the
    /// launcher can tell (set by the caller).
    pub server_exited: Option<String>,
    /// Compact: the content events are in the cell's `requests.jsonl`.
    pub records: Vec<CompactRecord>,
    pub interrupted: bool,
    pub client: ClientUsage,
    pub monitors: Option<MonitorReport>,
    pub warnings: Vec<String>,
    /// Run in the simulator's virtual time (`runner::virtual_cell`): predicted, not measured.
    pub predicted: bool,
}

impl CellResult {
    /// `complete`, `interrupted`, `failed` (the server was lost: its connections refused,
    /// or its process exited) or `no_completions` (ran, but no request of its window
    /// succeeded); `run --resume` runs all but `complete` again.
    pub fn status(&self) -> &'static str {
        if self.interrupted {
            "interrupted"
        } else if self.server_lost.is_some() || self.server_exited.is_some() {
            "failed"
        } else if self.summary.no_completions() {
            "no_completions"
        } else {
            "complete"
        }
    }

    /// Ours for the cell's `summary.json` (`status` as the caller settled it).
    pub fn report(
        &self,
        status: &str,
        arrival: String,
        cell: Option<CellInfo>,
    ) -> CellReport<&RunSummary> {
        CellReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            status: status.to_string(),
            no_completions_reason: self
                .summary
                .no_completions()
                .then(|| summary::why_no_completions(&self.summary)),
            failure_reason: self.failure_reason(),
            finished_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
            clock_zero_unix_ns: Some(self.clock_zero_unix_ns),
            cell,
            arrival,
            summary: &self.summary,
            client: self.client.clone(),
            monitors: self.monitors.clone(),
            warnings: self.warnings.clone(),
            predicted: self.predicted,
            shards: None,
        }
    }

    /// Why a cell with that status has nothing to say about the server's capacity.
    pub fn failure_reason(&self) -> Option<String> {
        if let Some(status) = &self.server_exited {
            return Some(format!(
                "the server's process exited during the cell ({status})"
            ));
        }
        match (&self.server_lost, self.summary.no_completions()) {
            (Some(lost), _) => Some(format!("{} (at {:.1} s)", lost.why, lost.at_s)),
            (None, true) => Some(summary::why_no_completions(&self.summary)),
            (None, false) => None,
        }
    }
}

/// The thread that runs the load at a real-time priority until the guard is dropped
/// (`clock::Realtime`: why). Only a one-thread runtime's: its tasks never leave the thread
/// that polls this cell, so the thread raised is the one that stamps every byte, and it is
/// given back before the summary's work. The runtime only runs when bytes arrive, but a
/// client saturating its thread then holds that core outright (the client-CPU warning says
/// so); a multi-threaded runtime's workers could hold every core from a server beside them,
/// so they stay as they are.
fn raise_the_runtime() -> Raised {
    use loadtest_base::clock::{PACER_PRIORITY, RUNTIME_PRIORITY, Realtime};
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() != RuntimeFlavor::CurrentThread {
        return Raised::No;
    }
    // only where the pacer will get its higher priority too
    Realtime::raise(RUNTIME_PRIORITY, PACER_PRIORITY)
}

/// Run one cell: its load point with the monitors beside it, then its summary and files.
pub async fn run_cell(
    c: CellSpec<'_>,
    out: &CellDir,
    interrupt: watch::Receiver<bool>,
) -> Result<CellResult> {
    let writer = JsonlWriter::create(&out.requests_jsonl())?;
    // this process's part of the load point's schedule (all of it unsharded)
    let shard = c.load.shard;
    let schedule: Arc<[u64]> = if shard.is_whole() {
        c.schedule.clone()
    } else {
        shard.take(&c.schedule).into()
    };
    let targets = targets(&c, schedule.len());
    let mut interrupt = interrupt;
    let started = ready(&c, &targets, &schedule, &mut interrupt).await;
    // a signal before the start: nothing is sent, every request of the schedule not sent
    let (schedule, unsent) = if started {
        (schedule, 0)
    } else {
        let unsent = schedule.len() as u64 * u64::from(c.turns.max(1));
        (Arc::from(Vec::new()), unsent)
    };
    let clock = Clock::start();
    // the same instant on the wall clock, for the files' absolute timestamps
    let clock_zero_unix_ns = loadtest_base::time::unix_now_ns();
    let monitors = Monitors::start(&c, clock);
    let lp = LoadPoint {
        targets,
        schedule,
        shard,
        max_concurrency: c.load.max_concurrency,
        timeouts: Timeouts {
            connect: c.connect_timeout,
            request: c.load.request_timeout,
        },
        drain: c.load.drain,
        follow_until_ns: c.load.window_s.map(|(_, end)| (end * 1e9) as u64),
        send_until: c.load.send_until(),
        closed_loop: c.load.closed_loop(),
        progress: c.progress.clone(),
        health_probe: c.health_probe.map(|every| (c.endpoints.to_vec(), every)),
        turns: c.turns,
        think: Duration::from_secs_f64(c.load.think_time_s),
    };
    let before = ProcessUsage::now();
    let rss_before = current_rss_bytes();
    let lag = tokio::spawn(super::loop_lag::measure(monitors.stop.clone()));
    let raised = raise_the_runtime();
    let mut outcome = load_point::run(lp, clock, writer.sender(), interrupt).await;
    let loop_realtime = raised.is_realtime();
    drop(raised);
    outcome.not_sent += unsent;
    outcome.interrupted |= !started;
    let wall_s = clock.now_ns() as f64 / 1e9;
    let usage = ProcessUsage::now().since(&before);
    let _ = monitors.stop_tx.send(true);
    let lag = lag.await.ok().flatten();
    let records = writer.finish()?;
    let rss_growth = current_rss_bytes()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before));
    let s = summarize_cell(&c, out, &records, outcome.not_sent, clock_zero_unix_ns)?;
    let client = ClientUsage {
        wall_s,
        cpu_s: usage.cpu_s(),
        user_cpu_s: usage.user_cpu_s,
        system_cpu_s: usage.system_cpu_s,
        cpu_share_of_threads: usage.cpu_s() / wall_s.max(1e-9) / c.client_threads as f64,
        max_rss_bytes: usage.max_rss_bytes,
        threads: c.client_threads,
        loop_lag_p50_ms: lag.as_ref().map(|d| d.p50),
        loop_lag_p99_ms: lag.as_ref().map(|d| d.p99),
        loop_lag_max_ms: lag.as_ref().map(|d| d.max),
        pacer_realtime: outcome.pacer_realtime,
        loop_realtime,
        send_paths: outcome.send_paths,
        sending_s: outcome.sending_s,
        planned_sending_s: (c.load.max_concurrency.is_none() && outcome.planned_sending_s > 0.0)
            .then_some(outcome.planned_sending_s),
        rss_growth_bytes: rss_growth,
        rss_growth_per_request_bytes: rss_growth
            .filter(|_| !records.is_empty())
            .map(|g| g as f64 / records.len() as f64),
    };
    let paced = c.load.arrival.paced();
    let mut warnings =
        validity_warnings(&s, &records, outcome.interrupted, c.exact_tokenizer, paced);
    warnings.extend(client_warnings(&c, &s, &client));
    if let Some(lost) = &outcome.server_lost {
        warnings.insert(
            0,
            format!(
                "server lost: {}; sending stopped at {:.1} s and what was in flight was cut: the cell failed, its figures describe a dead server",
                lost.why, lost.at_s
            ),
        );
    }
    store::requests_table::write_requests(
        &out.requests_parquet(),
        &records,
        s.window,
        clock_zero_unix_ns,
    )?;
    // the Parquet files hold every record now: the journal's work is done
    store::records::retire_journal(out, records.len())?;
    let monitors = monitors
        .finish(out, s.window, clock_zero_unix_ns, &mut warnings)
        .await?;
    Ok(CellResult {
        clock_zero_unix_ns,
        server_lost: outcome.server_lost.clone(),
        server_exited: None,
        summary: s,
        records,
        interrupted: outcome.interrupted,
        client,
        monitors,
        warnings,
        predicted: false,
    })
}

/// Connections opened for the first arrivals, at the agreed start when there is one (a
/// shard's `--start-at`: opened just before it, so a server's keep-alive timeout does not
/// close them while the shard waits). `false`: a signal came first.
async fn ready(
    c: &CellSpec<'_>,
    targets: &[Target],
    schedule: &[u64],
    interrupt: &mut watch::Receiver<bool>,
) -> bool {
    let wait = |at: i64, interrupt: &mut watch::Receiver<bool>| {
        let mut rx = interrupt.clone();
        async move { super::start::wait_until(at, &mut rx).await.is_some() }
    };
    if let Some(at) = c.start_at_unix_ns
        && !wait(at - PREWARM_LEAD_NS, interrupt).await
    {
        return false;
    }
    if !c.load.closed_loop() {
        let slots = c.load.max_concurrency.unwrap_or(usize::MAX);
        let warm = prewarm::before_start(targets, schedule, slots, c.connect_timeout);
        // never past an agreed start: a slow server's connects must not make the shard late
        let until = c.start_at_unix_ns.map(|at| {
            let left = (at - loadtest_base::time::unix_now_ns()).max(0) as u64;
            Duration::from_nanos(left)
        });
        let bounded = async {
            match until {
                Some(d) => drop(tokio::time::timeout(d, warm).await),
                None => warm.await,
            }
        };
        tokio::select! {
            _ = bounded => {}
            _ = interrupt.wait_for(|i| *i) => return false,
        }
    }
    match c.start_at_unix_ns {
        Some(at) => wait(at, interrupt).await,
        None => !*interrupt.borrow(),
    }
}

/// How long before an agreed start the connections for its first arrivals are opened.
const PREWARM_LEAD_NS: i64 = 2_000_000_000;

/// Each endpoint's connection pool and the request bytes of every prompt, built once
/// before the run: the hot path sends prepared bytes.
fn targets(c: &CellSpec, n: usize) -> Arc<[Target]> {
    let cap = match (c.load.closed_loop(), c.load.max_concurrency) {
        (true, Some(k)) => k,
        (_, k) => k.unwrap_or(n).min(n),
    }
    .max(1);
    c.endpoints
        .iter()
        .map(|ep| {
            let path = ep.url.path(c.body.endpoint.path());
            let specs: Arc<[RequestSpec]> = c
                .prompts
                .iter()
                .map(|p| RequestSpec {
                    bytes: body::http_request(
                        &ep.url.authority,
                        &path,
                        ep.headers.lines(),
                        &body::json_body(p, c.body),
                    )
                    .into(),
                    input_tokens: p.input_tokens,
                    max_tokens: p.output_tokens,
                    expect_max_tokens: c.body.ignore_eos,
                })
                .collect();
            Target {
                headers: ep.headers.clone(),
                pool: Arc::new(Pool::new(
                    ep.connector.clone(),
                    cap.div_ceil(c.endpoints.len()),
                )),
                specs,
            }
        })
        .collect()
}

/// The cell's figures from its records. Those that need every content event stream them
/// back from `requests.jsonl`, and `events.parquet` is written on the first of those passes.
pub(super) fn summarize_cell(
    c: &CellSpec,
    out: &CellDir,
    records: &[CompactRecord],
    not_sent: u64,
    clock_zero_unix_ns: i64,
) -> Result<RunSummary> {
    let raw = out.requests_jsonl();
    summarize_from(c, out, records, not_sent, clock_zero_unix_ns, |f| {
        jsonl::for_each(&raw, |r| {
            f(&r);
            Ok(())
        })
        .map(drop)
    })
}

/// What a cell's figures are computed over, besides its records.
pub struct FigureScope<'a> {
    /// The measurement window (s from the start); `None`: the whole run.
    pub window_s: Option<(f64, f64)>,
    pub offered_rate: f64,
    pub slos: &'a [Slo],
    pub percentiles: &'a [f64],
}

impl CellSpec<'_> {
    fn figure_scope(&self) -> FigureScope<'_> {
        FigureScope {
            window_s: self.load.window_s,
            // a shard is offered its share of the load point's rate
            offered_rate: self.load.arrival.rate() / f64::from(self.load.shard.count),
            slos: self.slos,
            percentiles: self.percentiles,
        }
    }
}

/// [`summarize_cell`] with the full records from `each` (a pass over every record, in
/// order: the journal, or memory when the records are still there).
pub(super) fn summarize_from(
    c: &CellSpec,
    out: &CellDir,
    records: &[CompactRecord],
    not_sent: u64,
    clock_zero_unix_ns: i64,
    each: impl FnMut(&mut dyn FnMut(&RequestRecord)) -> Result<()>,
) -> Result<RunSummary> {
    let scope = c.figure_scope();
    summarize_records(&scope, out, records, not_sent, clock_zero_unix_ns, each)
}

/// A cell's figures from its records (`each`: a pass over the full ones, in order), with
/// `events.parquet` written on the first pass; the accounting checked.
pub fn summarize_records(
    c: &FigureScope,
    out: &CellDir,
    records: &[CompactRecord],
    not_sent: u64,
    clock_zero_unix_ns: i64,
    mut each: impl FnMut(&mut dyn FnMut(&RequestRecord)) -> Result<()>,
) -> Result<RunSummary> {
    let window = summary::resolve_window(c.window_s, records);
    let mut events_out = EventsWriter::create(
        &out.events_parquet(),
        EVENT_ROWS_PER_GROUP,
        clock_zero_unix_ns,
    )?;
    let mut passes = 0;
    let mut write_error = None;
    let events = summary::event_figures(
        |f| {
            passes += 1;
            let first = passes == 1;
            each(&mut |r| {
                if first
                    && write_error.is_none()
                    && let Err(e) = events_out.push(r)
                {
                    write_error = Some(e);
                }
                f(r);
            })
        },
        window,
        c.percentiles,
    )?;
    if let Some(e) = write_error {
        return Err(e);
    }
    events_out.finish()?;
    let scope = Scope {
        window,
        offered_rate: c.offered_rate,
        slos: c.slos,
        percentiles: c.percentiles,
    };
    let s = summary::summarize(records, events, not_sent, scope);
    summary::check_accounting(&s).map_err(anyhow::Error::msg)?;
    Ok(s)
}

/// The server's `/metrics` and the GPUs, sampled beside the load point on its clock.
struct Monitors {
    stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    scraper: Option<tokio::task::JoinHandle<monitor::metrics::Scraped>>,
    gpu: Option<tokio::task::JoinHandle<monitor::gpu::GpuSamples>>,
}

impl Monitors {
    fn start(c: &CellSpec, clock: Clock) -> Monitors {
        let (stop_tx, stop) = watch::channel(false);
        let scraper = c.metrics_interval.map(|iv| {
            let eps = c.endpoints.to_vec();
            tokio::spawn(monitor::metrics::scrape(eps, iv, clock, stop.clone()))
        });
        let gpu = (c.gpu && c.metrics_interval.is_some()).then(|| {
            tokio::spawn(monitor::gpu::sample(
                c.metrics_interval.unwrap_or(Duration::from_secs(1)),
                clock,
                stop.clone(),
            ))
        });
        Monitors {
            stop_tx,
            stop,
            scraper,
            gpu,
        }
    }

    /// Wait for the monitors (already told to stop) and store what they saw; a failed
    /// scrape becomes a warning. `None` when the cell ran without monitors (`bench`).
    /// The server's counters are read over the cell's `window`.
    async fn finish(
        self,
        out: &CellDir,
        window: summary::Window,
        clock_zero_unix_ns: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Option<MonitorReport>> {
        let Some(h) = self.scraper else {
            return Ok(None);
        };
        let scraped = h.await.unwrap_or_default();
        out.write_metrics(&scraped.rows, clock_zero_unix_ns)?;
        let gpu_samples = match self.gpu {
            Some(h) => h.await.unwrap_or_default(),
            None => monitor::gpu::GpuSamples::default(),
        };
        let gpu_state = match &gpu_samples.rows {
            Some(rows) => {
                store::parquet::write(
                    &out.gpu_parquet(),
                    &monitor::gpu::table(rows, clock_zero_unix_ns),
                )?;
                format!("{} samples", rows.len())
            }
            None => "absent".to_string(),
        };
        if scraped.failures > 0 {
            warnings.push(format!(
                "{} of {} /metrics scrapes failed: {}",
                scraped.failures,
                scraped.scrapes,
                scraped.last_error.clone().unwrap_or_default()
            ));
        }
        let server = server_stats(&scraped.rows, window.start_ns, window.end_ns);
        Ok(Some(MonitorReport {
            metric_scrapes: scraped.scrapes,
            metric_failures: scraped.failures,
            metric_rows: scraped.rows.len(),
            metric_last_error: scraped.last_error,
            gpu: gpu_state,
            prefix_cache: PrefixCache::of(&server),
        }))
    }
}

/// Reasons the client itself may have shaped the figures (its loop late, its pacing coarse,
/// its threads busy), and the closed loop's wave error.
fn client_warnings(c: &CellSpec, s: &RunSummary, client: &ClientUsage) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(l) = client.loop_lag_p99_ms
        && l > 10.0
    {
        warnings.push(format!(
            "the client's event loop was up to {l:.1} ms late (p99): latencies may include client queueing{}",
            if client.loop_realtime || client.threads > 1 {
                ""
            } else {
                "; it ran at a normal priority: allow it a real-time one (`ulimit -r 2`, or CAP_SYS_NICE) so a server on the same cores cannot hold it back"
            }
        ));
    }
    if let Some(q) = &s.latencies.queue_delay_ms
        && c.load.arrival.paced()
        && q.p99 > 1.0
        && !client.pacer_realtime
    {
        warnings.push(format!(
            "send lag p99 is {:.1} ms and the pacer thread ran at normal priority: allow it a real-time one (`ulimit -r 2`, or CAP_SYS_NICE) for sub-millisecond pacing",
            q.p99
        ));
    }
    let paths = &client.send_paths;
    if paths.pacer_late_max_ms > 1.0 {
        warnings.push(format!(
            "the pacer thread woke up to {:.1} ms late ({} arrival(s) more than 0.5 ms late){}: the OS or the hypervisor did not run the client on time (other work on its cores, or CPU the host took), and those requests went out that late",
            paths.pacer_late_max_ms,
            paths.pacer_woke_late,
            if client.pacer_realtime {
                " at a real-time priority"
            } else {
                ""
            }
        ));
    }
    warnings.extend(closed_loop_waves(c, s));
    if client.cpu_share_of_threads > 0.9 {
        warnings.push(format!(
            "the client used {:.0}% of its {} thread(s): it may be the bottleneck (add `--client-threads`){}",
            client.cpu_share_of_threads * 100.0,
            c.client_threads,
            if client.loop_realtime {
                "; its runtime ran at a real-time priority, so a server on the same cores got less of them"
            } else {
                ""
            }
        ));
    }
    warnings
}

/// A closed loop's warning that its window's throughput is off by up to one wave of
/// requests (a predicted closed loop makes the same waves).
pub fn closed_loop_waves(c: &CellSpec, s: &RunSummary) -> Option<String> {
    let (true, Some(e2e), Some(k)) = (
        c.load.closed_loop(),
        &s.latencies.e2el_ms,
        c.load.max_concurrency,
    ) else {
        return None;
    };
    // The loop's streams start together and, with similar requests, end in waves of `k`: a
    // window holds a whole number of waves, so its completion count can be off by one wave
    // (seen: 768 vs 640 req/s for one setup over 8 s windows).
    let wave_error = e2e.p50 / 1000.0 / s.window_s.max(1e-9);
    (wave_error > 0.05).then(|| {
        format!(
            "closed loop: requests of the {k} streams end in waves every ~{:.1} s, so the {:.1} s window's throughput can be off by one wave (±{:.0}%); lengthen the duration to 20× a request for ±5%",
            e2e.p50 / 1000.0,
            s.window_s,
            wave_error * 100.0
        )
    })
}

/// Reasons a figure of this cell should not be trusted as it stands.
pub fn validity_warnings(
    s: &RunSummary,
    records: &[CompactRecord],
    interrupted: bool,
    exact_tokenizer: bool,
    // sent on a schedule of its own (not all at once): lateness is then the client's
    paced: bool,
) -> Vec<String> {
    let mut w = Vec::new();
    if interrupted {
        w.push("interrupted: the figures cover only what ran before Ctrl-C".into());
    }
    if s.no_completions() {
        w.push(format!(
            "no completions: {}; no latency or throughput figure",
            summary::why_no_completions(s)
        ));
    }
    if s.sent > 0 && s.failed > 0 {
        let timeouts = s.errors_by_kind.get("timeout").copied().unwrap_or(0);
        w.push(format!(
            "{} of {} requests failed ({:.1}%): in the error counts; {}",
            s.failed,
            s.sent,
            100.0 * s.failed as f64 / s.sent as f64,
            if timeouts > 0 {
                format!("the {timeouts} that timed out count in the latency figures as cut off (at least their time to the timeout), the others in none")
            } else {
                "not in the latency figures".to_string()
            }
        ));
    }
    if s.resent > 0 {
        w.push(format!(
            "{} of {} requests were sent twice: the server closed a reused connection without answering (dropping connections, or a keep-alive timeout shorter than the gaps between requests); their latencies count from the first send",
            s.resent, s.sent
        ));
    }
    if s.measured_cut > 0 && !s.no_completions() {
        w.push(format!(
            "{} of the window's {} requests were cut off before they finished: each counts as at least its time to the cut (right-censored); figures marked `>` are lower bounds",
            s.measured_cut, s.measured
        ));
    }
    if let Some(q) = &s.latencies.queue_delay_ms
        && paced
        && q.p99 > 10.0
    {
        w.push(format!(
            "send lag p99 is {:.1} ms: the client (or the concurrency cap) did not keep the schedule; see TTFT from intended",
            q.p99
        ));
    }
    if let Some(e2e) = &s.latencies.e2el_ms
        && e2e.p50 / 1000.0 > s.window_s / 3.0
        && s.token_rate.is_none()
    {
        w.push(format!(
            "the measurement window ({:.1} s) is not much longer than a request (e2e p50 {:.1} s): completions inside it under-count throughput near saturation; lengthen the duration",
            s.window_s,
            e2e.p50 / 1000.0
        ));
    }
    if s.ok > 0 && s.usage_coverage < 1.0 {
        w.push(format!(
            "the server reported `usage` for only {:.0}% of requests; output tokens elsewhere counted as content events",
            s.usage_coverage * 100.0
        ));
    }
    let out_of_files = records
        .iter()
        .filter(|r| {
            r.error.as_ref().is_some_and(|e| {
                e.message
                    .starts_with(crate::client::request::CLIENT_OUT_OF_FILES)
            })
        })
        .count();
    if out_of_files > 0 {
        w.push(format!(
            "{out_of_files} connect errors were the client's own: it ran out of file descriptors (raise `ulimit -n`); they say nothing of the server"
        ));
    }
    let mismatched = records
        .iter()
        .filter(|r| r.server_prompt_tokens.is_some_and(|p| p != r.input_tokens))
        .count();
    if mismatched > 0 && exact_tokenizer {
        w.push(format!(
            "{mismatched} requests: the server counted a different prompt length than our tokenizer (chat template, or not the served model's tokenizer?)"
        ));
    }
    w
}
