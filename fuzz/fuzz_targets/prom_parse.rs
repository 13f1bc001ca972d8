//! `prom::parse` (Prometheus text exposition, what `/metrics` returns) and the scraper's
//! `monitor::metrics::rows_from`, which parses a scraped body (as `String::from_utf8_lossy`
//! of the bytes, exactly as `monitor::metrics::scrape` does) and keeps vLLM's families.
//!
//! Asserts: no panic; `rows_from` fails exactly when `parse` fails, with the same message;
//! every sample has a non-empty name; an `Err` names a line that exists; the rows are the
//! `vllm:` samples minus `_created`, in order, with `engine`/`model_name` taken out of the
//! label string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vllm_loadtest::monitor::metrics::rows_from;
use vllm_loadtest::prom;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = prom::parse(&text);
    let rows = rows_from(&text, 7, 1);
    match (&parsed, &rows) {
        (Ok(e), Ok(rows)) => {
            for s in &e.samples {
                assert!(!s.name.is_empty());
                assert!(!s.name.contains(['{', ' ']));
            }
            let kept: Vec<_> = e
                .samples
                .iter()
                .filter(|s| s.name.starts_with("vllm:") && !s.name.ends_with("_created"))
                .collect();
            assert_eq!(kept.len(), rows.len());
            for (s, r) in kept.iter().zip(rows) {
                assert_eq!(s.name, r.name);
                assert_eq!((r.t_ns, r.endpoint), (7, 1));
                assert_eq!(s.labels.get("engine"), r.engine.as_ref());
                assert!(s.value.to_bits() == r.value.to_bits());
                let others = s.labels.len() - s.labels.contains_key("engine") as usize
                    - s.labels.contains_key("model_name") as usize;
                if others == 0 {
                    assert!(r.labels.is_empty());
                }
            }
            if let Some(s) = e.samples.first() {
                let with: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                assert!(e.find(&s.name, &with).count() >= 1);
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            let n: usize = a
                .strip_prefix("line ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("error does not start with `line N:`: {a}"));
            assert!(n >= 1 && n <= text.lines().count(), "line {n} of {}", text.lines().count());
        }
        _ => panic!("parse and rows_from disagree: {parsed:?} vs {rows:?}"),
    }
});
