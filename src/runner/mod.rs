//! Running load: arrival schedules, the pacer thread, and the load-point loop that sends,
//! caps concurrency, collects records and reports progress.

pub mod cell;
pub mod load_point;
pub mod loop_lag;
pub mod pacer;
pub mod progress;
pub mod usage;
