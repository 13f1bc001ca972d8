//! What a signal means to `run` and `bench`: the first Ctrl-C, SIGTERM or SIGHUP stops
//! sending, cancels what is in flight, writes the partial results and tears the server down;
//! a second one aborts at once, killing every server process group we started first.
//!
//! The signals are watched from a thread of their own (with a one-thread runtime), not
//! from the run's runtime: a teardown that blocks the run's thread (a server ignoring
//! SIGTERM for its whole grace period) must not delay the second signal.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// What the first signal does, as it tells the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// Requests sent to a live (or real-time simulated) server.
    Live,
    /// Predictions in virtual time: nothing in flight, no server.
    Prediction,
}

impl OnSignal {
    /// `Prediction` when every cell is predicted in virtual time.
    pub fn of(all_virtual: bool) -> OnSignal {
        if all_virtual {
            OnSignal::Prediction
        } else {
            OnSignal::Live
        }
    }

    fn says(self) -> &'static str {
        match self {
            OnSignal::Live => {
                "cancelling in-flight requests, writing partial results and stopping the server"
            }
            OnSignal::Prediction => "stopping the prediction; what is unfinished is not kept",
        }
    }
}

/// A receiver that turns true at the first signal. Returns once the handlers are in place,
/// so no signal between here and the first await is lost to its default action.
pub fn interrupt_on_signals(on: OnSignal) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                let _ = ready_tx.send(false);
                return;
            };
            rt.block_on(watch_signals(tx, ready_tx, on));
        });
    if spawned.is_err() || ready_rx.recv() != Ok(true) {
        eprintln!("warning: cannot watch for signals: Ctrl-C will stop the process at once");
    }
    rx
}

async fn watch_signals(
    tx: watch::Sender<bool>,
    ready: std::sync::mpsc::Sender<bool>,
    on: OnSignal,
) {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = ready.send(false);
        return;
    };
    let _ = ready.send(true);
    let mut next = async || {
        tokio::select! {
            _ = int.recv() => ("interrupted", libc::SIGINT),
            _ = term.recv() => ("SIGTERM", libc::SIGTERM),
            _ = hup.recv() => ("SIGHUP", libc::SIGHUP),
        }
    };
    let (what, _) = next().await;
    eprintln!("\n{what}: {} (again to abort)", on.says());
    let _ = tx.send(true);
    let (what, signo) = next().await;
    let killed = crate::launcher::kill_all_servers();
    eprintln!(
        "\n{what} again: aborting{}",
        if killed > 0 {
            format!(" (killed {killed} server(s) we started)")
        } else {
            String::new()
        }
    );
    std::process::exit(128 + signo);
}
