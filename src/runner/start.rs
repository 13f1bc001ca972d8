//! The common start: every shard waits for the same wall-clock instant, then starts its
//! run's monotonic clock. Coarse sleeps while it is far, a short spin for the last
//! millisecond (the runtime's timers are millisecond-grained, a start should not be).

use std::time::Duration;
use tokio::sync::watch;

/// How long before a start the coarse sleeps hand over to the precise wait.
const PRECISE: Duration = Duration::from_millis(20);

/// Wait until the wall clock reads `at_unix_ns` (ns since the epoch). `Some(late)`: how
/// long after it the wait ended (ns; 0 or more: already past, it returns at once); `None`:
/// interrupted first.
pub async fn wait_until(at_unix_ns: i64, interrupt: &mut watch::Receiver<bool>) -> Option<i64> {
    loop {
        if *interrupt.borrow() {
            return None;
        }
        let left = at_unix_ns - loadtest_base::time::unix_now_ns();
        if left <= PRECISE.as_nanos() as i64 {
            break;
        }
        // wake at least every 100 ms: the wall clock may be stepped meanwhile
        let nap = Duration::from_nanos(left as u64).saturating_sub(PRECISE);
        tokio::select! {
            _ = tokio::time::sleep(nap.min(Duration::from_millis(100))) => {}
            // a closed channel (nobody left to signal) must not wake the loop hot
            Ok(()) = interrupt.changed() => {}
        }
    }
    let late = tokio::task::spawn_blocking(move || precise(at_unix_ns)).await;
    // a panic in the wait is a bug, never to pass as a signal
    Some(late.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
}

/// The last stretch on this thread: sleep to within 1 ms, then spin (yielding) to it.
fn precise(at_unix_ns: i64) -> i64 {
    let now = loadtest_base::time::unix_now_ns;
    let left = at_unix_ns - now();
    if left > 1_000_000 {
        std::thread::sleep(Duration::from_nanos((left - 1_000_000) as u64));
    }
    loop {
        let late = now() - at_unix_ns;
        if late >= 0 {
            return late;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::wait_until;
    use loadtest_base::time::unix_now_ns;

    #[tokio::test(flavor = "current_thread")]
    async fn starts_at_the_instant_or_says_how_late() {
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let at = unix_now_ns() + 60_000_000;
        let late = wait_until(at, &mut rx).await.unwrap();
        assert!(unix_now_ns() >= at);
        assert!(late >= 0);
        // an instant already past: at once, and late by as much
        let late = wait_until(unix_now_ns() - 5_000_000_000, &mut rx)
            .await
            .unwrap();
        assert!(late >= 5_000_000_000, "{late}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_interrupt_ends_the_wait() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let at = unix_now_ns() + 3_600_000_000_000;
        let waiting = tokio::spawn(async move { wait_until(at, &mut rx).await });
        // let it check the flag and go to sleep first: the signal must wake a waiter
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        tx.send(true).unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert_eq!(r.unwrap().unwrap(), None);
    }
}
