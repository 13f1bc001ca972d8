//! vllm-loadtest: measure how an LLM inference server behaves under load.
//!
//! # The pipeline, and who owns each step
//!
//! ```text
//! experiment file ─► experiment (typed plan of cells) ─► launcher (server up, always down)
//!        │
//!        ▼
//! workload (prompts → request bytes) ─► runner (arrival schedule, pacer, load-point loop)
//!        ─► client (pool, streaming exchange, SSE, chunk classifier) ─► records
//!        │                                  monitor (/metrics, GPUs) beside it ─► rows
//!        ▼
//! store (requests.jsonl/.parquet, summary.json, manifest: formats only)
//!        ─► aggregate (every cell of a run read back) ─► analysis ─► report
//! ```
//!
//! # Crates (`crates/`)
//! - `loadtest-base`: what the load generator and the simulator share: seeded randomness,
//!   the monotonic clock, arrival schedules, HTTP/1.1 chunked coding, tokenizers, UTC dates.
//! - `loadtest-analysis`: the pure stages (no tokio): records, statistics, a load point's
//!   summary, the server's metric rows, saturation/scaling analysis, the report.
//! - `vllm-sim`: the simulated vLLM (engines, router, HTTP server, virtual time).
//!
//! # This crate: the stages that do I/O, and the commands
//! - `cli`: argument definitions and the commands (`run`, `bench`, `sim`, `report`, …).
//! - `experiment`: experiment files (checked, planned into cells; JSON Schema).
//! - `workload`: prompts (random with exact lengths, shared-prefix groups, ShareGPT, JSON
//!   lines, a timestamped trace, multi-turn conversations) and the request bytes built from
//!   them.
//! - `runner`: the pacer thread, the load-point loop (single requests or a conversation's
//!   turns), one cell's run, the watchdog that finds a hung server.
//! - `client`: how a server is reached (URL, plain or TLS connection, the headers), the
//!   connection pool, streaming request driver, SSE decoder, chunk classifier.
//! - `shard`: one load point sent from several machines (`bench --shard`, a common start,
//!   the clock check) and `merge`, which makes the shards' folders one cell again.
//! - `fit`: a simulator profile identified from a live server's token timings (`fit`).
//! - `prom`: a reader for Prometheus text (`/metrics`).
//! - `launcher`: bring a server up (sim, external, command, compose) and always down.
//! - `monitor`: `/metrics` scraping and GPU sampling beside a load point.
//! - `store`: the result files' formats: the `requests.jsonl` journal, the Parquet tables
//!   (written and read back through the `parquet` crate), `summary.json`, the manifest.
//! - `secrets`: redaction of `server.env` and `server.headers` values and URL credentials in
//!   everything written.

pub mod aggregate;
pub mod cli;
pub mod client;
pub mod experiment;
pub mod fit;
pub mod launcher;
pub mod monitor;
pub mod prom;
pub mod runner;
pub mod secrets;
pub mod shard;
pub mod store;
pub mod workload;
