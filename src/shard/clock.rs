//! How far this machine's wall clock can be trusted for a common start, as its kernel
//! knows it (`adjtimex`, read only), and which clock it is (the boot id: processes on one
//! machine, containers included, read one clock, so their offset is zero whatever its error).

use crate::store::shard_json::ClockState;

/// This machine's clock now.
pub fn read() -> ClockState {
    let (synchronised, max_error_ms, est_error_ms) = kernel();
    let text = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    ClockState {
        synchronised,
        max_error_ms,
        est_error_ms,
        boot_id: text("/proc/sys/kernel/random/boot_id"),
        host: std::env::var("NODE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| text("/proc/sys/kernel/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok()),
    }
}

/// `(synchronised, max error ms, estimated error ms)` from `adjtimex` in read-only mode.
#[cfg(target_os = "linux")]
fn kernel() -> (bool, Option<f64>, Option<f64>) {
    let mut tx = std::mem::MaybeUninit::<libc::timex>::zeroed();
    // SAFETY: `modes` is 0 (zeroed), so adjtimex only reads the kernel's clock state into
    // the buffer we own; zeroed is a valid `timex`.
    #[allow(unsafe_code)]
    let (state, tx) = unsafe {
        let state = libc::adjtimex(tx.as_mut_ptr());
        (state, tx.assume_init())
    };
    let unsync = state == -1 || state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
    if unsync {
        return (false, None, None);
    }
    let ms = |us: libc::c_long| Some(us as f64 / 1000.0);
    (true, ms(tx.maxerror), ms(tx.esterror))
}

#[cfg(not(target_os = "linux"))]
fn kernel() -> (bool, Option<f64>, Option<f64>) {
    (false, None, None)
}

/// The judgement of a clock's state against a bound: a shard's refusal, a merged cell's flag.
pub trait Judged {
    fn within(&self, bound_ms: Option<f64>) -> Result<(), String>;
}

impl Judged for ClockState {
    /// Whether the clock is within `bound_ms` of true time as far as its kernel knows
    /// (`None`: no bound asked, anything goes); `Err` says why not, for the shard's refusal
    /// or the merged cell's flag. Judged on the kernel's estimated error: its maximum error
    /// is a worst case that grows 0.5 ms a second between the time daemon's updates (past
    /// 100 ms three minutes after one, on a clock a millisecond off), and is kept beside it.
    fn within(&self, bound_ms: Option<f64>) -> Result<(), String> {
        let Some(bound) = bound_ms else {
            return Ok(());
        };
        match (self.synchronised, self.est_error_ms) {
            (false, _) | (true, None) => Err(format!(
                "the kernel says the clock{} is not synchronised: its offset to the other shards' clocks is unknown",
                on(self)
            )),
            (true, Some(e)) if e > bound => Err(format!(
                "the kernel estimates the clock{}'s error at {e:.1} ms (at most {}), more than the {bound} ms allowed",
                on(self),
                self.max_error_ms
                    .map_or("unknown".to_string(), |m| format!("{m:.1} ms"))
            )),
            _ => Ok(()),
        }
    }
}

/// ` (on `HOST`)` when the machine is known.
fn on(c: &ClockState) -> String {
    c.host
        .as_ref()
        .map(|h| format!(" (on `{h}`)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{ClockState, Judged};

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_machine_and_which_clock_it_is() {
        let c = super::read();
        // the boot id tells shards on one machine (one clock) from shards on several
        assert!(c.boot_id.as_ref().is_some_and(|b| b.len() >= 32), "{c:?}");
        // an unsynchronised clock has no error bound to trust
        assert!(c.synchronised || c.est_error_ms.is_none(), "{c:?}");
    }

    fn clock(synchronised: bool, est_error_ms: Option<f64>) -> ClockState {
        ClockState {
            synchronised,
            max_error_ms: est_error_ms.map(|e| e * 10.0),
            est_error_ms,
            boot_id: None,
            host: Some("node-1".into()),
        }
    }

    #[test]
    fn judged_against_the_bound() {
        assert!(clock(true, Some(4.0)).within(Some(10.0)).is_ok());
        let e = clock(true, Some(40.0)).within(Some(10.0)).unwrap_err();
        assert!(e.contains("40.0 ms") && e.contains("node-1"), "{e}");
        assert!(
            clock(false, None)
                .within(Some(1e9))
                .unwrap_err()
                .contains("not synchronised")
        );
        assert!(clock(false, None).within(None).is_ok());
    }
}
