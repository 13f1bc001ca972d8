//! `bench --sim PROFILE --virtual`: one load point predicted in the simulator's virtual time
//! (`runner::virtual_cell`) instead of sent: the same schedule, prompts, records, summary and
//! table as `bench --sim PROFILE`, marked predicted in the table's title, the summary and the
//! folder's name, in a fraction of the time. What needs a live client is refused, not
//! approximated.

use super::bench::{self, Plan};
use super::bench_args::BenchArgs;
use crate::runner::virtual_cell::{self, PrefixHashes, VirtualServer};
use crate::store::layout::CellDir;
use crate::workload::Workload;
use anyhow::{Context, Result, bail};
use loadtest_base::Tokenizer;

/// Refuse what virtual time cannot serve, before any prompt is built.
pub(super) fn check(a: &BenchArgs) -> Result<()> {
    if !a.virtual_time {
        return Ok(());
    }
    // a typo in the profile fails now, not after the prompts are built
    profile(a)?;
    let (why, hint) = if a.search.is_some() {
        (
            "`--search` in virtual time is an experiment's".to_string(),
            "write the search as an experiment file (`search:`, `server: {launcher: sim, clock: virtual}`) and `vllm-loadtest run` it",
        )
    } else if a.save_result {
        (
            "`--save-result` writes vLLM's result format, which has no place to say `predicted`"
                .to_string(),
            "drop `--save-result`: the cell's `summary.json` holds the same figures, marked predicted",
        )
    } else if a.start_at.is_some() {
        (
            "`--start-at` starts sending at a wall-clock instant, and in virtual time nothing is sent".to_string(),
            "drop `--start-at`: a prediction has no wall-clock start",
        )
    } else {
        return Ok(());
    };
    bail!("{why}\nhint: {hint}")
}

/// `--sim`'s profile, resolved and checked.
fn profile(a: &BenchArgs) -> Result<vllm_sim::Profile> {
    let name = a.sim.as_deref().unwrap_or("default");
    let profile = vllm_sim::Profile::resolve(name).with_context(|| format!("`--sim {name}`"))?;
    profile
        .validate()
        .with_context(|| format!("`--sim {name}`"))?;
    Ok(profile)
}

/// Predict the load point and store it as `bench` stores a measured one. A signal stops
/// the prediction and stores nothing of it (a prediction is repeated in seconds; half of
/// one would read as a load point that ended early).
pub(super) fn run(
    a: &BenchArgs,
    plan: &Plan,
    tok: &Tokenizer,
    workload: &Workload,
    interrupt: &tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let name = a.sim.as_deref().unwrap_or("default");
    let server = VirtualServer {
        profile: profile(a)?,
        dp: a.sim_dp,
        seed: plan.load.seed,
        api_servers: None,
    };
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| vllm_sim::DEFAULT_MODEL.into());
    let body = bench::body_options(a, plan, &model);
    let schedule = plan.load.schedule(a.repeat)?;
    let rate = plan.load.arrival.rate();
    let cell = bench::cell_spec(a, plan, &[], workload, &body, schedule, tok);
    // refused before the folder is touched: a refusal must not wipe an earlier cell
    virtual_cell::check_span(&cell)?;
    let out_dir = a.output_dir.clone().unwrap_or_else(|| {
        let mut d = bench::default_output(rate, plan.load.shard).into_os_string();
        d.push("-predicted");
        d.into()
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let out = CellDir::new(out_dir);
    let _claim = bench::claim(&out)?;
    out.clear()?;
    let by = format!(
        "the simulator in virtual time, profile `{name}`, {} engine(s)",
        a.sim_dp
    );
    let load = bench::LoadWords::of(a, plan, cell.schedule.len());
    eprintln!(
        "bench: {} predicted by {by} ({}), model `{model}`, {}{}; results in `{}`",
        load.what,
        load.how,
        load.until,
        load.cap,
        out.root().display()
    );
    let hashes = PrefixHashes::default().for_server("bench", &workload.prompts, &server, tok);
    let r = match virtual_cell::run(&cell, &server, hashes.as_deref(), &out, &|| {
        *interrupt.borrow()
    }) {
        Err(e) if e.is::<virtual_cell::Stopped>() => {
            out.clear()?;
            return Err(super::Ended::Interrupted(format!(
                "interrupted: the prediction was stopped; nothing of it was kept in `{}`",
                out.root().display()
            ))
            .into());
        }
        r => r?,
    };
    bench::print_table(plan, &r, Some(&by))?;
    bench::write_summary(a, plan, &r, &out, &model, tok)?;
    eprintln!("results: {}", out.root().display());
    bench::how_it_ended(&r, &out)
}
