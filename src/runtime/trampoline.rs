//! The last exec into a container when berth runs from its binary on disk.
//!
//! A cloned init or exec child is berth until it executes the container's
//! program, and a program that is `#!/proc/self/exe` makes the kernel run
//! the child's own binary inside the container (CVE-2019-5736, exe.rs).
//! The commands that clone containers therefore re-execute from a protected
//! copy first ([`super::ensure_protected`]): a mount and an exec of berth,
//! 2–4 ms of every service start (benches/unit-start-results.md). A
//! service's supervisor skips that when its container allows: the child
//! then executes berth's trampoline (`src/waiter/trampoline.rs`, 1.7 KB,
//! no libc) from a sealed memfd, and the trampoline executes the program.
//! What a script can make the kernel run is then that immutable memfd.
//! runc 1.2's development versions did the same ("runc-dmz"); its issues
//! are why [`allowed`] refuses some containers, which keep the protected
//! copy:
//!
//! - CAP_SYS_PTRACE in any of the process's sets: until it executes the
//!   trampoline the child's `/proc/PID/exe` is berth's binary, guarded only
//!   by the child being non-dumpable, which CAP_SYS_PTRACE overrides
//!   (runc #4158).
//! - a user other than root with no_new_privileges and permitted
//!   capabilities outside the ambient set: with no_new_privileges the
//!   kernel caps what an exec grants at what the process had, and the
//!   trampoline's own exec leaves a non-root user only its ambient set, so
//!   a program with file capabilities would get fewer than from a direct
//!   exec (runc #4125). For root, and without no_new_privileges, two execs
//!   give what one gives.
//! - `init = true`: berth's init stays the container's PID 1 for good.
//! - a seccomp filter that may refuse what the trampoline calls.
//! - the FIFO gate (`berth-runtime create`): the init waits there for
//!   `start` as berth, for as long as the caller likes.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSeccompAction, Process};

use super::RuntimeError;

#[cfg(berth_waiter)]
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-trampoline"));
#[cfg(not(berth_waiter))]
const PROGRAM: &[u8] = &[];

/// What the trampoline calls, with the filter loaded (the init's
/// execveat included).
const SYSCALLS: &[&str] = &[
    "execveat",
    "prctl",
    "fcntl",
    "execve",
    "writev",
    "write",
    "exit_group",
];

/// How a cloned child executes the container's program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalExec {
    /// execve: this process runs from a protected copy of berth.
    Direct,
    /// Through the trampoline's sealed memfd (this descriptor).
    Trampoline(RawFd),
}

impl FinalExec {
    /// The descriptor the child must keep open until its exec.
    pub fn fd(self) -> Option<RawFd> {
        match self {
            FinalExec::Direct => None,
            FinalExec::Trampoline(fd) => Some(fd),
        }
    }

    /// The child's last step: execute `path`, directly or through the
    /// trampoline (handing it the sync channel). Returns only on failure.
    pub fn execute(
        self,
        channel: RawFd,
        path: &CString,
        argv: &[CString],
        envp: &[CString],
    ) -> nix::errno::Errno {
        match self {
            FinalExec::Direct => nix::unistd::execve(path, argv, envp).unwrap_err(),
            FinalExec::Trampoline(fd) => execute(fd, channel, path, argv, envp),
        }
    }
}

/// Decided by the parent before it clones: direct when this process runs
/// from a protected copy, else the trampoline when [`allowed`], else an
/// error (the caller should have re-executed from a protected copy).
pub fn plan(
    process: &Process,
    reaper: bool,
    seccomp: Option<&LinuxSeccomp>,
    fifo_gate: bool,
) -> Result<FinalExec, RuntimeError> {
    if super::exe::protected() {
        return Ok(FinalExec::Direct);
    }
    let refuse = |reason: String| RuntimeError::NeedsProtectedCopy { reason };
    if fifo_gate {
        return Err(refuse("its init would wait for `start` as berth".into()));
    }
    allowed(process, reaper, seccomp).map_err(refuse)?;
    memfd()
        .map(FinalExec::Trampoline)
        .map_err(|e| refuse(format!("the trampoline is unavailable: {e}")))
}

/// The trampoline's sealed memfd, made once per process (a supervisor's
/// start and its health checks share it).
fn memfd() -> Result<RawFd, String> {
    static FD: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    FD.get_or_init(|| {
        if PROGRAM.is_empty() {
            return Err("not built for this architecture".into());
        }
        super::exe::sealed_program(&mut &PROGRAM[..]).map_err(|e| e.to_string())
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
    .map_err(Clone::clone)
}

/// Whether a process may reach its program through the trampoline, or
/// why not (see the module's list). Pure.
pub fn allowed(
    process: &Process,
    reaper: bool,
    seccomp: Option<&LinuxSeccomp>,
) -> Result<(), String> {
    if PROGRAM.is_empty() {
        return Err("berth was built without its trampoline".into());
    }
    if reaper {
        return Err("berth's init stays the container's PID 1 (`init = true`)".into());
    }
    let caps = process.capabilities().as_ref();
    let set = |s: Option<&std::collections::HashSet<Capability>>| s.cloned().unwrap_or_default();
    let (bounding, effective, permitted, inheritable, ambient) = match caps {
        Some(c) => (
            set(c.bounding().as_ref()),
            set(c.effective().as_ref()),
            set(c.permitted().as_ref()),
            set(c.inheritable().as_ref()),
            set(c.ambient().as_ref()),
        ),
        None => Default::default(),
    };
    if [&bounding, &effective, &permitted, &inheritable, &ambient]
        .iter()
        .any(|s| s.contains(&Capability::SysPtrace))
    {
        return Err("the container's processes may hold CAP_SYS_PTRACE".into());
    }
    let nnp = process.no_new_privileges().unwrap_or(false);
    if process.user().uid() != 0 && nnp && !permitted.is_subset(&ambient) {
        return Err("a user other than root with no_new_privileges keeps file capabilities only on a direct exec".into());
    }
    if let Some(s) = seccomp {
        if let Some(name) = SYSCALLS.iter().find(|n| !seccomp_allows(s, n)) {
            return Err(format!("the seccomp profile may refuse {name}"));
        }
    }
    Ok(())
}

/// Whether `s` lets `name` through whatever its arguments: every rule that
/// names it allows (one of them without conditions), or none names it and
/// the default allows.
fn seccomp_allows(s: &LinuxSeccomp, name: &str) -> bool {
    let lets = |a: LinuxSeccompAction| {
        matches!(
            a,
            LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
        )
    };
    let rules: Vec<_> = s
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect();
    if rules.is_empty() {
        return lets(s.default_action());
    }
    rules.iter().all(|r| lets(r.action()))
        && rules
            .iter()
            .any(|r| r.args().as_ref().map_or(true, |a| a.is_empty()))
}

/// Execute `path` through the trampoline `fd`, handing it the sync channel
/// `channel` (left open across this exec; the trampoline closes it on its
/// own). Returns only on failure.
fn execute(
    fd: RawFd,
    channel: RawFd,
    path: &CString,
    argv: &[CString],
    envp: &[CString],
) -> nix::errno::Errno {
    let head = [
        CString::from(c"berth-trampoline"),
        CString::new(channel.to_string()).unwrap_or_default(),
        path.clone(),
    ];
    let mut args: Vec<*const libc::c_char> = head.iter().chain(argv).map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: F_SETFD on our own descriptor: the channel must survive this
    // one exec (the trampoline sets FD_CLOEXEC again before the program's).
    unsafe { libc::fcntl(channel, libc::F_SETFD, 0) };
    // SAFETY: execveat(fd, "", argv, envp, AT_EMPTY_PATH) with
    // NULL-terminated arrays of C strings that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            args.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    nix::errno::Errno::last()
}

/// The trampoline's report of a failed exec (`EXEC`, errno u32 LE, path),
/// when `datagram` is one. Pure.
pub fn parse_report(datagram: &[u8]) -> Option<(nix::errno::Errno, String)> {
    let rest = datagram.strip_prefix(b"EXEC")?;
    let errno = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let path = String::from_utf8_lossy(&rest[4..]).into_owned();
    Some((nix::errno::Errno::from_raw(errno as i32), path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCapabilitiesBuilder, ProcessBuilder, UserBuilder};
    use std::collections::HashSet;

    fn process(uid: u32, caps: &[Capability], ambient: &[Capability], nnp: bool) -> Process {
        let set: HashSet<Capability> = caps.iter().copied().collect();
        let amb: HashSet<Capability> = ambient.iter().copied().collect();
        ProcessBuilder::default()
            .user(UserBuilder::default().uid(uid).gid(uid).build().unwrap())
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(set.clone())
                    .effective(set.clone())
                    .permitted(set)
                    .inheritable(amb.clone())
                    .ambient(amb)
                    .build()
                    .unwrap(),
            )
            .no_new_privileges(nnp)
            .args(vec!["/bin/true".to_string()])
            .build()
            .unwrap()
    }

    fn built() -> bool {
        !PROGRAM.is_empty()
    }

    #[test]
    fn root_with_the_default_capabilities_and_profile_is_allowed() {
        if !built() {
            return;
        }
        let caps = [
            Capability::Chown,
            Capability::NetBindService,
            Capability::Kill,
        ];
        let default = crate::runtime::seccomp::default_profile(&caps).unwrap();
        assert_eq!(
            allowed(&process(0, &caps, &[], true), false, Some(&default)),
            Ok(())
        );
        assert_eq!(allowed(&process(0, &caps, &[], true), false, None), Ok(()));
    }

    #[test]
    fn ptrace_init_and_non_root_file_capabilities_keep_the_protected_copy() {
        if !built() {
            return;
        }
        let why = allowed(
            &process(0, &[Capability::SysPtrace], &[], true),
            false,
            None,
        );
        assert!(why.unwrap_err().contains("CAP_SYS_PTRACE"));
        let why = allowed(&process(0, &[], &[], true), true, None);
        assert!(why.unwrap_err().contains("init = true"));
        let caps = [Capability::NetBindService];
        let why = allowed(&process(1000, &caps, &[], true), false, None);
        assert!(why.unwrap_err().contains("file capabilities"));
        // Without no_new_privileges, or with the set ambient, or with no
        // capabilities at all, two execs give what one gives.
        assert_eq!(
            allowed(&process(1000, &caps, &[], false), false, None),
            Ok(())
        );
        assert_eq!(
            allowed(&process(1000, &caps, &caps, true), false, None),
            Ok(())
        );
        assert_eq!(allowed(&process(1000, &[], &[], true), false, None), Ok(()));
    }

    #[test]
    fn a_profile_that_may_refuse_the_trampolines_calls_keeps_the_protected_copy() {
        if !built() {
            return;
        }
        let p = process(0, &[], &[], true);
        let json = |s: &str| -> LinuxSeccomp { serde_json::from_str(s).unwrap() };
        let errno_default = json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["execve","execveat","fcntl","writev","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(allowed(&p, false, Some(&errno_default))
            .unwrap_err()
            .contains("prctl"));
        let conditional = json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["prctl"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":15,"op":"SCMP_CMP_EQ"}]},{"names":["prctl"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert!(allowed(&p, false, Some(&conditional)).is_err());
        let allow_all = json(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
        assert_eq!(allowed(&p, false, Some(&allow_all)), Ok(()));
    }

    #[test]
    fn the_trampolines_report_is_read_back() {
        let mut d = b"EXEC".to_vec();
        d.extend_from_slice(&8u32.to_le_bytes());
        d.extend_from_slice(b"/bin/app");
        assert_eq!(
            parse_report(&d),
            Some((nix::errno::Errno::ENOEXEC, "/bin/app".to_string()))
        );
        assert_eq!(parse_report(b"{\"Ready\":null}"), None);
        assert_eq!(parse_report(b"EXEC\x01"), None);
    }
}
