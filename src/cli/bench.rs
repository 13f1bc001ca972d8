//! `vllm-loadtest bench`: validate the flags, build the workload, run one load point,
//! and write and print the results.

use super::bench_args::{ArrivalKind, BenchArgs, DatasetName, RampUp};
use crate::client::{self, BaseUrl};
use crate::experiment::cell_plan::{LoadPlan, TraceWindow};
use crate::runner::cell::{CellResult, CellSpec, run_cell};
use crate::runner::progress::Spec;
use crate::store::layout::CellDir;
use crate::store::{self, summary_json};
use crate::workload::body::{BodyOptions, Endpoint as Api};
use crate::workload::{Dataset, PromptSpec, Workload};
use anyhow::{Context, Result, bail};
use loadtest_analysis::summary::goodput::Slo;
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::{self, Arrival, RampStrategy, Stop};
use loadtest_base::shard::Shard;
use std::path::PathBuf;
use std::time::Duration;

/// Flags checked and turned into typed values, before anything is sent.
/// The flags, checked and typed: the same plan of load and prompts a `run` cell has.
#[derive(Clone)]
pub(super) struct Plan {
    pub(super) endpoint: Api,
    pub(super) load: LoadPlan,
    pub(super) prompts: PromptSpec,
    pub(super) slos: Vec<Slo>,
    pub(super) metrics: Vec<String>,
    pub(super) percentiles: Vec<f64>,
    pub(super) ignore_eos: bool,
    pub(super) extra: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(super) fn plan(a: &BenchArgs) -> Result<Plan> {
    let endpoint = Api::parse(&a.endpoint).with_context(|| {
        format!(
            "unsupported `--endpoint {}`\nhint: use `/v1/completions` or `/v1/chat/completions`",
            a.endpoint
        )
    })?;
    if a.dataset_name == DatasetName::MultiTurn && endpoint == Api::Completions {
        bail!(
            "`--dataset-name multi_turn` sends conversations, which need the chat endpoint\nhint: add `--endpoint /v1/chat/completions`"
        );
    }
    if a.client_threads == 0 {
        bail!("`--client-threads 0`: need at least one thread");
    }
    if a.sim.is_some() && a.sim_dp == 0 {
        bail!("`--sim-dp 0`: the simulator needs at least one engine");
    }
    if a.max_concurrency == Some(0) {
        bail!("`--max-concurrency 0` would never send anything");
    }
    Ok(Plan {
        endpoint,
        load: load_plan(a)?,
        prompts: prompts(a)?,
        slos: a
            .goodput
            .iter()
            .map(|s| Slo::parse(s))
            .collect::<Result<Vec<_>>>()?,
        metrics: percentile_metrics(a)?,
        percentiles: metric_percentiles(a)?,
        ignore_eos: if a.no_ignore_eos {
            false
        } else {
            a.ignore_eos
                || matches!(
                    a.dataset_name,
                    DatasetName::Random
                        | DatasetName::PrefixRepetition
                        | DatasetName::Trace
                        | DatasetName::MultiTurn
                )
        },
        extra: extra_body(a)?,
    })
}

/// Arrivals, when sending stops, the measurement window, timeouts and drain: the same
/// `LoadPlan` a `run` cell has.
fn load_plan(a: &BenchArgs) -> Result<LoadPlan> {
    let rate: f64 = match a.request_rate.as_str() {
        // a search's first probe stands for all of them here; each is checked as it comes
        _ if a.search.is_some() => a.search_start,
        "inf" | "Inf" | "infinity" => f64::INFINITY,
        // the experiment file's rule for a rate
        s => crate::experiment::fields::cli_number(crate::experiment::fields::Kind::Rate)(s)
            .map_err(|e| anyhow::anyhow!("`--request-rate {s}`: {e}\nhint: e.g. `--request-rate 10`, or `inf` to send everything at once"))?,
    };
    if !(a.burstiness > 0.0 && a.burstiness.is_finite()) {
        bail!(
            "`--burstiness {}` must be a positive number\nhint: 1 is Poisson",
            a.burstiness
        );
    }
    let (arrival, trace) = own_schedule(a, rate)?;
    if a.num_prompts == 0 {
        bail!("`--num-prompts 0`: nothing to send\nhint: give at least 1");
    }
    let stop = match a.duration {
        Some(d) if d.is_nan() || d <= 0.0 => bail!("`--duration {d}` must be positive"),
        // a ramp sets its own finite rate: only a real `inf` makes a closed loop
        Some(_)
            if rate.is_infinite()
                && a.ramp_up_strategy.is_none()
                && a.max_concurrency.is_none() =>
        {
            bail!(
                "`--duration` with `--request-rate inf` needs `--max-concurrency`\nhint: `--max-concurrency N --request-rate inf --duration D` keeps N requests in flight for D seconds (a closed loop); or give a finite rate"
            )
        }
        Some(d) => Stop::Duration(d),
        None => Stop::Count(a.num_prompts),
    };
    arrivals::check_size(arrival, stop).map_err(|e| {
        anyhow::anyhow!("{e}\nhint: a lower `--request-rate` or a shorter `--duration`")
    })?;
    if a.warmup < 0.0 || a.cooldown < 0.0 {
        bail!("`--warmup` and `--cooldown` must not be negative");
    }
    let window = if a.warmup > 0.0 || a.cooldown > 0.0 {
        let Some(d) = a.duration else {
            bail!(
                "`--warmup`/`--cooldown` need `--duration`\nhint: the window is [warmup, duration − cooldown]"
            );
        };
        if a.warmup + a.cooldown >= d {
            bail!(
                "`--warmup {}` + `--cooldown {}` leave nothing of `--duration {d}` to measure",
                a.warmup,
                a.cooldown
            );
        }
        Some((a.warmup, d - a.cooldown))
    } else {
        None
    };
    let load = LoadPlan {
        arrival,
        stop,
        arrival_name: match a.arrival {
            ArrivalKind::Constant => "constant",
            ArrivalKind::Gamma => "gamma",
        }
        .into(),
        burstiness: a.burstiness,
        max_concurrency: a.max_concurrency,
        seed: a.seed,
        window_s: window,
        warmup_s: a.warmup,
        cooldown_s: a.cooldown,
        request_timeout: Duration::from_secs_f64(a.request_timeout),
        drain: a.duration.map(|_| Duration::from_secs_f64(a.drain_timeout)),
        trace,
        think_time_s: a.multi_turn_think_time,
        shard: Shard::WHOLE,
    };
    match a.shard {
        Some(shard) => sharded(a, load, shard),
        None => Ok(load),
    }
}

/// The load plan of shard `shard`: its part of the concurrency cap; refused where the
/// shards' union would not be the one-machine run.
fn sharded(a: &BenchArgs, mut load: LoadPlan, shard: Shard) -> Result<LoadPlan> {
    if a.sim.is_some() {
        bail!(
            "`--shard` splits the load on one server, and `--sim` starts a simulator in each shard's process: the shards would load N servers\nhint: start one `vllm-loadtest sim --port 8000` and give every shard `--base-url http://HOST:8000`"
        );
    }
    if a.search.is_some() {
        bail!(
            "`--shard` splits one load point; a `--search` runs many, one after another\nhint: search from one machine, then shard the rate it found"
        );
    }
    if load.closed_loop() {
        bail!(
            "`--shard` splits a schedule, and a closed loop (`--request-rate inf --duration`) has none: its next request goes when one ends\nhint: give a `--request-rate`, or run a closed loop from one machine"
        );
    }
    if a.save_result {
        bail!(
            "`--save-result` would write one shard's figures as if they were the load point's\nhint: drop it: the merged cell's `summary.json` (`vllm-loadtest merge`) holds vLLM's keys for the whole load point"
        );
    }
    if let Some(k) = load.max_concurrency {
        // every shard refuses, not only those left without a slot: a merge needs them all
        if k < shard.count as usize {
            bail!(
                "`--max-concurrency {k}` split over {} shards leaves some shards no slot\nhint: at least one slot per shard: `--max-concurrency {}` or more",
                shard.count,
                shard.count
            );
        }
        load.max_concurrency = Some(shard.share(k));
    }
    load.shard = shard;
    Ok(load)
}

/// A trace's schedule, a ramp, or the rate's process; neither of the first two beside a
/// `--request-rate` (vLLM refuses a rate with a ramp too).
fn own_schedule(a: &BenchArgs, rate: f64) -> Result<(Arrival, Option<TraceWindow>)> {
    let constant = a.arrival == ArrivalKind::Constant;
    let trace = a.dataset_name == DatasetName::Trace;
    if (trace || a.ramp_up_strategy.is_some()) && rate.is_finite() {
        bail!(
            "`--request-rate {}` does not apply: {}\nhint: {}",
            a.request_rate,
            if trace {
                "a trace replay sends on the trace's own schedule"
            } else {
                "a ramp sets its own rate"
            },
            if trace {
                "remove it; `--trace-speed` scales the trace's time"
            } else {
                "remove it: the rate moves from `--ramp-up-start-rps` to `--ramp-up-end-rps`"
            }
        );
    }
    if trace {
        if a.ramp_up_strategy.is_some() {
            bail!(
                "a ramp and a trace replay are two schedules\nhint: drop `--ramp-up-strategy`, or use another dataset"
            );
        }
        if a.duration.is_some() {
            bail!(
                "`--duration` does not apply: a trace replay ends with its window\nhint: choose it with `--trace-start` and `--trace-end`"
            );
        }
        if let Some(e) = a.trace_end
            && e <= a.trace_start
        {
            bail!(
                "the trace window [{}, {e}) s is empty\nhint: `--trace-end` must be after `--trace-start`",
                a.trace_start
            );
        }
        let path = a.dataset_path.clone().context(
            "`--dataset-name trace` needs `--dataset-path FILE`\nhint: e.g. `--dataset-path examples/traces/synthetic.jsonl`",
        )?;
        let window = TraceWindow {
            path,
            start_s: a.trace_start,
            end_s: a.trace_end,
        };
        return Ok((
            Arrival::Trace {
                speed: a.trace_speed,
            },
            Some(window),
        ));
    }
    if let (Some(s), Some(start), Some(end)) =
        (a.ramp_up_strategy, a.ramp_up_start_rps, a.ramp_up_end_rps)
    {
        if start > end {
            bail!(
                "`--ramp-up-start-rps {start}` is above `--ramp-up-end-rps {end}`\nhint: a ramp rises (as vLLM's does): swap them"
            );
        }
        let strategy = match s {
            RampUp::Linear => RampStrategy::Linear,
            RampUp::Exponential => RampStrategy::Exponential,
        };
        let burstiness = if constant {
            f64::INFINITY
        } else {
            a.burstiness
        };
        return Ok((
            Arrival::Ramp {
                strategy,
                start,
                end,
                burstiness,
            },
            None,
        ));
    }
    Ok((Arrival::of(rate, constant, a.burstiness), None))
}

/// `--percentile-metrics`: which latencies get percentile keys in `summary.json`.
fn percentile_metrics(a: &BenchArgs) -> Result<Vec<String>> {
    let metrics: Vec<String> = a
        .percentile_metrics
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    if let Some(bad) = metrics
        .iter()
        .find(|m| !["ttft", "tpot", "itl", "e2el"].contains(&m.as_str()))
    {
        bail!(
            "`--percentile-metrics`: unknown metric `{bad}`\nhint: choose from ttft,tpot,itl,e2el"
        );
    }
    Ok(metrics)
}

/// `--metric-percentiles`: which percentiles.
fn metric_percentiles(a: &BenchArgs) -> Result<Vec<f64>> {
    a.metric_percentiles
        .split(',')
        .map(|s| match s.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => bail!("`--metric-percentiles`: `{s}` is not a percentile in [0, 100]"),
        })
        .collect::<Result<Vec<_>>>()
}

/// `--extra-body`: more request fields, a JSON object.
fn extra_body(a: &BenchArgs) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    Ok(match &a.extra_body {
        None => None,
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => bail!(
                "`--extra-body` must be a JSON object\nhint: e.g. --extra-body '{{\"top_p\": 0.9}}'"
            ),
        },
    })
}

/// The prompts the dataset flags ask for.
fn prompts(a: &BenchArgs) -> Result<PromptSpec> {
    let need_path = || {
        a.dataset_path.clone().with_context(|| {
            format!(
                "`--dataset-name {:?}` needs `--dataset-path FILE`",
                a.dataset_name
            )
            .to_lowercase()
        })
    };
    let dataset = match a.dataset_name {
        DatasetName::Random => Dataset::Random {
            input_len: a.random_input_len,
            range_ratio: a.random_range_ratio,
            prefix_len: a.random_prefix_len,
        },
        DatasetName::PrefixRepetition => Dataset::PrefixRepetition {
            num_prefixes: a.prefix_repetition_num_prefixes,
            prefix_len: a.prefix_repetition_prefix_len,
            suffix_len: a.prefix_repetition_suffix_len,
        },
        DatasetName::Sharegpt => Dataset::ShareGpt {
            path: need_path()?,
            output_len: a.sharegpt_output_len,
        },
        DatasetName::Jsonl => Dataset::Jsonl { path: need_path()? },
        DatasetName::MultiTurn => Dataset::MultiTurn {
            turns: a.multi_turn_turns,
            input_len: a.random_input_len,
        },
        DatasetName::Trace => Dataset::Trace {
            path: need_path()?,
            block_size: a.trace_block_size,
            start_s: a.trace_start,
            end_s: a.trace_end,
        },
    };
    Ok(PromptSpec {
        dataset,
        output_len: match a.dataset_name {
            DatasetName::PrefixRepetition => a.prefix_repetition_output_len,
            _ => a.random_output_len,
        },
        num_prompts: a.num_prompts,
        seed: a.seed,
    })
}

pub fn run(a: BenchArgs) -> Result<()> {
    let plan = plan(&a)?;
    super::bench_virtual::check(&a)?;
    super::bench_shard::check_start(&a)?;
    // where results go is checked before anything runs, not after
    for (flag, dir) in [
        ("--output-dir", a.output_dir.as_deref()),
        ("--result-dir", Some(a.result_dir.as_path())),
    ] {
        if let Some(d) = dir
            && d.exists()
            && !d.is_dir()
        {
            anyhow::bail!(
                "`{flag} {}` is a file, not a folder\nhint: give a folder (it is created if missing)",
                d.display()
            );
        }
    }
    // from here on, a signal is Ctrl-C: honoured while prompts are built too
    let interrupt =
        super::signals::interrupt_on_signals(super::signals::OnSignal::of(a.virtual_time));
    let tok = std::sync::Arc::new(Tokenizer::load(a.tokenizer.as_deref())?);
    if tok.is_built_in() {
        eprintln!("{}", loadtest_base::tokenizer::BUILT_IN_WARNING);
    }
    let workload = match plan
        .prompts
        .build_abandonable(tok.clone(), &|| *interrupt.borrow())
    {
        Err(e) if *interrupt.borrow() => {
            return Err(super::Ended::Interrupted(format!("{e:#}")).into());
        }
        w => w?,
    };
    for n in &workload.notes {
        eprintln!("note: {n}");
    }
    if a.virtual_time {
        return super::bench_virtual::run(&a, &plan, &tok, &workload, &interrupt);
    }
    let rt = super::client_runtime(a.client_threads)?;
    let sim = match &a.sim {
        Some(profile) => Some(vllm_sim::background::start(
            profile,
            a.sim_dp,
            a.tokenizer.clone(),
        )?),
        None => None,
    };
    let base_url = match &sim {
        Some(s) => BaseUrl::parse(&format!("http://{}", s.addr()))?,
        None => BaseUrl::parse(&a.base_url)?,
    };
    let result = rt.block_on(run_async(&a, &plan, &tok, workload, &base_url, interrupt));
    drop(sim);
    result
}

async fn run_async(
    a: &BenchArgs,
    plan: &Plan,
    tok: &Tokenizer,
    workload: Workload,
    url: &BaseUrl,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let access = client::Access::new(a.conn.tls_options(), &a.conn.header_spec())?;
    let server = access.reach(url).await?;
    let model = match &a.model {
        Some(m) => m.clone(),
        None => client::get::first_model(&server).await.map_err(|e| {
            // one hint, the most specific: the error may carry its own already
            let hint = if client::tls::is_handshake_verdict(&e) || format!("{e:#}").contains("hint:") {
                ""
            } else {
                "\nhint: is the server running at `{url}`? start it first, check `--base-url`, or try `--sim` for the built-in simulated vLLM"
            };
            anyhow::anyhow!("{e:#}{}", hint.replace("{url}", &url.to_string()))
        })?,
    };
    let opts = body_options(a, plan, &model);
    if let Some(goal) = a.search {
        return super::bench_search::run(a, plan, goal, &workload, server, &opts, tok, interrupt)
            .await;
    }
    let schedule = plan.load.schedule(a.repeat)?;
    let rate = plan.load.arrival.rate();
    let shard = plan.load.shard;
    let mine = if shard.is_whole() {
        String::new()
    } else {
        // every shard refuses, not only the empty ones: a merge needs them all
        if schedule.len() < shard.count as usize {
            bail!(
                "{} shards for the load point's {} schedule entries leave some shards nothing to send\nhint: use at most {} shards",
                shard.count,
                schedule.len(),
                schedule.len()
            );
        }
        let n = shard.take(&schedule).len();
        format!("shard {shard}: {n} of ")
    };
    let out_dir = a
        .output_dir
        .clone()
        .unwrap_or_else(|| default_output(rate, shard));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let out = CellDir::new(out_dir);
    let _claim = claim(&out)?;
    out.clear()?;
    let load = LoadWords::of(a, plan, schedule.len());
    eprintln!(
        "bench: {mine}{} to {url}{} ({}), model `{model}`, {}{}; results in `{}`",
        load.what,
        plan.endpoint.path(),
        load.how,
        load.until,
        load.cap,
        out.root().display()
    );
    let out_len = workload
        .prompts
        .iter()
        .map(|p| p.output_tokens)
        .max()
        .unwrap_or(0);
    if let Some(w) = super::calibrate::warn_if_near_ceiling(rate, out_len) {
        eprintln!("warning: {w}");
    }
    if server.connector.is_tls() {
        // a certificate problem is one clear error before the run (also when `--model`
        // skipped the models lookup), not a failed record per request
        server
            .connector
            .connect(Duration::from_secs_f64(a.conn.connect_timeout))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let endpoints = [server];
    let cell = cell_spec(a, plan, &endpoints, &workload, &opts, schedule.clone(), tok);
    let r = run_cell(cell, &out, interrupt).await?;
    print_table(plan, &r, None)?;
    write_summary(a, plan, &r, &out, &model, tok)?;
    if let (Some(shard), Some(at)) = (a.shard, a.start_at) {
        let record = super::bench_shard::shard_record(
            a,
            plan,
            &r,
            (shard, at),
            &schedule,
            &workload.prompts,
            &model,
            tok,
        )?;
        record.write(&out)?;
        if r.interrupted && r.summary.sent == 0 {
            eprintln!("shard {shard}: stopped before its start: nothing sent");
        } else {
            let late = record.late_ms();
            if late > super::bench_shard::LATE_WARN_MS {
                eprintln!(
                    "warning: shard {shard} started {late:.1} ms after `--start-at`: its requests went out that late (building its prompts or opening connections took longer than the lead); `merge` will flag it\nhint: give the shards a later `--start-at`"
                );
            }
            eprintln!(
                "shard {shard}: started {late:.3} ms after `--start-at`; merge the {} shards' folders with `vllm-loadtest merge DIR… -o CELL_DIR`",
                shard.count
            );
        }
    }
    eprintln!("results: {}", out.root().display());
    how_it_ended(&r, &out)
}

/// The request body every request of the load point carries.
pub(super) fn body_options(a: &BenchArgs, plan: &Plan, model: &str) -> BodyOptions {
    BodyOptions {
        endpoint: plan.endpoint,
        model: model.to_string(),
        ignore_eos: plan.ignore_eos,
        temperature: a.temperature,
        continuous_usage: a.continuous_usage_stats,
        extra: plan.extra.clone(),
    }
}

/// The cell the runner sends (or, with no `endpoints`, predicts in virtual time).
pub(super) fn cell_spec<'a>(
    a: &BenchArgs,
    plan: &'a Plan,
    endpoints: &'a [client::Server],
    workload: &'a Workload,
    body: &'a BodyOptions,
    schedule: std::sync::Arc<[u64]>,
    tok: &Tokenizer,
) -> CellSpec<'a> {
    CellSpec {
        endpoints,
        prompts: &workload.prompts,
        body,
        load: &plan.load,
        schedule,
        connect_timeout: Duration::from_secs_f64(a.conn.connect_timeout),
        slos: &plan.slos,
        percentiles: &plan.percentiles,
        progress: Spec {
            quiet: a.quiet,
            ..Spec::default()
        },
        client_threads: a.client_threads,
        health_probe: (a.health_probe > 0.0).then(|| Duration::from_secs_f64(a.health_probe)),
        turns: plan.prompts.turns(),
        metrics_interval: None,
        gpu: false,
        exact_tokenizer: !tok.is_built_in(),
        start_at_unix_ns: a.start_at,
    }
}

/// `results/bench/<date>-rate<r>` (`…-shard<I>of<N>` for a shard) when `--output-dir` is
/// not given.
pub(super) fn default_output(rate: f64, shard: Shard) -> PathBuf {
    let r = if rate.is_finite() {
        format!("{rate}")
    } else {
        "inf".into()
    };
    let part = if shard.is_whole() {
        String::new()
    } else {
        format!("-shard{}of{}", shard.index, shard.count)
    };
    PathBuf::from("results/bench").join(format!(
        "{}-rate{r}{part}",
        loadtest_base::time::compact(loadtest_base::time::unix_now())
    ))
}

/// The output folder, held by this process until it ends: two benches (two shards given
/// one folder) would interleave their records into one journal.
pub(super) fn claim(out: &CellDir) -> Result<std::fs::File> {
    crate::store::lock::hold(&out.lock())?.map_err(|pid| {
        anyhow::anyhow!(
            "`{}` is being written by another bench (pid {pid})\nhint: give each bench (each shard) its own `--output-dir`",
            out.root().display()
        )
    })
}

/// vLLM's result table, and our lines beside it.
/// `predicted_by`: what predicted it, for a cell run in virtual time (no client line then:
/// there was no client).
pub(super) fn print_table(plan: &Plan, r: &CellResult, predicted_by: Option<&str>) -> Result<()> {
    // a shard is configured its share of the load point's rate
    let rate = plan.load.arrival.rate() / f64::from(plan.load.shard.count);
    let mut stdout = std::io::stdout().lock();
    loadtest_analysis::report::table::render(
        &mut stdout,
        &r.summary,
        &loadtest_analysis::report::table::TableSpec {
            metrics: &plan.metrics,
            percentiles: &plan.percentiles,
            configured_rate: rate,
            warnings: &r.warnings,
            client: predicted_by.is_none().then_some(
                loadtest_analysis::report::table::ClientLine {
                    cpu_share: r.client.cpu_share_of_threads,
                    rss_growth_bytes: r.client.rss_growth_bytes,
                    rss_per_request_bytes: r.client.rss_growth_per_request_bytes,
                },
            ),
            predicted_by,
        },
    )?;
    drop(stdout);
    Ok(())
}

/// `Ok` when the window has a success; an interrupt, a lost server or nothing measured are
/// typed (`Ended`), so the exit code tells them apart.
pub(super) fn how_it_ended(r: &CellResult, out: &CellDir) -> Result<()> {
    if r.interrupted {
        return Err(super::Ended::Interrupted(format!(
            "interrupted: partial results written to `{}`",
            out.root().display()
        ))
        .into());
    }
    if let Some(lost) = &r.server_lost {
        return Err(super::Ended::ServerFailed(format!(
            "server lost at {:.1} s: {}; sending stopped; results in `{}`",
            lost.at_s,
            lost.why,
            out.root().display()
        ))
        .into());
    }
    if r.summary.no_completions() {
        return Err(super::Ended::ServerFailed(format!(
            "no request of the window succeeded: {}; results in `{}`",
            loadtest_analysis::summary::why_no_completions(&r.summary),
            out.root().display()
        ))
        .into());
    }
    Ok(())
}

pub(super) fn write_summary(
    a: &BenchArgs,
    plan: &Plan,
    r: &CellResult,
    out: &CellDir,
    model: &str,
    tok: &Tokenizer,
) -> Result<()> {
    let now = loadtest_base::time::unix_now();
    let info = summary_json::RunInfo {
        date: loadtest_base::time::compact(now),
        // vLLM's field names the server; a prediction had none
        backend: if r.predicted {
            "vllm-sim (virtual time)"
        } else {
            "vllm"
        }
        .into(),
        label: a.label.clone(),
        model_id: model.to_string(),
        tokenizer_id: tok.describe(),
        // a shard's own: its share of the requests, the rate and the cap
        num_prompts: summary_json::num_prompts(
            a.num_prompts,
            plan.load.trace.is_some() || !plan.load.shard.is_whole(),
            &r.summary,
        ),
        request_rate: plan.load.arrival.rate() / f64::from(plan.load.shard.count),
        burstiness: a.burstiness,
        max_concurrency: plan.load.max_concurrency,
    };
    let pct = summary_json::PercentileSpec {
        metrics: plan.metrics.clone(),
        percentiles: plan.percentiles.clone(),
    };
    let arrival = match a.max_concurrency {
        Some(k) if plan.load.closed_loop() => {
            format!("closed loop, {k} in flight")
        }
        _ => plan.load.arrival.describe(),
    };
    let ours = serde_json::to_value(r.report(r.status(), arrival, None))?;
    let mut full = summary_json::build(&info, &r.summary, &pct, None, ours.clone());
    summary_json::add_ramp(&mut full, plan.load.arrival);
    std::fs::write(out.summary_json(), serde_json::to_vec_pretty(&full)?)?;
    if a.save_result {
        let name = a.result_filename.clone().unwrap_or_else(|| {
            let rate = if info.request_rate.is_finite() {
                format!("{}", info.request_rate)
            } else {
                "inf".into()
            };
            let conc = a
                .max_concurrency
                .map(|c| format!("-concurrency{c}"))
                .unwrap_or_default();
            let base = model.rsplit('/').next().unwrap_or(model);
            format!("vllm-{rate}qps{conc}-{base}-{}.json", info.date)
        });
        std::fs::create_dir_all(&a.result_dir)?;
        let path = a.result_dir.join(name);
        // vLLM's per-request lists, ITLs included: per-token output that was asked for,
        // read back from the cell's raw records
        let full_records = if a.save_detailed {
            Some(store::records::read_full(out)?)
        } else {
            None
        };
        let mut v = summary_json::build(&info, &r.summary, &pct, full_records.as_deref(), ours);
        summary_json::add_ramp(&mut v, plan.load.arrival);
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!("saved vLLM-format result: {}", path.display());
    }
    Ok(())
}

/// The load of a `bench` in words, for its first line (and `bench --virtual`'s).
pub(super) struct LoadWords {
    /// What is sent: "500 requests", "requests" (a closed loop), conversations.
    pub what: String,
    /// How it arrives: the arrival process, or the closed loop.
    pub how: String,
    /// For how long: a duration, a trace, or the prompts.
    pub until: String,
    /// ", at most N in flight", or nothing.
    pub cap: String,
}

impl LoadWords {
    pub(super) fn of(a: &BenchArgs, plan: &Plan, scheduled: usize) -> LoadWords {
        let closed_loop = plan.load.closed_loop();
        LoadWords {
            what: match (closed_loop, plan.prompts.turns()) {
                (true, 1) => "requests".to_string(),
                (true, k) => format!("conversations of {k} turns"),
                (false, 1) => format!("{scheduled} requests"),
                (false, k) => format!("{scheduled} conversations of {k} turns"),
            },
            how: if closed_loop {
                "closed loop: the next as soon as one ends".to_string()
            } else {
                plan.load.arrival.describe()
            },
            until: match (a.duration, &plan.load.trace) {
                (Some(d), _) => format!("for {d} s"),
                (None, Some(t)) => format!("the trace `{}`", t.path.display()),
                (None, None) => format!("{} prompts", a.num_prompts),
            },
            cap: a
                .max_concurrency
                .map(|c| format!(", at most {c} in flight"))
                .unwrap_or_default(),
        }
    }
}
