//! The terminal of `berth run -t`: the runtime creates a pty inside the
//! container and sends its master over a console socket (runc's protocol);
//! the supervisor relays between its own terminal, put in raw mode, and the
//! master, and passes window size changes on.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use super::SuperviseError;

/// Listen on `path` for the runtime's console connection.
pub fn listen(path: &Path) -> Result<UnixListener, SuperviseError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| SuperviseError::io("bind console socket", path, e))
}

/// Take the pty master the container's init sent. The runtime connected and
/// sent it before `create` returned, so nothing here waits.
pub fn receive_master(listener: &UnixListener, path: &Path) -> Result<OwnedFd, SuperviseError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| SuperviseError::io("set nonblocking", path, e))?;
    let (conn, _) = listener
        .accept()
        .map_err(|e| SuperviseError::io("accept on console socket", path, e))?;
    conn.set_nonblocking(false)
        .map_err(|e| SuperviseError::io("set blocking", path, e))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| SuperviseError::sys("receive the pty master", e))?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|e| SuperviseError::sys("read the console message", e))?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(SuperviseError::State {
        path: path.to_path_buf(),
        reason: "the console message carried no pty master".into(),
    })
}

/// Our terminal in raw mode while the container runs; restored on drop.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal (otherwise nothing to do).
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// (rows, columns) of our terminal: stdin's, or stdout's when stdin is not
/// one (`berth exec -t` without `-i` keeps stdin away from the container).
pub fn window_size() -> Option<(u16, u16)> {
    [0, 1].into_iter().find_map(|fd| {
        // SAFETY: TIOCGWINSZ writes one winsize struct we own.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            (libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0).then_some((ws.ws_row, ws.ws_col))
        }
    })
}

/// Copy our terminal's window size to the pty.
pub fn sync_size(master: &OwnedFd) {
    if let Some((rows, cols)) = window_size() {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct we own.
        unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// What one [`pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Bytes were moved.
    Data,
    /// Nothing to read right now.
    Again,
    /// EOF, or EIO from a master whose slave side closed: stop reading.
    Done,
}

/// Move what is readable from `from` to `to`.
pub fn pump(from: RawFd, to: &mut dyn Write) -> Pumped {
    let mut buf = [0u8; 8192];
    // SAFETY: borrowing the descriptor for one read; ManuallyDrop keeps it open.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(from) });
    match f.read(&mut buf) {
        Ok(0) => Pumped::Done,
        Ok(n) => {
            let _ = to.write_all(&buf[..n]);
            let _ = to.flush();
            Pumped::Data
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Pumped::Again,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Pumped::Again,
        Err(_) => Pumped::Done,
    }
}

/// Copy everything still buffered in the master to stdout.
pub fn drain(master: &OwnedFd) {
    let mut out = std::io::stdout();
    while pump(master.as_raw_fd(), &mut out) == Pumped::Data {}
}

/// Set O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}
