use super::*;
use loadtest_base::rng::Rng;

#[test]
fn percentile_matches_numpy_linear_on_small_examples() {
    // Values computed with numpy.percentile(x, p) (default method).
    let x = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(percentile_sorted(&x, 50.0), Some(2.5));
    assert_eq!(percentile_sorted(&x, 0.0), Some(1.0));
    assert_eq!(percentile_sorted(&x, 100.0), Some(4.0));
    assert!((percentile_sorted(&x, 90.0).unwrap() - 3.7).abs() < 1e-12);
    assert_eq!(percentile_sorted(&[5.0], 99.0), Some(5.0));
    assert_eq!(percentile_sorted(&[], 50.0), None);
}

#[test]
fn empty_sample_has_no_distribution() {
    assert!(Distribution::from_values(vec![]).is_none());
    assert!(Distribution::from_values(vec![f64::NAN]).is_none());
}

fn random_sample(rng: &mut Rng) -> Vec<f64> {
    let n = rng.range_inclusive(1, 300) as usize;
    let shape = rng.range_inclusive(0, 2);
    (0..n)
        .map(|_| match shape {
            0 => rng.f64() * 1000.0,
            1 => rng.exponential(50.0),
            // heavy ties: latencies quantised to whole milliseconds
            _ => (rng.f64() * 5.0).floor(),
        })
        .collect()
}

#[test]
fn property_percentiles_are_ordered_and_bounded() {
    let mut rng = Rng::new(42);
    for _ in 0..2_000 {
        let xs = random_sample(&mut rng);
        let grid: Vec<f64> = (0..=200).map(|i| i as f64 / 2.0).collect();
        let d = Distribution::from_values_with(xs.clone(), &grid).unwrap();
        assert!(d.min <= d.p50 && d.p50 <= d.p90 && d.p90 <= d.p95);
        assert!(d.p95 <= d.p99 && d.p99 <= d.p999 && d.p999 <= d.max);
        assert!(d.min <= d.mean + 1e-9 && d.mean <= d.max + 1e-9);
        assert!(d.std >= 0.0);
        assert_eq!(d.count, xs.len());
        let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((d.min, d.max), (lo, hi));
        // monotone in p on a fine grid
        let mut prev = f64::NEG_INFINITY;
        for &p in &grid {
            let q = d.percentile(p).expect("asked for");
            assert!(q >= prev);
            prev = q;
        }
    }
}

#[test]
fn percentiles_not_asked_for_are_absent_not_guessed() {
    let d = Distribution::from_values_with(vec![1.0, 2.0, 3.0, 4.0], &[25.0]).unwrap();
    assert_eq!(d.percentile(25.0), Some(1.75));
    assert_eq!(d.percentile(50.0), Some(2.5));
    assert_eq!(d.percentile(100.0), Some(4.0));
    assert_eq!(d.percentile(75.0), None);
}

#[test]
fn property_permutation_does_not_change_the_summary() {
    let mut rng = Rng::new(9);
    for _ in 0..300 {
        let mut xs = random_sample(&mut rng);
        let d1 = Distribution::from_values(xs.clone()).unwrap();
        // Fisher–Yates with our RNG
        for i in (1..xs.len()).rev() {
            let j = rng.range_inclusive(0, i as u64) as usize;
            xs.swap(i, j);
        }
        let d2 = Distribution::from_values(xs).unwrap();
        assert_eq!(d1, d2);
    }
}

/// The numbers `vllm bench serve` printed for a real run, recomputed from the per-request
/// lists it saved beside them (`tests/fixtures/vllm/bench-serve-result.json`).
#[test]
fn recomputes_vllm_bench_serve_summary_from_its_own_per_request_lists() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/vllm/bench-serve-result.json"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let list = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let ttfts = list("ttfts");
    let lat = list("latencies");
    let out = list("output_lens");
    let itls: Vec<f64> = v["itls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    let tpots: Vec<f64> = (0..ttfts.len())
        .filter(|&i| out[i] > 1.0)
        .map(|i| (lat[i] - ttfts[i]) / (out[i] - 1.0))
        .collect();
    let ms = |xs: &[f64]| xs.iter().map(|x| x * 1000.0).collect::<Vec<_>>();
    for (name, xs) in [
        ("ttft", ms(&ttfts)),
        ("tpot", ms(&tpots)),
        ("itl", ms(&itls)),
        ("e2el", ms(&lat)),
    ] {
        let d = Distribution::from_values(xs).unwrap();
        let want = |k: &str| v[format!("{k}_{name}_ms")].as_f64().unwrap();
        for (k, got) in [
            ("mean", d.mean),
            ("median", d.p50),
            ("std", d.std),
            ("p50", d.p50),
            ("p90", d.p90),
            ("p99", d.p99),
        ] {
            let w = want(k);
            assert!(
                (got - w).abs() < 1e-6,
                "{k}_{name}_ms: ours {got}, vLLM {w}"
            );
        }
    }
}
