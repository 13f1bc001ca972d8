//! The results folder: the one place a result file's name is spelled. A run writes
//!
//! ```text
//! results/<experiment>/<timestamp>/      RunDir
//!   experiment.yaml  manifest.json  .lock  search.json (a `search:` run's probes, in order)
//!   ray-driver.py (a run whose cells Ray shards send)
//!   runs.parquet  timeseries.parquet  analysis.json  report.md  report.html  figs/
//!   servers/<group>/server.log
//!   predicted/<experiment>/<timestamp>/  a RunDir: the run's cells predicted by
//!     `report DIR --profile P` (virtual time), judged in this run's report
//!   cells/<cell id>/                     CellDir (also what `bench` writes)
//!     requests.jsonl  requests.parquet  events.parquet  summary.json  status.json
//!     server_metrics.parquet  gpu.parquet  server.log
//!     .lock (a `bench` cell: held by the bench writing it)
//!     shard.json (a `bench --shard` cell: which shard, its start and clock; `merge` reads it)
//!     ray/ (a cell sent by Ray shards: the driver's shards/, logs/, driver.json)
//! ```
//!
//! `requests.jsonl` is the journal of a running cell: once the cell's Parquet files hold
//! its records it is removed (`store::records` reads either). Everything else asks these
//! types for a path; reading and writing the small JSON files (manifest, status) and the
//! metric rows is here too, so their formats have one home.

use super::manifest::Manifest;
use anyhow::{Context, Result};
use loadtest_analysis::server_metrics::MetricRow;
use std::path::{Path, PathBuf};

/// One `run`'s folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The experiment as run (overrides applied, secrets redacted): what `--resume`,
    /// `aggregate` and `report` plan from.
    pub fn experiment(&self) -> PathBuf {
        self.root.join("experiment.yaml")
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    /// Held by the process running the folder.
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub fn cells(&self) -> PathBuf {
        self.root.join("cells")
    }

    pub fn cell(&self, id: &str) -> CellDir {
        CellDir::new(self.cells().join(id))
    }

    /// The log of a server configuration's launched process (its folder created).
    pub fn server_log(&self, group: &str) -> Result<PathBuf> {
        let dir = self.root.join("servers").join(group);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        Ok(dir.join("server.log"))
    }

    pub fn runs_parquet(&self) -> PathBuf {
        self.root.join("runs.parquet")
    }

    pub fn timeseries_parquet(&self) -> PathBuf {
        self.root.join("timeseries.parquet")
    }

    /// The Ray driver a run with `client.engine: ray` runs (written from the binary).
    pub fn ray_driver(&self) -> PathBuf {
        self.root.join("ray-driver.py")
    }

    pub fn analysis_json(&self) -> PathBuf {
        self.root.join("analysis.json")
    }

    pub fn report_md(&self) -> PathBuf {
        self.root.join("report.md")
    }

    pub fn report_html(&self) -> PathBuf {
        self.root.join("report.html")
    }

    /// Where `report --profile` runs its predictions of this run's cells (each a `RunDir`
    /// made by `run`, under its experiment's name and a timestamp).
    pub fn predictions(&self) -> PathBuf {
        self.root.join("predicted")
    }

    /// The charts, `<stem>.svg` and `<stem>.png`.
    pub fn figures(&self) -> PathBuf {
        self.root.join("figs")
    }

    /// A `search:` run's probes in the order they were made: what replays its cells.
    pub fn search_json(&self) -> PathBuf {
        self.root.join("search.json")
    }

    /// The recorded probes (none when the run has no search, or none ran yet).
    pub fn read_search(&self) -> Result<Vec<SearchProbe>> {
        match std::fs::read(self.search_json()) {
            Ok(bytes) => serde_json::from_slice::<SearchFile>(&bytes)
                .map(|f| f.probes)
                .with_context(|| {
                    format!("`{}` is not a probe record", self.search_json().display())
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read `{}`", self.search_json().display()))
            }
        }
    }

    /// Record one more probe, before its cell runs (whole file, renamed into place).
    pub fn record_probe(&self, probe: SearchProbe) -> Result<()> {
        let mut probes = self.read_search()?;
        probes.push(probe);
        let path = self.search_json();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&SearchFile { probes })?)
            .with_context(|| format!("cannot write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The manifest, `None` when it is missing or damaged (`load_manifest` says which).
    pub fn read_manifest(&self) -> Option<Manifest> {
        self.load_manifest().ok()
    }

    /// The manifest, or why there is none: no file (not a run's folder) or one that does
    /// not parse (damaged, or of another tool), with where.
    pub fn load_manifest(&self) -> Result<Manifest> {
        let path = self.manifest();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "`{}` has no manifest.json: not a results folder of `vllm-loadtest run`",
                self.root.display()
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not a manifest this tool wrote: {e}\nhint: restore it from a copy, or run the experiment again",
                path.display()
            )
        })
    }

    /// Written whole and renamed into place: a crash leaves the old one or the new one.
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.manifest();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(m)?)
            .with_context(|| format!("cannot write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// One probe of a search: which search, its cell, its rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchProbe {
    pub search: String,
    pub cell: String,
    pub rate: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SearchFile {
    probes: Vec<SearchProbe>,
}

/// One cell's folder (a `run` cell, or what `bench` writes).
#[derive(Debug, Clone)]
pub struct CellDir {
    root: PathBuf,
}

impl CellDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CellDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every request's raw record, appended as it ends (crash-safe); removed once
    /// `requests.parquet` and `events.parquet` hold them.
    pub fn requests_jsonl(&self) -> PathBuf {
        self.root.join("requests.jsonl")
    }

    pub fn requests_parquet(&self) -> PathBuf {
        self.root.join("requests.parquet")
    }

    pub fn events_parquet(&self) -> PathBuf {
        self.root.join("events.parquet")
    }

    pub fn summary_json(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    /// Held by the `bench` writing the folder (a `run`'s cells are held by its `RunDir`).
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// A cell sent by Ray shards (`run` with `client.engine: ray`): the driver's folder,
    /// its shards' cell folders and logs under it.
    pub fn ray(&self) -> PathBuf {
        self.root.join("ray")
    }

    /// The cell the Ray driver merged, before its files move up into this cell.
    pub fn ray_merged(&self) -> CellDir {
        CellDir::new(self.ray().join("merged"))
    }

    /// A shard's own record (`bench --shard`, read by `merge`): absent in other cells.
    pub fn shard_json(&self) -> PathBuf {
        self.root.join("shard.json")
    }

    pub fn status_json(&self) -> PathBuf {
        self.root.join("status.json")
    }

    pub fn server_metrics_parquet(&self) -> PathBuf {
        self.root.join("server_metrics.parquet")
    }

    /// The scraped rows as JSON lines, as cells written before `server_metrics.parquet`
    /// kept every label as a column had them (read, never written).
    fn legacy_server_metrics_jsonl(&self) -> PathBuf {
        self.root.join("server_metrics.jsonl")
    }

    pub fn gpu_parquet(&self) -> PathBuf {
        self.root.join("gpu.parquet")
    }

    /// The slice of the server's log written during the cell.
    pub fn server_log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Remove what an earlier cell left in this folder (its records, figures, shard record,
    /// status, metrics, log; not the lock): a `bench` given a used `--output-dir` then holds
    /// only its own cell, and `merge` cannot take an old `shard.json` for this one's.
    pub fn clear(&self) -> Result<()> {
        for f in [
            self.requests_jsonl(),
            self.requests_parquet(),
            self.events_parquet(),
            self.summary_json(),
            self.shard_json(),
            self.status_json(),
            self.server_metrics_parquet(),
            self.legacy_server_metrics_jsonl(),
            self.gpu_parquet(),
            self.server_log(),
        ] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove `{}`", f.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `complete`, `interrupted`, `failed`, `no_completions`; `None`: never ran, or
    /// crashed mid-cell.
    pub fn read_status(&self) -> Option<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.status_json()).ok()?).ok()?;
        v["status"].as_str().map(str::to_owned)
    }

    /// Written last, after every other file of the cell: a status means the cell is whole.
    pub fn write_status(&self, status: &str) -> Result<()> {
        std::fs::write(
            self.status_json(),
            serde_json::to_vec_pretty(&serde_json::json!({ "status": status }))?,
        )?;
        Ok(())
    }

    /// `server_metrics.parquet`; `clock_zero_unix_ns` places the rows on the wall clock.
    pub fn write_metrics(&self, rows: &[MetricRow], clock_zero_unix_ns: i64) -> Result<()> {
        super::parquet::write(
            &self.server_metrics_parquet(),
            &super::metrics_table::table(rows, clock_zero_unix_ns),
        )
    }

    /// The scraped metric rows; none when the cell had no monitor (or the file is gone or
    /// unreadable: the analysis then goes without the server's view).
    pub fn read_metrics(&self) -> Vec<MetricRow> {
        let legacy = self.legacy_server_metrics_jsonl();
        if legacy.exists() {
            return std::fs::read_to_string(legacy)
                .map(|t| {
                    t.lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default();
        }
        let path = self.server_metrics_parquet();
        if !path.exists() {
            return Vec::new();
        }
        super::metrics_table::read(&path).unwrap_or_else(|e| {
            eprintln!("warning: {e:#}: the server's metrics of this cell are left out");
            Vec::new()
        })
    }
}

/// The folder of a `fit` against a live server: one cell per probe, and what the server
/// said about itself. `fit DIR` refits from it without the server.
#[derive(Debug, Clone)]
pub struct FitDir {
    root: PathBuf,
}

impl FitDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FitDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's facts (version, model, limits) read before the probes.
    pub fn server_json(&self) -> PathBuf {
        self.root.join("server.json")
    }

    /// Requests that warm the server up before the probes (not fitted).
    pub fn warmup(&self) -> CellDir {
        CellDir::new(self.root.join("warmup"))
    }

    /// The prefill probe: single requests, one at a time, over a range of prompt lengths.
    pub fn prefill(&self) -> CellDir {
        CellDir::new(self.root.join("prefill"))
    }

    /// Repeat `repeat` of the decode probe's batch of `batch` requests of `prompt` tokens
    /// sent together.
    pub fn decode(&self, prompt: u32, batch: u32, repeat: u32) -> CellDir {
        CellDir::new(
            self.root
                .join(format!("decode-p{prompt}-b{batch}-r{repeat}")),
        )
    }

    /// Open-loop load `k` (Poisson) the burst-fitted profile is calibrated on
    /// (`vllm_sim::calibrate`).
    pub fn load_probe(&self, k: usize) -> CellDir {
        CellDir::new(self.root.join(format!("load-{k}")))
    }

    /// The open-loop loads measured so far, in order (`load-0`, `load-1`, …).
    pub fn load_probes(&self) -> Vec<CellDir> {
        (0..)
            .map(|k| self.load_probe(k))
            .take_while(|c| c.root().is_dir())
            .collect()
    }

    /// The open-loop load the server's speed against the burst fit is measured on, and its
    /// prediction with the burst fit (`fit --speed-seconds`).
    pub fn speed_load(&self) -> CellDir {
        CellDir::new(self.root.join("speed-load"))
    }

    pub fn speed_load_predicted(&self) -> CellDir {
        CellDir::new(self.root.join("speed-load-predicted"))
    }

    /// The held-out load, measured on the server (open loop, Poisson).
    pub fn held_out(&self) -> CellDir {
        CellDir::new(self.root.join("held-out"))
    }

    /// The fitted profile's prediction of the held-out load (virtual time).
    pub fn held_out_predicted(&self) -> CellDir {
        CellDir::new(self.root.join("held-out-predicted"))
    }

    /// Every decode cell present, by prompt, batch and repeat.
    pub fn decode_cells(&self) -> Result<Vec<DecodeCell>> {
        let mut cells = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot read `{}`", self.root.display()))?;
        for e in entries {
            let name = e?.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("decode-p")) else {
                continue;
            };
            let Some((p, rest)) = rest.split_once("-b") else {
                continue;
            };
            let Some((b, r)) = rest.split_once("-r") else {
                continue;
            };
            if let (Ok(prompt), Ok(batch), Ok(repeat)) = (p.parse(), b.parse(), r.parse()) {
                cells.push(DecodeCell {
                    prompt,
                    batch,
                    repeat,
                    dir: self.decode(prompt, batch, repeat),
                });
            }
        }
        cells.sort_by_key(|c| (c.prompt, c.batch, c.repeat));
        Ok(cells)
    }
}

/// One cell of a fit's decode probe.
#[derive(Debug, Clone)]
pub struct DecodeCell {
    pub prompt: u32,
    pub batch: u32,
    pub repeat: u32,
    pub dir: CellDir,
}
