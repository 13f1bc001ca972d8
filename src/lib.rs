//! vllm-loadtest: measure how an LLM inference server behaves under load.
//!
//! # Layout
//! - `analysis`: saturation, goodput, scaling (USL), validity verdicts (pure).
//! - `cli`: argument definitions and the commands (`bench`, `sim`).
//! - `experiment`: experiment files (checked, planned into cells; JSON Schema).
//! - `workload`: prompts (random with exact lengths, ShareGPT, JSON lines), tokenizers, and
//!   the request bytes built from them.
//! - `runner`: arrival schedules, the pacer thread, the load-point loop.
//! - `client`: connection pool, streaming request driver, SSE decoder, chunk classifier.
//! - `http`: the bits of HTTP/1.1 shared by client and simulator (chunked coding).
//! - `prom`: a reader for Prometheus text (`/metrics`).
//! - `launcher`: bring a server up (sim, external, command, compose) and always down.
//! - `monitor`: `/metrics` scraping and GPU sampling beside a load point.
//! - `record`: the raw per-request record every figure comes from.
//! - `stats`: the quantile definition, distribution summaries, and the product-limit
//!   estimator for latencies of requests cut off before they finished (pure).
//! - `summary`: a load point's figures computed from its records (pure).
//! - `store`: `requests.jsonl`, Parquet tables, `summary.json`.
//! - `report`: human-readable renderings (the end-of-run table).
//! - `sim`: the simulated vLLM (engines, router, HTTP server, virtual time).
//! - `secrets`: redaction of `server.env` values and URL credentials in everything written.
//! - `clock`, `rng`: the run's monotonic clock and seeded randomness.

pub mod analysis;
pub mod cli;
pub mod client;
pub mod clock;
pub mod experiment;
pub mod http;
pub mod launcher;
pub mod monitor;
pub mod prom;
pub mod record;
pub mod report;
pub mod rng;
pub mod runner;
pub mod secrets;
pub mod sim;
pub mod stats;
pub mod store;
pub mod summary;
pub mod workload;
