//! The pure stages of vllm-loadtest: everything from a load point's raw records to the
//! report, with no async and no network (this crate does not depend on tokio; a test of
//! the workspace checks it).
//!
//! - `record`: the raw per-request record every figure comes from.
//! - `stats`: the quantile definition, distribution summaries, and the product-limit
//!   estimator for latencies of requests cut off before they finished.
//! - `summary`: a load point's figures computed from its records.
//! - `server_metrics`: the server's scraped `/metrics` as rows, and what they say over a window.
//! - `engine_work`: the engines' steps and the work in them over a window, priced with a
//!   profile's step costs (the server's speed against a prediction's).
//! - `latency_breakdown`: where a request's time goes on the server (queue, prefill,
//!   decode) over a window, from vLLM's phase histograms.
//! - `analysis`: saturation, goodput, scaling (USL), validity verdicts.
//! - `report`: human-readable renderings (the end-of-run table, report.md/html, charts).

pub mod analysis;
pub mod engine_work;
pub mod latency_breakdown;
pub mod record;
pub mod report;
pub mod server_metrics;
pub mod stats;
pub mod summary;
