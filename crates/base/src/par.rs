//! Independent jobs on every core, their results in the jobs' order: the cells of one server
//! configuration predicted in virtual time, the cells the aggregate stage reads back.
//!
//! Scoped threads pulling the next index from one counter, not a thread-pool crate: the jobs
//! are few (cells) and long (tens of milliseconds to seconds) and uneven, which a shared
//! counter balances as well as work stealing would.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of every item, on up to one thread per core; a job not started because `stop` said
/// so is `None` (a job that started runs to its end). One thread, or one item, runs inline.
pub fn map_until<T, R, F>(items: &[T], stop: &(dyn Fn() -> bool + Sync), f: F) -> Vec<Option<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items
            .iter()
            .map(|item| (!stop()).then(|| f(item)))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || stop() {
                        return;
                    }
                    let r = f(&items[i]);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// `f` of every item on every core, in the items' order.
pub fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    map_until(items, &|| false, f)
        .into_iter()
        .map(|r| r.expect("a job runs unless stopped"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn results_keep_the_items_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..40).collect();
        // later items finish first: a result stored by completion order would be reversed
        let out = map(&items, |&i| {
            std::thread::sleep(std::time::Duration::from_micros((40 - i) * 200));
            i * i
        });
        assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn a_stop_leaves_the_jobs_not_started_as_none() {
        let stopped = AtomicBool::new(false);
        let items: Vec<usize> = (0..50).collect();
        let out = map_until(&items, &|| stopped.load(Ordering::Relaxed), |&i| {
            if i == 5 {
                stopped.store(true, Ordering::Relaxed);
            }
            // a later job cannot end before the stop is set (the thread on job 5 may be
            // descheduled between taking it and setting the flag)
            while i > 5 && !stopped.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            i
        });
        assert!(
            out[5].is_some(),
            "the job that asked to stop ran to its end"
        );
        // only a job another thread had already taken when the stop came can follow it
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let after = out[6..].iter().filter(|r| r.is_some()).count();
        assert!(after < threads, "{after} jobs started after the stop");
        assert!(out.iter().flatten().all(|&v| out[v] == Some(v)));
    }

    #[test]
    fn no_items_no_threads_no_results() {
        let out: Vec<u8> = map(&[] as &[u8], |&x| x);
        assert!(out.is_empty());
    }
}
