//! The parent/init handshake: one small message enum over a SOCK_SEQPACKET
//! socketpair (one datagram per message, no framing). Both ends are CLOEXEC,
//! so a successful execve in the init closes its end and the parent reads EOF
//! (youki `process/channel.rs`, runc's sync pipe).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::RuntimeError;

/// The messages of the handshake. Numbers are the sync points in `create`
/// (parent) and `init::run` (child).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Message {
    /// 1: parent → init: ID maps written, cgroup placed; set yourself up.
    /// Carries the state JSON for the hooks the init runs itself.
    Proceed { hook_state: String },
    /// 1a: init → parent: mounts done, run createRuntime/prestart hooks now.
    RuntimeHooks,
    /// 1b: parent → init: those hooks succeeded.
    HooksDone,
    /// 2: init → parent: set up, blocked before exec.
    Ready,
    /// 3: parent → init: exec now.
    Start,
    /// init → parent, at any point: this step failed; the init exits.
    Error { step: String, message: String },
}

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel), RuntimeError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| RuntimeError::sys("socketpair for the sync channel", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

// Descriptors (idmapped layers) travel beside the messages as SCM_RIGHTS.
impl std::os::fd::AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }
}

impl Channel {
    pub fn send(&self, msg: &Message) -> std::io::Result<()> {
        let buf = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        // MSG_NOSIGNAL: a creator that already exited must not SIGPIPE the init.
        loop {
            match send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or `None` when the other end is closed.
    pub fn recv(&self) -> std::io::Result<Option<Message>> {
        // Room for the largest message, left unwritten: zeroing 64 KiB first
        // faulted in 16 pages at every sync point of a start.
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let n = loop {
            // SAFETY: recv(2) writes at most capacity bytes into the buffer.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.capacity(),
                    0,
                )
            };
            match nix::errno::Errno::result(r) {
                Ok(n) => break n as usize,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the kernel initialised the first n bytes.
        unsafe { buf.set_len(n) };
        // The trampoline's word for a failed exec (trampoline.rs).
        if let Some((errno, path)) = super::trampoline::parse_report(&buf) {
            return Ok(Some(Message::Error {
                step: "exec".into(),
                message: super::init::program_error(&path, errno).to_string(),
            }));
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(std::io::Error::other)
    }

    /// Whether a message (or the end of the other side) waits to be read:
    /// a [`Self::recv`] now would not block.
    pub fn readable_now(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call; a zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0
    }

    // Sync point helpers named for their intent on the init's side.

    /// Init, sync point 1: wait until the parent wrote maps and placed the
    /// cgroup; returns the state JSON for hooks.
    pub fn wait_for_proceed(&self) -> Result<String, String> {
        match self.recv() {
            Ok(Some(Message::Proceed { hook_state })) => Ok(hook_state),
            Ok(Some(m)) => Err(format!("expected Proceed, got {m:?}")),
            Ok(None) => Err("parent closed the channel while waiting for Proceed".into()),
            Err(e) => Err(format!("reading the channel: {e}")),
        }
    }

    /// Init, sync point 1b: wait until the parent ran the runtime hooks.
    pub fn wait_for_hooks_done(&self) -> Result<(), String> {
        self.expect(Message::HooksDone)
    }

    /// Init, sync point 3: wait for the start signal.
    pub fn wait_for_start(&self) -> Result<(), String> {
        self.expect(Message::Start)
    }

    fn expect(&self, want: Message) -> Result<(), String> {
        match self.recv() {
            Ok(Some(m)) if m == want => Ok(()),
            Ok(Some(m)) => Err(format!("expected {want:?}, got {m:?}")),
            Ok(None) => Err(format!(
                "parent closed the channel while waiting for {want:?}"
            )),
            Err(e) => Err(format!("reading the channel: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_pair_and_eof_is_none() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Proceed {
            hook_state: "{}".into(),
        })
        .unwrap();
        a.send(&Message::Error {
            step: "mounts".into(),
            message: "boom".into(),
        })
        .unwrap();
        assert_eq!(
            b.recv().unwrap(),
            Some(Message::Proceed {
                hook_state: "{}".into()
            })
        );
        assert!(matches!(b.recv().unwrap(), Some(Message::Error { .. })));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
