//! Integration tests: real HTTP on loopback, the binary run as a user runs it.
//! One test binary on purpose (each extra one relinks the crate).

mod analysis_sim;
mod architecture;
mod bad_input;
mod bench_timing;
mod calibrate;
mod cli_help;
mod deploy;
mod faults;
mod fit;
mod interrupt;
mod notebooks;
mod parquet_readers;
mod prefix_cache;
mod readme;
mod run_experiment;
mod search;
mod sessions;
mod shard;
mod sim_wire;
mod support;
mod tls;
mod trace_replay;
mod virtual_time;
