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

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_machine() {
        // whatever its state, the read never fails, and an unsynchronised clock has no bound
        let c = super::read();
        assert!(c.synchronised || c.max_error_ms.is_none());
        assert!(c.within(None).is_ok());
    }
}
