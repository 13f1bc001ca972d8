//! Multi-turn conversations, turn by turn: how the k-th request of a conversation fared.
//! A later turn carries a longer history, so its prompt (and, without a prefix-cache hit,
//! its TTFT) grows with k; this table shows by how much.
//!
//! TTFT per turn is over every window request of that turn, the unfinished right-censored
//! (as `EveryRequest` is), never over the survivors alone; failures are counted beside it.

use crate::record::CompactRecord;
use crate::stats::survival::{Figure, Observation, Survival};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnFigures {
    /// 0-based turn index.
    pub turn: u16,
    /// Requests of this turn sent in the window, and how many succeeded.
    pub measured: u64,
    pub ok: u64,
    pub ttft_p50_ms: Option<Figure>,
    pub ttft_p99_ms: Option<Figure>,
    /// Mean prompt tokens of the turn's successful requests, as the server counted them
    /// when it said (else as built).
    pub prompt_tokens_mean: Option<f64>,
}

/// One row per turn index present among `in_window`; empty when no record is a turn.
pub fn per_turn(in_window: &[&CompactRecord]) -> Vec<TurnFigures> {
    let mut by_turn: BTreeMap<u16, Vec<&CompactRecord>> = BTreeMap::new();
    for r in in_window {
        if let Some(t) = r.turn {
            by_turn.entry(t.index).or_default().push(r);
        }
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    by_turn
        .into_iter()
        .map(|(turn, rs)| {
            let obs: Vec<Observation> = rs
                .iter()
                .filter_map(|r| match r.ttft_ns() {
                    Some(t) => Some(Observation::done(ms(t))),
                    None => r.is_cut().then(|| Observation::cut(ms(r.follow_up_ns()))),
                })
                .collect();
            let ttft = Survival::from_observations(obs, &[]);
            let ok: Vec<&&CompactRecord> = rs.iter().filter(|r| r.is_ok()).collect();
            let prompt: Vec<f64> = ok
                .iter()
                .map(|r| r.server_prompt_tokens.unwrap_or(r.input_tokens) as f64)
                .collect();
            TurnFigures {
                turn,
                measured: rs.len() as u64,
                ok: ok.len() as u64,
                ttft_p50_ms: ttft.as_ref().and_then(|s| s.percentile(50.0)),
                ttft_p99_ms: ttft.as_ref().and_then(|s| s.percentile(99.0)),
                prompt_tokens_mean: (!prompt.is_empty())
                    .then(|| prompt.iter().sum::<f64>() / prompt.len() as f64),
            }
        })
        .collect()
}
