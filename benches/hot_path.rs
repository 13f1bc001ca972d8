//! `cargo bench --bench hot_path`: the client's per-event and per-run costs, measured.
//!
//! - SSE decoding + chunk classification per event, on the real vLLM fixture streams;
//! - summarising 1M request records (the statistics of a big run);
//! - serialising one record to JSON (the writer thread's cost per request).
//!
//! A plain timing loop (no criterion: one dependency less to build); each figure is the best
//! of five repetitions.

use loadtest_analysis::record::{RequestRecord, TokenSource};
use loadtest_analysis::summary;
use std::hint::black_box;
use std::time::Instant;
use vllm_loadtest::client::chunk::classify;
use vllm_loadtest::client::sse::SseDecoder;

fn best_of<F: FnMut() -> u64>(mut f: F) -> (f64, u64) {
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, n)
}

fn main() {
    for name in [
        "completions-stream.sse",
        "chat-stream.sse",
        // every chunk carries usage (`--continuous-usage-stats`): read by the scan too
        "completions-stream-continuous-usage.sse",
        "chat-stream-continuous-usage.sse",
    ] {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/vllm/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let reps = 2000;
        let (secs, events) = best_of(|| {
            let mut events = 0u64;
            for _ in 0..reps {
                let mut d = SseDecoder::new();
                // 1 KiB reads, as a socket delivers them under load
                for part in bytes.chunks(1024) {
                    d.feed(part, |ev| {
                        black_box(classify(ev.data).unwrap());
                        events += 1;
                    });
                }
                d.finish(|ev| {
                    black_box(classify(ev.data).unwrap());
                    events += 1;
                });
            }
            events
        });
        let (decode_secs, _) = best_of(|| {
            let mut events = 0u64;
            for _ in 0..reps {
                let mut d = SseDecoder::new();
                for part in bytes.chunks(1024) {
                    d.feed(part, |ev| {
                        black_box(ev.data);
                        events += 1;
                    });
                }
            }
            events
        });
        println!(
            "sse decode + classify ({name}): {:.0} ns/event ({:.0} ns of it SSE framing), {:.1} M events/s",
            secs / events as f64 * 1e9,
            decode_secs / events as f64 * 1e9,
            events as f64 / secs / 1e6
        );
    }
    let records: Vec<RequestRecord> = (0..1_000_000u64)
        .map(|i| RequestRecord {
            id: i,
            t_intended_ns: i * 1_000_000,
            t_send_ns: i * 1_000_000 + 50_000,
            t_end_ns: i * 1_000_000 + 700_000_000,
            connect_ns: None,
            content_events: (0..64)
                .map(|k| 40_000_000 + k * 10_000_000 + (i * 7919 + k * 104_729) % 1_000_000)
                .collect(),
            input_tokens: 512,
            content_event_tokens: Vec::new(),
            server_prompt_tokens: Some(512),
            max_tokens: 64,
            output_tokens: 64,
            output_tokens_source: TokenSource::Usage,
            finish_reason: Some("length".into()),
            error: None,
            resent: 0,
            turn: None,
        })
        .collect();
    let t = Instant::now();
    let s = summary::summarize_records(&records, 0, None, 1000.0, &[]);
    println!(
        "summarize 1M records (64 events each, {} ITL samples): {:.2} s",
        s.latencies.itl_ms.as_ref().map_or(0, |d| d.count),
        t.elapsed().as_secs_f64()
    );
    let (secs, n) = best_of(|| {
        let mut bytes = 0u64;
        for r in records.iter().take(100_000) {
            bytes += serde_json::to_vec(black_box(r)).unwrap().len() as u64;
        }
        bytes
    });
    println!(
        "record to JSON: {:.2} µs/record ({} bytes per record)",
        secs / 100_000.0 * 1e6,
        n / 100_000
    );
    // The figures that need every event stream `requests.jsonl` back (twice for exact ITL
    // percentiles), so its parsing speed bounds how long a cell's summary takes.
    let path = std::env::temp_dir().join(format!("hot_path_{}.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for r in records.iter().take(100_000) {
        serde_json::to_writer(&mut out, r).unwrap();
        std::io::Write::write_all(&mut out, b"\n").unwrap();
    }
    drop(out);
    let (secs, n) = best_of(|| {
        let mut events = 0u64;
        vllm_loadtest::store::jsonl::for_each(&path, |r| {
            events += black_box(r.content_events.len()) as u64;
            Ok(())
        })
        .unwrap();
        events
    });
    let _ = std::fs::remove_file(&path);
    println!(
        "requests.jsonl read back: {:.2} µs/record, {:.1} M events/s",
        secs / 100_000.0 * 1e6,
        n as f64 / secs / 1e6
    );
}
