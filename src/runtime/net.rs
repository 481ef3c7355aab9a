//! Network steps the init takes in its own network namespace: bring up `lo`.
//! Everything else about networking (veths, addresses, routes, NAT) belongs to
//! the `network` module and happens from outside.

use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::RuntimeError;

/// Step: set IFF_UP on `lo` with SIOCGIFFLAGS/SIOCSIFFLAGS; a new network
/// namespace starts with its loopback down. No rtnetlink needed for a flag.
pub fn bring_up_loopback() -> Result<(), RuntimeError> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::sys("socket for interface ioctl", e))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(RuntimeError::sys("get flags of 'lo'", nix::Error::last()));
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(RuntimeError::sys("set 'lo' up", nix::Error::last()));
    }
    Ok(())
}
