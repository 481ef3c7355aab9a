//! Crash points for the crash-cleanup tests: with `BERTH_TEST_KILL_AT=STEP`
//! in its environment, the process SIGKILLs itself when it reaches `STEP`,
//! exactly as a crash, an OOM kill or `systemctl kill -s KILL` there would
//! leave things. The tests (tests/e2e_crash.rs) then check that
//! `ExecStopPost=berth cleanup` and the next start leave nothing behind.
//!
//! With `BERTH_TEST_PAUSE_AT=STEP`, it sleeps 300 ms there instead: a race
//! the test wants lost (the init failing while the parent works beside it)
//! is then lost every time.
//!
//! Nothing else reads the variables; unset, a point costs two lookups of
//! the environment. The points are listed in `POINTS`, so a test can name every
//! one and a point that is removed from the code fails its test.

/// Every crash point, in the order a service-mode start reaches them.
pub const POINTS: &[&str] = &[
    "pull-layer",  // image: a layer downloaded and unpacked, the image not complete
    "seed",        // supervise: a named volume's seed copy made, not renamed into place
    "overlay",     // supervise: the upper dir made, the work dir not
    "cgroup",      // supervise: in <unit>/supervisor, payload/ not made
    "userns",      // supervise: an ID range allocated, its dirs not chowned
    "beside-init", // runtime: the init released to set itself up, the device filter not loaded
    "create",      // supervise: the container created, not started
    "network",     // supervise: its veths, leases and rules made, not started
];

/// SIGKILL this process if the environment names `point`.
pub fn point(point: &str) {
    debug_assert!(POINTS.contains(&point), "unlisted crash point {point}");
    if std::env::var_os("BERTH_TEST_KILL_AT").is_some_and(|v| v == point) {
        // SAFETY: raise with a constant signal number.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    if std::env::var_os("BERTH_TEST_PAUSE_AT").is_some_and(|v| v == point) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
