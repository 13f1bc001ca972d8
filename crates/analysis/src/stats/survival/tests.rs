use super::*;
use loadtest_base::rng::Rng;

fn obs(done: &[f64], cut: &[f64]) -> Vec<Observation> {
    done.iter()
        .map(|&v| Observation::done(v))
        .chain(cut.iter().map(|&v| Observation::cut(v)))
        .collect()
}

#[test]
fn hand_computed_estimates() {
    // 1, 2 done; 3 cut; 4, 5 done. S: 0.8 at 1, 0.6 at 2, 0.3 at 4, 0 at 5.
    let s = Survival::from_observations(obs(&[1.0, 2.0, 4.0, 5.0], &[3.0]), &[75.0]).unwrap();
    assert_eq!((s.count, s.censored), (5, 1));
    let at_least = |value| Figure {
        value,
        lower_bound: true,
    };
    // survivors only would say 3 (numpy over 1,2,4,5); at the cut also 3; the estimate is
    // 4, and the cut request could still be anywhere above 3, so it is a bound
    assert_eq!(s.p50, at_least(4.0));
    assert_eq!(s.percentile(75.0), Some(at_least(4.5)));
    assert_eq!(s.p90, at_least(5.0));
    assert_eq!(s.min, Figure::known(1.0));
    // below the cut, nothing can move: known
    let s = Survival::from_observations(obs(&[1.0, 2.0, 4.0, 5.0], &[3.0]), &[20.0]).unwrap();
    assert_eq!(s.percentile(20.0), Some(Figure::known(1.8)));
    assert!(s.mean.lower_bound && s.max.lower_bound);
    assert_eq!((s.mean.value, s.max.value), (3.0, 5.0));
}

#[test]
fn a_censored_tail_gives_lower_bounds() {
    // 1, 2 done; 3, 4 still running at the cut: half the mass is unknown.
    let s = Survival::from_observations(obs(&[1.0, 2.0], &[3.0, 4.0]), &[25.0]).unwrap();
    assert_eq!(s.percentile(25.0), Some(Figure::known(1.75)));
    assert_eq!(
        s.p50,
        Figure {
            value: 2.5,
            lower_bound: true
        }
    );
    assert!(s.p99.lower_bound && s.max.lower_bound);
    assert_eq!(s.p99.display(1), "> 4.0");
    assert_eq!(
        serde_json::to_string(&s.p99).unwrap(),
        r#"{"at_least":3.97}"#
    );
    assert_eq!(serde_json::to_string(&s.min).unwrap(), "1.0");
}

/// The drain limit's case: the late half of a FIFO queue is cut. Percentiles in the fast,
/// finished half are known; those past it are bounds, never plain numbers, and never
/// above the truth.
#[test]
fn a_cut_queue_leaves_the_slow_half_bounded() {
    let truth: Vec<f64> = (1..=100).map(|i| i as f64 * 10.0).collect();
    let o: Vec<Observation> = truth
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i < 60 {
                Observation::done(v)
            } else {
                Observation::cut(v.min(650.0))
            }
        })
        .collect();
    let s = Survival::from_observations(o, &[]).unwrap();
    assert_eq!(s.p50, Figure::known(505.0));
    for f in [s.p90, s.p95, s.p99] {
        assert!(
            f.lower_bound && f.value >= 600.0 && f.value <= 1000.0,
            "{f:?}"
        );
    }
}

#[test]
fn nothing_finished_is_all_bounds_and_nothing_is_none() {
    let s = Survival::from_observations(obs(&[], &[7.0, 9.0]), &[]).unwrap();
    assert!(s.p50.lower_bound && s.min.lower_bound && s.mean.lower_bound);
    assert_eq!(s.p50.value, 8.0);
    assert!(Survival::from_observations(vec![], &[]).is_none());
    assert!(Survival::from_observations(vec![Observation::cut(f64::NAN)], &[]).is_none());
}

/// Random samples: a mix of shapes, heavy ties, and a censoring pattern that is either
/// independent of the value (random cuts) or administrative (everything past a cut).
fn censored_sample(rng: &mut Rng) -> (Vec<f64>, Vec<Observation>) {
    let n = rng.range_inclusive(1, 200) as usize;
    let shape = rng.range_inclusive(0, 2);
    let truth: Vec<f64> = (0..n)
        .map(|_| match shape {
            0 => rng.f64() * 1000.0,
            1 => rng.exponential(50.0),
            _ => (rng.f64() * 6.0).floor(),
        })
        .collect();
    let mode = rng.range_inclusive(0, 2);
    let share = rng.f64();
    let cut_at = truth.iter().cloned().fold(0.0, f64::max) * rng.f64();
    let observed = truth
        .iter()
        .map(|&v| match mode {
            0 if rng.f64() < share => Observation::cut(v * rng.f64()),
            1 if v > cut_at => Observation::cut(cut_at),
            2 if rng.f64() < share => Observation::cut((v * rng.f64()).floor()),
            _ => Observation::done(v),
        })
        .collect();
    (truth, observed)
}

/// The product-limit estimate at every time, the slow way: Efron's redistribution to the
/// right (each cut-off request hands its mass, in time order, equally to every observation
/// after it), which equals Kaplan–Meier without computing a product.
fn brute_force_cdf(obs: &[Observation], t: f64) -> f64 {
    let mut o = obs.to_vec();
    o.sort_by(|a, b| {
        a.value
            .total_cmp(&b.value)
            .then(a.censored.cmp(&b.censored))
    });
    let mut mass = vec![1.0 / o.len() as f64; o.len()];
    for i in 0..o.len() {
        if o[i].censored && i + 1 < o.len() {
            let share = mass[i] / (o.len() - i - 1) as f64;
            for m in &mut mass[i + 1..] {
                *m += share;
            }
            mass[i] = 0.0;
        }
    }
    o.iter()
        .zip(&mass)
        .filter(|(x, _)| !x.censored && x.value <= t)
        .map(|(_, m)| m)
        .sum()
}

#[test]
fn property_the_curve_is_the_product_limit_estimate() {
    let mut rng = Rng::new(7);
    for _ in 0..400 {
        let (_, mut o) = censored_sample(&mut rng);
        let n = o.len() as f64;
        let curve = Curve::new(&mut o);
        for &(t, _, last) in &curve.steps {
            let f = (last + 1.0) / n;
            let b = brute_force_cdf(&o, t);
            assert!((f - b).abs() < 1e-9, "F({t}) = {f}, brute force {b}");
        }
    }
}

#[test]
fn property_uncensored_equals_numpy_to_the_bit() {
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        let (truth, _) = censored_sample(&mut rng);
        let s = Survival::from_observations(
            truth.iter().map(|&v| Observation::done(v)).collect(),
            &[12.5],
        )
        .unwrap();
        let d = Distribution::from_values_with(truth, &[12.5]).unwrap();
        assert_eq!(
            (s.p50.value, s.p99.value, s.mean.value),
            (d.p50, d.p99, d.mean)
        );
        assert_eq!(
            s.percentile(12.5).unwrap().value,
            d.percentile(12.5).unwrap()
        );
        assert!(!s.has_bounds());
    }
}

/// What the estimator says is never below what is known for sure (each value at least its
/// cut) and is monotone in p; under one common cut, a lower bound is never above the truth.
#[test]
fn property_bounds_hold_against_the_true_values() {
    let mut rng = Rng::new(3);
    let grid: Vec<f64> = (0..=100).map(f64::from).collect();
    for _ in 0..400 {
        let (truth, o) = censored_sample(&mut rng);
        let administrative = o.iter().filter(|x| x.censored).all(|x| {
            o.iter().filter(|y| y.censored).all(|y| y.value == x.value)
                && o.iter().all(|y| y.censored || y.value <= x.value)
        });
        let at_cut = Distribution::from_values_with(o.iter().map(|x| x.value).collect(), &grid)
            .expect("non-empty");
        let real = Distribution::from_values_with(truth, &grid).expect("non-empty");
        let s = Survival::from_observations(o.clone(), &grid).unwrap();
        let mut prev = f64::NEG_INFINITY;
        for &p in &grid {
            let f = s.percentile(p).unwrap();
            assert!(f.value >= at_cut.percentile(p).unwrap(), "p{p}: {f:?}");
            // Below one cut, every value is known: the estimate is the truth, and a bound
            // (the drain limit's case) never exceeds it.
            if administrative && f.lower_bound {
                assert!(f.value <= real.percentile(p).unwrap() + 1e-9, "p{p}: {f:?}");
            }
            assert!(f.value >= prev, "not monotone at p{p}");
            prev = f.value;
        }
        assert!(s.mean.value <= real.mean + 1e-9 && s.max.value <= real.max);
    }
}

/// With censoring independent of the value, the estimate recovers the true quantiles that
/// the survivors alone miss.
#[test]
fn independent_censoring_is_undone() {
    let mut rng = Rng::new(5);
    let truth: Vec<f64> = (0..20_000).map(|_| rng.exponential(100.0)).collect();
    let o: Vec<Observation> = truth
        .iter()
        .map(|&v| {
            let cut = rng.exponential(150.0);
            if cut < v {
                Observation::cut(cut)
            } else {
                Observation::done(v)
            }
        })
        .collect();
    let survivors: Vec<f64> = o.iter().filter(|x| !x.censored).map(|x| x.value).collect();
    let real = Distribution::from_values(truth).unwrap();
    let naive = Distribution::from_values(survivors).unwrap();
    let s = Survival::from_observations(o, &[]).unwrap();
    assert!(s.censored > 5_000);
    for (est, truth, dropped) in [(s.p50, real.p50, naive.p50), (s.p90, real.p90, naive.p90)] {
        // cut requests sit below these percentiles: flagged, though the estimate is good
        assert!(est.lower_bound);
        assert!((est.value / truth - 1.0).abs() < 0.05, "{est:?} vs {truth}");
        assert!(
            dropped < 0.8 * truth,
            "survivors only: {dropped} vs {truth}"
        );
    }
}
