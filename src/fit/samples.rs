//! The probe cells' records turned into the fit's samples: per prompt length the median
//! time to first token (prompt as the server counted it), per decode batch shape the
//! median over its repeats of the batch's step time (its streams' slopes,
//! `vllm_sim::fit::probes`). A probe that did not run cleanly is refused by name, not
//! fitted around; a batch the server did not take at once, or whose streams all came in
//! bunches, is left out with a note.

use crate::store::layout::{CellDir, FitDir};
use crate::store::records;
use anyhow::{Result, bail};
use loadtest_analysis::record::RequestRecord;
use std::collections::BTreeMap;
use vllm_sim::fit::{DecodeSample, PrefillSample, probes};
use vllm_sim::profile::Steadiness;

#[derive(Debug, Default)]
pub struct Samples {
    pub prefill: Vec<PrefillSample>,
    pub decode: Vec<DecodeSample>,
    /// Batches left out, and why.
    pub notes: Vec<String>,
    /// The largest batch that decoded together (a lower bound on `max_num_seqs`), and the
    /// smallest that did not, if any.
    pub largest_together: u32,
    pub smallest_apart: Option<u32>,
    /// The last repeat's step times against the first's (`None` with one repeat).
    pub steadiness: Option<Steadiness>,
}

/// Every probe cell of `dir`.
pub fn read(dir: &FitDir) -> Result<Samples> {
    let mut s = Samples {
        prefill: prefill(&dir.prefill())?,
        ..Samples::default()
    };
    let cells = dir.decode_cells()?;
    if cells.is_empty() {
        bail!(
            "`{}` holds no decode probe (`decode-p<P>-b<N>-r<K>` folders)\nhint: give a folder written by `vllm-loadtest fit --base-url …`",
            dir.root().display()
        );
    }
    // each batch shape's samples over its repeats, then their median: a repeat the
    // machine disturbed (a stall, a neighbour) does not pull the fit
    let mut by_shape: std::collections::BTreeMap<(u32, u32), Vec<DecodeSample>> =
        Default::default();
    // and each repeat's median step time, to see whether the server kept its speed
    let mut by_repeat: BTreeMap<(u32, u32), BTreeMap<u32, f64>> = BTreeMap::new();
    for c in cells {
        let (prompt, batch, repeat, cell) = (c.prompt, c.batch, c.repeat, c.dir);
        let recs = clean_records(&cell)?;
        let streams: Vec<Vec<u64>> = recs.iter().map(token_times).collect();
        if recs.len() != batch as usize || !probes::decoded_together(&streams) {
            s.notes.push(format!(
                "decode batch of {batch} × {prompt} tokens (repeat {}) left out: its {} streams did not decode together (some started after the first was half done: the server holds fewer sequences than this batch, or was slow to admit some)",
                repeat + 1,
                recs.len()
            ));
            if prompt == probes::DECODE_PROMPT {
                s.smallest_apart = Some(s.smallest_apart.map_or(batch, |b| b.min(batch)));
            }
            continue;
        }
        s.largest_together = s.largest_together.max(batch);
        let d = probes::decode(median_prompt(&recs), &streams);
        if d.is_empty() {
            s.notes.push(format!(
                "decode batch of {batch} × {prompt} tokens (repeat {}) left out: every stream's tokens arrived in bunches (the server's front end flushed them together), so their times do not show the engine's steps",
                repeat + 1
            ));
        }
        if let Some(m) = median_sample(d.clone()) {
            by_repeat
                .entry((prompt, batch))
                .or_default()
                .insert(repeat, m.itl_s);
        }
        by_shape.entry((prompt, batch)).or_default().extend(d);
    }
    s.steadiness = steadiness(by_repeat.values());
    s.decode = by_shape.into_values().filter_map(median_sample).collect();
    s.prefill = median_by_length(s.prefill);
    Ok(s)
}

/// Each batch shape's step time in its last repeat over its first (shapes with two or
/// more), and their median: a server still warming up (the CPU vLLM's first ten minutes)
/// shows as most shapes faster at the end. `None` when no shape has two repeats.
fn steadiness<'a>(shapes: impl Iterator<Item = &'a BTreeMap<u32, f64>>) -> Option<Steadiness> {
    let shapes: Vec<&BTreeMap<u32, f64>> = shapes.collect();
    // the same two repeats for every shape (a shape missing one is left out): a ratio over
    // repeats 1→2 is not one over 1→3
    let last = shapes
        .iter()
        .filter_map(|r| r.keys().max())
        .max()
        .copied()?;
    let first = shapes
        .iter()
        .filter_map(|r| r.keys().min())
        .min()
        .copied()?;
    let mut ratios: Vec<f64> = shapes
        .iter()
        .filter_map(|r| {
            let (a, b) = (r.get(&first)?, r.get(&last)?);
            (first != last && *a > 0.0).then(|| b / a)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let agreeing = ratios
        .iter()
        .filter(|&&r| (r < 1.0) == (median < 1.0) && r != 1.0)
        .count();
    Some(Steadiness {
        last_over_first: median,
        shapes: ratios.len(),
        agreeing,
    })
}

/// The median step time of one batch shape's repeats (its context: theirs, alike).
fn median_sample(mut v: Vec<DecodeSample>) -> Option<DecodeSample> {
    v.sort_by(|a, b| a.itl_s.total_cmp(&b.itl_s));
    v.get(v.len() / 2).copied()
}

/// One prefill sample per prompt length (as the server counted it): the median time to
/// first token of its repeats.
fn median_by_length(v: Vec<PrefillSample>) -> Vec<PrefillSample> {
    let mut by: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
    for p in v {
        by.entry(p.prompt_tokens).or_default().push(p.ttft_s);
    }
    by.into_iter()
        .map(|(prompt_tokens, mut t)| {
            t.sort_by(f64::total_cmp);
            PrefillSample {
                prompt_tokens,
                ttft_s: t[t.len() / 2],
            }
        })
        .collect()
}

fn prefill(cell: &CellDir) -> Result<Vec<PrefillSample>> {
    Ok(clean_records(cell)?
        .iter()
        .filter_map(|r| {
            let first = *r.content_events.first()?;
            Some(probes::prefill(
                prompt_tokens(r),
                r.t_send_ns,
                r.t_send_ns + first,
            ))
        })
        .collect())
}

/// A probe cell's records, all of them completed; an error naming the cell otherwise.
fn clean_records(cell: &CellDir) -> Result<Vec<RequestRecord>> {
    if !records::exist(cell) {
        bail!(
            "`{}` holds no records\nhint: the probe did not run; rerun `vllm-loadtest fit --base-url …`",
            cell.root().display()
        );
    }
    let recs = records::read_full(cell)?;
    if let Some(r) = recs.iter().find(|r| r.error.is_some()) {
        bail!(
            "`{}`: request {} of the probe failed ({}): a fit needs every probe request served\nhint: check the server's log; rerun the fit when it serves",
            cell.root().display(),
            r.id,
            r.error.as_ref().map_or(String::new(), |e| format!(
                "{}: {}",
                e.kind.as_str(),
                e.message
            ))
        );
    }
    if recs.is_empty() {
        bail!("`{}` holds no records", cell.root().display());
    }
    Ok(recs)
}

/// The prompt as the server counted it (its tokenizer), else as the workload built it.
fn prompt_tokens(r: &RequestRecord) -> u32 {
    r.server_prompt_tokens.unwrap_or(r.input_tokens)
}

fn median_prompt(recs: &[RequestRecord]) -> u32 {
    let mut p: Vec<u32> = recs.iter().map(prompt_tokens).collect();
    p.sort_unstable();
    p[p.len() / 2]
}

/// Each token's arrival (ns on the cell's clock): an event that carried k tokens stands
/// for k tokens arriving together (the gaps inside it are 0, and the median over the batch
/// ignores them), so token indices stay aligned across streams.
fn token_times(r: &RequestRecord) -> Vec<u64> {
    let abs = r.content_events.iter().map(|o| r.t_send_ns + o);
    if r.content_event_tokens.len() != r.content_events.len() {
        return abs.collect();
    }
    abs.zip(&r.content_event_tokens)
        .flat_map(|(t, &k)| std::iter::repeat_n(t, k.max(1) as usize))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(per_shape: &[&[f64]]) -> Vec<BTreeMap<u32, f64>> {
        per_shape
            .iter()
            .map(|reps| (0u32..).zip(reps.iter().copied()).collect())
            .collect()
    }

    /// Eight batch shapes' step times (ms) of the CPU vLLM fitted minutes after its start
    /// (fit1 of 2026-12-01: 7 of these 8 faster by the third repeat), and of the same server
    /// fitted after ten minutes of load (fit2: no trend).
    #[test]
    fn a_server_warming_up_is_told_from_a_steady_one() {
        let warming = shapes(&[
            &[7.00, 6.97, 5.48],
            &[9.38, 9.33, 6.62],
            &[12.89, 14.60, 10.11],
            &[20.96, 17.94, 16.69],
            &[7.58, 7.11, 5.49],
            &[72.93, 61.87, 46.01],
            &[12.01, 12.63, 13.48],
            &[8.23, 7.39, 6.21],
        ]);
        let w = steadiness(warming.iter()).unwrap();
        assert!(w.unsteady(), "{w:?}");
        assert_eq!((w.shapes, w.agreeing), (8, 7));
        assert!((w.last_over_first - 0.78).abs() < 0.03, "{w:?}");
        assert!(w.describe().contains("% less time"), "{}", w.describe());
        let steady = shapes(&[
            &[6.47, 7.40, 5.58],
            &[8.08, 8.45, 7.94],
            &[9.24, 11.03, 11.18],
            &[19.32, 18.48, 15.68],
            &[6.25, 6.75, 5.71],
            &[51.48, 51.08, 48.08],
            &[12.07, 13.05, 12.03],
            &[16.05, 17.27, 17.21],
        ]);
        let s = steadiness(steady.iter()).unwrap();
        assert!(!s.unsteady(), "{s:?}");
        // one repeat: nothing to compare
        assert_eq!(steadiness(shapes(&[&[7.0], &[9.0]]).iter()), None);
        // a shape without the last repeat is left out, not compared over fewer repeats
        let mut partial = warming.clone();
        partial[0].remove(&2);
        let p = steadiness(partial.iter()).unwrap();
        assert_eq!(p.shapes, 7, "{p:?}");
        // slower by the end is as unsteady (a server filling its memory, a neighbour)
        let slowing = shapes(&[&[5.0, 6.0], &[6.0, 7.5], &[7.0, 8.0], &[8.0, 9.5]]);
        let sl = steadiness(slowing.iter()).unwrap();
        assert!(
            sl.unsteady() && sl.describe().contains("% more time"),
            "{sl:?}"
        );
    }
}
