//! `vllm-loadtest bench`: validate the flags, build the workload, run one load point,
//! and write and print the results.

use super::bench_args::{ArrivalKind, BenchArgs, DatasetName};
use crate::client::{self, BaseUrl, Pool, RequestSpec, Timeouts};
use crate::record::RequestRecord;
use crate::runner::arrivals::{self, Arrival, Stop};
use crate::runner::load_point::{self, LoadPoint};
use crate::runner::usage::ProcessUsage;
use crate::store::{self, jsonl::JsonlWriter, summary_json};
use crate::summary::{self, Window, goodput::Slo};
use crate::workload::body::{self, BodyOptions, Endpoint};
use crate::workload::{Tokenizer, Workload, files, random};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags checked and turned into typed values, before anything is sent.
struct Plan {
    endpoint: Endpoint,
    arrival: Arrival,
    stop: Stop,
    slos: Vec<Slo>,
    metrics: Vec<String>,
    percentiles: Vec<f64>,
    window: Option<(f64, f64)>,
    ignore_eos: bool,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

fn plan(a: &BenchArgs) -> Result<Plan> {
    let endpoint = Endpoint::parse(&a.endpoint).with_context(|| {
        format!(
            "unsupported `--endpoint {}`\nhint: use `/v1/completions` or `/v1/chat/completions`",
            a.endpoint
        )
    })?;
    let rate: f64 = match a.request_rate.as_str() {
        "inf" | "Inf" | "infinity" => f64::INFINITY,
        s => s.parse().ok().filter(|r: &f64| *r > 0.0).with_context(|| {
            format!("`--request-rate {s}` is not a positive number\nhint: e.g. `--request-rate 10`, or `inf` to send everything at once")
        })?,
    };
    if !(a.burstiness > 0.0 && a.burstiness.is_finite()) {
        bail!(
            "`--burstiness {}` must be a positive number\nhint: 1 is Poisson",
            a.burstiness
        );
    }
    let arrival = if rate.is_infinite() {
        Arrival::AllAtOnce
    } else {
        match a.arrival {
            ArrivalKind::Constant => Arrival::Constant { rate },
            ArrivalKind::Gamma if a.burstiness == 1.0 => Arrival::Poisson { rate },
            ArrivalKind::Gamma => Arrival::Gamma {
                rate,
                burstiness: a.burstiness,
            },
        }
    };
    if a.num_prompts == 0 {
        bail!("`--num-prompts 0`: nothing to send\nhint: give at least 1");
    }
    let stop = match a.duration {
        Some(d) if d.is_nan() || d <= 0.0 => bail!("`--duration {d}` must be positive"),
        Some(_) if rate.is_infinite() => bail!(
            "`--duration` needs a finite `--request-rate`\nhint: with `inf` every request goes at t = 0; use `--num-prompts` instead"
        ),
        Some(d) => Stop::Duration(d),
        None => Stop::Count(a.num_prompts),
    };
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
    let slos = a
        .goodput
        .iter()
        .map(|s| Slo::parse(s))
        .collect::<Result<Vec<_>>>()?;
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
    let percentiles = a
        .metric_percentiles
        .split(',')
        .map(|s| match s.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => bail!("`--metric-percentiles`: `{s}` is not a percentile in [0, 100]"),
        })
        .collect::<Result<Vec<_>>>()?;
    let ignore_eos = if a.no_ignore_eos {
        false
    } else {
        a.ignore_eos || a.dataset_name == DatasetName::Random
    };
    let extra = match &a.extra_body {
        None => None,
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => bail!(
                "`--extra-body` must be a JSON object\nhint: e.g. --extra-body '{{\"top_p\": 0.9}}'"
            ),
        },
    };
    if a.client_threads == 0 {
        bail!("`--client-threads 0`: need at least one thread");
    }
    if a.max_concurrency == Some(0) {
        bail!("`--max-concurrency 0` would never send anything");
    }
    Ok(Plan {
        endpoint,
        arrival,
        stop,
        slos,
        metrics,
        percentiles,
        window,
        ignore_eos,
        extra,
    })
}

fn load_workload(a: &BenchArgs, tok: &Tokenizer) -> Result<Workload> {
    let need_path = || {
        a.dataset_path.clone().with_context(|| {
            format!(
                "`--dataset-name {:?}` needs `--dataset-path FILE`",
                a.dataset_name
            )
            .to_lowercase()
        })
    };
    match a.dataset_name {
        DatasetName::Random => random::generate(
            &random::RandomSpec {
                num_prompts: a.num_prompts,
                input_len: a.random_input_len,
                output_len: a.random_output_len,
                range_ratio: a.random_range_ratio,
                prefix_len: a.random_prefix_len,
                seed: a.seed,
            },
            tok,
        ),
        DatasetName::Sharegpt => files::sharegpt(
            &need_path()?,
            a.num_prompts,
            a.sharegpt_output_len,
            a.seed,
            tok,
        ),
        DatasetName::Jsonl => files::jsonl(&need_path()?, a.num_prompts, a.random_output_len, tok),
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    let plan = plan(&a)?;
    let tok = Tokenizer::load(a.tokenizer.as_deref())?;
    if tok.is_built_in() {
        eprintln!("{}", crate::workload::tokenizer::BUILT_IN_WARNING);
    }
    let workload = load_workload(&a, &tok)?;
    for n in &workload.notes {
        eprintln!("note: {n}");
    }
    let rt = if a.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.client_threads)
            .enable_all()
            .build()?
    };
    let sim = match &a.sim {
        Some(profile) => Some(crate::sim::background::start(
            profile,
            a.sim_dp,
            tok_for_sim(&a)?,
        )?),
        None => None,
    };
    let base_url = match &sim {
        Some(s) => BaseUrl::parse(&format!("http://{}", s.addr()))?,
        None => BaseUrl::parse(&a.base_url)?,
    };
    let result = rt.block_on(run_async(&a, &plan, &tok, workload, &base_url));
    drop(sim);
    result
}

fn tok_for_sim(a: &BenchArgs) -> Result<Option<PathBuf>> {
    Ok(a.tokenizer.clone())
}

async fn run_async(
    a: &BenchArgs,
    plan: &Plan,
    tok: &Tokenizer,
    workload: Workload,
    url: &BaseUrl,
) -> Result<()> {
    let addr = url.resolve().await?;
    let model = match &a.model {
        Some(m) => m.clone(),
        None => client::get::first_model(addr, &url.authority, &url.prefix).await.map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\nhint: is the server running at `{url}`? start it first, check `--base-url`, or try `--sim` for the built-in simulated vLLM"
            )
        })?,
    };
    let api_key = std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty());
    let opts = BodyOptions {
        endpoint: plan.endpoint,
        model: model.clone(),
        ignore_eos: plan.ignore_eos,
        temperature: a.temperature,
        extra: plan.extra.clone(),
    };
    let path = url.path(plan.endpoint.path());
    let specs: Arc<[RequestSpec]> = workload
        .prompts
        .iter()
        .map(|p| RequestSpec {
            bytes: body::http_request(
                &url.authority,
                &path,
                api_key.as_deref(),
                &body::json_body(p, &opts),
            )
            .into(),
            input_tokens: p.input_tokens,
            max_tokens: p.output_tokens,
            expect_max_tokens: plan.ignore_eos,
        })
        .collect();
    let schedule: Arc<[u64]> = arrivals::schedule(plan.arrival, plan.stop, a.seed).into();
    let rate = plan.arrival.rate();
    let out_dir = a.output_dir.clone().unwrap_or_else(|| {
        let r = if rate.is_finite() {
            format!("{rate}")
        } else {
            "inf".into()
        };
        PathBuf::from("results/bench").join(format!(
            "{}-rate{r}",
            store::time::compact(store::time::unix_now())
        ))
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let writer = JsonlWriter::create(&out_dir.join("requests.jsonl"))?;
    let cap = a
        .max_concurrency
        .unwrap_or(schedule.len())
        .min(schedule.len())
        .max(1);
    let pool = Arc::new(Pool::new(addr, cap));
    eprintln!(
        "bench: {} requests to {url}{} ({}), model `{model}`, {}{}; results in `{}`",
        schedule.len(),
        plan.endpoint.path(),
        plan.arrival.describe(),
        match a.duration {
            Some(d) => format!("for {d} s"),
            None => format!("{} prompts", a.num_prompts),
        },
        a.max_concurrency
            .map(|c| format!(", at most {c} in flight"))
            .unwrap_or_default(),
        out_dir.display()
    );
    let (int_tx, int_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted: cancelling in-flight requests and writing partial results (Ctrl-C again to abort)"
            );
            let _ = int_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let lp = LoadPoint {
        pool,
        specs,
        schedule: schedule.clone(),
        max_concurrency: a.max_concurrency,
        timeouts: Timeouts {
            connect: Duration::from_secs_f64(a.connect_timeout),
            request: Duration::from_secs_f64(a.request_timeout),
        },
        drain: a.duration.map(|_| Duration::from_secs_f64(a.drain_timeout)),
        quiet: a.quiet,
    };
    let usage_before = ProcessUsage::now();
    let outcome = load_point::run(lp, writer.sender(), int_rx).await;
    let wall_s = outcome.clock.now_ns() as f64 / 1e9;
    let usage = ProcessUsage::now().since(&usage_before);
    let records = writer.finish()?;
    let window = plan.window.map(|(s, e)| Window {
        start_ns: (s * 1e9) as u64,
        end_ns: (e * 1e9) as u64,
    });
    let s = summary::summarize(&records, outcome.not_sent, window, rate, &plan.slos);
    summary::check_accounting(&s).map_err(anyhow::Error::msg)?;
    let mut warnings = validity_warnings(&s, &records, tok, outcome.interrupted);
    // One client core fully busy means the client, not the server, may have set the pace.
    let cpu_share = usage.cpu_s() / wall_s.max(1e-9) / a.client_threads as f64;
    if cpu_share > 0.9 {
        warnings.push(format!(
            "the client used {:.0}% of its {} core(s): it may be the bottleneck (add `--client-threads`)",
            cpu_share * 100.0,
            a.client_threads
        ));
    }
    let client = serde_json::json!({
        "wall_s": wall_s,
        "cpu_s": usage.cpu_s(),
        "user_cpu_s": usage.user_cpu_s,
        "system_cpu_s": usage.system_cpu_s,
        "cpu_share_of_threads": cpu_share,
        "max_rss_bytes": usage.max_rss_bytes,
        "threads": a.client_threads,
    });
    let mut stdout = std::io::stdout().lock();
    crate::report::table::render(
        &mut stdout,
        &s,
        &crate::report::table::TableSpec {
            metrics: &plan.metrics,
            percentiles: &plan.percentiles,
            configured_rate: rate,
            warnings: &warnings,
        },
    )?;
    drop(stdout);
    write_results(
        a,
        plan,
        &s,
        &records,
        &out_dir,
        &model,
        tok,
        outcome.interrupted,
        &warnings,
        client,
    )?;
    eprintln!("results: {}", out_dir.display());
    if outcome.interrupted {
        bail!(
            "interrupted: partial results written to `{}`",
            out_dir.display()
        );
    }
    Ok(())
}

/// Reasons a figure of this run should not be trusted as it stands.
fn validity_warnings(
    s: &summary::RunSummary,
    records: &[RequestRecord],
    tok: &Tokenizer,
    interrupted: bool,
) -> Vec<String> {
    let mut w = Vec::new();
    if interrupted {
        w.push("interrupted: the figures cover only what ran before Ctrl-C".into());
    }
    if s.sent > 0 && s.failed > 0 {
        w.push(format!(
            "{} of {} requests failed ({:.1}%): latency figures cover successful requests only",
            s.failed,
            s.sent,
            100.0 * s.failed as f64 / s.sent as f64
        ));
    }
    if let Some(q) = &s.latencies.queue_delay_ms
        && s.offered_rate.is_finite()
        && q.p99 > 10.0
    {
        w.push(format!(
            "send lag p99 is {:.1} ms: the client (or the concurrency cap) did not keep the schedule; see TTFT from intended",
            q.p99
        ));
    }
    if s.ok > 0 && s.usage_coverage < 1.0 {
        w.push(format!(
            "the server reported `usage` for only {:.0}% of requests; output tokens elsewhere counted as content events",
            s.usage_coverage * 100.0
        ));
    }
    let mismatched = records
        .iter()
        .filter(|r| r.server_prompt_tokens.is_some_and(|p| p != r.input_tokens))
        .count();
    if mismatched > 0 && !tok.is_built_in() {
        w.push(format!(
            "{mismatched} requests: the server counted a different prompt length than our tokenizer (chat template or a different tokenizer?)"
        ));
    }
    w
}

#[allow(clippy::too_many_arguments)]
fn write_results(
    a: &BenchArgs,
    plan: &Plan,
    s: &summary::RunSummary,
    records: &[RequestRecord],
    out_dir: &std::path::Path,
    model: &str,
    tok: &Tokenizer,
    interrupted: bool,
    warnings: &[String],
    client: serde_json::Value,
) -> Result<()> {
    store::parquet::write(
        &out_dir.join("requests.parquet"),
        &store::requests_table::requests(records, s.window),
    )?;
    store::parquet::write(
        &out_dir.join("events.parquet"),
        &store::requests_table::events(records),
    )?;
    let now = store::time::unix_now();
    let info = summary_json::RunInfo {
        date: store::time::compact(now),
        backend: "vllm".into(),
        label: a.label.clone(),
        model_id: model.to_string(),
        tokenizer_id: tok.describe(),
        num_prompts: a.num_prompts,
        request_rate: plan.arrival.rate(),
        burstiness: a.burstiness,
        max_concurrency: a.max_concurrency,
        interrupted,
    };
    let pct = summary_json::PercentileSpec {
        metrics: plan.metrics.clone(),
        percentiles: plan.percentiles.clone(),
    };
    let ours = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "status": if interrupted { "interrupted" } else { "complete" },
        "finished_at": store::time::rfc3339(now),
        "arrival": plan.arrival.describe(),
        "summary": s,
        "client": client,
        "warnings": warnings,
    });
    let full = summary_json::build(&info, s, &pct, records, false, ours.clone());
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_vec_pretty(&full)?,
    )?;
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
        let v = summary_json::build(&info, s, &pct, records, a.save_detailed, ours);
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!("saved vLLM-format result: {}", path.display());
    }
    Ok(())
}
