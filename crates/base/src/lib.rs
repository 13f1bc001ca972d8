//! What the load generator and the simulator both stand on, so neither depends on the other:
//!
//! - `rng`: the seeded randomness every schedule, prompt and simulated token comes from.
//! - `clock`: the run's monotonic clock (every timestamp is taken on it) and precise sleeps.
//! - `arrivals`: arrival schedules (Poisson, gamma, constant), the same for a real run and a
//!   virtual-time simulation.
//! - `shard`: one load point's schedule split over several client machines.
//! - `http`: the bits of HTTP/1.1 both sides speak (chunked coding, header facts).
//! - `tokenizer`: prompt token counts as the server counts them.
//! - `time`: UTC dates for file names and manifests.
//! - `par`: independent jobs on every core, results in order.

pub mod arrivals;
pub mod clock;
pub mod http;
pub mod par;
pub mod rng;
pub mod shard;
pub mod time;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
