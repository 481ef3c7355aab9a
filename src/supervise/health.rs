//! Health checks (`[health]`): when to run the check, and what its results
//! mean, as a pure state machine; the supervisor's loop runs the command
//! inside the container (`runtime::exec`) and feeds the results back.
//!
//! Docker's rules (docs.docker.com, HEALTHCHECK): `retries` consecutive
//! failures make the container unhealthy; failures during `start_period` do
//! not count, but a success there makes it healthy at once; a check that
//! runs longer than `timeout` is killed and counts as a failure. One
//! difference: the first check runs right at start rather than one
//! `interval` later, so `notify = "healthy"` units become ready as soon as
//! the application is.

use std::time::{Duration, Instant};

use crate::config::{defaults, Health, OnFailure};
use crate::distribution::manifest::Healthcheck;

/// `[health]` from the image's HEALTHCHECK (`config.Healthcheck`), for a
/// definition without `[health]`, as Docker runs it: `["CMD", args…]` runs
/// the args, `["CMD-SHELL", cmd]` runs `/bin/sh -c cmd`, `["NONE"]` (or
/// anything else) is no check; a zero duration or retry count is Docker's
/// default (moby `daemon/health.go`: 30s, 30s, 3, 0s, 5s). A failing
/// image check reports only: `on_failure` stays `none`.
pub fn plan_from_image(hc: &Healthcheck) -> Option<Health> {
    let command = match hc.test.split_first() {
        Some((kind, args)) if kind == "CMD" && !args.is_empty() => args.to_vec(),
        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".to_string(), "-c".to_string(), cmd.clone()]
        }
        _ => return None,
    };
    let or = |ns: u64, default: Duration| match ns {
        0 => default,
        n => Duration::from_nanos(n),
    };
    Some(Health {
        command,
        interval: or(hc.interval_ns, defaults::HEALTH_INTERVAL),
        timeout: or(hc.timeout_ns, defaults::HEALTH_TIMEOUT),
        retries: match hc.retries {
            0 => defaults::HEALTH_RETRIES,
            n => n,
        },
        start_period: Duration::from_nanos(hc.start_period_ns),
        on_failure: OnFailure::None,
        start_interval: or(hc.start_interval_ns, defaults::HEALTH_START_INTERVAL),
    })
}

/// Health as systemd's `STATUS=` and `berth inspect` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// [`HealthState`] between checks, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthSnapshot {
    failures: u32,
    status: String,
    /// CLOCK_MONOTONIC, ms.
    started_at_ms: u64,
    next_run_at_ms: u64,
}

/// CLOCK_MONOTONIC in ms: the clock [`Instant`] reads, as a number that
/// means the same in another process.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The state of the checks of one running container.
#[derive(Debug, Clone)]
pub struct HealthState {
    cfg: Health,
    started: Instant,
    failures: u32,
    status: Status,
    next_run: Instant,
    /// The running check's PID and when it must be killed.
    in_flight: Option<(i32, Instant)>,
}

impl HealthState {
    pub fn new(cfg: Health, now: Instant) -> HealthState {
        HealthState {
            cfg,
            started: now,
            failures: 0,
            status: Status::Starting,
            next_run: now,
            in_flight: None,
        }
    }

    /// What the checks run and how often: handed on with the waiting loop.
    pub fn config(&self) -> &Health {
        &self.cfg
    }

    /// Whether a check runs now.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The state between checks as plain data: the supervisor hands it
    /// across an execve (watch.rs), so its times are on the clock both
    /// sides share, CLOCK_MONOTONIC (`now` is that clock's `mono_ms` ms).
    /// None while a check runs (its PID and deadline stay with the process
    /// that started it).
    pub fn snapshot(&self, now: Instant, mono_ms: u64) -> Option<HealthSnapshot> {
        if self.in_flight.is_some() {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        Some(HealthSnapshot {
            failures: self.failures,
            status: self.status.as_str().to_string(),
            started_at_ms: mono_ms.saturating_sub(ms(now.saturating_duration_since(self.started))),
            next_run_at_ms: mono_ms + ms(self.next_run.saturating_duration_since(now)),
        })
    }

    /// The state a [`HealthState::snapshot`] took, at `now` (`mono_ms` on
    /// CLOCK_MONOTONIC): what was due meanwhile is due now.
    pub fn restore(cfg: Health, snap: &HealthSnapshot, now: Instant, mono_ms: u64) -> HealthState {
        let status = match snap.status.as_str() {
            "healthy" => Status::Healthy,
            "unhealthy" => Status::Unhealthy,
            _ => Status::Starting,
        };
        let ago = Duration::from_millis(mono_ms.saturating_sub(snap.started_at_ms));
        HealthState {
            cfg,
            started: now.checked_sub(ago).unwrap_or(now),
            failures: snap.failures,
            status,
            next_run: now + Duration::from_millis(snap.next_run_at_ms.saturating_sub(mono_ms)),
            in_flight: None,
        }
    }
    pub fn command(&self) -> &[String] {
        &self.cfg.command
    }

    /// Whether a check should start now.
    pub fn due(&self, now: Instant) -> bool {
        self.in_flight.is_none() && now >= self.next_run
    }

    /// A check started as `pid`.
    pub fn started(&mut self, pid: i32, now: Instant) {
        self.in_flight = Some((pid, now + self.cfg.timeout));
    }

    /// The running check's PID when it has outlived `timeout`.
    pub fn overdue(&self, now: Instant) -> Option<i32> {
        self.in_flight
            .filter(|(_, deadline)| now >= *deadline)
            .map(|(pid, _)| pid)
    }

    /// Whether `pid` is the running check.
    pub fn is_check(&self, pid: i32) -> bool {
        self.in_flight.is_some_and(|(p, _)| p == pid)
    }

    /// A check ended (or could not start); returns the new status when it changed.
    pub fn finished(&mut self, ok: bool, now: Instant) -> Option<Status> {
        self.in_flight = None;
        // Docker's --health-start-interval: while the start period lasts and
        // the container has not been healthy yet, check more often.
        let starting = now < self.started + self.cfg.start_period && self.status != Status::Healthy;
        self.next_run = now
            + match starting && !ok {
                true => self.cfg.start_interval,
                false => self.cfg.interval,
            };
        let new = if ok {
            self.failures = 0;
            Status::Healthy
        } else {
            let in_start_period = now < self.started + self.cfg.start_period;
            if in_start_period && self.status != Status::Healthy {
                return None;
            }
            self.failures += 1;
            if self.failures < self.cfg.retries {
                return None;
            }
            Status::Unhealthy
        };
        if new == self.status {
            None
        } else {
            self.status = new;
            Some(new)
        }
    }

    /// When the loop must wake up next for the checks.
    pub fn next_wakeup(&self, now: Instant) -> Duration {
        let at = match self.in_flight {
            Some((_, deadline)) => deadline,
            None => self.next_run,
        };
        at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: u32, start_period: u64) -> Health {
        Health {
            command: vec!["true".into()],
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries,
            start_period: Duration::from_secs(start_period),
            on_failure: OnFailure::None,
            start_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_snapshot_keeps_its_times_across_the_handoff() {
        let t0 = Instant::now();
        let mut h = HealthState::new(cfg(3, 0), t0);
        h.started(7, t0);
        assert_eq!(h.snapshot(t0, 1_000_000), None, "not while a check runs");
        assert_eq!(h.finished(false, t0), None);
        // Next check in 10 s; taken at monotonic 1_000_000 ms.
        let snap = h.snapshot(t0, 1_000_000).unwrap();
        // Back 4 s later (another process, another Instant): due in 6 s.
        let t1 = t0 + Duration::from_secs(100);
        let r = HealthState::restore(cfg(3, 0), &snap, t1, 1_004_000);
        assert!(!r.due(t1));
        assert_eq!(r.next_wakeup(t1), Duration::from_secs(6));
        // Back after it was due: due at once, and the failure still counts.
        let mut r = HealthState::restore(cfg(3, 0), &snap, t1, 1_011_000);
        assert!(r.due(t1));
        r.started(8, t1);
        assert_eq!(r.finished(false, t1), None);
        r.started(9, t1);
        assert_eq!(r.finished(false, t1), Some(Status::Unhealthy));
    }

    #[test]
    fn start_interval_during_start_period() {
        let t0 = Instant::now();
        let mut h = HealthState::new(cfg(1, 60), t0);
        h.finished(false, t0);
        assert!(h.due(t0 + Duration::from_secs(1)));
        assert_eq!(
            h.finished(true, t0 + Duration::from_secs(1)),
            Some(Status::Healthy)
        );
        assert!(!h.due(t0 + Duration::from_secs(5)));
        assert!(h.due(t0 + Duration::from_secs(11)));
        // After the start period: the interval.
        let mut h = HealthState::new(cfg(3, 5), t0);
        h.finished(false, t0 + Duration::from_secs(6));
        assert!(!h.due(t0 + Duration::from_secs(7)));
    }

    #[test]
    fn image_healthcheck() {
        let hc = |test: &[&str]| Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval_ns: 2_000_000_000,
            ..Healthcheck::default()
        };
        let h = plan_from_image(&hc(&["CMD-SHELL", "test -f /ok"])).unwrap();
        assert_eq!(h.command, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.timeout, defaults::HEALTH_TIMEOUT);
        assert_eq!(h.retries, 3);
        assert_eq!(h.start_interval, Duration::from_secs(5));
        let h = plan_from_image(&hc(&["CMD", "/bin/check", "-q"])).unwrap();
        assert_eq!(h.command, ["/bin/check", "-q"]);
        for none in [
            &["NONE"][..],
            &["CMD"],
            &[],
            &["CMD-SHELL"],
            &["BOGUS", "x"],
        ] {
            assert!(plan_from_image(&hc(none)).is_none(), "{none:?}");
        }
    }

    #[test]
    fn first_check_at_start_then_every_interval() {
        let t0 = Instant::now();
        let mut h = HealthState::new(cfg(3, 0), t0);
        assert!(h.due(t0));
        h.started(7, t0);
        assert!(!h.due(t0));
        assert!(h.is_check(7) && !h.is_check(8));
        assert_eq!(h.next_wakeup(t0), Duration::from_secs(2));
        assert_eq!(h.overdue(t0 + Duration::from_secs(2)), Some(7));
        assert_eq!(h.finished(true, t0), Some(Status::Healthy));
        assert!(!h.due(t0 + Duration::from_secs(9)));
        assert!(h.due(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn retries_consecutive_failures_make_unhealthy() {
        let t0 = Instant::now();
        let mut h = HealthState::new(cfg(2, 0), t0);
        assert_eq!(h.finished(true, t0), Some(Status::Healthy));
        assert_eq!(h.finished(false, t0), None);
        assert_eq!(h.finished(true, t0), None);
        assert_eq!(h.finished(false, t0), None);
        assert_eq!(h.finished(false, t0), Some(Status::Unhealthy));
        assert_eq!(h.finished(false, t0), None);
        assert_eq!(h.finished(true, t0), Some(Status::Healthy));
    }

    #[test]
    fn failures_in_start_period_do_not_count() {
        let t0 = Instant::now();
        let mut h = HealthState::new(cfg(1, 60), t0);
        assert_eq!(h.finished(false, t0 + Duration::from_secs(5)), None);
        assert_eq!(h.status, Status::Starting);
        assert_eq!(
            h.finished(false, t0 + Duration::from_secs(61)),
            Some(Status::Unhealthy)
        );
    }
}
