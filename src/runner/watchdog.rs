//! A server that stops answering without closing its port (a hung process, a stopped
//! container, a vLLM whose engine died behind a live API server): connections are still
//! accepted, so the refused-connection count never sees it, and every request would wait
//! for its own timeout. The watchdog probes `GET /health` beside the load and gives a
//! verdict when the server is gone.
//!
//! The verdict needs two things at once, so an overloaded but working server is never
//! taken for a dead one: [`LOST_AFTER_PROBES`] probes in a row failed (no answer within the
//! probe timeout, or not 200), *and* no request completed successfully since the first of
//! them.

use super::progress::Live;
use crate::client::{Server, get};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Failed probes in a row before the server is taken for lost.
pub const LOST_AFTER_PROBES: u32 = 3;

/// The verdict, once there is one; shared with the load point's loop.
#[derive(Default)]
pub struct Verdict(Mutex<Option<String>>);

impl Verdict {
    pub fn lost(&self) -> Option<String> {
        self.0.lock().expect("verdict").clone()
    }
}

/// Probe every server every `every` until `stop`; the verdict lands in the returned value.
pub fn spawn(
    servers: Vec<Server>,
    every: Duration,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> Arc<Verdict> {
    let verdict = Arc::new(Verdict::default());
    let out = verdict.clone();
    tokio::spawn(async move {
        let mut probes: Vec<Probe> = servers.into_iter().map(Probe::new).collect();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
            for p in &mut probes {
                let timeout = every.clamp(Duration::from_secs(1), Duration::from_secs(10));
                let ok_now = live.succeeded();
                let failure = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    f = p.probe(timeout) => f,
                };
                if let Some(why) = p.record(failure, ok_now) {
                    *out.0.lock().expect("verdict") = Some(why);
                    return;
                }
            }
        }
    });
    verdict
}

/// One server's probes so far.
struct Probe {
    server: Server,
    failed_in_a_row: u32,
    /// Successful requests when the current run of failures began.
    ok_at_first_failure: u64,
    since: Option<std::time::Instant>,
}

impl Probe {
    fn new(server: Server) -> Self {
        Self {
            server,
            failed_in_a_row: 0,
            ok_at_first_failure: 0,
            since: None,
        }
    }

    /// `None` when `/health` answered 200, else what went wrong.
    async fn probe(&self, timeout: Duration) -> Option<String> {
        let path = self.server.url.path("/health");
        match get::request(&self.server, "GET", &path, None, timeout).await {
            Ok((200, _)) => None,
            Ok((status, _)) => Some(format!("/health answered {status}")),
            Err(e) => Some(format!("{e:#}")),
        }
    }

    /// Count a probe's outcome (`ok_now`: successful requests so far); the verdict when
    /// this one makes the server lost.
    fn record(&mut self, failure: Option<String>, ok_now: u64) -> Option<String> {
        let Some(why) = failure else {
            self.failed_in_a_row = 0;
            self.since = None;
            return None;
        };
        if self.failed_in_a_row == 0 {
            self.ok_at_first_failure = ok_now;
            self.since = Some(std::time::Instant::now());
        }
        self.failed_in_a_row += 1;
        // requests still completing: the server works, only its health route is slow
        if ok_now > self.ok_at_first_failure {
            self.failed_in_a_row = 1;
            self.ok_at_first_failure = ok_now;
            self.since = Some(std::time::Instant::now());
            return None;
        }
        (self.failed_in_a_row >= LOST_AFTER_PROBES).then(|| {
            let secs = self.since.map_or(0.0, |t| t.elapsed().as_secs_f64());
            format!(
                "`{}` stopped answering: {LOST_AFTER_PROBES} health probes in a row failed over {secs:.1} s and no request completed meanwhile (last: {why})",
                self.server.url
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Access, BaseUrl};

    fn probe() -> Probe {
        let url = BaseUrl::parse("http://127.0.0.1:9").unwrap();
        Probe::new(
            Access::plain()
                .at(&url, "127.0.0.1:9".parse().unwrap())
                .unwrap(),
        )
    }

    #[test]
    fn three_failures_with_no_completion_are_a_verdict_and_progress_resets_it() {
        let mut p = probe();
        let fail = || Some("no answer".to_string());
        assert_eq!(p.record(fail(), 10), None);
        assert_eq!(p.record(fail(), 10), None);
        let v = p.record(fail(), 10).expect("lost after three");
        assert!(
            v.contains("3 health probes") && v.contains("no answer"),
            "{v}"
        );
        // a working server whose /health is slow: completions in between, never lost
        let mut p = probe();
        for ok in 0..10 {
            assert_eq!(p.record(fail(), ok * 5), None, "completions went on");
        }
        // an answer resets the count
        let mut p = probe();
        assert_eq!(p.record(fail(), 0), None);
        assert_eq!(p.record(fail(), 0), None);
        assert_eq!(p.record(None, 0), None);
        assert_eq!(p.record(fail(), 0), None);
        assert_eq!(p.record(fail(), 0), None);
        assert!(p.record(fail(), 0).is_some());
    }
}
