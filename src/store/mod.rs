//! Results on disk: the crash-safe `requests.jsonl` appended as requests finish, the
//! columnar `requests.parquet` written at the end, and `summary.json`.

pub mod cell_report;
pub mod jsonl;
pub mod layout;
pub mod manifest;
pub mod parquet;
pub mod requests_table;
pub mod summary_json;
