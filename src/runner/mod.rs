//! Running load: arrival schedules, the pacer thread (and the connections opened ahead for
//! it), and the load-point loop that sends, caps concurrency, collects records and reports
//! progress; the watchdog that notices a server which stopped answering; and cells run in
//! the simulator's virtual time instead of against a server; how each arrival was sent; the
//! wait for a common start (a shard's `--start-at`).

pub mod cell;
pub mod load_point;
pub mod loop_lag;
pub mod pacer;
pub mod prewarm;
pub mod progress;
pub mod send_path;
pub mod start;
pub mod usage;
pub mod virtual_cell;
pub mod watchdog;
