//! A cell in virtual time (`server.clock: virtual`): the simulator's discrete-event loop
//! (`vllm_sim::virtual_time`) serves the cell's arrival schedule and prompts in place of a
//! server over HTTP, and its timeline becomes the records a real cell writes: each request
//! sent at its intended instant (there is no client to be late) or, under a concurrency
//! cap (`load.max_concurrency`, a closed loop), when a slot frees, as the simulator plays
//! the client's slots (`vllm_sim::virtual_time::Slots`); each token one content event.
//! The summary, tables, analysis and report are then the same code as for a measured
//! cell; the cell's `summary.json` says `predicted`. The monitor's scrapes of `/metrics`
//! are the engines' counters sampled in virtual time (`scraped_rows`).
//!
//! The client's rules are applied to the timeline as the load point applies them live:
//! sending stops at the cell's duration (later arrivals are not sent), requests after the
//! measurement window are cut once every request of the window has ended, the drain limit
//! cuts (right-censors) whatever is left, and a request longer than the request timeout
//! fails as `timeout`. A request whose prompt and output budget do not fit the profile's
//! `max_model_len` is answered 400 at once, as vLLM answers it, and never reaches an engine.
//! One difference stays: a request cut by the client keeps its place in
//! the simulated engine until it ends, where vLLM would free it at once (its client slot
//! frees at the cut, as live). After the cut no
//! figure looks; a timed-out request's place is kept, so many timeouts make the prediction
//! pessimistic for the requests behind them.

use super::cell::{CellResult, CellSpec, closed_loop_waves, summarize_from, validity_warnings};
use crate::prom::rows_from;
use crate::store::cell_report::{ClientUsage, MonitorReport, PrefixCache};
use crate::store::layout::CellDir;
use crate::store::requests_table;
use crate::workload::Prompt;
use anyhow::Result;
use loadtest_analysis::engine_work::StepCosts;
use loadtest_analysis::record::{
    CancelReason, CompactRecord, ErrorKind, RequestError, RequestRecord, TokenSource, Turn,
};
use loadtest_analysis::server_metrics::{MetricRow, server_stats};
use loadtest_analysis::summary::Window;
use loadtest_base::Tokenizer;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use vllm_sim::Profile;
use vllm_sim::metrics::{CacheConfig, EngineMetrics, Gauges};
use vllm_sim::prefix_cache::{BlockHash, block_hashes};
use vllm_sim::virtual_time::{
    Conversations, KeepMetrics, Sample, SimError, Slots, VirtualConfig, VirtualRequest, VirtualRun,
    simulate_until,
};

/// The simulated server a group of virtual cells shares: what `launcher: sim` would start.
#[derive(Debug, Clone)]
pub struct VirtualServer {
    pub profile: Profile,
    pub dp: usize,
    pub seed: u64,
    pub api_servers: Option<usize>,
}

/// Each prompt's prefix-block hashes, by workload and block size: hashing means tokenizing
/// every prompt (0.5 s for 1,000 prompts of 512 tokens), once per run rather than per cell.
#[derive(Default)]
pub struct PrefixHashes(HashMap<(String, u32), PromptHashes>);

/// One workload's prompts' block hashes, in prompt order.
pub type PromptHashes = Arc<[Arc<[BlockHash]>]>;

impl PrefixHashes {
    /// The hashes of `prompts` (the workload `key`'s) as `server` caches prefixes; `None`
    /// when it does not.
    pub fn for_server(
        &mut self,
        key: &str,
        prompts: &[Prompt],
        server: &VirtualServer,
        tok: &Tokenizer,
    ) -> Option<PromptHashes> {
        if !server.profile.enable_prefix_caching {
            return None;
        }
        let block_size = server.profile.block_size;
        // a conversation's turn carries the ones before it: its prefix is their messages
        // as the server's chat template lays them out (so turn k finds turn k − 1's blocks)
        let conversations = prompts.iter().any(|p| !p.history.is_empty());
        let hashes = self
            .0
            .entry((key.to_string(), block_size))
            .or_insert_with(|| {
                prompts
                    .iter()
                    .map(|p| {
                        // the server's special tokens (a BOS): a stand-in id, as the
                        // simulator's server uses
                        let mut ids = vec![u32::MAX; tok.special_tokens_added() as usize];
                        if conversations {
                            let text = vllm_sim::server::render_conversation(&p.history, &p.text);
                            ids.extend(tok.encode(&text));
                        } else {
                            ids.extend(tok.encode(&p.text));
                        }
                        block_hashes(&ids, block_size).into()
                    })
                    .collect()
            })
            .clone();
        Some(hashes)
    }
}

/// A profile's step costs as the analysis prices a measured cell's work with them
/// (`engine_work`): the terms of the simulator's step (`vllm_sim::engine`), which a test
/// here holds equal.
pub fn step_costs(p: &Profile) -> StepCosts {
    StepCosts {
        c0_s: p.c0_s,
        c_pf_s: p.c_pf_s,
        c_pf_attn_s: p.c_pf_attn_s,
        c_dec_s: p.c_dec_s,
        c_kv_s: p.c_kv_s,
    }
}

/// The prediction was stopped (Ctrl-C, SIGTERM) before it ended: nothing of it is stored.
#[derive(Debug, thiserror::Error)]
#[error("the prediction was stopped before it ended")]
pub struct Stopped;

/// The longest stretch of virtual time a cell may span: its figures keep a row per second
/// (the time series), and a schedule or a profile spanning years (a rate of 1e-9 req/s, a
/// step of an hour) would fill the memory with empty seconds long before it ended.
const MAX_SPAN_S: u64 = 30 * 86_400;

/// Refuse a schedule whose arrivals span more than `MAX_SPAN_S` of virtual time, or that
/// the monitor would sample more than `MAX_SPAN_S` times (callers check it before clearing
/// a folder for the cell; `run` checks it again).
pub fn check_span(c: &CellSpec) -> Result<()> {
    let last = c.schedule[..sent(c)].last().copied().unwrap_or(0);
    if last / 1_000_000_000 > MAX_SPAN_S {
        anyhow::bail!(
            "the arrival schedule spans {:.0} days of virtual time; a prediction covers at most {} days\nhint: a higher rate, fewer requests, or a shorter `duration`",
            last as f64 / 86_400e9,
            MAX_SPAN_S / 86_400
        );
    }
    // the monitor's samples are events of the simulation: one a second over the longest
    // span at most (a 1 ns interval would never end)
    if let Some(iv) = c.metrics_interval {
        let samples = last / (iv.as_nanos() as u64).max(1);
        if samples > MAX_SPAN_S {
            anyhow::bail!(
                "`monitor.metrics_interval_s` {} s samples the server {samples} times over the arrival schedule's {:.0} s; a prediction samples it at most {MAX_SPAN_S} times\nhint: a longer `monitor.metrics_interval_s`",
                iv.as_secs_f64(),
                last as f64 / 1e9
            );
        }
    }
    Ok(())
}

/// Run the cell in virtual time and store it as a measured cell is stored. `hashes`: its
/// prompts' block hashes (`PrefixHashes::for_server`). Cells share nothing while they run:
/// several may run at once, one per core. `stopped` is asked every few thousand events
/// (`Stopped` when it says so).
pub fn run(
    c: &CellSpec,
    server: &VirtualServer,
    hashes: Option<&[Arc<[BlockHash]>]>,
    out: &CellDir,
    stopped: &dyn Fn() -> bool,
) -> Result<CellResult> {
    let wall = std::time::Instant::now();
    check_span(c)?;
    let slots = slots(c);
    let (requests, refused_why, run) = match slots {
        None => simulate_schedule(c, server, hashes, stopped)?,
        Some(s) => simulate_slots(c, server, hashes, s, stopped)?,
    };
    // what the client did with each request: when the schedule meant it to go and when it
    // went (a closed loop means it to go when a slot frees, a conversation its later turns
    // when the one before ended)
    let turns = turns(c);
    let sent_at: Vec<u64> = match slots {
        None => requests.iter().map(|r| r.arrival_ns).collect(),
        Some(_) => run.outcomes.iter().map(|o| o.arrival_ns).collect(),
    };
    let mut sent: Vec<usize> = match slots {
        None => (0..requests.len()).collect(),
        Some(_) => (0..requests.len())
            .filter(|&j| run.outcomes[j].sent)
            .collect(),
    };
    let intended: Vec<u64> = (0..requests.len())
        .map(|j| {
            if c.load.closed_loop() || j % turns > 0 {
                sent_at[j]
            } else {
                requests[j].arrival_ns
            }
        })
        .collect();
    halt_if(stopped)?;
    let token_times = served_token_times(run.token_times, &refused_why, slots.is_some());
    let cut = Cut::of(c, &intended, &sent_at, &token_times, &sent);
    // a later turn due once the client has cut the rest is never sent, as live
    sent.retain(|&j| j % turns == 0 || sent_at[j] < cut.at_ns);
    let full: Vec<RequestRecord> = sent
        .iter()
        .map(|&j| {
            let r = &requests[j];
            let at = (intended[j], sent_at[j]);
            let mut rec = match &refused_why[j] {
                Some(why) => refused(j, r, at, why.clone()),
                None => record(j, r, at, &token_times[j], c, &cut),
            };
            rec.turn = (turns > 1).then(|| Turn {
                session: u32::try_from(j / turns).unwrap_or(u32::MAX),
                index: u16::try_from(j % turns).unwrap_or(u16::MAX),
            });
            rec
        })
        .collect();
    drop(token_times);
    // every record is in memory from the start: no journal (`requests.jsonl`) to keep
    let records: Vec<CompactRecord> = full.iter().map(RequestRecord::to_compact).collect();
    // every turn of every entry scheduled or started, less those sent (a closed loop
    // schedules nothing ahead: it leaves unsent only its conversations' later turns)
    let started = sent.iter().filter(|&&j| j % turns == 0).count();
    let entries = c.schedule.len().max(started);
    let not_sent = (entries * turns).saturating_sub(sent.len()) as u64;
    // The timeline has no wall clock: its zero is when the prediction was made, so the
    // absolute-time columns read as "offsets from then", never as when anything happened.
    let clock_zero_unix_ns = loadtest_base::time::unix_now_ns();
    // the figures from the records in memory: the same as a measured cell's from its journal
    halt_if(stopped)?;
    let s = summarize_from(c, out, &records, not_sent, clock_zero_unix_ns, |f| {
        full.iter().for_each(f);
        Ok(())
    })?;
    // a signal while the records were summed up: what is written goes (the caller clears)
    halt_if(stopped)?;
    // the client's lateness is the cap's here (there is no client to be late)
    let paced = c.load.arrival.paced();
    let mut warnings = validity_warnings(&s, &records, false, c.exact_tokenizer, paced);
    warnings.extend(closed_loop_waves(c, &s));
    let monitors = match c.metrics_interval {
        Some(_) => {
            let rows = scraped_rows(&run.samples, cut.at_ns, &c.body.model, &server.profile)?;
            Some(monitor_report(out, &rows, s.window, clock_zero_unix_ns)?)
        }
        None => None,
    };
    requests_table::write_requests(
        &out.requests_parquet(),
        &records,
        s.window,
        clock_zero_unix_ns,
    )?;
    let client = ClientUsage {
        // the cell's virtual span; the client's own figures are zero (there is none)
        wall_s: cut.at_ns as f64 / 1e9,
        cpu_s: 0.0,
        user_cpu_s: 0.0,
        system_cpu_s: 0.0,
        cpu_share_of_threads: 0.0,
        max_rss_bytes: 0,
        threads: 0,
        loop_lag_p50_ms: None,
        loop_lag_p99_ms: None,
        loop_lag_max_ms: None,
        pacer_realtime: true,
        loop_realtime: true,
        send_paths: Default::default(),
        rss_growth_bytes: None,
        rss_growth_per_request_bytes: None,
        sending_s: cut.send_end_ns as f64 / 1e9,
        planned_sending_s: None,
    };
    if !c.progress.quiet {
        eprintln!(
            "{}{} requests in {:.1} s of virtual time ({:.2} s of wall time)",
            c.progress.label,
            records.len(),
            cut.at_ns as f64 / 1e9,
            wall.elapsed().as_secs_f64()
        );
    }
    Ok(CellResult {
        clock_zero_unix_ns,
        summary: s,
        server_lost: None,
        server_exited: None,
        records,
        interrupted: false,
        client,
        monitors,
        warnings,
        predicted: true,
    })
}

/// What a predicted closed loop may send, in output tokens plus `REQUEST_COST` a request:
/// its records take ~20 bytes a token, so ~1.2 GB. A closed loop sends as fast as the
/// profile serves, and one whose steps cost next to nothing would fill the memory.
const MAX_CLOSED_LOOP_UNITS: u64 = 60_000_000;
/// A request's own records, in tokens' worth.
const REQUEST_COST: u64 = 16;

/// The client as the simulator plays it: `load.max_concurrency` slots, none sent after the
/// duration, each held at most the request timeout; conversations' turns one after
/// another (with or without a cap). `None`: a schedule fixed in advance.
fn slots(c: &CellSpec) -> Option<Slots> {
    let conversations = (c.turns > 1).then_some(Conversations {
        turns: c.turns,
        think_ns: (c.load.think_time_s * 1e9) as u64,
    });
    if c.load.max_concurrency.is_none() && conversations.is_none() {
        return None;
    }
    Some(Slots {
        limit: c.load.max_concurrency.unwrap_or(usize::MAX),
        send_until_ns: c.load.send_until().map(|d| d.as_nanos() as u64),
        timeout_ns: Some(c.load.request_timeout.as_nanos() as u64),
        conversations,
    })
}

/// Requests per schedule entry: a conversation's turns, else 1.
fn turns(c: &CellSpec) -> usize {
    c.turns.max(1) as usize
}

/// The simulator's configuration for the cell; `keep`: which samples keep the counters.
fn config(
    c: &CellSpec,
    server: &VirtualServer,
    slots: Option<Slots>,
    keep: KeepMetrics,
) -> VirtualConfig {
    VirtualConfig {
        profile: server.profile.clone(),
        dp: server.dp,
        seed: server.seed,
        api_servers: server.api_servers,
        slots,
        // the monitor's scrapes of `/metrics`, as samples of the engines' counters
        sample_every_ns: c.metrics_interval.map(|iv| (iv.as_nanos() as u64).max(1)),
        sample_metrics: match c.metrics_interval {
            Some(_) => keep,
            None => KeepMetrics::Never,
        },
        max_span_ns: Some(MAX_SPAN_S * 1_000_000_000),
        check_invariants: false,
        record_token_times: true,
    }
}

/// Each request's refusal (`None`: served), and the simulated run of the cell.
type Simulated = (Vec<VirtualRequest>, Vec<Option<String>>, VirtualRun);

/// An arrival schedule fixed in advance: the arrivals before the duration, those vLLM would
/// answer 400 left out of the simulation (they never reach an engine).
fn simulate_schedule(
    c: &CellSpec,
    server: &VirtualServer,
    hashes: Option<&[Arc<[BlockHash]>]>,
    stopped: &dyn Fn() -> bool,
) -> Result<Simulated> {
    let n_sent = sent(c);
    let requests = requests(c, hashes, n_sent);
    let limit = server.profile.max_model_len;
    let refused_why: Vec<Option<String>> = requests.iter().map(|r| refusal(r, limit)).collect();
    // a copy only when some are refused (an hour of load is ~10^6 requests)
    let served: std::borrow::Cow<[VirtualRequest]> = if refused_why.iter().all(Option::is_none) {
        std::borrow::Cow::Borrowed(&requests)
    } else {
        requests
            .iter()
            .zip(&refused_why)
            .filter(|(_, why)| why.is_none())
            .map(|(r, _)| r.clone())
            .collect()
    };
    let keep = KeepMetrics::Around(counters_read_at(c, &requests, n_sent));
    let run = simulate_until(&config(c, server, None, keep), &served, stopped)
        .map_err(|e| sim_error(e, &server.profile))?;
    Ok((requests, refused_why, run))
}

/// A concurrency cap or conversations: who is sent when depends on when earlier requests
/// end, so the simulator plays the client too (`Slots`), refusals included. A closed loop
/// sends for the whole duration: it is given requests (prompts in turn) until it asks for
/// no more. Every request given comes back; the run's outcomes say which were sent.
fn simulate_slots(
    c: &CellSpec,
    server: &VirtualServer,
    hashes: Option<&[Arc<[BlockHash]>]>,
    slots: Slots,
    stopped: &dyn Fn() -> bool,
) -> Result<Simulated> {
    let limit = server.profile.max_model_len;
    // in requests, whole conversations (`closed_loop_most` is whole rounds of the prompts,
    // which hold whole conversations)
    let turns = turns(c);
    let most = if c.load.closed_loop() {
        all_refused(c, limit)?;
        closed_loop_most(c)
    } else {
        sent(c) * turns
    };
    let mut n = if c.load.closed_loop() {
        (4 * slots.limit)
            .max(256)
            .div_ceil(turns)
            .saturating_mul(turns)
            .min(most)
    } else {
        most
    };
    loop {
        let requests = requests(c, hashes, n);
        // under a cap, when sending ends is known only once it has run: every sample keeps
        // the counters; conversations alone end sending with the schedule's last entry
        let keep = if c.load.max_concurrency.is_none() {
            KeepMetrics::Around(counters_read_at(c, &requests, sent(c)))
        } else {
            KeepMetrics::Always
        };
        let cfg = config(c, server, Some(slots), keep);
        let run =
            simulate_until(&cfg, &requests, stopped).map_err(|e| sim_error(e, &server.profile))?;
        halt_if(stopped)?;
        if run.wanted_more && c.load.closed_loop() {
            if n >= most {
                anyhow::bail!(
                    "the closed loop sent {n} requests before its duration ended, more than a prediction holds in memory (~1 GB of records; the profile's steps: c0 {} s, a decoding sequence {} s)\nhint: a shorter `duration_s` or a lower `max_concurrency`; or check the profile's coefficients (seconds, not milliseconds)",
                    server.profile.c0_s,
                    server.profile.c_dec_s
                );
            }
            n = (2 * n).min(most);
            continue;
        }
        // which were sent is the run's to say (`VirtualOutcome::sent`)
        let refused_why = requests.iter().map(|r| refusal(r, limit)).collect();
        return Ok((requests, refused_why, run));
    }
}

/// The most requests a closed loop is given: what fits `MAX_CLOSED_LOOP_UNITS` (prompts
/// in turn, at least one round of them).
fn closed_loop_most(c: &CellSpec) -> usize {
    let round: u64 = c
        .prompts
        .iter()
        .map(|p| u64::from(p.output_tokens) + REQUEST_COST)
        .sum();
    let rounds = (MAX_CLOSED_LOOP_UNITS / round.max(1)).max(1);
    usize::try_from(rounds.saturating_mul(c.prompts.len() as u64)).unwrap_or(usize::MAX)
}

/// A closed loop of prompts the server answers 400 at once would resend them without end
/// in no virtual time (live, each answer takes its round trip): refused with why.
fn all_refused(c: &CellSpec, max_model_len: u32) -> Result<()> {
    let requests = requests(c, None, c.prompts.len());
    match requests
        .iter()
        .map(|r| refusal(r, max_model_len))
        .collect::<Option<Vec<_>>>()
    {
        Some(why) if !why.is_empty() => anyhow::bail!(
            "every prompt of the closed loop is over the profile's context, so the server answers each with 400 at once and the loop would resend without end in no time ({})\nhint: shorter prompts or outputs, or a profile with a longer `max_model_len`",
            why[0]
        ),
        _ => Ok(()),
    }
}

/// `Stopped` once `stopped` says so: asked between the phases of a large cell (the
/// simulation asks itself every few thousand events).
fn halt_if(stopped: &dyn Fn() -> bool) -> Result<()> {
    if stopped() {
        return Err(Stopped.into());
    }
    Ok(())
}

/// The simulator's error as the cell's.
fn sim_error(e: SimError, p: &Profile) -> anyhow::Error {
    match e {
        SimError::Stopped => anyhow::Error::new(Stopped),
        // stopped as it passed the limit: its memory and time stay bounded
        SimError::TooLong { .. } => anyhow::anyhow!(
            "the prediction passed {} days of virtual time, the most a prediction covers (the profile's steps: c0 {} s, a prompt token {} s)\nhint: check the profile's coefficients (seconds, not milliseconds)",
            MAX_SPAN_S / 86_400,
            p.c0_s,
            p.c_pf_s,
        ),
        e => anyhow::anyhow!("the virtual-time simulation failed: {e}"),
    }
}

/// Every request's token times in request order (a refused one has none). Without slots
/// the simulator ran only the served requests; with them, every request.
fn served_token_times(
    times: Vec<Vec<u64>>,
    refused_why: &[Option<String>],
    all_simulated: bool,
) -> Vec<Vec<u64>> {
    let mut times = times.into_iter();
    refused_why
        .iter()
        .map(|why| {
            // the simulator's entry for this request, if it has one
            let simulated = (all_simulated || why.is_none()).then(|| times.next());
            match why {
                Some(_) => Vec::new(),
                None => simulated.flatten().unwrap_or_default(),
            }
        })
        .collect()
}

/// What the monitor would have scraped from the simulated server's `/metrics` up to the
/// cell's end (a real cell's scraper stops there), in the rows a real scrape gives: the
/// simulator's own exposition read by `rows_from`.
///
/// Every sample gives the gauges (running, waiting, KV usage: the server's series in
/// `timeseries.parquet` and the report's chart); the samples that kept the counters and
/// histograms (`counters_read_at`) give every family. The rest would be ~270 rows an
/// engine a second that nothing reads (docs/simulator.md has what they cost).
fn scraped_rows(
    samples: &[Sample],
    until_ns: u64,
    model: &str,
    p: &Profile,
) -> Result<Vec<MetricRow>> {
    let cache = CacheConfig::of(p);
    let mut rows = Vec::new();
    for s in samples.iter().take_while(|s| s.t_ns <= until_ns) {
        if s.metrics.is_empty() {
            rows.extend(gauge_rows(s, model));
        } else {
            let text = vllm_sim::metrics::render(model, &engines_at(s), &cache);
            let read = rows_from(&text, s.t_ns, 0).map_err(|e| {
                anyhow::anyhow!("the simulator's own /metrics did not parse: {e} (a bug)")
            })?;
            rows.extend(read);
        }
    }
    Ok(rows)
}

/// The instants a counter's growth over the cell is read between: the measurement
/// window's edges, and the drain limit's cut (whole-run figures end at the last request,
/// and the last sample is taken then). The analysis reads a counter at the scrapes on
/// either side of each (`server_metrics::series_deltas`, `server_stats`).
fn counters_read_at(c: &CellSpec, requests: &[VirtualRequest], n_sent: usize) -> Vec<u64> {
    let secs = |s: f64| (s * 1e9) as u64;
    let mut at: Vec<u64> = c
        .load
        .window_s
        .map(|(a, b)| vec![secs(a), secs(b)])
        .unwrap_or_default();
    if let Some(d) = c.load.drain {
        let last = requests.last().map_or(0, |r| r.arrival_ns);
        at.push(send_end_ns(c, n_sent, last) + d.as_nanos() as u64);
    }
    at
}

/// The engines as `metrics::render` takes them.
fn engines_at(s: &Sample) -> Vec<(EngineMetrics, Gauges)> {
    s.metrics
        .iter()
        .zip(&s.engines)
        .map(|(m, &(running, waiting, kv_usage))| {
            let g = Gauges {
                running,
                waiting,
                kv_usage,
            };
            (m.clone(), g)
        })
        .collect()
}

/// The gauge families' rows of a sample, as `rows_from` reads them from the exposition
/// (a test holds them equal).
fn gauge_rows<'a>(s: &'a Sample, model: &'a str) -> impl Iterator<Item = MetricRow> + 'a {
    let labels = format!("model_name={model}");
    s.engines
        .iter()
        .enumerate()
        .flat_map(move |(e, &(running, waiting, kv))| {
            let labels = labels.clone();
            [
                ("vllm:num_requests_running", running as f64),
                ("vllm:num_requests_waiting", waiting as f64),
                ("vllm:kv_cache_usage_perc", kv),
            ]
            .map(move |(name, value)| MetricRow {
                t_ns: s.t_ns,
                endpoint: 0,
                name: name.to_string(),
                engine: Some(e.to_string()),
                labels: labels.clone(),
                value,
            })
        })
}

/// The scrapes stored and read over the window, as a measured cell's monitors do.
fn monitor_report(
    out: &CellDir,
    rows: &[MetricRow],
    window: Window,
    clock_zero_unix_ns: i64,
) -> Result<MonitorReport> {
    out.write_metrics(rows, clock_zero_unix_ns)?;
    let server = server_stats(rows, window.start_ns, window.end_ns);
    let scrapes = rows.iter().map(|r| r.t_ns).collect::<BTreeSet<_>>().len();
    Ok(MonitorReport {
        metric_scrapes: scrapes as u64,
        metric_failures: 0,
        metric_rows: rows.len(),
        metric_last_error: None,
        gpu: "absent (virtual time)".to_string(),
        prefix_cache: PrefixCache::of(&server),
    })
}

/// How many arrivals are sent: those before the cell's duration ends (all without one).
fn sent(c: &CellSpec) -> usize {
    match c.load.send_until() {
        Some(d) => {
            let until = d.as_nanos() as u64;
            c.schedule.partition_point(|&t| t < until)
        }
        None => c.schedule.len(),
    }
}

/// The requests as the simulator would receive them over HTTP: request `j` is turn `j mod
/// turns` of schedule entry `j / turns`, with the prompt the load point sends for it
/// (`workload::prompt_index`) and its prefix-block hashes when the simulator caches
/// prefixes.
fn requests(c: &CellSpec, hashes: Option<&[Arc<[BlockHash]>]>, n: usize) -> Vec<VirtualRequest> {
    let turns = turns(c);
    (0..n)
        .map(|j| {
            // request j is turn j mod turns of schedule entry j / turns
            let (i, turn) = (j / turns, (j % turns) as u32);
            let k = crate::workload::prompt_index(i, turn, c.turns, c.prompts.len());
            let p = &c.prompts[k];
            VirtualRequest {
                // a closed loop has no schedule: each goes when a slot frees (and a later
                // turn when the one before ended)
                arrival_ns: c.schedule.get(i).copied().unwrap_or(0),
                prompt_tokens: p.input_tokens,
                max_tokens: p.output_tokens,
                min_tokens: 0,
                ignore_eos: c.body.ignore_eos,
                pinned_rank: None,
                block_hashes: hashes.map_or_else(|| Arc::from([]), |h| h[k].clone()),
            }
        })
        .collect()
}

/// When the client would have cut what was still running, and why.
struct Cut {
    /// When sending ended: the duration, or the last arrival.
    send_end_ns: u64,
    at_ns: u64,
    reason: CancelReason,
    timeout_ns: u64,
}

impl Cut {
    /// The load point's rule: after sending ends, wait for every request of the window
    /// (each until its end or its timeout), then cut the rest (`after_window`); the drain
    /// limit cuts earlier (`drain_limit`).
    /// `intended`, `sent_at`: each request's intended and actual send time; `sent`: which
    /// requests were sent.
    fn of(
        c: &CellSpec,
        intended: &[u64],
        sent_at: &[u64],
        tokens: &[Vec<u64>],
        sent: &[usize],
    ) -> Cut {
        let timeout_ns = c.load.request_timeout.as_nanos() as u64;
        // sending ends with the schedule's last entry, as the load point's pacer ends
        // there: a conversation's later turns go after it
        let turns = turns(c);
        let firsts = || sent.iter().filter(|&&j| j % turns == 0);
        let last_sent = firsts().map(|&j| sent_at[j]).max().unwrap_or(0);
        let send_end_ns = send_end_ns(c, firsts().count(), last_sent);
        // the window's requests are those intended in it (as the load point follows them)
        let followed_end = sent
            .iter()
            .copied()
            .filter(|&i| {
                c.load
                    .window_s
                    .is_none_or(|(_, end)| (intended[i] as f64) < end * 1e9)
            })
            .map(|i| end_ns(sent_at[i], &tokens[i]).min(sent_at[i] + timeout_ns))
            .max()
            .unwrap_or(0)
            .max(send_end_ns);
        let drain_end = c.load.drain.map(|d| send_end_ns + d.as_nanos() as u64);
        match drain_end {
            Some(d) if d < followed_end => Cut {
                send_end_ns,
                at_ns: d,
                reason: CancelReason::DrainLimit,
                timeout_ns,
            },
            _ => Cut {
                send_end_ns,
                at_ns: followed_end,
                reason: CancelReason::AfterWindow,
                timeout_ns,
            },
        }
    }
}

/// When sending ended: the cell's duration when it stopped arrivals (a closed loop always
/// runs to it), else the last send (`last_sent_ns`). `started`: schedule entries sent.
fn send_end_ns(c: &CellSpec, started: usize, last_sent_ns: u64) -> u64 {
    let stopped = started < c.schedule.len() || c.load.closed_loop();
    match (stopped, c.load.send_until()) {
        (true, Some(d)) => d.as_nanos() as u64,
        _ => last_sent_ns,
    }
}

/// When a request sent at `sent_ns` ended: its last token (its send, with none).
fn end_ns(sent_ns: u64, tokens: &[u64]) -> u64 {
    tokens.last().copied().unwrap_or(sent_ns)
}

/// Request `i`'s record: complete, timed out, or cut by the client, whichever came first.
/// `(intended, sent)`: when the schedule meant it to go and when it went.
fn record(
    i: usize,
    r: &VirtualRequest,
    (intended, t0): (u64, u64),
    tokens: &[u64],
    c: &CellSpec,
    cut: &Cut,
) -> RequestRecord {
    let finish = end_ns(t0, tokens);
    let timeout_at = t0 + cut.timeout_ns;
    let complete = !tokens.is_empty() && finish <= cut.at_ns && finish <= timeout_at;
    let (t_end, error) = if complete {
        (finish, None)
    } else if timeout_at <= cut.at_ns {
        let msg = format!("no complete response within {:?}", c.load.request_timeout);
        (timeout_at, Some(error(ErrorKind::Timeout, None, msg)))
    } else {
        let msg = "cancelled while in flight".to_string();
        (
            cut.at_ns,
            Some(error(ErrorKind::Cancelled, Some(cut.reason), msg)),
        )
    };
    let events: Vec<u64> = tokens
        .iter()
        .take_while(|&&t| t <= t_end)
        .map(|&t| t - t0)
        .collect();
    let output_tokens = events.len() as u32;
    let finish_reason = complete.then(|| {
        if output_tokens >= r.max_tokens {
            "length"
        } else {
            "stop"
        }
        .to_string()
    });
    RequestRecord {
        id: i as u64,
        t_intended_ns: intended,
        t_send_ns: t0,
        t_end_ns: t_end,
        connect_ns: None,
        content_event_tokens: vec![1; events.len()],
        content_events: events,
        input_tokens: r.prompt_tokens,
        server_prompt_tokens: complete.then_some(r.prompt_tokens),
        max_tokens: r.max_tokens,
        output_tokens,
        output_tokens_source: if complete {
            TokenSource::Usage
        } else {
            TokenSource::Events
        },
        finish_reason,
        error,
        resent: 0,
        turn: None,
    }
}

/// Why vLLM (and the real-time simulator) would answer 400 to `r`: its prompt and output
/// budget do not fit the context of `max_model_len` tokens.
fn refusal(r: &VirtualRequest, max_model_len: u32) -> Option<String> {
    vllm_sim::server::context_refusal(max_model_len, r.prompt_tokens, Some(r.max_tokens))
}

/// A request answered 400 at once, as the server's HTTP side answers it.
fn refused(
    i: usize,
    r: &VirtualRequest,
    (intended, sent): (u64, u64),
    why: String,
) -> RequestRecord {
    RequestRecord {
        id: i as u64,
        t_intended_ns: intended,
        t_send_ns: sent,
        t_end_ns: sent,
        connect_ns: None,
        content_event_tokens: Vec::new(),
        content_events: Vec::new(),
        input_tokens: r.prompt_tokens,
        server_prompt_tokens: None,
        max_tokens: r.max_tokens,
        output_tokens: 0,
        output_tokens_source: TokenSource::Events,
        finish_reason: None,
        error: Some(RequestError {
            http_status: Some(400),
            ..error(ErrorKind::HttpStatus, None, why)
        }),
        resent: 0,
        turn: None,
    }
}

fn error(kind: ErrorKind, cancel_reason: Option<CancelReason>, message: String) -> RequestError {
    RequestError {
        kind,
        http_status: None,
        cancel_reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadtest_analysis::server_metrics::server_stats;
    use vllm_sim::virtual_time::{VirtualRun, simulate};

    /// A request of `prompt` tokens in, `output` out, arriving at `arrival_ns`.
    fn request(arrival_ns: u64, prompt: u32, output: u32) -> VirtualRequest {
        VirtualRequest {
            arrival_ns,
            prompt_tokens: prompt,
            max_tokens: output,
            min_tokens: 0,
            ignore_eos: true,
            pinned_rank: None,
            block_hashes: Arc::from(Vec::new()),
        }
    }

    /// `requests` on `dp` engines of `profile`, sampled every `every_ns`, the counters kept
    /// as `keep` says.
    fn simulated(
        profile: Profile,
        dp: usize,
        requests: &[VirtualRequest],
        every_ns: u64,
        keep: KeepMetrics,
    ) -> VirtualRun {
        let cfg = VirtualConfig {
            profile,
            dp,
            seed: 1,
            api_servers: None,
            slots: None,
            sample_every_ns: Some(every_ns),
            sample_metrics: keep,
            max_span_ns: None,
            check_invariants: false,
            record_token_times: false,
        };
        simulate(&cfg, requests).unwrap()
    }

    /// A busy two-engine timeline sampled every 0.25 s, the counters kept as `keep` says.
    fn sampled(keep: KeepMetrics) -> VirtualRun {
        let requests: Vec<VirtualRequest> = (0..400u64)
            .map(|i| request(i * 25_000_000, 200 + (i % 7) as u32 * 50, 64))
            .collect();
        let default = Profile::named("default").unwrap();
        simulated(default, 2, &requests, 250_000_000, keep)
    }

    /// The analysis prices an engine's work with the simulator's own step model: a
    /// saturated engine (never idle) read through its scrapes takes the time `step_costs`
    /// gives for its counted work, for profiles whose every term counts. A term the
    /// simulator charges and `StepCosts` leaves out (or the reverse) fails this.
    #[test]
    fn the_priced_work_is_what_the_simulators_steps_took() {
        use loadtest_analysis::engine_work::engine_work;
        let mut rng = loadtest_base::rng::Rng::new(7);
        for _ in 0..6 {
            let mut p = Profile::named("default").unwrap();
            let mut pick = |lo: f64, hi: f64| lo + (hi - lo) * rng.f64();
            p.c0_s = pick(2e-3, 20e-3);
            p.c_pf_s = pick(10e-6, 100e-6);
            p.c_pf_attn_s = pick(0.0, 100e-9);
            p.c_dec_s = pick(50e-6, 500e-6);
            p.c_kv_s = pick(0.0, 500e-9);
            p.max_num_seqs = 64;
            // a burst twice what runs at once: a queue the whole middle of the run
            let requests = vec![request(0, 300, 40); 400];
            let run = simulated(p.clone(), 1, &requests, 50_000_000, KeepMetrics::Always);
            let rows = scraped_rows(&run.samples, u64::MAX, "m", &p).unwrap();
            let (from, to) = (run.end_ns / 5, run.end_ns * 3 / 5);
            let w = engine_work(&rows, from, to).unwrap();
            let ratio = step_costs(&p).time_ratio(&w).unwrap();
            assert!((ratio - 1.0).abs() < 0.03, "ratio {ratio} for {p:?}");
        }
    }

    /// A sample's rows, every family, as a scrape of the exposition reads them.
    fn scrape(s: &Sample, model: &str) -> Vec<MetricRow> {
        let p = Profile::named("default").unwrap();
        let text = vllm_sim::metrics::render(model, &engines_at(s), &CacheConfig::of(&p));
        rows_from(&text, s.t_ns, 0).unwrap()
    }

    #[test]
    fn a_gauge_samples_rows_are_the_gauges_a_scrape_reads() {
        let run = sampled(KeepMetrics::Always);
        let busy = run
            .samples
            .iter()
            .filter(|s| s.engines.iter().any(|e| e.0 > 0));
        assert!(busy.count() > 10);
        let gauges = [
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
        ];
        // a model may be served under any name: the exposition escapes it, the scrape
        // reads it back
        for model in ["m", "a\"b\\c,d=e}\nf"] {
            for s in &run.samples {
                let key = |r: &MetricRow| (r.name.clone(), r.engine.clone());
                let mut scraped: Vec<MetricRow> = scrape(s, model)
                    .into_iter()
                    .filter(|r| gauges.contains(&r.name.as_str()))
                    .collect();
                scraped.sort_by_key(key);
                let mut direct: Vec<MetricRow> = gauge_rows(s, model).collect();
                direct.sort_by_key(key);
                assert_eq!(direct, scraped, "{model:?} at {} ns", s.t_ns);
            }
        }
    }

    /// The counters kept only around the window's edges (and at the first and last sample)
    /// give the analysis what every scrape gives: windows on and between samples, and the
    /// whole run, which ends at the last request's end, where the last sample is taken.
    #[test]
    fn counters_kept_around_the_window_give_the_analysis_what_every_scrape_gives() {
        let all = sampled(KeepMetrics::Always);
        let last = all.samples.last().unwrap().t_ns;
        let ended = all
            .outcomes
            .iter()
            .filter_map(|o| o.finish_ns)
            .max()
            .unwrap();
        assert_eq!(last, ended, "the last scrape is at the stop");
        assert_ne!(last % 250_000_000, 0, "and off the interval's grid here");
        let full: Vec<MetricRow> = all.samples.iter().flat_map(|s| scrape(s, "m")).collect();
        for (from, to) in [
            (1_000_000_000, 8_000_000_000),
            (1_100_000_000, 7_900_000_000),
            (0, ended + 1),
            (3_333_333_333, ended + 1),
        ] {
            let edges = match from {
                0 => Vec::new(),
                _ => vec![from, to],
            };
            let thin = sampled(KeepMetrics::Around(edges));
            let rows = scraped_rows(
                &thin.samples,
                u64::MAX,
                "m",
                &Profile::named("default").unwrap(),
            )
            .unwrap();
            assert!(
                rows.len() * 5 < full.len(),
                "{} of {} rows",
                rows.len(),
                full.len()
            );
            let (a, b) = (server_stats(&full, from, to), server_stats(&rows, from, to));
            assert!(
                a.breakdown.is_some() && a.server_ttft_mean_ms.is_some(),
                "{a:?}"
            );
            assert_eq!(a, b, "window {from}..{to}");
        }
    }
}
