//! Who may speak on the container's sd_notify socket. The socket must be
//! writable by any user of the container (its uid may be anything, mapped or
//! not), so its mode cannot tell the container from a host user; the kernel's
//! SCM_CREDENTIALS can: the sender's pid (translated into our pid namespace)
//! must sit in the container's cgroup, as systemd checks a unit's
//! `NotifyAccess=` by the sender's cgroup. Without this any local user could
//! send READY=1 or STATUS= for the container (issue 12, class 6).

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt::PassCred, ControlMessageOwned, MsgFlags, UnixCredentials,
};
use nix::unistd::Pid;

/// Ask the kernel to attach the sender's credentials to every datagram.
pub fn enable_credentials(sock: &UnixDatagram) -> nix::Result<()> {
    setsockopt(sock, PassCred, &true)
}

/// The unified-hierarchy cgroup (`0::PATH`) in `/proc/PID/cgroup` text.
pub fn unified_cgroup(proc_pid_cgroup: &str) -> Option<&str> {
    proc_pid_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// Whether cgroup `sender` is `container` or beneath it (by path component).
pub fn within(sender: &str, container: &str) -> bool {
    let base = container.trim_end_matches('/');
    sender == container
        || sender
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unified_cgroup(&text).map(str::to_string)
}

/// One waiting datagram: `Some((message, accepted))`, None when the socket is
/// drained. A message without credentials, or from a process outside the
/// cgroup of `container` (the container's init), is not accepted.
pub fn recv(sock: &UnixDatagram, container: Pid) -> Option<(String, bool)> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!(UnixCredentials);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let (n, sender) = {
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut sender = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmCredentials(cred) = c {
                    sender = Some(cred.pid());
                }
            }
        }
        (msg.bytes, sender)
    };
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let ok = match (sender, cgroup_of(container.as_raw())) {
        (Some(pid), Some(ours)) if pid > 0 => cgroup_of(pid).is_some_and(|c| within(&c, &ours)),
        _ => false,
    };
    Some((text, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_containment_is_by_component() {
        let text = "12:pids:/x\n0::/system.slice/berth@web.service/payload\n";
        assert_eq!(
            unified_cgroup(text),
            Some("/system.slice/berth@web.service/payload")
        );
        let c = "/system.slice/berth@web.service/payload";
        assert!(within(c, c));
        assert!(within(&format!("{c}/sub"), c));
        assert!(!within(&format!("{c}2"), c));
        assert!(!within("/user.slice/user-1000.slice", c));
    }
}
