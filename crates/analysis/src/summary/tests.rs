use super::*;
use crate::record::{ErrorKind, RequestError, TokenSource};

/// A request sent at `send_ms` (intended `late_ms` earlier), first token after `ttft_ms`,
/// then `n - 1` tokens every `gap_ms`.
fn rec(id: u64, send_ms: u64, late_ms: u64, ttft_ms: u64, gap_ms: u64, n: u32) -> RequestRecord {
    let ms = 1_000_000;
    let offsets: Vec<u64> = (0..n as u64).map(|i| (ttft_ms + i * gap_ms) * ms).collect();
    RequestRecord {
        id,
        t_intended_ns: (send_ms - late_ms) * ms,
        t_send_ns: send_ms * ms,
        t_end_ns: send_ms * ms + offsets.last().copied().unwrap_or(0) + ms,
        connect_ns: None,
        content_events: offsets,
        content_event_tokens: Vec::new(),
        input_tokens: 100,
        server_prompt_tokens: Some(100),
        max_tokens: n,
        output_tokens: n,
        output_tokens_source: TokenSource::Usage,
        finish_reason: Some("length".into()),
        error: None,
        resent: 0,
        turn: None,
    }
}

fn failed(id: u64, send_ms: u64, kind: ErrorKind) -> RequestRecord {
    let mut r = rec(id, send_ms, 0, 10, 10, 0);
    r.output_tokens = 0;
    r.error = Some(RequestError {
        kind,
        http_status: (kind == ErrorKind::HttpStatus).then_some(500),
        cancel_reason: None,
        message: "x".into(),
    });
    r
}

#[test]
fn figures_from_known_records() {
    let rs = vec![
        rec(0, 0, 0, 50, 10, 11),
        rec(1, 100, 2, 70, 10, 11),
        failed(2, 200, ErrorKind::HttpStatus),
        failed(3, 300, ErrorKind::Cancelled),
    ];
    let s = summarize_records(&rs, 1, None, 10.0, &[]);
    assert_eq!(
        (s.sent, s.ok, s.failed, s.cancelled, s.not_sent),
        (4, 2, 1, 1, 1)
    );
    check_accounting(&s).unwrap();
    assert_eq!(s.errors_by_kind.get("http_status"), Some(&1));
    let ttft = s.latencies.ttft_ms.as_ref().unwrap();
    assert_eq!((ttft.min, ttft.max, ttft.p50), (50.0, 70.0, 60.0));
    let tpot = s.latencies.tpot_ms.as_ref().unwrap();
    assert!((tpot.mean - 10.0).abs() < 1e-9);
    let itl = s.latencies.itl_ms.as_ref().unwrap();
    assert_eq!(itl.count, 20);
    assert_eq!(s.latencies.e2el_ms.as_ref().unwrap().max, 170.0);
    let qd = s.latencies.queue_delay_ms.as_ref().unwrap();
    assert_eq!(qd.max, 2.0);
    assert_eq!(
        s.latencies.ttft_from_intended_ms.as_ref().unwrap().max,
        72.0
    );
    // window: 0 .. just past the last end (the failed request 3 ends at 300 + 0 + 1 ms)
    assert_eq!(s.window.end_ns, 301_000_001);
    assert_eq!(s.completions_in_window, 2);
    assert!((s.completion_rate - 2.0 / 0.301000001).abs() < 1e-9);
    // one token per event, all inside the window: the token rate says the same
    assert!((s.request_throughput.unwrap() - 2.0 / 0.301000001).abs() < 1e-9);
    assert_eq!(s.total_output_tokens, 22);
    assert_eq!(s.max_concurrent_requests, 2);
    // every content event of the two successes falls in second 0
    assert_eq!(s.max_output_tokens_per_s, 22.0);
    assert!(
        s.event_tokens.is_none(),
        "no per-event counts were recorded"
    );
}

#[test]
fn window_excludes_warmup_and_cooldown_requests_from_latency() {
    // request i: 2 tokens i+1 ms apart, the second carrying 1 + i%2 tokens
    let rs: Vec<_> = (0..10)
        .map(|i| {
            let mut r = rec(i, i * 100, 0, 10 + i, 1 + i, 2);
            r.content_event_tokens = vec![1, 1 + (i as u32 % 2)];
            r
        })
        .collect();
    let w = Window {
        start_ns: 200_000_000,
        end_ns: 800_000_000,
    };
    let s = summarize_records(&rs, 0, Some(w), 10.0, &[]);
    assert_eq!(s.measured, 6);
    let ttft = s.latencies.ttft_ms.as_ref().unwrap();
    assert_eq!((ttft.min, ttft.max), (12.0, 17.0));
    // the ITL, streamed separately, takes the same six requests: gaps of 3..=8 ms
    let itl = s.latencies.itl_ms.as_ref().unwrap();
    assert_eq!((itl.count, itl.min, itl.max), (6, 3.0, 8.0));
    // and so do the per-event token counts: i = 2..=7 has three odd i
    let t = s.event_tokens.as_ref().unwrap();
    assert_eq!((t.events, t.tokens, t.multi_token_events), (12, 15, 3));
    // completed inside the window: ends at i*100 + (10+i) + (1+i) + 1 ms for i = 2..=7
    assert_eq!(s.completions_in_window, 6);
    assert!((s.completion_rate - 10.0).abs() < 1e-9);
    // the throughput is the mean of that and the token rate (15 tokens / 0.6 s / 2 per request)
    let t = s.token_rate.as_ref().unwrap();
    assert!((t.request_rate - 12.5).abs() < 1e-9);
    assert_eq!(
        s.achieved(),
        Some((11.25, "mean_of_completions_and_token_rate"))
    );
}

#[test]
fn goodput_counts_failures_against_attainment() {
    let rs = vec![
        rec(0, 0, 0, 50, 10, 3),
        rec(1, 10, 0, 500, 10, 3),
        failed(2, 20, ErrorKind::Timeout),
    ];
    let slos = [goodput::Slo::TtftMs(100.0)];
    let s = summarize_records(&rs, 0, None, 1.0, &slos);
    assert!((s.slo_attainment.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert!(s.request_goodput.unwrap() > 0.0);
    assert!(goodput::Slo::parse("ttft:abc").is_err());
    assert!(goodput::Slo::parse("foo:1").is_err());
    assert_eq!(
        goodput::Slo::parse("e2el:5").unwrap(),
        goodput::Slo::E2elMs(5.0)
    );
}
