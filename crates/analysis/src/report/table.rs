//! The end-of-run table, laid out like `vllm bench serve`'s so a vLLM user reads it at a
//! glance, followed by what vLLM does not print: send rate, send lag, errors by kind, the
//! accounting identity and the measurement window.
//!
//! vLLM's latency sections keep vLLM's meaning (successful requests only). When requests of
//! the window were cut off, the TTFT and E2E sections say so in their titles and add the
//! figures over every request, the unfinished right-censored (`> x` where only a lower
//! bound is known).

use crate::stats::Distribution;
use crate::stats::survival::Survival;
use crate::summary::RunSummary;
use std::io::{self, Write};

/// Which metrics and percentiles to print (vLLM's `--percentile-metrics`, `--metric-percentiles`).
pub struct TableSpec<'a> {
    pub metrics: &'a [String],
    pub percentiles: &'a [f64],
    pub configured_rate: f64,
    pub warnings: &'a [String],
    pub client: Option<ClientLine>,
    /// Not measured: predicted by this (e.g. "the simulator in virtual time, profile `x`").
    /// Said in the title and on the first line, so a pasted table cannot pass for a
    /// measurement.
    pub predicted_by: Option<&'a str>,
}

/// What the client itself used, for the line under the errors.
pub struct ClientLine {
    /// CPU seconds per second per client thread.
    pub cpu_share: f64,
    /// Resident memory gained over the run, and that per request (fixed costs dominate a
    /// short run's figure).
    pub rss_growth_bytes: Option<u64>,
    pub rss_per_request_bytes: Option<f64>,
}

fn line(w: &mut impl Write, label: &str, value: impl std::fmt::Display) -> io::Result<()> {
    writeln!(w, "{:<40}{:<10}", label, value)
}

fn rule(w: &mut impl Write, title: &str, fill: char) -> io::Result<()> {
    let n = 50usize.saturating_sub(title.chars().count());
    let left = n / 2;
    let f = |k| fill.to_string().repeat(k);
    writeln!(w, "{}{}{}", f(left), title, f(n - left))
}

pub fn render(w: &mut impl Write, s: &RunSummary, spec: &TableSpec) -> io::Result<()> {
    match spec.predicted_by {
        None => rule(w, " Serving Benchmark Result ", '=')?,
        Some(by) => {
            rule(w, " PREDICTED Benchmark Result ", '=')?;
            writeln!(w, "predicted, not measured: {by}")?;
        }
    }
    totals(w, s, spec.configured_rate)?;
    latency_sections(w, s, spec)?;
    rule(w, " vllm-loadtest ", '-')?;
    window_lines(w, s)?;
    timing_lines(w, s)?;
    errors_line(w, s)?;
    turn_lines(w, s)?;
    if let Some(c) = &spec.client {
        client_line(w, c)?;
    }
    writeln!(w, "{}", accounting_line(s))?;
    for warning in spec.warnings {
        writeln!(w, "warning: {warning}")?;
    }
    rule(w, "", '=')
}

/// vLLM's counts and throughputs, over the window.
fn totals(w: &mut impl Write, s: &RunSummary, configured_rate: f64) -> io::Result<()> {
    // vLLM's two counts, over the window's requests (our accounting of the whole cell is
    // the `sent = …` line below)
    line(w, "Successful requests:", s.measured_ok)?;
    line(w, "Failed requests:", s.measured - s.measured_ok)?;
    let rate = if configured_rate.is_finite() {
        format!("{:.2}", configured_rate)
    } else {
        "inf".to_string()
    };
    line(w, "Request rate configured (RPS):", rate)?;
    line(w, "Benchmark duration (s):", format!("{:.2}", s.window_s))?;
    line(w, "Total input tokens:", s.total_input_tokens)?;
    line(w, "Total generated tokens:", s.total_output_tokens)?;
    // a window without a completion has no throughput: say so, never 0.00
    let rate =
        |v: Option<f64>| v.map_or_else(|| "n/a (no completion)".to_string(), |v| format!("{v:.2}"));
    line(w, "Request throughput (req/s):", rate(s.request_throughput))?;
    if s.slo_attainment.is_some() {
        line(w, "Request goodput (req/s):", rate(s.request_goodput))?;
    }
    line(
        w,
        "Output token throughput (tok/s):",
        rate(s.output_throughput),
    )?;
    line(
        w,
        "Peak output token throughput (tok/s):",
        format!("{:.2}", s.max_output_tokens_per_s),
    )?;
    line(
        w,
        "Peak concurrent requests:",
        format!("{:.2}", s.max_concurrent_requests as f64),
    )?;
    line(
        w,
        "Total token throughput (tok/s):",
        rate(s.total_token_throughput),
    )
}

/// One section per latency metric asked for, vLLM's figures first.
fn latency_sections(w: &mut impl Write, s: &RunSummary, spec: &TableSpec) -> io::Result<()> {
    let l = &s.latencies;
    let every = &s.every_request;
    let cut = s.measured_cut > 0;
    for (key, title, short, d, all) in [
        (
            "ttft",
            "Time to First Token",
            "TTFT",
            &l.ttft_ms,
            Some(&every.ttft_ms),
        ),
        (
            "tpot",
            "Time per Output Token (excl. 1st token)",
            "TPOT",
            &l.tpot_ms,
            None,
        ),
        ("itl", "Inter-token Latency", "ITL", &l.itl_ms, None),
        (
            "e2el",
            "End-to-end Latency",
            "E2EL",
            &l.e2el_ms,
            Some(&every.e2el_ms),
        ),
    ] {
        if !spec.metrics.iter().any(|m| m == key) {
            continue;
        }
        match all {
            Some(all) if cut => {
                rule(w, &format!("{title} (successful only)"), '-')?;
                dist_lines(w, short, d.as_ref(), spec.percentiles)?;
                every_lines(w, short, all.as_ref(), spec.percentiles)?;
            }
            _ => {
                rule(w, title, '-')?;
                dist_lines(w, short, d.as_ref(), spec.percentiles)?;
            }
        }
    }
    Ok(())
}

/// The measurement window, what was sent in it, and how its throughput was taken.
fn window_lines(w: &mut impl Write, s: &RunSummary) -> io::Result<()> {
    line(
        w,
        "Measurement window (s):",
        format!(
            "{:.2} .. {:.2}",
            s.window.start_ns as f64 / 1e9,
            s.window.end_ns as f64 / 1e9
        ),
    )?;
    let send = if s.achieved_send_rate.is_finite() {
        format!("{:.2}", s.achieved_send_rate)
    } else {
        "inf".into()
    };
    line(w, "Achieved send rate (req/s):", send)?;
    line(
        w,
        "Window requests (vLLM's counts):",
        format!(
            "{} sent = {} ok + {} not ({} cut off)",
            s.measured,
            s.measured_ok,
            s.measured - s.measured_ok,
            s.measured_cut
        ),
    )?;
    if let Some(t) = &s.token_rate {
        line(
            w,
            "Request throughput taken as:",
            format!(
                "{} ({:.2} completions/s, {:.2} from {:.0} tok/s ÷ {:.1} tokens per request)",
                s.request_throughput_from.replace('_', " "),
                s.completion_rate,
                t.request_rate,
                t.output_tokens / s.window_s.max(1e-9),
                t.mean_output_tokens
            ),
        )?;
    }
    Ok(())
}

/// What vLLM does not print: send lag, latency from the intended send time, SLO
/// attainment, and tokens per content event.
fn timing_lines(w: &mut impl Write, s: &RunSummary) -> io::Result<()> {
    let l = &s.latencies;
    if let Some(q) = &l.queue_delay_ms {
        line(
            w,
            "Send lag p50 / p99 (ms):",
            format!("{:.3} / {:.3}", q.p50, q.p99),
        )?;
    }
    if let Some(t) = &l.ttft_from_intended_ms {
        line(
            w,
            "TTFT from intended p50 / p99 (ms):",
            format!("{:.2} / {:.2}", t.p50, t.p99),
        )?;
    }
    if let Some(a) = s.slo_attainment {
        line(w, "SLO attainment:", format!("{:.1}%", a * 100.0))?;
    }
    if let Some(t) = &s.event_tokens {
        line(
            w,
            "Tokens per content event (mean / max):",
            format!(
                "{:.3} / {} ({:.1}% of events carried more than one)",
                t.mean(),
                t.max_tokens_per_event,
                t.multi_token_share() * 100.0
            ),
        )?;
    }
    Ok(())
}

/// Multi-turn conversations: TTFT and prompt size by turn (nothing otherwise).
fn turn_lines(w: &mut impl Write, s: &RunSummary) -> io::Result<()> {
    for t in &s.per_turn {
        let fig = |f: &Option<crate::stats::survival::Figure>| {
            f.as_ref().map_or("-".to_string(), |f| f.display(2))
        };
        line(
            w,
            &format!("Turn {} TTFT p50 / p99 (ms):", t.turn + 1),
            format!(
                "{} / {} ({} of {} ok, prompt {} tokens)",
                fig(&t.ttft_p50_ms),
                fig(&t.ttft_p99_ms),
                t.ok,
                t.measured,
                t.prompt_tokens_mean
                    .map_or("-".to_string(), |p| format!("{p:.0}"))
            ),
        )?;
    }
    Ok(())
}

fn errors_line(w: &mut impl Write, s: &RunSummary) -> io::Result<()> {
    if s.errors_by_kind.is_empty() {
        return line(w, "Errors by kind:", "none");
    }
    let kinds: Vec<String> = s
        .errors_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    line(w, "Errors by kind:", kinds.join(", "))
}

fn client_line(w: &mut impl Write, c: &ClientLine) -> io::Result<()> {
    line(
        w,
        "Client CPU / memory gained:",
        format!(
            "{:.0}% / {}",
            c.cpu_share * 100.0,
            match (c.rss_growth_bytes, c.rss_per_request_bytes) {
                (Some(g), Some(b)) => format!("{:.1} MB ({b:.0} B per request)", g as f64 / 1e6),
                _ => "-".into(),
            }
        ),
    )
}

/// `sent N = ok + failed + cancelled (by reason)`: the one accounting every output prints.
pub fn accounting_line(s: &RunSummary) -> String {
    let reasons: Vec<String> = s
        .cancelled_by_reason
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "sent {} = ok {} + failed {} + cancelled {}{}{}{}",
        s.sent,
        s.ok,
        s.failed,
        s.cancelled,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        if s.not_sent > 0 {
            format!("  (not sent: {})", s.not_sent)
        } else {
            String::new()
        },
        if s.resent > 0 {
            format!("  (re-sent after a dropped connection: {})", s.resent)
        } else {
            String::new()
        }
    )
}

/// The figures over every window request, cut-off ones included (lower bounds as `> x`).
fn every_lines(
    w: &mut impl Write,
    name: &str,
    d: Option<&Survival>,
    pcts: &[f64],
) -> io::Result<()> {
    let Some(d) = d else {
        return line(w, &format!("{name}, every request (ms):"), "n/a (none)");
    };
    line(
        w,
        &format!("{name}, every request: n / cut off:"),
        format!("{} / {}", d.count, d.censored),
    )?;
    line(
        w,
        &format!("Median {name}, every request (ms):"),
        d.p50.display(2),
    )?;
    for &p in pcts {
        let label = format!("{p}");
        let label = label.strip_suffix(".0").unwrap_or(&label);
        line(
            w,
            &format!("P{label} {name}, every request (ms):"),
            d.percentile(p)
                .map_or_else(|| "n/a (not computed)".into(), |v| v.display(2)),
        )?;
    }
    Ok(())
}

fn dist_lines(
    w: &mut impl Write,
    name: &str,
    d: Option<&Distribution>,
    pcts: &[f64],
) -> io::Result<()> {
    let Some(d) = d else {
        return line(w, &format!("{name} (ms):"), "n/a (no successful request)");
    };
    line(w, &format!("Mean {name} (ms):"), format!("{:.2}", d.mean))?;
    line(w, &format!("Median {name} (ms):"), format!("{:.2}", d.p50))?;
    for &p in pcts {
        let label = format!("{p}");
        let label = label.strip_suffix(".0").unwrap_or(&label);
        line(
            w,
            &format!("P{label} {name} (ms):"),
            d.percentile(p)
                .map_or_else(|| "n/a (not computed)".into(), |v| format!("{v:.2}")),
        )?;
    }
    Ok(())
}
