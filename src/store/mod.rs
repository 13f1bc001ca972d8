//! Results on disk: the crash-safe `requests.jsonl` appended as requests finish, the
//! columnar `requests.parquet` written at the end, and `summary.json`.

pub mod aggregate;
pub mod jsonl;
pub mod manifest;
pub mod parquet;
pub mod requests_table;
pub mod summary_json;
