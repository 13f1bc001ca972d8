//! The client's own resource use (CPU seconds, peak memory), so a result can say when the
//! load generator itself was the limit.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessUsage {
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
    pub max_rss_bytes: u64,
}

impl ProcessUsage {
    pub fn now() -> Self {
        #[cfg(unix)]
        {
            let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage writes a rusage into the buffer we own; zeroed is a valid value.
            #[allow(unsafe_code)]
            let ru = unsafe {
                if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
                    return Self::default();
                }
                ru.assume_init()
            };
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            Self {
                user_cpu_s: tv(ru.ru_utime),
                system_cpu_s: tv(ru.ru_stime),
                // Linux reports kilobytes
                max_rss_bytes: ru.ru_maxrss as u64 * 1024,
            }
        }
        #[cfg(not(unix))]
        Self::default()
    }

    pub fn cpu_s(&self) -> f64 {
        self.user_cpu_s + self.system_cpu_s
    }

    /// CPU used since `earlier` (peak memory is the later one's).
    pub fn since(&self, earlier: &ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            user_cpu_s: self.user_cpu_s - earlier.user_cpu_s,
            system_cpu_s: self.system_cpu_s - earlier.system_cpu_s,
            max_rss_bytes: self.max_rss_bytes,
        }
    }
}

/// The process's resident memory now (`VmRSS`), where /proc has it.
pub fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_grows_with_what_we_hold() {
        let before = super::current_rss_bytes().expect("VmRSS");
        let held = vec![1u8; 64 << 20];
        let after = super::current_rss_bytes().expect("VmRSS");
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(held);
    }
}
