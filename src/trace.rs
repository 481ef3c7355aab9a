//! `BERTH_TRACE_START=1`: where a start's time goes (issue 13). Each step a
//! start passes prints one line to stderr — the journal under systemd —
//!
//! ```text
//! berth-trace:    3.412 ms  [1234] seccomp compiled
//! ```
//!
//! with the milliseconds since the first berth process of this start began
//! its `main`. The protected re-execution (runtime/exe.rs) and the cloned
//! container init inherit the origin through `BERTH_TRACE_T0`, so one
//! timeline covers all of them; the dynamic loader's work before `main` is
//! the one thing it cannot see (benches/unit-start-results.md has `perf`
//! for that). `berth build` marks each build step and each layer's phases
//! (tar and compression, sync, adoption) on the same timeline
//! (benches/build-results.md).
//!
//! The lines wait in memory until the process executes another program or
//! exits ([`flush`]): written one by one to the journal's stream, each cost
//! ~60 µs of the step after it on this machine, more than many steps take.
//!
//! Unset, a step costs one check of a flag read once per process.

use std::sync::OnceLock;

const ENV: &str = "BERTH_TRACE_START";
const ENV_T0: &str = "BERTH_TRACE_T0";

/// The origin in CLOCK_MONOTONIC nanoseconds, when tracing is on.
static ORIGIN: OnceLock<Option<u64>> = OnceLock::new();
/// This process set the origin: it is the start's first.
static ORIGIN_HERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Lines not written yet, each with the process that made it: a clone or
/// fork copies them, and each process writes only its own.
static PENDING: std::sync::Mutex<Vec<(u32, String)>> = std::sync::Mutex::new(Vec::new());
/// More than this many pending lines are written at once (`berth build`
/// traces every layer).
const MAX_PENDING: usize = 256;

extern "C" fn flush_at_exit() {
    flush();
}

fn origin() -> Option<u64> {
    *ORIGIN.get_or_init(|| {
        std::env::var_os(ENV).filter(|v| !v.is_empty() && v != "0")?;
        // SAFETY: registers a plain function, run by exit(3).
        unsafe { libc::atexit(flush_at_exit) };
        let inherited = std::env::var(ENV_T0).ok().and_then(|v| v.parse().ok());
        Some(inherited.unwrap_or_else(|| {
            let t0 = now_ns();
            ORIGIN_HERE.store(true, std::sync::atomic::Ordering::Relaxed);
            // Called first from main, before any thread exists: the
            // re-executed binary and the init child read it back.
            std::env::set_var(ENV_T0, t0.to_string());
            t0
        }))
    })
}

/// Whether `BERTH_TRACE_START` is on for this process.
pub fn enabled() -> bool {
    origin().is_some()
}

/// The first step of every berth process: `main`, and, in the process that
/// set the origin, the wall clock's time of it, which a benchmark holds
/// against when it asked systemd to start the unit and when systemd forked
/// the unit's main process.
pub fn main_entered() {
    if enabled() {
        if ORIGIN_HERE.load(std::sync::atomic::Ordering::Relaxed) {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime fills the timespec we own.
            unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
            let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            // And the origin itself, CLOCK_MONOTONIC as systemd's
            // ExecMainStartTimestampMonotonic: fork to main is the difference.
            let mono = origin().unwrap_or(0);
            step(&format!("main (realtime {ns} ns, monotonic {mono} ns)"));
        } else {
            step("main");
        }
    }
}

/// Record that the start reached `what`.
pub fn step(what: &str) {
    if let Some(t0) = origin() {
        let ms = now_ns().saturating_sub(t0) as f64 / 1e6;
        let pid = std::process::id();
        let line = format!("berth-trace: {ms:8.3} ms  [{pid}] {what}\n");
        let full = {
            let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((pid, line));
            pending.len() > MAX_PENDING
        };
        if full {
            flush();
        }
    }
}

/// Write this process's pending lines to stderr: before it executes
/// another program (the protected copy, the idle waiter, the container's
/// program), and at exit.
pub fn flush() {
    if ORIGIN.get().copied().flatten().is_none() {
        return;
    }
    let pid = std::process::id();
    let mine: Vec<String> = {
        let Ok(mut pending) = PENDING.lock() else {
            return;
        };
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *pending)
            .into_iter()
            .partition(|(p, _)| *p == pid);
        // Another process's: a parent's, copied by the clone or fork.
        drop(others);
        mine.into_iter().map(|(_, l)| l).collect()
    };
    // Whole lines, at most a pipe's atomic write at a time: the parent's
    // and the init's lines share one stderr and must not interleave
    // mid-line.
    let mut chunk = String::new();
    let mut err = std::io::stderr().lock();
    for line in mine {
        if !chunk.is_empty() && chunk.len() + line.len() > libc::PIPE_BUF {
            let _ = std::io::Write::write_all(&mut err, chunk.as_bytes());
            chunk.clear();
        }
        chunk.push_str(&line);
    }
    if !chunk.is_empty() {
        let _ = std::io::Write::write_all(&mut err, chunk.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn off_unless_asked() {
        // The test binary's environment does not set it.
        if std::env::var_os(super::ENV).is_none() {
            assert!(!super::enabled());
        }
    }
}
