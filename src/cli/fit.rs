//! `vllm-loadtest fit`: identify a simulator profile from a live server (`--base-url`), or
//! refit one from a fit folder a live fit wrote; write it as profile YAML that `sim
//! --profile`, `bench --sim` and experiments take.

use crate::client::{self, BaseUrl};
use crate::experiment::cell_plan::LoadPlan;
use crate::experiment::fields::{self, cli_number};
use crate::fit::probe::{self, HeldOutLoad, Prober};
use crate::fit::{self as fitting, LimitFlags, facts};
use crate::store::layout::{CellDir, FitDir};
use crate::workload::body::{self, BodyOptions, Endpoint};
use anyhow::{Context, Result, bail};
use clap::Args;
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::Arrival;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vllm_sim::Profile;
use vllm_sim::fit::Fit;
use vllm_sim::profile::OpenLoopSpeed;

const SERVER: &str = "Server and connection options";
const FIT: &str = "Fit options";

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Refit from this folder of a live fit's probes instead of probing a server.
    #[arg(value_name = "FIT_DIR", conflicts_with = "base_url")]
    pub dir: Option<PathBuf>,
    /// Calibrate `--profile`'s per-step and per-sequence costs on these measured cells (any open-loop cell folders: a `run`'s `cells/*`, a `bench` folder) instead of fitting: the simulator then reproduces the server as it ran in them (default: none; fit a live server or refit a folder).
    #[arg(long, value_name = "CELL_DIR", num_args = 1.., requires = "profile", conflicts_with_all = ["dir", "base_url"], help_heading = FIT)]
    pub calibrate_on: Vec<PathBuf>,
    /// Data-parallel engines the `--calibrate-on` cells were measured on (their load is replayed split among that many; the profile stays one engine's); with `--calibrate-on`.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024), requires = "calibrate_on", help_heading = FIT)]
    pub engines: u32,
    /// The profile `--calibrate-on` starts from: a fitted profile YAML, or a named one (with `--calibrate-on`, which requires it).
    #[arg(long, value_name = "FILE_OR_NAME", requires = "calibrate_on", help_heading = FIT)]
    pub profile: Option<String>,
    /// Server base URL, `http://HOST:PORT` or `https://HOST[:PORT]` (default: `http://127.0.0.1:8000`).
    #[arg(long, value_name = "URL", help_heading = SERVER)]
    pub base_url: Option<String>,
    /// API path: `/v1/completions` or `/v1/chat/completions`.
    #[arg(long, default_value = "/v1/completions", value_name = "PATH", help_heading = SERVER)]
    pub endpoint: String,
    /// Model name to request (default: the first id of `GET /v1/models`).
    #[arg(long, value_name = "NAME", help_heading = SERVER)]
    pub model: Option<String>,
    /// A `tokenizer.json`, or a folder holding one (default: the built-in approximation; the fit uses the server's own token counts either way).
    #[arg(long, value_name = "PATH", help_heading = SERVER)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub conn: super::bench_args::Connection,

    /// Where the profile YAML is written.
    #[arg(short, long, value_name = "FILE", help_heading = FIT)]
    pub output: PathBuf,
    /// The server's `--max-num-seqs` (vLLM does not expose it; default: the largest probe batch, up to 128, that decoded together when a larger one did not, else 256 assumed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = FIT)]
    pub max_num_seqs: Option<u32>,
    /// The server's `--max-num-batched-tokens` (not exposed; default: 2048 assumed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = FIT)]
    pub max_num_batched_tokens: Option<u32>,
    /// Times each probe is repeated (more: a noisier server fitted more surely).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20), help_heading = FIT)]
    pub repeats: u32,
    /// Folder for the probes' cells (default: `results/fit/<date>`); `fit FIT_DIR` refits from it.
    #[arg(long, value_name = "DIR", help_heading = FIT)]
    pub probes_dir: Option<PathBuf>,
    /// Calibrate the per-step and per-sequence costs on two open-loop loads of this many seconds each (Poisson at a quarter and at 55% of the burst-fitted capacity). Off by default: on the CPU vLLM the server's speed drifted between a fit and its validation by more than the calibration corrects (docs/simulator.md). A refit uses the folder's loads if it has them; 0 keeps the burst fit.
    #[arg(long, value_parser = cli_number(fields::SECS0), value_name = "SECS", help_heading = FIT)]
    pub load_seconds: Option<f64>,
    /// Seconds of an open-loop load (Poisson at 40% of the burst-fitted capacity, its `/metrics` scraped every second) on which the server's speed against the burst fit is measured (its engines' busy time over what the fitted step costs give for its work); every step cost is then scaled by it, so the profile predicts open-loop traffic at the speed the server runs it (default: 20). 0: keep the burst fit. Not with `--load-seconds` (which calibrates on loads of its own, or with 0 keeps the burst fit); a refit uses the folder's speed load if it has one.
    #[arg(long, value_parser = cli_number(fields::SECS0), value_name = "SECS", conflicts_with = "load_seconds", help_heading = FIT)]
    pub speed_seconds: Option<f64>,
    /// Seconds of the held-out load (Poisson at half the fitted capacity) whose prediction error the profile states; 0: none.
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 20.0, value_name = "SECS", help_heading = FIT)]
    pub held_out_seconds: f64,
    /// Send no `cache_salt` with the probes (a server that refuses the field; default: one salt for the fit's probes when the server answers `GET /version` as vLLM does, so no earlier fit's or run's cached prompts serve them).
    #[arg(long, help_heading = FIT)]
    pub no_cache_salt: bool,
    /// No progress lines.
    #[arg(long, help_heading = FIT)]
    pub quiet: bool,
}

/// The speed load's seconds when none are given.
const SPEED_SECONDS: f64 = 20.0;

impl FitArgs {
    /// The speed load's seconds: none with `--load-seconds` (its calibration, or with 0 the
    /// burst fit as it is), 0 for none.
    fn speed_seconds(&self) -> f64 {
        match self.load_seconds {
            Some(_) => 0.0,
            None => self.speed_seconds.unwrap_or(SPEED_SECONDS),
        }
    }

    fn flags(&self) -> LimitFlags {
        LimitFlags {
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
        }
    }
}

pub fn run(a: FitArgs) -> Result<()> {
    if a.output.is_dir() {
        bail!(
            "`-o {}` is a folder\nhint: give the profile's file name, e.g. `-o profile.yaml`",
            a.output.display()
        );
    }
    let started = std::time::Instant::now();
    let profile = match &a.dir {
        Some(d) => refit(&a, &FitDir::new(d))?,
        None if !a.calibrate_on.is_empty() => calibrate_on(&a)?,
        None => live(&a).map_err(|e| match e.downcast::<probe::Interrupted>() {
            Ok(i) => super::Ended::Interrupted(i.0).into(),
            Err(e) => e,
        })?,
    };
    write_profile(&a.output, &profile)?;
    let (secs, out) = (started.elapsed().as_secs_f64(), a.output.display());
    eprintln!(
        "fit: done in {secs:.0} s; profile written to `{out}`\nuse it: `vllm-loadtest sim --profile {out}`, `bench --sim {out}`, or `server: {{launcher: sim, profile: {out}}}` (`clock: virtual` to predict)"
    );
    Ok(())
}

/// `--profile` calibrated on `--calibrate-on`'s measured cells.
fn calibrate_on(a: &FitArgs) -> Result<Profile> {
    let name = a.profile.as_deref().unwrap_or("default");
    let mut profile = Profile::resolve(name).with_context(|| format!("`--profile {name}`"))?;
    profile
        .validate()
        .with_context(|| format!("`--profile {name}`"))?;
    let cells: Vec<CellDir> = a.calibrate_on.iter().map(CellDir::new).collect();
    for c in &cells {
        if !crate::store::records::exist(c) {
            bail!(
                "`{}` holds no request records\nhint: give cell folders: a `run`'s `cells/<cell>` or a `bench` `--output-dir`",
                c.root().display()
            );
        }
        // a calibration learns a server from what it did: a prediction did nothing
        if c.read_report().is_some_and(|r| r.predicted) {
            bail!(
                "`{}` is a prediction (virtual time), not a measurement: calibrating on it would fit the simulator to itself\nhint: give cells measured against the server the profile is for",
                c.root().display()
            );
        }
    }
    if profile.provenance.is_none() {
        profile.provenance = Some(Box::new(vllm_sim::profile::Provenance {
            source: format!("profile `{name}`, calibrated"),
            server_version: None,
            model: None,
            fitted_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
            tool: tool(),
            prefill_samples: 0,
            decode_samples: 0,
            std_errors: Default::default(),
            prefill_rel_rms: 0.0,
            decode_rel_rms: 0.0,
            limits: Default::default(),
            notes: vec![format!(
                "the step costs other than c0_s and c_dec_s are profile `{name}`'s, not fitted"
            )],
            open_loop: None,
            held_out: None,
            steadiness: None,
            open_loop_speed: None,
        }));
    }
    let o = fitting::calibrate_cells(&cells, &mut profile, a.engines as usize)?;
    if let Some(p) = profile.provenance.as_mut()
        && p.held_out.take().is_some()
    {
        // it measured the coefficients before, not these: the report would quote it
        p.notes.push(
            "the fit's held-out check was dropped: it judged the coefficients before calibration"
                .into(),
        );
    }
    print_open_loop(&profile, &o);
    Ok(profile)
}

/// Refit from a fit folder; its held-out load, if it has one, predicted again.
fn refit(a: &FitArgs, dir: &FitDir) -> Result<Profile> {
    let (mut profile, f) =
        fitting::fit_folder(dir, a.flags(), &dir.root().display().to_string(), &tool())?;
    print_fit(&profile, &f);
    let facts = fitting::read_facts(dir)?;
    let mut calibrated = false;
    if a.load_seconds != Some(0.0) {
        match fitting::calibrate_folder(dir, &mut profile, facts.engines.max(1))? {
            Some(o) => {
                print_open_loop(&profile, &o);
                calibrated = true;
            }
            None if a.load_seconds.is_some() => eprintln!(
                "note: `{}` has no open-loop loads (`load-0/`, …) to calibrate on: the profile is the burst fit\nhint: a live `fit --load-seconds 15` measures them",
                dir.root().display()
            ),
            None => {}
        }
    }
    // as live: the speed load where the calibration's loads are not used
    let speed = dir.speed_load();
    if !calibrated && a.speed_seconds() > 0.0 && crate::store::records::exist(&speed) {
        let n = crate::store::records::read_compact(&speed)?.len();
        let load = probe::load_plan(Arrival::AllAtOnce, n, None);
        let what = format!("the {n} requests of `{}`", speed.root().display());
        apply_open_loop_speed(dir, &mut profile, facts.engines.max(1), &load, what)?;
    }
    let held = dir.held_out();
    if crate::store::records::exist(&held) {
        let n = crate::store::records::read_compact(&held)?.len();
        let load = probe::load_plan(Arrival::AllAtOnce, n, None);
        let what = format!("the {n} requests of `{}`", held.root().display());
        let measured = loadtest_analysis::summary::summarize_records(
            &crate::store::records::read_full(&held)?,
            0,
            None,
            0.0,
            &[],
        );
        let predicted = fitting::predict_measured(
            &held,
            &profile,
            facts.engines.max(1),
            &load,
            &dir.held_out_predicted(),
            None,
        )?;
        let h = fitting::compare(what, &measured, &predicted.summary);
        print_held_out(&h);
        if let Some(p) = profile.provenance.as_mut() {
            p.held_out = Some(h);
        }
    }
    Ok(profile)
}

fn live(a: &FitArgs) -> Result<Profile> {
    let url = BaseUrl::parse(a.base_url.as_deref().unwrap_or("http://127.0.0.1:8000"))?;
    let endpoint = Endpoint::parse(&a.endpoint).with_context(|| {
        format!(
            "unsupported `--endpoint {}`\nhint: use `/v1/completions` or `/v1/chat/completions`",
            a.endpoint
        )
    })?;
    let dir = FitDir::new(a.probes_dir.clone().unwrap_or_else(|| {
        PathBuf::from("results/fit")
            .join(loadtest_base::time::compact(loadtest_base::time::unix_now()))
    }));
    if dir.root().join("prefill").exists() {
        bail!(
            "`{}` already holds a fit's probes\nhint: refit from them with `vllm-loadtest fit {0}`, or give another `--probes-dir`",
            dir.root().display()
        );
    }
    let interrupt = super::signals::interrupt_on_signals(super::signals::OnSignal::Live);
    let tok = Tokenizer::load(a.tokenizer.as_deref())?;
    let rt = super::client_runtime(1)?;
    rt.block_on(async {
        let access = client::Access::new(a.conn.tls_options(), &a.conn.header_spec())?;
        let server = access.reach(&url).await?;
        let model = match &a.model {
            Some(m) => m.clone(),
            None => client::get::first_model(&server).await.with_context(|| {
                format!("is the server running at `{url}`? start it first, or check `--base-url`")
            })?,
        };
        let facts = facts::read(&server, &model).await;
        fitting::one_engine(&facts)?;
        fitting::write_facts(&dir, &facts)?;
        eprintln!(
            "fit: {url}, model `{model}`{}; probes in `{}`",
            facts
                .version
                .as_ref()
                .map(|v| format!(", vLLM {v}"))
                .unwrap_or_default(),
            dir.root().display()
        );
        let plan = probe::plan(
            probe::Bounds {
                max_model_len: facts.max_model_len,
                budget: a.max_num_batched_tokens,
                max_num_seqs: a.max_num_seqs,
                kv_tokens: facts
                    .num_gpu_blocks
                    .zip(facts.block_size)
                    .map(|(n, b)| u64::from(n) * u64::from(b)),
            },
            a.repeats,
        )?;
        let body = BodyOptions {
            endpoint,
            model: model.clone(),
            ignore_eos: true,
            temperature: None,
            // each event's token count keeps the batch's token indices aligned
            continuous_usage: true,
            // a vLLM keeps what an earlier fit or run sent in its prefix cache, and these
            // probes' prompts are the same every fit: a salt of this fit's own keeps their
            // prefills computed, not found
            extra: probe_salt(facts.version.is_some(), a.no_cache_salt, dir.root()),
        };
        let prober = Prober {
            server: &server,
            body: &body,
            tok: &tok,
            connect_timeout: Duration::from_secs_f64(a.conn.connect_timeout),
            interrupt: interrupt.clone(),
            quiet: a.quiet,
        };
        prober.identify(&plan, &dir).await?;
        let (mut profile, f) = fitting::fit_folder(&dir, a.flags(), &url.to_string(), &tool())?;
        print_fit(&profile, &f);
        let engines = facts.engines.max(1);
        if let Some(secs) = a.load_seconds.filter(|&s| s > 0.0) {
            for (k, share) in OPEN_LOOP_SHARES.into_iter().enumerate() {
                let load = open_loop_load(&profile, &plan.open_loop, engines, share, secs);
                let what = format!("open-loop load {} of {}", k + 1, OPEN_LOOP_SHARES.len());
                prober
                    .open_loop(&what, &load, 11 + k as u64, &dir.load_probe(k), None)
                    .await?;
            }
            if let Some(o) = fitting::calibrate_folder(&dir, &mut profile, engines)? {
                print_open_loop(&profile, &o);
            }
        } else if a.speed_seconds() > 0.0 {
            let load = open_loop_load(&profile, &plan.open_loop, engines, 0.4, a.speed_seconds());
            let (_, lp, _) = prober
                .open_loop(
                    "speed load",
                    &load,
                    13,
                    &dir.speed_load(),
                    Some(fitting::SPEED_SCRAPE),
                )
                .await?;
            apply_open_loop_speed(&dir, &mut profile, engines, &lp, load.describe())?;
        }
        if a.held_out_seconds > 0.0 {
            let load = open_loop_load(&profile, &plan.held_out, engines, 0.5, a.held_out_seconds);
            let (_, lp, measured) = prober
                .open_loop("held-out load", &load, 7, &dir.held_out(), None)
                .await?;
            let predicted = fitting::predict_measured(
                &dir.held_out(),
                &profile,
                facts.engines.max(1),
                &lp,
                &dir.held_out_predicted(),
                None,
            )?;
            let h = fitting::compare(load.describe(), &measured.summary, &predicted.summary);
            print_held_out(&h);
            if let Some(p) = profile.provenance.as_mut() {
                p.held_out = Some(h);
            }
        }
        Ok(profile)
    })
}

/// The server's speed on the speed load (`dir.speed_load()`, measured with `lp`) against
/// `profile`'s step costs, from the load and its prediction with them; every step cost
/// scaled by it when it lies in `OpenLoopSpeed::APPLIED`, and the provenance told.
fn apply_open_loop_speed(
    dir: &FitDir,
    profile: &mut Profile,
    engines: usize,
    lp: &LoadPlan,
    load: String,
) -> Result<()> {
    fitting::predict_measured(
        &dir.speed_load(),
        profile,
        engines,
        lp,
        &dir.speed_load_predicted(),
        Some(fitting::SPEED_SCRAPE),
    )?;
    let measured = fitting::open_loop_speed(
        &dir.speed_load(),
        &dir.speed_load_predicted(),
        profile,
        engines,
    )?;
    let Some(speed) = measured else {
        eprintln!(
            "note: the server's speed on the speed load is not known (its `/metrics` lack vLLM's step, prompt or output counters, or no request finished): the profile is the burst fit"
        );
        return Ok(());
    };
    let applied = OpenLoopSpeed::APPLIED.contains(&speed);
    if applied {
        profile.scale_step_costs(speed);
        eprintln!(
            "fit: under an open-loop load ({load}) the server's steps took {speed:.2}× the burst fit's time for the same work: every step cost scaled by {speed:.2}"
        );
    } else {
        eprintln!(
            "warning: under an open-loop load ({load}) the server's steps took {speed:.2}× the burst fit's time for the same work, outside {:.1}–{:.1}: more likely a broken measurement than a server that different, so the profile is the burst fit
hint: fit again on a quiet server",
            OpenLoopSpeed::APPLIED.start(),
            OpenLoopSpeed::APPLIED.end()
        );
    }
    if let Some(p) = profile.provenance.as_mut() {
        p.open_loop_speed = Some(OpenLoopSpeed {
            load,
            speed,
            applied,
        });
    }
    Ok(())
}

/// The open-loop loads' rates, as shares of the burst-fitted capacity: a light one (few
/// sequences a step: mostly the per-step cost) and a busier one (the per-sequence cost),
/// both below where the burst fit's capacity could be too high (on the CPU vLLM it was
/// 15% high).
const OPEN_LOOP_SHARES: [f64; 2] = [0.25, 0.55];

/// `share` of `profile`'s capacity at `shape`'s lengths (below saturation, where a
/// prediction is judged on latency), for about `seconds`.
fn open_loop_load(
    profile: &Profile,
    shape: &HeldOutLoad,
    engines: usize,
    share: f64,
    seconds: f64,
) -> HeldOutLoad {
    let cap = profile.capacity(shape.input_len, shape.output_len) * engines as f64;
    let rate = (share * cap).clamp(0.1, 1000.0);
    HeldOutLoad {
        rate,
        requests: ((rate * seconds) as usize).clamp(20, 2000),
        ..shape.clone()
    }
}

fn tool() -> String {
    format!("vllm-loadtest {}", super::VERSION)
}

fn write_profile(path: &Path, profile: &Profile) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create `{}`", d.display()))?;
    }
    let head = "# A simulator profile fitted by `vllm-loadtest fit` (docs/simulator.md).\n# Step time = c0 + c_pf·prefill tokens + c_pf_attn·their attention pairs + c_dec·decoding sequences\n#   + c_kv·their context tokens.\n";
    std::fs::write(path, format!("{head}{}", serde_yaml::to_string(profile)?))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn print_fit(p: &Profile, f: &Fit) {
    let row = |name: &str, e: vllm_sim::fit::Estimate, unit: f64, u: &str| {
        eprintln!(
            "  {name:<22} {:>10.3} {u} ± {:.3}",
            e.value * unit,
            e.std_error * unit
        );
    };
    eprintln!(
        "fit: {} prefill and {} decode samples; residual {:.1}% (prefill), {:.1}% (decode)",
        f.samples.0,
        f.samples.1,
        f.prefill_rel_rms * 100.0,
        f.decode_rel_rms * 100.0
    );
    row("c0 (per step)", f.c0, 1e3, "ms");
    row("c_pf (per prompt token)", f.c_pf, 1e6, "µs");
    row("c_pf_attn (per pair)", f.c_pf_attn, 1e9, "ns");
    row("c_dec (per sequence)", f.c_dec, 1e6, "µs");
    row("c_kv (per context token)", f.c_kv, 1e9, "ns");
    row("front end", f.front_end, 1e3, "ms");
    if let Some(prov) = &p.provenance {
        for (k, v) in &prov.limits {
            eprintln!("  {k:<22} {v}");
        }
        for n in &prov.notes {
            eprintln!("  note: {n}");
        }
        if let Some(st) = prov.steadiness.filter(|st| st.unsteady()) {
            eprintln!(
                "warning: the server was not steady while probed: {}; the profile describes a server in motion\nhint: fit again once it holds its speed (the CPU vLLM of shared/tools/real-vllm sped up by ~20% over its first ten minutes of load)",
                st.describe()
            );
        }
    }
}

fn print_open_loop(p: &Profile, o: &vllm_sim::profile::OpenLoop) {
    eprintln!(
        "fit: calibrated to {} open-loop loads: c0 {:.3} → {:.3} ms, c_dec {:.1} → {:.1} µs",
        o.loads.len(),
        o.before_c0_s * 1e3,
        p.c0_s * 1e3,
        o.before_c_dec_s * 1e6,
        p.c_dec_s * 1e6
    );
    for h in &o.loads {
        print_load("calibrated on", h);
    }
}

/// The probes' extra body fields: one salt for the whole fit on a server that answered
/// `/version` as vLLM does, unless `--no-cache-salt`.
fn probe_salt(
    is_vllm: bool,
    no_cache_salt: bool,
    fit_dir: &std::path::Path,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    (is_vllm && !no_cache_salt).then(|| body::salted(body::cache_salt(fit_dir)))
}

fn print_held_out(h: &vllm_sim::profile::HeldOut) {
    print_load("held-out load", h);
    if let Some(w) = held_out_warning(h) {
        eprintln!("warning: {w}");
    }
}

/// The bar for a prediction below saturation: within 15% on TTFT and TPOT p50.
const HELD_OUT_BAR_PCT: f64 = 15.0;

/// What to say when the profile misses its own held-out load by more than the bar on a
/// latency: under an open-loop load the server ran otherwise than its probes showed (on
/// the CPU vLLM beside its client: 51–63% slower), and every prediction built on the
/// profile carries that.
fn held_out_warning(h: &vllm_sim::profile::HeldOut) -> Option<String> {
    let missed: Vec<String> = h
        .metrics
        .iter()
        .filter(|m| m.metric.contains("TTFT") || m.metric.contains("TPOT"))
        .filter(|m| m.error_pct.abs() > HELD_OUT_BAR_PCT)
        .map(|m| format!("{} by {:+.0}%", m.metric, m.error_pct))
        .collect();
    (!missed.is_empty()).then(|| {
        format!(
            "the profile misses its own held-out load ({}): {}. Under an open-loop load this server ran otherwise than its probes showed (its API server or other work sharing the engine's cores, a cache the probes did not fill); predictions with this profile carry that error\nhint: fit again on a quiet machine, or calibrate the step costs on open-loop loads (`--load-seconds 20`, or `--calibrate-on` measured cells) and judge the result on a run it was not fitted to",
            h.load,
            missed.join(", ")
        )
    })
}

/// A load's metrics, measured beside predicted (`what`: which load it is).
fn print_load(what: &str, h: &vllm_sim::profile::HeldOut) {
    eprintln!("{what} ({}): measured vs predicted", h.load);
    for m in &h.metrics {
        eprintln!(
            "  {:<28} {:>10.2} {:>10.2} {:>+7.1}%",
            m.metric, m.measured, m.predicted, m.error_pct
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{held_out_warning, probe_salt};
    use vllm_sim::profile::{HeldOut, HeldOutMetric};

    fn held(ttft: f64, tpot: f64, throughput: f64) -> HeldOut {
        let m = |metric: &str, error_pct: f64| HeldOutMetric {
            metric: metric.into(),
            measured: 100.0,
            predicted: 100.0 + error_pct,
            error_pct,
        };
        HeldOut {
            load: "Poisson 7.21 req/s".into(),
            metrics: vec![
                m("request throughput (req/s)", throughput),
                m("TTFT p50 (ms)", ttft),
                m("TPOT p50 (ms)", tpot),
            ],
        }
    }

    #[test]
    fn probes_are_salted_on_a_vllm_unless_told_not_to() {
        let dir = std::path::Path::new("/tmp/fit");
        let salt = probe_salt(true, false, dir).expect("a salt on a vLLM");
        let value = salt["cache_salt"].as_str().unwrap();
        assert!(value.starts_with("vllm-loadtest-") && value.len() <= 128);
        // another fit, even of the same folder, does not share it
        assert_ne!(probe_salt(true, false, dir), Some(salt));
        assert!(probe_salt(true, true, dir).is_none());
        assert!(probe_salt(false, false, dir).is_none());
    }

    #[test]
    fn a_held_out_latency_missed_by_more_than_15_percent_is_warned_about() {
        // the real CPU vLLM's fit of 2026-12-02
        let w = held_out_warning(&held(-51.7, -62.8, 0.3)).expect("a warning");
        assert!(
            w.contains("TTFT p50 (ms) by -52%") && w.contains("TPOT p50 (ms) by -63%"),
            "{w}"
        );
        assert!(w.contains("hint:"), "{w}");
        // within the bar, or only throughput off: nothing to say
        assert!(held_out_warning(&held(-14.9, 12.0, 40.0)).is_none());
        assert!(held_out_warning(&held(15.1, 0.0, 0.0)).is_some());
    }
}
