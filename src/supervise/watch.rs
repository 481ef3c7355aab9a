//! The steady state of a running container: wait for signals, the
//! container's exit, its sd_notify messages, health-check results and
//! terminal I/O; forward stop signals, kill after `stop_timeout`, report to
//! systemd and the journal.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{cgroup, console, health, journal, notify, Paths, RunOptions, State, SuperviseError};
use crate::config::{Definition, Notify};
use crate::runtime::{self, Stdio};
use journal::Priority;

/// What [`start`] hands to [`supervise`].
pub(super) struct Running {
    pub(super) container: runtime::Container,
    pub(super) payload: Option<PathBuf>,
    /// A number: the image's STOPSIGNAL may be a real-time signal
    /// (SIGRTMIN+3 for systemd), which `nix`'s `Signal` cannot hold.
    pub(super) stop_signal: i32,
    /// Signals we wait for, blocked since before the clone.
    pub(super) signals: SignalFd,
    /// The container's sd_notify socket (`notify = "container"`).
    pub(super) notify: Option<std::os::unix::net::UnixDatagram>,
    /// `[health]`: the checks' state and how to exec them.
    pub(super) health: Option<HealthRunner>,
    /// The pty master of `berth run -t`.
    pub(super) console: Option<std::os::fd::OwnedFd>,
}

/// What running a health check in the container takes.
pub(super) struct HealthRunner {
    pub(super) state: health::HealthState,
    /// The container's confinement, which each check runs under.
    pub(super) template: super::ExecTemplate,
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

/// The steady state: wait for signals and the container's exit.
pub(super) fn supervise(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
    st: &mut State,
    mut running: Running,
) -> Result<i32, SuperviseError> {
    let name = &def.name;
    let pid = running.container.pid();
    let mut health = running.health.take();
    if health.is_some() {
        st.health = Some(health::Status::Starting.as_str().to_string());
        let _ = st.save(&paths.run_dir);
    }
    let waits_for_health = def.service.notify == Notify::Healthy && health.is_some();
    if running.notify.is_some() {
        notify(opts, "STATUS=running, waiting for the container's READY=1");
    } else if waits_for_health {
        notify(
            opts,
            "STATUS=running, waiting for the first passing health check",
        );
    } else if def.service.notify == Notify::Healthy {
        notify(
            opts,
            "READY=1\nSTATUS=running (notify = \"healthy\" without [health]: ready at start)",
        );
    } else {
        notify(opts, "READY=1\nSTATUS=running");
    }
    let mut ready_sent = running.notify.is_none() && !waits_for_health;
    journal::event(
        Priority::Info,
        name,
        "started",
        &format!("container \"{name}\" started (pid {pid})"),
        &[("CONTAINER_PID", pid.to_string())],
    );

    // The supervisor idles next to its container for as long as it runs:
    // give back the start's heap and the binary's resident read-only pages
    // (they fault back from the page cache if a stop or health check needs
    // them), so a host with many containers pays little for each.
    runtime::release_resident_code();

    let mut deadline: Option<Instant> = None;
    let mut forwarded: Option<i32> = None;
    let mut killed = false;
    // Raw mode only while relaying; restored when this goes out of scope.
    let _raw = running.console.as_ref().map(|m| {
        console::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(m));
        console::sync_size(m);
        console::RawMode::enter()
    });
    let mut stdin_open = running.console.is_some();
    let mut master_open = running.console.is_some();
    let on_health =
        |status: health::Status, running: &Running, ready_sent: &mut bool, st: &mut State| {
            let s = status.as_str();
            // `berth ps`/`inspect` read it from the record.
            st.health = Some(s.to_string());
            let _ = st.save(&paths.run_dir);
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
            if status == health::Status::Healthy && !*ready_sent && waits_for_health {
                notify(opts, "READY=1\nSTATUS=running (healthy)");
                *ready_sent = true;
            } else {
                notify(opts, &format!("STATUS=running ({s})"));
            }
            if status == health::Status::Unhealthy
                && def
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
                kill_all(running, Signal::SIGKILL);
            }
        };
    let code = loop {
        let now = Instant::now();
        // Reap first: a SIGCHLD may have been merged with an earlier one.
        let (main_code, others) = reap(pid)?;
        for (p, code) in others {
            if let Some(h) = health.as_mut().filter(|h| h.state.is_check(p)) {
                if let Some(status) = h.state.finished(code == 0, Instant::now()) {
                    on_health(status, &running, &mut ready_sent, st);
                }
            }
        }
        if let Some(code) = main_code {
            break code;
        }
        if let Some(h) = health.as_mut() {
            if let Some(p) = h.state.overdue(now) {
                // Killed checks come back through reap as failures.
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            if deadline.is_none() && h.state.due(now) {
                match h.spawn(name, pid, running.payload.as_ref()) {
                    Ok(p) => h.state.started(p, now),
                    Err(e) => {
                        journal::event(
                            Priority::Warning,
                            name,
                            "health-error",
                            &format!("health check of \"{name}\" could not run: {e}"),
                            &[],
                        );
                        if let Some(status) = h.state.finished(false, now) {
                            on_health(status, &running, &mut ready_sent, st);
                        }
                    }
                }
            }
        }
        let mut timeout = match deadline {
            Some(d) => d.saturating_duration_since(now),
            None => Duration::from_secs(3600),
        };
        if let Some(h) = &health {
            timeout = timeout.min(h.state.next_wakeup(now).max(Duration::from_millis(1)));
        }
        if deadline.is_some_and(|d| now >= d) && !killed {
            journal::event(
                Priority::Warning,
                name,
                "stop-timeout",
                &format!(
                    "container \"{name}\" did not stop within {}s, killing it",
                    def.service.stop_timeout.as_secs_f64()
                ),
                &[],
            );
            kill_all(&running, Signal::SIGKILL);
            killed = true;
            continue;
        }
        let mut fds = vec![nix::poll::PollFd::new(
            running.signals.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(sock) = &running.notify {
            fds.push(nix::poll::PollFd::new(
                sock.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        let stdin = std::io::stdin();
        let (mut stdin_at, mut master_at) = (None, None);
        if let Some(m) = &running.console {
            if stdin_open {
                stdin_at = Some(fds.len());
                fds.push(nix::poll::PollFd::new(
                    stdin.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            if master_open {
                master_at = Some(fds.len());
                fds.push(nix::poll::PollFd::new(
                    m.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if killed { 100 } else { ms.max(1) };
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
        let (stdin_ready, master_ready) = (ready(stdin_at), ready(master_at));
        drop(fds);
        if let Some(m) = &running.console {
            use std::os::fd::AsRawFd;
            if stdin_ready {
                let mut to = std::fs::File::from(
                    m.try_clone()
                        .map_err(|e| SuperviseError::io("dup", "pty master", e))?,
                );
                if console::pump(0, &mut to) == console::Pumped::Done {
                    stdin_open = false;
                }
            }
            if master_ready
                && console::pump(m.as_raw_fd(), &mut std::io::stdout()) == console::Pumped::Done
            {
                master_open = false;
            }
        }
        if let Some(sock) = &running.notify {
            while let Some((text, from_container)) = super::sender::recv(sock, pid) {
                if !from_container {
                    journal::event(
                        Priority::Warning,
                        name,
                        "notify",
                        "ignored an sd_notify message from a process outside the container",
                        &[],
                    );
                    continue;
                }
                if let Some(m) = relay_notify(&text) {
                    notify(opts, &m);
                }
            }
        }
        while let Ok(Some(info)) = running.signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {}
                Signal::SIGWINCH => {
                    if let Some(m) = &running.console {
                        console::sync_size(m);
                    }
                }
                Signal::SIGHUP => {
                    let _ = kill(pid, Signal::SIGHUP);
                }
                _ => {
                    // SIGTERM (systemctl stop) becomes the image's stop signal.
                    let to = if sig == Signal::SIGTERM {
                        running.stop_signal
                    } else {
                        sig as i32
                    };
                    if deadline.is_none() {
                        notify(opts, "STOPPING=1\nSTATUS=stopping");
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
                        deadline = Some(Instant::now() + def.service.stop_timeout);
                    }
                    let _ = runtime::send_signal(pid.as_raw(), to);
                    forwarded = Some(to);
                }
            }
        }
    };
    if let Some(m) = &running.console {
        console::drain(m);
    }
    // The kernel's OOM killer leaves its count in the payload's memory.events.
    let oom_kills = running
        .payload
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p.join("memory.events")).ok())
        .map(|t| cgroup::parse_oom_kills(&t))
        .unwrap_or(0);
    if oom_kills > 0 {
        journal::event(
            Priority::Warning,
            name,
            "oom-killed",
            &format!("container \"{name}\" ran out of memory: the kernel killed {oom_kills} of its processes"),
            &[("OOM_KILLS", oom_kills.to_string())],
        );
    }
    // The main process is gone: nothing else in the container may outlive it.
    kill_all(&running, Signal::SIGKILL);
    st.container_pid = None;
    st.container_start_time = None;
    let _ = st.save(&paths.run_dir);
    let clean_stop = forwarded.is_some_and(|s| code == 128 + s);
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
    Ok(if clean_stop { 0 } else { code })
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

fn kill_all(running: &Running, sig: Signal) {
    match &running.payload {
        Some(p) => {
            let _ = runtime::cgroup_kill(p, sig);
        }
        None => {
            let _ = kill(running.container.pid(), sig);
        }
    }
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
