//! Signals by name or number, the one parser both modes use: the OCI `kill`
//! verb and an image's STOPSIGNAL in service mode. Real-time signals have no
//! `nix` `Signal`, and systemd in a container stops on SIGRTMIN+3 (Podman's
//! stop signal for `--systemd`, which it passes as `37`), so signals here are
//! plain numbers.

/// A signal by name (`TERM`, `SIGTERM`, `rtmin+3`) or number, as its number;
/// `None` for anything that is not a signal of this system.
pub fn parse_signal(s: &str) -> Option<i32> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let n = match s.parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            let up = s.to_ascii_uppercase();
            let name = up.strip_prefix("SIG").unwrap_or(&up);
            let rt = |rest: &str, base: i32| -> Option<i32> {
                match rest.chars().next() {
                    None => Some(base),
                    Some('+') => rest[1..].parse::<i32>().ok().map(|k| base + k),
                    Some('-') => rest[1..].parse::<i32>().ok().map(|k| base - k),
                    Some(_) => None,
                }
            };
            if let Some(rest) = name.strip_prefix("RTMIN") {
                rt(rest, min).filter(|n| (min..=max).contains(n))?
            } else if let Some(rest) = name.strip_prefix("RTMAX") {
                rt(rest, max).filter(|n| (min..=max).contains(n))?
            } else {
                format!("SIG{name}")
                    .parse::<nix::sys::signal::Signal>()
                    .ok()? as i32
            }
        }
    };
    (1..=max).contains(&n).then_some(n)
}

/// How a user would name signal `n`: `SIGTERM`, `SIGRTMIN+3`.
pub fn signal_name(n: i32) -> String {
    let min = libc::SIGRTMIN();
    if n >= min {
        return if n == min {
            "SIGRTMIN".to_string()
        } else {
            format!("SIGRTMIN+{}", n - min)
        };
    }
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {n}"))
}

/// kill(2) with any signal number, real-time ones included.
pub fn send_signal(pid: i32, signo: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers.
    if unsafe { libc::kill(pid, signo) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number_real_time_included() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("37"), Some(37));
        assert_eq!(parse_signal("RTMIN+3"), Some(min + 3));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(min + 3));
        assert_eq!(parse_signal("SIGRTMIN"), Some(min));
        assert_eq!(parse_signal("sigrtmax-1"), Some(max - 1));
        for bad in [
            "RTMIN+99", "RTMINX", "NOPE", "SIGNOPE", "0", "999", "-1", "",
        ] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_round_trip_for_every_signal() {
        for n in 1..=libc::SIGRTMAX() {
            let name = signal_name(n);
            // 32 and 33 are glibc's own (below SIGRTMIN): no name.
            if name.starts_with("signal ") {
                continue;
            }
            assert_eq!(parse_signal(&name), Some(n), "{name}");
        }
        assert_eq!(signal_name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
