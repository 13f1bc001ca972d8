//! The one monotonic clock of a run, precise sleeping for threads that keep a schedule, and
//! the real-time priorities those threads (the pacer, the client's runtime) ask for.
//!
//! Every timestamp in a run is `Clock::now_ns()`: nanoseconds since the run's origin on
//! `std::time::Instant` (CLOCK_MONOTONIC). `tokio::time::sleep` rounds to milliseconds, which
//! is too coarse to pace thousands of requests per second or to time simulated engine steps;
//! `sleep_until` here sleeps in the kernel to just before the deadline, then spins.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn instant_at(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

/// How long before a deadline to stop sleeping in the kernel and spin instead. Zero: with
/// the thread's timer slack at 1 ns (see `tighten_timer_slack`) a kernel sleep wakes within
/// tens of microseconds, and a spinning thread steals the core from the runtime it feeds
/// when both share one core (measured: send lag p99 2 ms at 500 req/s with a 80 µs spin,
/// both pinned to one core).
const SPIN_WINDOW: Duration = Duration::ZERO;

/// Ask Linux to wake this thread's sleeps on time (default slack is 50 µs). Best effort.
pub fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_TIMERSLACK takes integers only and touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
    }
}

/// The pacer's real-time priority: its wake-ups preempt the runtime it feeds.
pub const PACER_PRIORITY: i32 = 2;
/// The client runtime's while a cell's load runs ([`Realtime`]): below the pacer's.
pub const RUNTIME_PRIORITY: i32 = 1;

/// Ask for a real-time priority (SCHED_FIFO `priority`) for the calling thread, so its
/// wake-ups preempt the ordinary threads it shares a core with instead of waiting for
/// them. Best effort: it needs CAP_SYS_NICE or an RLIMIT_RTPRIO allowance; returns whether
/// the thread runs at a real-time priority afterwards. Only for threads that sleep between
/// short bursts of work (a real-time thread that spins would starve its core; the kernel's
/// RT throttling is the backstop). Processes the thread starts begin at a normal priority
/// (SCHED_RESET_ON_FORK). A thread that inherited a real-time priority (the client started
/// under `chrt -f 10`) goes one above it instead of down to `priority`, below every other
/// thread of the process (found by a probe).
pub fn try_realtime_priority(priority: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // the priority it inherited, when it runs at a real-time one already
        let Some((_, inherited)) = Realtime::policy_of(0).filter(|(p, _)| {
            matches!(
                p & !libc::SCHED_RESET_ON_FORK,
                libc::SCHED_FIFO | libc::SCHED_RR
            )
        }) else {
            return Realtime::set(0, priority);
        };
        // SAFETY: reads nothing but its argument.
        #[allow(unsafe_code)]
        let max = unsafe { libc::sched_get_priority_max(libc::SCHED_FIFO) };
        let above = (inherited + 1).min(max).max(priority);
        // refused (no privilege beyond the inherited one): it stays where it was, real-time
        let _ = Realtime::set(0, above);
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = priority;
        false
    }
}

/// The calling thread at a real-time priority until this is dropped, then back to its
/// own policy. Why the client's runtime needs it: beside a busy server on the same cores
/// (vLLM's CPU build here: its worker, engine core and API server keep both cores of a
/// 2-core VM busy), the runtime's event loop stalled for up to 1.9 s at 2 req/s — sampled,
/// its thread was runnable but not run — while the real-time pacer woke on time;
/// timestamps taken then are late, and sends that needed the runtime went out late
/// (2026-12-02, 4 cells each way, alternated: event-loop lag max 37–485 ms at normal
/// priority, 2–3 ms raised).
#[derive(Debug)]
pub struct Realtime {
    #[cfg(target_os = "linux")]
    tid: libc::pid_t,
    #[cfg(target_os = "linux")]
    policy: libc::c_int,
    #[cfg(target_os = "linux")]
    priority: libc::c_int,
}

/// What raising the calling thread did.
#[derive(Debug)]
pub enum Raised {
    /// Raised; back to its own policy when this is dropped.
    Now(Realtime),
    /// It already ran at a real-time priority (`chrt`, a parent's choice): left as it is.
    Already,
    /// Not allowed (no CAP_SYS_NICE, RLIMIT_RTPRIO too low), or a policy this would not
    /// give back as it was (SCHED_DEADLINE): left as it is.
    No,
}

impl Raised {
    pub fn is_realtime(&self) -> bool {
        !matches!(self, Raised::No)
    }
}

impl Realtime {
    /// Raise the calling thread to SCHED_FIFO `priority`, but only where `ceiling` (≥
    /// `priority`) would be granted too: a thread meant to run below another real-time one
    /// (the runtime below the pacer it is fed by) must not be raised where that one is
    /// refused (`ulimit -r 1`), or it would preempt it.
    pub fn raise(priority: i32, ceiling: i32) -> Raised {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: gettid takes no argument and cannot fail.
            #[allow(unsafe_code)]
            let tid = unsafe { libc::gettid() };
            let Some((policy, own_priority)) = Self::policy_of(tid) else {
                return Raised::No;
            };
            match policy & !libc::SCHED_RESET_ON_FORK {
                libc::SCHED_FIFO | libc::SCHED_RR => return Raised::Already,
                libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE => {}
                _ => return Raised::No,
            }
            // the ceiling first: granted, the lower priority is too
            if !Self::set(tid, ceiling.max(priority)) {
                return Raised::No;
            }
            // from here `own` gives the thread back when dropped, whatever happens next
            let own = Self {
                tid,
                policy,
                priority: own_priority,
            };
            if Self::set(tid, priority) {
                Raised::Now(own)
            } else {
                Raised::No
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (priority, ceiling);
            Raised::No
        }
    }

    /// Thread `tid`'s policy (flags included) and priority (0: the caller); `None` when
    /// they cannot be read.
    #[cfg(target_os = "linux")]
    fn policy_of(tid: libc::pid_t) -> Option<(libc::c_int, libc::c_int)> {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: both read the policy and parameters of a thread of ours; the second
        // writes only into the `sched_param` we own.
        #[allow(unsafe_code)]
        let (policy, got) = unsafe {
            (
                libc::sched_getscheduler(tid),
                libc::sched_getparam(tid, &mut param),
            )
        };
        (policy >= 0 && got == 0).then_some((policy, param.sched_priority))
    }

    /// SCHED_FIFO `priority` for thread `tid` (0: the caller).
    #[cfg(target_os = "linux")]
    fn set(tid: libc::pid_t, priority: i32) -> bool {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: sched_setscheduler changes a thread's policy; it reads the one
        // `sched_param` we pass by reference and keeps no pointer to it.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::sched_setscheduler(tid, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
        };
        rc == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn set(_tid: i32, _priority: i32) -> bool {
        false
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let param = libc::sched_param {
                sched_priority: self.priority,
            };
            // Keeping SCHED_RESET_ON_FORK: Linux lets only a privileged caller clear it, and
            // a thread raised under `ulimit -r` alone could not go back otherwise (found by
            // a probe: EPERM). On a normal policy the flag only keeps a negative nice from
            // children. Should the call still fail, the thread stays real-time, and the next
            // cell's raise reads it as such (`Raised::Already`), which is then the truth.
            // SAFETY: as in `set`: the thread we raised, back to the policy it had.
            #[allow(unsafe_code)]
            unsafe {
                libc::sched_setscheduler(self.tid, self.policy | libc::SCHED_RESET_ON_FORK, &param);
            }
        }
    }
}

/// Block the current OS thread until `deadline`, to within a few microseconds.
/// Not for async tasks: it blocks.
pub fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN_WINDOW {
            std::thread::sleep(left - SPIN_WINDOW);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy() -> libc::c_int {
        Realtime::policy_of(0).unwrap().0 & !libc::SCHED_RESET_ON_FORK
    }

    fn priority() -> libc::c_int {
        Realtime::policy_of(0).unwrap().1
    }

    #[test]
    fn a_thread_that_inherited_a_real_time_priority_goes_above_it_not_below() {
        std::thread::spawn(|| {
            // what `chrt -f 10` gives every thread of the process
            if !Realtime::set(0, 10) {
                eprintln!("real-time priority refused here: nothing to test");
                return;
            }
            assert!(try_realtime_priority(PACER_PRIORITY));
            assert_eq!((policy(), priority()), (libc::SCHED_FIFO, 11));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_raised_thread_gets_its_own_policy_back() {
        std::thread::spawn(|| {
            let before = policy();
            match Realtime::raise(RUNTIME_PRIORITY, PACER_PRIORITY) {
                Raised::Now(raised) => {
                    assert_eq!(policy(), libc::SCHED_FIFO);
                    // already real-time: a second raise says so and leaves it to the first
                    let again = Realtime::raise(PACER_PRIORITY, PACER_PRIORITY);
                    assert!(matches!(again, Raised::Already) && again.is_realtime());
                    drop(raised);
                    assert_eq!(policy(), before);
                }
                // not allowed here (no CAP_SYS_NICE, no RLIMIT_RTPRIO): untouched
                Raised::No => {
                    eprintln!("real-time priority refused here: only the refusal is tested");
                    assert_eq!(policy(), before);
                }
                Raised::Already => assert_eq!(policy(), libc::SCHED_FIFO),
            }
        })
        .join()
        .unwrap();
    }
}
