//! Results on disk: the crash-safe `requests.jsonl` journal appended as requests finish,
//! the Parquet tables written at a cell's end (`requests`, `events`, `server_metrics`,
//! `gpu`) and read back by the aggregate stage, `summary.json`, the manifest, a shard's `shard.json`.

pub mod cell_report;
pub mod jsonl;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod metrics_table;
pub mod parquet;
pub mod records;
pub mod requests_table;
pub mod shard_json;
pub mod summary_json;
