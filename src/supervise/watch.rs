//! The steady state of a running container: wait for signals, the
//! container's exit, its sd_notify messages, health-check results and
//! terminal I/O; forward stop signals, kill after `stop_timeout`, report to
//! systemd and the journal.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use serde::{Deserialize, Serialize};

use super::{cgroup, console, health, journal, Paths, RunOptions, State, SuperviseError};
use crate::config::{Definition, Health, Notify};
use crate::runtime::{self, Stdio};
use journal::Priority;

/// What [`start`] hands to [`supervise`].
pub(super) struct Running {
    pub(super) container: runtime::Container,
    pub(super) payload: Option<PathBuf>,
    /// A number: the image's STOPSIGNAL may be a real-time signal
    /// (SIGRTMIN+3 for systemd), which `nix`'s `Signal` cannot hold.
    pub(super) stop_signal: i32,
    /// What SIGHUP (`systemctl reload`) becomes: `reload_signal` or SIGHUP.
    pub(super) reload_signal: i32,
    /// Signals we wait for, blocked since before the clone.
    pub(super) signals: SignalFd,
    /// The container's sd_notify socket (`notify = "container"`).
    pub(super) notify: Option<UnixDatagram>,
    /// `[health]`: the checks' state and how to exec them.
    pub(super) health: Option<HealthRunner>,
    /// The pty master of `berth run -t`.
    pub(super) console: Option<std::os::fd::OwnedFd>,
    /// payload/'s `memory.events`, open: the kernel wakes a poll on it
    /// (POLLPRI) when a count changes, an OOM kill among them.
    pub(super) memory_events: Option<std::fs::File>,
}

/// Everything the waiting loop knows of its container but its
/// descriptors, as plain data: a service's supervisor hands it across the
/// execve to its idle waiter and back ([`Watch::hand_off`], [`resume`]), so
/// that while nothing happens it is a program of a few KiB (issue 13).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WatchPlan {
    name: String,
    /// Under systemd: sd_notify messages go to it.
    systemd: bool,
    paths: Paths,
    /// The container's main process.
    pid: i32,
    payload: Option<PathBuf>,
    stop_signal: i32,
    reload_signal: i32,
    stop_timeout: Duration,
    /// The checks' configuration, the definition's or the image's.
    health: Option<Health>,
    /// `notify = "healthy"` with checks: READY=1 waits for a passing one.
    waits_for_health: bool,
    /// READY=1 went out (it waits for the container's own, or a check's).
    ready_sent: bool,
    /// The checks' state between two of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_state: Option<health::HealthSnapshot>,
    /// The container's sd_notify socket, inherited across the execve.
    notify_fd: Option<RawFd>,
    /// The descriptors only the waiter used: closed on the way back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    waiter_fds: Vec<RawFd>,
}

impl WatchPlan {
    fn new(opts: &RunOptions, def: &Definition, paths: &Paths, running: &Running) -> WatchPlan {
        let health = running.health.as_ref().map(|h| h.state.config().clone());
        let waits_for_health = def.service.notify == Notify::Healthy && health.is_some();
        WatchPlan {
            name: def.name.clone(),
            systemd: opts.systemd,
            paths: paths.clone(),
            pid: running.container.pid().as_raw(),
            payload: running.payload.clone(),
            stop_signal: running.stop_signal,
            reload_signal: running.reload_signal,
            stop_timeout: def.service.stop_timeout,
            ready_sent: running.notify.is_none() && !waits_for_health,
            waits_for_health,
            health,
            health_state: None,
            notify_fd: None,
            waiter_fds: Vec::new(),
        }
    }
}

/// What running a health check in the container takes.
pub(super) struct HealthRunner {
    pub(super) state: health::HealthState,
    /// The container's confinement, which each check runs under.
    pub(super) template: super::ExecTemplate,
    pub(super) seccomp_cache: PathBuf,
}

impl HealthRunner {
    /// Start one check inside the container; its PID.
    fn spawn(
        &self,
        name: &str,
        pid: Pid,
        cgroup: Option<&PathBuf>,
    ) -> Result<i32, runtime::RuntimeError> {
        let child = runtime::exec(runtime::ExecOptions {
            cgroup: cgroup.cloned(),
            stdio: Stdio::Null,
            seccomp_cache: Some(self.seccomp_cache.clone()),
            ..runtime::ExecOptions::new(
                name,
                pid,
                // The supervisor's own child: its PID cannot be reused
                // before the supervisor reaps it.
                None,
                self.template
                    .process_for(self.state.command().to_vec(), false),
                self.template.confinement.clone(),
            )
        })?;
        Ok(child.pid.as_raw())
    }
}

/// What of a container's sd_notify message reaches systemd: `READY=1` and
/// `STATUS=` only. Never `MAINPID=` (the unit's main process must stay the
/// supervisor), nor `STOPPING=1`, `WATCHDOG=`, `FDSTORE=` or anything else
/// that would let a container steer its unit.
pub fn relay_notify(message: &str) -> Option<String> {
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| *l == "READY=1" || l.starts_with("STATUS="))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("\n"))
    }
}

use runtime::exit_status as status_code;

/// The descriptors the loop waits on.
struct Live {
    signals: SignalFd,
    notify: Option<UnixDatagram>,
    console: Option<std::os::fd::OwnedFd>,
    memory_events: Option<std::fs::File>,
    /// The start's handle on the container, kept for as long as it runs
    /// (not across a handoff: only its PID is needed to watch it).
    _container: Option<runtime::Container>,
}

/// The steady state: wait for signals and the container's exit.
pub(super) fn supervise(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
    st: &mut State,
    mut running: Running,
) -> Result<i32, SuperviseError> {
    let plan = WatchPlan::new(opts, def, paths, &running);
    let health = running.health.take();
    announce_start(&plan, def, st, running.notify.is_some());
    let live = Live {
        signals: running.signals,
        notify: running.notify,
        console: running.console,
        memory_events: running.memory_events,
        _container: Some(running.container),
    };
    watch(plan, st, live, health)
}

/// The loop itself, entered from [`supervise`] or, on the way back from
/// the idle waiter, from [`resume`]. A service's supervisor hands the
/// wait to the waiter whenever all is quiet (not with a terminal to relay:
/// ad hoc `berth run -t` is no service); when that fails, it waits here.
fn watch(
    plan: WatchPlan,
    st: &mut State,
    live: Live,
    health: Option<HealthRunner>,
) -> Result<i32, SuperviseError> {
    // One plan a process, for as long as it lives.
    let plan: &'static WatchPlan = Box::leak(Box::new(plan));
    let mut w = Watch::new(plan, st, live, health);
    // A kill the waiter woke us for, or one before this image's descriptor
    // was opened (it wakes a poll only for changes after its opening).
    w.on_memory_events();
    let mut may_hand_off = w.plan.systemd && w.live.console.is_none() && waiter::AVAILABLE;
    // Raw mode only while relaying; restored when this goes out of scope.
    let _raw = w.live.console.as_ref().map(|m| {
        console::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(m));
        console::sync_size(m);
        console::RawMode::enter()
    });
    if !may_hand_off {
        // This process idles next to its container for as long as it
        // runs: give back the binary's resident read-only pages (they
        // fault back from the page cache when an event needs them).
        runtime::release_resident_code();
    }
    loop {
        match w.run(may_hand_off)? {
            Outcome::Exited(code) => return Ok(w.finish(code)),
            Outcome::Quiet => {
                let e = w.hand_off();
                journal::event(
                    Priority::Warning,
                    w.name(),
                    "handoff",
                    &format!(
                        "the supervisor of \"{}\" waits in itself, not in its idle waiter: {e}",
                        w.name()
                    ),
                    &[],
                );
                may_hand_off = false;
                runtime::release_resident_code();
            }
        }
    }
}

/// What [`Watch::run`] returns.
enum Outcome {
    /// The main process is gone, with this status.
    Exited(i32),
    /// Nothing runs, is due or is pending: time to hand the wait off.
    Quiet,
}

/// The environment variable that carries a [`WatchPlan`] across the
/// execve to the waiter and back.
const HANDOFF_ENV: &str = "BERTH_WATCH";

/// The idle waiter (src/waiter/waiter.rs, built by build.rs), embedded.
mod waiter {
    #[cfg(berth_waiter)]
    pub(super) const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-wait"));
    #[cfg(not(berth_waiter))]
    pub(super) const PROGRAM: &[u8] = &[];
    pub(super) const AVAILABLE: bool = !PROGRAM.is_empty();
    /// What the waiter reads: `EXE TIMEOUT_MS FD:EVENTS…`.
    pub(super) const ENV: &str = "BERTH_WAIT";
}

/// The way back from the idle waiter: when the environment carries a
/// plan, wait on the container as the supervisor that started it would
/// have, then exit as it would; None when this is no such return.
pub(super) fn resume(opts: &RunOptions, name: &str) -> Option<Result<i32, SuperviseError>> {
    let json = std::env::var_os(HANDOFF_ENV)?;
    // Not for the container's health checks or anything else we start.
    std::env::remove_var(HANDOFF_ENV);
    std::env::remove_var(waiter::ENV);
    crate::trace::step("supervise: back from the idle waiter");
    Some(resume_plan(opts, name, json.as_encoded_bytes()))
}

fn resume_plan(opts: &RunOptions, name: &str, json: &[u8]) -> Result<i32, SuperviseError> {
    let bad = |reason: String| SuperviseError::Exec {
        name: name.to_string(),
        reason: format!("the idle waiter's plan ({HANDOFF_ENV}): {reason}"),
    };
    let mut plan: WatchPlan = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if plan.name != name || !opts.systemd {
        return Err(bad(format!("it is for \"{}\"", plan.name)));
    }
    for fd in std::mem::take(&mut plan.waiter_fds) {
        // SAFETY: descriptors this process opened for the waiter before
        // the execve and nothing here uses.
        unsafe { libc::close(fd) };
    }
    // SAFETY: the descriptor was ours before the execve, handed on for
    // this; nothing else in this image owns it.
    let notify = plan
        .notify_fd
        .take()
        .map(|fd| unsafe { UnixDatagram::from_raw_fd(fd) });
    if let Some(s) = &notify {
        // SAFETY: F_SETFD on the descriptor just taken.
        unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let run_dir = &plan.paths.run_dir;
    let mut st =
        State::load(run_dir)?.ok_or_else(|| bad(format!("no record in {}", run_dir.display())))?;
    let now = Instant::now();
    let health = match &plan.health {
        Some(cfg) => {
            let template = super::ExecTemplate::load(run_dir)?
                .ok_or_else(|| bad(format!("no exec template in {}", run_dir.display())))?;
            Some(HealthRunner {
                state: match &plan.health_state {
                    Some(snap) => {
                        health::HealthState::restore(cfg.clone(), snap, now, health::monotonic_ms())
                    }
                    None => health::HealthState::new(cfg.clone(), now),
                },
                template,
                seccomp_cache: plan.paths.seccomp_cache.clone(),
            })
        }
        None => None,
    };
    // The signals stayed blocked across both execs, and a pending one is
    // still pending: a new signalfd reads it.
    let live = Live {
        signals: super::start::block_signals()?,
        notify,
        console: None,
        memory_events: open_memory_events(plan.payload.as_ref()),
        _container: None,
    };
    let paths = plan.paths.clone();
    let result = watch(plan, &mut st, live, health);
    super::teardown_after_exit(opts, &paths, &st);
    result
}

fn open_memory_events(payload: Option<&PathBuf>) -> Option<std::fs::File> {
    payload.and_then(|p| std::fs::File::open(p.join("memory.events")).ok())
}

/// Tell systemd and the journal that the container runs (READY=1 unless
/// the container or its first health check says so later).
fn announce_start(plan: &WatchPlan, def: &Definition, st: &mut State, container_notifies: bool) {
    let (name, pid) = (plan.name.as_str(), plan.pid);
    let notify = |m: &str| {
        if plan.systemd {
            crate::systemd::notify(m);
        }
    };
    if plan.health.is_some() {
        st.health = Some(health::Status::Starting.as_str().to_string());
        let _ = st.save(&plan.paths.run_dir);
    }
    if container_notifies {
        notify("STATUS=running, waiting for the container's READY=1");
    } else if plan.waits_for_health {
        notify("STATUS=running, waiting for the first passing health check");
    } else if def.service.notify == Notify::Healthy {
        notify("READY=1\nSTATUS=running (notify = \"healthy\" without [health]: ready at start)");
    } else {
        notify(&format!("READY=1\nSTATUS=running{}", where_reached(st)));
    }
    journal::event(
        Priority::Info,
        name,
        "started",
        &format!("container \"{name}\" started (pid {pid})"),
        &[("CONTAINER_PID", pid.to_string())],
    );
}

/// The watch loop's state. [`Watch::run`] waits for the next event and
/// hands it to its handler: a child's exit ([`Watch::on_children`]), a
/// health check due ([`Watch::on_health_tick`]) or done
/// ([`Watch::on_health`]), the stop timeout ([`Watch::on_stop_timeout`]),
/// terminal I/O ([`Watch::on_console`]), an sd_notify message
/// ([`Watch::on_notify`]) and a signal from systemd ([`Watch::on_signal`]).
struct Watch<'a> {
    plan: &'a WatchPlan,
    st: &'a mut State,
    live: Live,
    /// The container's main process.
    pid: Pid,
    health: Option<HealthRunner>,
    ready_sent: bool,
    /// Set by the first stop signal: when the container is killed.
    deadline: Option<Instant>,
    /// The last signal forwarded to the container: its death by it is a clean stop.
    forwarded: Option<i32>,
    /// Killed after `stop_timeout`.
    killed: bool,
    stdin_open: bool,
    master_open: bool,
}

/// Which descriptors [`Watch::wait`] found ready: the terminal's, and
/// payload/'s `memory.events` changed.
struct ConsoleReady {
    stdin: bool,
    master: bool,
    memory_events: bool,
}

impl<'a> Watch<'a> {
    fn new(
        plan: &'a WatchPlan,
        st: &'a mut State,
        live: Live,
        health: Option<HealthRunner>,
    ) -> Watch<'a> {
        let ready_sent = plan.ready_sent;
        let with_console = live.console.is_some();
        Watch {
            plan,
            st,
            pid: Pid::from_raw(plan.pid),
            live,
            health,
            ready_sent,
            deadline: None,
            forwarded: None,
            killed: false,
            stdin_open: with_console,
            master_open: with_console,
        }
    }

    fn name(&self) -> &'a str {
        &self.plan.name
    }

    fn notify(&self, message: &str) {
        if self.plan.systemd {
            crate::systemd::notify(message);
        }
    }

    /// Until the main process is gone (its exit status), or, when it may
    /// hand off, until nothing is left to do but wait.
    fn run(&mut self, may_hand_off: bool) -> Result<Outcome, SuperviseError> {
        loop {
            let now = Instant::now();
            // Reap first: a SIGCHLD may have been merged with an earlier one.
            if let Some(code) = self.on_children()? {
                return Ok(Outcome::Exited(code));
            }
            self.on_health_tick(now);
            if self.deadline.is_some_and(|d| now >= d) && !self.killed {
                self.on_stop_timeout();
                continue;
            }
            if may_hand_off && self.quiet() {
                return Ok(Outcome::Quiet);
            }
            let ready = self.wait(now)?;
            if ready.memory_events {
                self.on_memory_events();
            }
            self.on_console(ready)?;
            self.on_notify();
            while let Ok(Some(info)) = self.live.signals.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    self.on_signal(sig);
                }
            }
        }
    }

    /// Nothing to do but wait: not stopping, no check running, and no
    /// signal, notify message or `memory.events` change waiting to be read.
    fn quiet(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        if self.deadline.is_some()
            || self.killed
            || self.health.as_ref().is_some_and(|h| h.state.in_flight())
        {
            return false;
        }
        let mut fds = vec![PollFd::new(self.live.signals.as_fd(), PollFlags::POLLIN)];
        if let Some(sock) = &self.live.notify {
            fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
        }
        if let Some(f) = &self.live.memory_events {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLPRI));
        }
        matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }

    /// Become the idle waiter (src/waiter/waiter.rs) until something
    /// happens: it polls the signalfd (stop, reload, the container's exit),
    /// the notify socket and `memory.events` until one is ready or the next
    /// check is due, then executes this binary again (the same file: the
    /// protected copy, or berth on disk with the trampoline for health
    /// checks), which [`resume`]s from the plan. The PID
    /// stays, and with it what systemd knows: main PID, NotifyAccess=main,
    /// the container as our child, the blocked and pending signals.
    /// Returns only when that failed, with why, everything as it was.
    fn hand_off(&mut self) -> String {
        let now = Instant::now();
        let mut plan = self.plan.clone();
        plan.ready_sent = self.ready_sent;
        plan.health_state = self
            .health
            .as_ref()
            .and_then(|h| h.state.snapshot(now, health::monotonic_ms()));
        // Rounded up: woken early, the check would not be due yet.
        let timeout_ms: i64 = self.health.as_ref().map_or(-1, |h| {
            (h.state.next_wakeup(now).as_millis() + 1).min(i32::MAX as u128) as i64
        });
        let inherit = |fd: RawFd, on: bool| {
            let flags = if on { 0 } else { libc::FD_CLOEXEC };
            // SAFETY: F_SETFD on a descriptor we own.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
        };
        let program = match runtime::sealed_program(&mut &waiter::PROGRAM[..]) {
            Ok(p) => p,
            Err(e) => return format!("the waiter's memfd: {e}"),
        };
        // The way back: this binary, as an O_PATH descriptor the waiter
        // keeps (the protected copy stays reachable through it).
        // SAFETY: open(2) of a constant path; the result is checked.
        let exe = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH) };
        if exe < 0 {
            return format!("open /proc/self/exe: {}", std::io::Error::last_os_error());
        }
        // SAFETY: just opened, ours alone.
        let exe = unsafe { std::os::fd::OwnedFd::from_raw_fd(exe) };
        // kernfs wakes a poll on a descriptor whose last read saw another
        // count than the file's, and a fresh one has read nothing: read it
        // once, or the waiter wakes at once, for ever, after the first OOM
        // kill. Changes from then on wake it; what came before is read
        // here, through our own descriptor.
        let events = open_memory_events(plan.payload.as_ref());
        if let Some(f) = &events {
            use std::os::unix::fs::FileExt;
            let _ = f.read_at(&mut [0u8; 512], 0);
        }
        self.on_memory_events();
        let signals = self.live.signals.as_fd().as_raw_fd();
        let mut polled = vec![(signals, libc::POLLIN)];
        plan.notify_fd = self.live.notify.as_ref().map(|s| s.as_raw_fd());
        if let Some(fd) = plan.notify_fd {
            polled.push((fd, libc::POLLIN));
        }
        if let Some(f) = &events {
            polled.push((f.as_raw_fd(), libc::POLLPRI));
        }
        plan.waiter_fds = vec![exe.as_raw_fd(), signals];
        plan.waiter_fds
            .extend(events.as_ref().map(|f| f.as_raw_fd()));
        let json = match serde_json::to_string(&plan) {
            Ok(j) => j,
            Err(e) => return e.to_string(),
        };
        let mut wait = format!("{} {timeout_ms}", exe.as_raw_fd());
        for (fd, ev) in &polled {
            wait.push_str(&format!(" {fd}:{ev}"));
        }
        for (fd, _) in &polled {
            inherit(*fd, true);
        }
        // Single-threaded: nothing else reads the environment meanwhile.
        std::env::set_var(HANDOFF_ENV, json);
        std::env::set_var(waiter::ENV, wait);
        crate::trace::step("supervise: waiting in the idle waiter");
        let err = runtime::execute(&program);
        std::env::remove_var(HANDOFF_ENV);
        std::env::remove_var(waiter::ENV);
        for (fd, _) in &polled {
            inherit(*fd, false);
        }
        err.to_string()
    }

    /// Children exited: the main process's status once it is gone; a health
    /// check's result.
    fn on_children(&mut self) -> Result<Option<i32>, SuperviseError> {
        let (main_code, others) = reap(self.pid)?;
        for (p, code) in others {
            let status = self
                .health
                .as_mut()
                .filter(|h| h.state.is_check(p))
                .and_then(|h| h.state.finished(code == 0, Instant::now()));
            if let Some(status) = status {
                self.on_health(status);
            }
        }
        Ok(main_code)
    }

    /// Kill an overdue check; start one that is due (not while stopping).
    fn on_health_tick(&mut self, now: Instant) {
        let name = self.name();
        let Some(h) = self.health.as_mut() else {
            return;
        };
        if let Some(p) = h.state.overdue(now) {
            // Killed checks come back through reap as failures.
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        if self.deadline.is_some() || !h.state.due(now) {
            return;
        }
        let failed = match h.spawn(name, self.pid, self.plan.payload.as_ref()) {
            Ok(p) => {
                h.state.started(p, now);
                None
            }
            Err(e) => {
                journal::event(
                    Priority::Warning,
                    name,
                    "health-error",
                    &format!("health check of \"{name}\" could not run: {e}"),
                    &[],
                );
                h.state.finished(false, now)
            }
        };
        if let Some(status) = failed {
            self.on_health(status);
        }
    }

    /// A health status changed: record it, tell systemd (READY=1 on the
    /// first pass when it waits for one), kill an unhealthy container if
    /// `on_failure` says so.
    fn on_health(&mut self, status: health::Status) {
        let name = self.name();
        let s = status.as_str();
        // `berth ps`/`inspect` read it from the record.
        self.st.health = Some(s.to_string());
        let _ = self.st.save(&self.plan.paths.run_dir);
        let prio = if status == health::Status::Unhealthy {
            Priority::Warning
        } else {
            Priority::Info
        };
        journal::event(
            prio,
            name,
            s,
            &format!("container \"{name}\" is {s}"),
            &[("HEALTH", s.to_string())],
        );
        if status == health::Status::Healthy && !self.ready_sent && self.plan.waits_for_health {
            self.notify("READY=1\nSTATUS=running (healthy)");
            self.ready_sent = true;
        } else {
            self.notify(&format!("STATUS=running ({s})"));
        }
        if status == health::Status::Unhealthy
            && self
                .plan
                .health
                .as_ref()
                .is_some_and(|h| h.on_failure != crate::config::OnFailure::None)
        {
            // `restart`: the unit fails and systemd's Restart= brings it back.
            journal::event(
                Priority::Warning,
                name,
                "unhealthy-kill",
                &format!("killing unhealthy container \"{name}\""),
                &[],
            );
            kill_all(self.plan, Signal::SIGKILL);
        }
    }

    /// `stop_timeout` passed since the first stop signal: SIGKILL.
    fn on_stop_timeout(&mut self) {
        let name = self.name();
        journal::event(
            Priority::Warning,
            name,
            "stop-timeout",
            &format!(
                "container \"{name}\" did not stop within {}s, killing it",
                self.plan.stop_timeout.as_secs_f64()
            ),
            &[],
        );
        kill_all(self.plan, Signal::SIGKILL);
        self.killed = true;
    }

    /// Sleep until a signal, a notify message, terminal input or output, or
    /// the next deadline (stop timeout, health check).
    fn wait(&self, now: Instant) -> Result<ConsoleReady, SuperviseError> {
        use nix::poll::{PollFd, PollFlags};
        let mut timeout = match self.deadline {
            Some(d) => d.saturating_duration_since(now),
            None => Duration::from_secs(3600),
        };
        if let Some(h) = &self.health {
            timeout = timeout.min(h.state.next_wakeup(now).max(Duration::from_millis(1)));
        }
        let mut fds = vec![PollFd::new(self.live.signals.as_fd(), PollFlags::POLLIN)];
        if let Some(sock) = &self.live.notify {
            fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
        }
        let mut events_at = None;
        if let Some(f) = &self.live.memory_events {
            events_at = Some(fds.len());
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLPRI));
        }
        let stdin = std::io::stdin();
        let (mut stdin_at, mut master_at) = (None, None);
        if let Some(m) = &self.live.console {
            if self.stdin_open {
                stdin_at = Some(fds.len());
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if self.master_open {
                master_at = Some(fds.len());
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if self.killed { 100 } else { ms.max(1) };
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(SuperviseError::sys("poll", e)),
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        Ok(ConsoleReady {
            stdin: ready(stdin_at),
            master: ready(master_at),
            memory_events: ready(events_at),
        })
    }

    /// `berth run -t`: relay the terminal both ways.
    fn on_console(&mut self, ready: ConsoleReady) -> Result<(), SuperviseError> {
        use std::os::fd::AsRawFd;
        let Some(m) = &self.live.console else {
            return Ok(());
        };
        if ready.stdin {
            let mut to = std::fs::File::from(
                m.try_clone()
                    .map_err(|e| SuperviseError::io("dup", "pty master", e))?,
            );
            if console::pump(0, &mut to) == console::Pumped::Done {
                self.stdin_open = false;
            }
        }
        if ready.master
            && console::pump(m.as_raw_fd(), &mut std::io::stdout()) == console::Pumped::Done
        {
            self.master_open = false;
        }
        Ok(())
    }

    /// The container's sd_notify messages: relay what it may say.
    fn on_notify(&self) {
        let Some(sock) = &self.live.notify else {
            return;
        };
        while let Some((text, from_container)) = super::sender::recv(sock, self.pid) {
            if !from_container {
                journal::event(
                    Priority::Warning,
                    self.name(),
                    "notify",
                    "ignored an sd_notify message from a process outside the container",
                    &[],
                );
                continue;
            }
            if let Some(m) = relay_notify(&text) {
                self.notify(&m);
            }
        }
    }

    /// A signal to the supervisor: SIGTERM (systemctl stop) becomes the
    /// image's stop signal and starts the stop timeout; others are forwarded.
    fn on_signal(&mut self, sig: Signal) {
        match sig {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let Some(m) = &self.live.console {
                    console::sync_size(m);
                }
            }
            Signal::SIGHUP => {
                let to = self.plan.reload_signal;
                if to != libc::SIGHUP {
                    journal::event(
                        Priority::Info,
                        self.name(),
                        "reloading",
                        &format!(
                            "reloading container \"{}\" with {}",
                            self.name(),
                            runtime::signal_name(to)
                        ),
                        &[],
                    );
                }
                let _ = runtime::send_signal(self.pid.as_raw(), to);
            }
            _ => {
                let to = if sig == Signal::SIGTERM {
                    self.plan.stop_signal
                } else {
                    sig as i32
                };
                if self.deadline.is_none() {
                    let name = self.name();
                    self.notify("STOPPING=1\nSTATUS=stopping");
                    journal::event(
                        Priority::Info,
                        name,
                        "stopping",
                        &format!(
                            "stopping container \"{name}\" with {}",
                            runtime::signal_name(to)
                        ),
                        &[],
                    );
                    self.deadline = Some(Instant::now() + self.plan.stop_timeout);
                }
                let _ = runtime::send_signal(self.pid.as_raw(), to);
                self.forwarded = Some(to);
            }
        }
    }

    /// The main process exited with `code`: report OOM kills, kill what is
    /// left, clear the record's PID, log the exit. The supervisor's status:
    /// 0 for a stop by the signal we forwarded, else `code`.
    fn finish(&mut self, code: i32) -> i32 {
        let name = self.name();
        if let Some(m) = &self.live.console {
            console::drain(m);
        }
        // Kills the loop has not seen yet (the last ones, or all of them
        // without a memory.events to poll).
        self.on_memory_events();
        // The main process is gone: nothing else in the container may outlive it.
        kill_all(self.plan, Signal::SIGKILL);
        self.st.container_pid = None;
        self.st.container_start_time = None;
        let _ = self.st.save(&self.plan.paths.run_dir);
        let clean_stop = self.forwarded.is_some_and(|s| code == 128 + s);
        let message = if code > 128 {
            let sig = Signal::try_from(code - 128)
                .map(|s| s.to_string())
                .unwrap_or_default();
            format!("container \"{name}\" was killed by {sig} (status {code})")
        } else {
            format!("container \"{name}\" exited with code {code}")
        };
        journal::event(
            if code == 0 || clean_stop {
                Priority::Info
            } else {
                Priority::Notice
            },
            name,
            "exited",
            &message,
            &[("EXIT_STATUS", code.to_string())],
        );
        if clean_stop {
            0
        } else {
            code
        }
    }
}

impl Watch<'_> {
    /// payload/'s `memory.events` changed (or the container ended): an OOM
    /// kill not reported yet is a structured journal event and goes into
    /// the record, so `berth ps` and `inspect` show it while the container
    /// runs on, as when its main process survives the kill of a child.
    fn on_memory_events(&mut self) {
        let Some(total) = self.read_oom_kills() else {
            return;
        };
        if total <= self.st.oom_kills {
            return;
        }
        let (name, new) = (self.name(), total - self.st.oom_kills);
        journal::event(
            Priority::Warning,
            name,
            "oom-killed",
            &format!("container \"{name}\" ran out of memory: the kernel killed {new} of its processes ({total} in this run)"),
            &[
                ("OOM_KILLS", total.to_string()),
                ("OOM_KILLS_NEW", new.to_string()),
            ],
        );
        self.st.oom_kills = total;
        let _ = self.st.save(&self.plan.paths.run_dir);
    }

    /// `oom_kill` of payload/'s `memory.events`: read through the open file
    /// (which re-arms its poll) into a buffer on the stack, so the waiting
    /// supervisor allocates nothing for it; else by path.
    fn read_oom_kills(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        match &self.live.memory_events {
            Some(f) => {
                let mut buf = [0u8; 512];
                let n = f.read_at(&mut buf, 0).ok()?;
                let text = std::str::from_utf8(&buf[..n]).ok()?;
                Some(cgroup::parse_oom_kills(text))
            }
            None => {
                let p = self.plan.payload.as_ref()?.join("memory.events");
                let text = std::fs::read_to_string(p).ok()?;
                Some(cgroup::parse_oom_kills(&text))
            }
        }
    }
}

/// The main process's status (once it is gone) and other children's, by PID.
type Reaped = (Option<i32>, Vec<(i32, i32)>);

/// Reap every exited child: the main process's status once it is gone, and
/// the other children's (health checks) as (PID, status).
fn reap(main: Pid) -> Result<Reaped, SuperviseError> {
    let mut result = None;
    let mut others = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(ws) => {
                if let (Some(p), Some(code)) = (ws.pid(), status_code(ws)) {
                    if p == main {
                        result = Some(code);
                    } else {
                        others.push((p.as_raw(), code));
                    }
                }
            }
            Err(nix::errno::Errno::ECHILD) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SuperviseError::sys("waitpid", e)),
        }
    }
    Ok((result, others))
}

fn kill_all(plan: &WatchPlan, sig: Signal) {
    match &plan.payload {
        Some(p) => {
            let _ = runtime::cgroup_kill(p, sig);
        }
        None => {
            let _ = kill(Pid::from_raw(plan.pid), sig);
        }
    }
}

/// `, 10.89.0.2 on default, 8080:80/tcp`: what `systemctl status` shows
/// of where a bridge-mode container is reached; empty in the other modes.
pub(super) fn where_reached(st: &State) -> String {
    let mut out = String::new();
    for a in &st.networks {
        out.push_str(&format!(", {}", a.ipv4));
        if let Some(v6) = a.ipv6 {
            out.push_str(&format!(" {v6}"));
        }
        out.push_str(&format!(" on {}", a.network));
    }
    if !st.published.is_empty() {
        out.push_str(&format!(", {}", st.published.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_relay_keeps_ready_and_status_only() {
        assert_eq!(
            relay_notify("READY=1\nSTATUS=up\nMAINPID=1\nWATCHDOG=1").as_deref(),
            Some("READY=1\nSTATUS=up")
        );
        assert_eq!(relay_notify("MAINPID=4242\nSTOPPING=1"), None);
        assert_eq!(relay_notify("READY=0"), None);
    }

    #[test]
    fn statuses() {
        let p = Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
    }
}
