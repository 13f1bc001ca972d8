//! The simulated vLLM: engines that schedule like vLLM V1 (chunked prefill, KV blocks,
//! preemption by recompute), data-parallel routing like vLLM's API server, an HTTP server
//! shaped like vLLM 0.32, and a virtual-time driver for fast, deterministic experiments.
//!
//! # Layout
//! - `profile`: step-time coefficients and scheduler limits, named or from YAML.
//! - `engine`: one rank's scheduler and KV cache, pure, clock given by the driver.
//! - `prefix_cache`: the KV block pool with vLLM's prefix caching (hashes, sharing, LRU).
//! - `router`: DP routing and the optional front-end CPU model.
//! - `metrics`: vLLM's Prometheus families per engine.
//! - `virtual_time`: the discrete-event driver.
//! - `fit`: least squares of the step model to a client's token timings (pure).
//! - `calibrate`: the per-step and per-sequence costs adjusted to open-loop loads (pure).
//! - `realtime`: engine threads on the wall clock.
//! - `direct`: where tokens go: written into the socket by the engine thread, or to a task.
//! - `server`, `wire`, `faults`, `tls`: the HTTP side (plain or TLS).
//! - `background`: an in-process server on its own thread (for `bench --sim` and tests).

pub mod background;
pub mod calibrate;
pub mod direct;
pub mod engine;
pub mod faults;
pub mod fit;
pub mod metrics;
pub mod prefix_cache;
pub mod profile;
pub mod realtime;
pub mod router;
pub mod server;
pub mod tls;
pub mod virtual_time;
pub mod wire;

pub use profile::Profile;

/// The model name the simulator serves when none is given (its `/v1/models`, its metrics'
/// `model_name`).
pub const DEFAULT_MODEL: &str = "sim-llama";
pub use server::{SimConfig, serve, serve_with};
