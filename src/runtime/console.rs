//! The container's terminal: a pty from the container's own devpts instance,
//! its master handed to the caller over the OCI `--console-socket` with
//! SCM_RIGHTS (as runc does), its slave becoming /dev/console and the
//! process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::RuntimeError;

/// Connect to the caller's console socket (before clone, on the host's paths).
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd, RuntimeError> {
    let s = UnixStream::connect(path)
        .map_err(|e| RuntimeError::io("connect console socket", path, e))?;
    Ok(OwnedFd::from(s))
}

/// Where the pty's slave goes besides our stdio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The container's init: the slave is bound over /dev/console.
    Bind,
    /// An exec'd process: the container's /dev/console (a mount every
    /// process of the container shares) stays the init's, as runc keeps it.
    Private,
}

/// Step (after pivot_root, or after joining the namespaces for an exec):
/// create the pty, send its master, make the slave our terminal and stdio.
pub fn setup_console(
    socket: &OwnedFd,
    size: Option<(u16, u16)>,
    console: Console,
) -> Result<(), RuntimeError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::sys("open /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| RuntimeError::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| RuntimeError::sys("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| RuntimeError::sys("ptsname", e))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own from a valid pty fd.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| RuntimeError::sys(format!("open pty slave '{name}'"), e))?;
    // SAFETY: `open` returned a fresh descriptor owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };

    if console == Console::Bind {
        let dev_console = Path::new("/dev/console");
        super::mount::create_mount_point(dev_console, false)?;
        nix::mount::mount(
            Some(Path::new(&name)),
            dev_console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| RuntimeError::sys(format!("bind '{name}' over /dev/console"), e))?;
    }

    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| RuntimeError::sys("send the pty master over the console socket", e))?;
    drop(master);

    nix::unistd::setsid().map_err(|e| RuntimeError::sys("setsid", e))?;
    // SAFETY: TIOCSCTTY on a pty slave we own; argument 0 = do not steal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(RuntimeError::sys(
            "make the pty the controlling terminal",
            nix::Error::last(),
        ));
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target)
            .map_err(|e| RuntimeError::sys("dup2 pty onto stdio", e))?;
    }
    drop(slave);
    Ok(())
}
