//! Monitors that run beside a load point on the same clock: the server's Prometheus
//! `/metrics` (vLLM's families, per engine) and the GPUs (`nvidia-smi`), when there are any.

pub mod gpu;
pub mod metrics;
