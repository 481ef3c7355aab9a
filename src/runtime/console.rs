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

/// Bind the pty slave over the container's /dev/console, only onto a
/// verified target (CVE-2025-52565: a /dev/console that is, or is swapped
/// for, a symlink into /proc would get the pty bound over a procfs file and
/// defeat masking): `console` is created or opened in /dev, resolved inside
/// the root, with no symlink followed, and must be a regular file or a char
/// device on neither procfs nor sysfs. The pty goes on by descriptor
/// (open_tree + move_mount), no path is looked up again.
fn bind_console(slave: &OwnedFd, name: &str) -> Result<(), RuntimeError> {
    use std::os::fd::AsFd;
    let console = Path::new("/dev/console");
    let err = |op: &'static str, e: std::io::Error| RuntimeError::io(op, console, e);
    let root = std::fs::File::open("/").map_err(|e| err("open the container root", e))?;
    let dev = crate::sys::at::resolve_in_root(root.as_fd(), Path::new("/dev"))
        .map_err(|e| err("resolve /dev", e))?;
    // SAFETY: openat of one name in the /dev we hold; O_NOFOLLOW|O_EXCL
    // never follow or reuse a link planted there.
    let made = unsafe {
        libc::openat(
            dev.as_raw_fd(),
            c"console".as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        )
    };
    if made >= 0 {
        // SAFETY: the descriptor openat just returned, closed once.
        unsafe { libc::close(made) };
    } else if nix::errno::Errno::last() != nix::errno::Errno::EEXIST {
        return Err(err("create", std::io::Error::last_os_error()));
    }
    let target = crate::sys::at::openat2(
        dev.as_fd(),
        Path::new("console"),
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| err("open", e))?;
    let st = crate::sys::at::fstat(target.as_fd()).map_err(|e| err("stat", e))?;
    let fmt = st.st_mode & libc::S_IFMT;
    let magic = crate::sys::at::fs_magic(target.as_fd()).map_err(|e| err("statfs", e))?;
    if (fmt != libc::S_IFREG && fmt != libc::S_IFCHR)
        || magic == libc::PROC_SUPER_MAGIC
        || magic == libc::SYSFS_MAGIC
    {
        return Err(err(
            "refusing to bind the console over something not a plain file or device",
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    let tree = crate::sys::at::clone_tree(slave.as_fd(), false)
        .map_err(|e| RuntimeError::io("clone the pty for /dev/console", name, e))?;
    crate::sys::at::attach(tree.as_fd(), target.as_fd()).map_err(|e| err("bind the pty over", e))
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
        bind_console(&slave, &name)?;
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
