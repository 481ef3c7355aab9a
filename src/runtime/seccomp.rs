//! Seccomp: compile `linux.seccomp` into a libseccomp filter and load it; the
//! default profile (an allow-list equivalent to Docker's, as Rust data); and a
//! loader for OCI or Docker JSON profile files.
//!
//! Building (`default_profile`, `load_profile`, `build_filter`) has no side
//! effects; only `Compiled::load` loads a filter into the calling process.

use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::RuntimeError;

fn seccomp_err(
    context: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Seccomp { context, source }
}

fn to_action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, RuntimeError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(RuntimeError::InvalidSpec {
            id: String::new(),
            reason:
                "seccomp action SCMP_ACT_NOTIFY needs a listener, which berth does not support yet"
                    .into(),
        }),
    })
}

fn to_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

fn to_compare(a: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI: `value` is the mask, `valueTwo` the value compared (runc does the same).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                a.index() as u32,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(a.index() as u32, op, a.value())
}

/// Compile a profile. `no_new_privileges` only decides whether libseccomp may
/// set NNP itself: the init sets it (or not) as the spec says, so never.
pub fn build_filter(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, RuntimeError> {
    let default = to_action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(seccomp_err("create filter"))?;
    ctx.set_ctl_nnp(false)
        .map_err(seccomp_err("disable libseccomp's own no_new_privs"))?;
    // A binary tree of syscall numbers (libseccomp >= 2.5) instead of one
    // comparison after another: the same decisions, but the kernel, which
    // runs the program once per syscall number and architecture to build
    // its allow cache when the init loads it, walks ~10 comparisons, not
    // hundreds. Docker's default profile loads in 0.6 ms instead of 1.5 ms
    // (issue 13, benches/unit-start-results.md). An older libseccomp keeps
    // the linear program.
    if let Err(e) = ctx.set_ctl_optimize(2) {
        tracing::debug!("libseccomp cannot build a binary-tree filter: {e}");
    }
    for a in profile.architectures().iter().flatten() {
        let arch = to_arch(*a);
        if arch == ScmpArch::Native {
            continue;
        }
        ctx.add_arch(arch)
            .map_err(seccomp_err(format!("add architecture {a:?}")))?;
    }
    for f in profile.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        }
        .map_err(seccomp_err(format!("set flag {f:?}")))?;
    }
    for rule in profile.syscalls().iter().flatten() {
        let action = to_action(rule.action(), rule.errno_ret())?;
        // libseccomp refuses a rule that repeats the default action; it would
        // change nothing anyway (runc skips these too).
        if action == default {
            continue;
        }
        for name in rule.names() {
            // A name this libseccomp or architecture does not know cannot be
            // called either; skip it like runc does.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            add_rule(&mut ctx, sc, action, rule.args().as_deref().unwrap_or(&[]))
                .map_err(seccomp_err(format!("rule for syscall '{name}'")))?;
        }
    }
    Ok(ctx)
}

/// Conditions on distinct arguments form one rule (AND); several conditions on
/// the same argument become one rule each (OR), as in runc's `matchCall`.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    sc: ScmpSyscall,
    action: ScmpAction,
    args: &[LinuxSeccompArg],
) -> Result<(), libseccomp::error::SeccompError> {
    if args.is_empty() {
        ctx.add_rule(action, sc)?;
        return Ok(());
    }
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() == args.len() {
        let cmps: Vec<ScmpArgCompare> = args.iter().map(to_compare).collect();
        ctx.add_rule_conditional(action, sc, &cmps)?;
    } else {
        for a in args {
            ctx.add_rule_conditional(action, sc, &[to_compare(a)])?;
        }
    }
    Ok(())
}

/// `<linux/seccomp.h>`: not in the libc crate for every target.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;
/// `BPF_MAXINSNS`: the kernel's limit on one classic BPF program.
const BPF_MAXINSNS: usize = 4096;
/// Bumped when what a cache file holds changes meaning (2: binary-tree
/// programs).
const CACHE_FORMAT: &str = "berth-seccomp-bpf-2";

/// A profile compiled to the classic BPF program seccomp(2) loads, with the
/// flags libseccomp would have passed. Compiling Docker's default profile
/// takes libseccomp 10–30 ms (most of it generating BPF for three
/// architectures); loading the result takes microseconds. So the parent
/// compiles before it clones, through a cache keyed by what the program
/// depends on, and the container's init and exec children only load
/// (crun keeps such a cache too).
#[derive(Debug, Clone)]
pub struct Compiled {
    insns: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Compiled {
    /// Compile `profile`, reading and filling the cache in `cache_dir` when
    /// one is given. The cache is an optimisation only: a file that is
    /// missing, unreadable or malformed is compiled again, and one that
    /// cannot be written is left out.
    pub fn compile(profile: &LinuxSeccomp, cache_dir: Option<&Path>) -> Result<Self, RuntimeError> {
        let flags = profile_flags(profile);
        let cached = cache_dir.and_then(|d| Some(d.join(format!("{}.bpf", cache_key(profile)?))));
        if let Some(insns) = cached.as_deref().and_then(read_program) {
            return Ok(Compiled { insns, flags });
        }
        let ctx = build_filter(profile)?;
        let bytes = export(&ctx)?;
        let insns = parse_program(&bytes).ok_or_else(|| RuntimeError::SeccompBuild {
            what: "BPF program".into(),
            reason: format!("libseccomp exported {} bytes, not a program", bytes.len()),
        })?;
        if let (Some(dir), Some(path)) = (cache_dir, &cached) {
            // Root's own directory: what is cached there is loaded into
            // containers without a second look but the kernel's verifier.
            let written = crate::private::dir(dir).and_then(|()| {
                crate::private::write_atomic(&path.with_extension("tmp"), path, &bytes)
            });
            if let Err(e) = written {
                tracing::debug!("seccomp cache {}: {e}", path.display());
            }
        }
        Ok(Compiled { insns, flags })
    }

    /// Load the program into the calling thread (with TSYNC, all threads).
    /// The caller has set no_new_privileges or holds CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), RuntimeError> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as libc::c_ushort,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(2) reads `prog` and the instructions it points
        // to, both alive for the call; the length was bounded when parsed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(RuntimeError::sys(
                "seccomp(SECCOMP_SET_MODE_FILTER)",
                nix::Error::last(),
            ));
        }
        Ok(())
    }
}

/// The seccomp(2) flags of the profile's `flags`, as libseccomp sets them.
fn profile_flags(profile: &LinuxSeccomp) -> libc::c_ulong {
    profile.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
        }
    })
}

/// What the compiled program depends on: the profile, the libseccomp that
/// compiles it and the kernel API level it detected (which actions exist),
/// and the architecture.
fn cache_key(profile: &LinuxSeccomp) -> Option<String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(profile).ok()?;
    let version = libseccomp::ScmpVersion::current().ok()?;
    let api = libseccomp::get_api();
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT);
    h.update(format!(
        "\0{}.{}.{}\0{api}\0{}\0",
        version.major,
        version.minor,
        version.micro,
        std::env::consts::ARCH
    ));
    h.update(&json);
    Some(hex::encode(h.finalize()))
}

/// libseccomp's program, through a memfd (`seccomp_export_bpf_mem` needs
/// libseccomp 2.6; Debian 12 has 2.5).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, RuntimeError> {
    use std::io::{Read, Seek};
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| RuntimeError::sys("memfd_create for the seccomp program", e))?;
    ctx.export_bpf(&fd)
        .map_err(seccomp_err("export the BPF program"))?;
    let mut f = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut bytes))
        .map_err(|e| RuntimeError::SeccompBuild {
            what: "BPF program".into(),
            reason: e.to_string(),
        })?;
    Ok(bytes)
}

/// A cached program, or None when there is none usable.
fn read_program(path: &Path) -> Option<Vec<libc::sock_filter>> {
    let bytes = std::fs::read(path).ok()?;
    let insns = parse_program(&bytes);
    if insns.is_none() {
        tracing::debug!(
            "seccomp cache {}: malformed, compiling again",
            path.display()
        );
    }
    insns
}

/// Native-endian `struct sock_filter`s (what `seccomp_export_bpf` writes):
/// a whole number of them, at least one, at most the kernel's limit.
fn parse_program(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    const SIZE: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % SIZE != 0 || bytes.len() / SIZE > BPF_MAXINSNS {
        return None;
    }
    Some(
        bytes
            .chunks_exact(SIZE)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Syscalls every container may make: Docker's default allow-list
/// (moby `profiles/seccomp/default.json`), written out here. Names unknown to
/// the architecture are skipped when compiling.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // ptrace is allowed since kernel 4.8 closed the seccomp bypass through it
    // (Docker's minKernel 4.8); berth needs 5.7+ for CLONE_INTO_CGROUP anyway.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // x86 only, harmless elsewhere (unknown names are skipped).
    "arch_prctl",
    "modify_ldt",
];

/// Syscalls a capability unlocks in Docker's profile: the container holding
/// the capability may call them.
pub const CAPABILITY_SYSCALLS: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The namespace flags `clone` may not carry without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;

/// A builder that fails must fail the start: `unwrap_or_default()` here once
/// turned a broken rule into an empty one, and an empty `LinuxSeccomp` is
/// default-allow, so the container would run unconfined (issue 12, class 9).
fn build_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> RuntimeError + '_ {
    move |e| RuntimeError::SeccompBuild {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn allow(names: &[&str]) -> Result<LinuxSyscall, RuntimeError> {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .map_err(build_err("allow rule"))
}

fn arg(
    index: usize,
    value: u64,
    value_two: u64,
    op: LinuxSeccompOperator,
) -> Result<LinuxSeccompArg, RuntimeError> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(value_two)
        .op(op)
        .build()
        .map_err(build_err("argument condition"))
}

fn native_archs() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The default profile for a container holding `caps` (the `seccomp =
/// "default"` of a definition): deny with EPERM unless allowed; keyctl,
/// unshare, mount, kexec_load, init_module, bpf, … stay blocked unless a
/// capability unlocks them, as in Docker's profile. Never default-allow: a
/// part that cannot be built is an error.
pub fn default_profile(caps: &[Capability]) -> Result<LinuxSeccomp, RuntimeError> {
    let names: Vec<String> = caps.iter().map(super::caps::cap_name).collect();
    let has = |c: &str| names.iter().any(|n| n == c);
    let mut rules = vec![allow(DEFAULT_ALLOWED)?];
    // personality: only the values Docker lets through (PER_LINUX,
    // PER_LINUX32, UNAME26 variants and the query 0xffffffff).
    for v in [0x0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        let mut r = allow(&["personality"])?;
        r.set_args(Some(vec![arg(0, v, 0, LinuxSeccompOperator::ScmpCmpEq)?]));
        rules.push(r);
    }
    // socket: every family but AF_VSOCK, which reaches the host's hypervisor.
    let mut sock = allow(&["socket"])?;
    sock.set_args(Some(vec![arg(
        0,
        AF_VSOCK,
        0,
        LinuxSeccompOperator::ScmpCmpNe,
    )?]));
    rules.push(sock);
    for (cap, calls) in CAPABILITY_SYSCALLS {
        if has(cap) {
            rules.push(allow(calls)?);
        }
    }
    if has("CAP_SYS_ADMIN") {
        rules.push(allow(&["clone"])?);
    } else {
        // clone without namespace flags only; clone3 hides its flags in
        // memory a filter cannot read, so it answers ENOSYS and libc falls back
        // to clone.
        let mut c = allow(&["clone"])?;
        c.set_args(Some(vec![arg(
            0,
            CLONE_NAMESPACE_FLAGS,
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )?]));
        rules.push(c);
        let mut c3 = allow(&["clone3"])?;
        c3.set_action(LinuxSeccompAction::ScmpActErrno);
        c3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(c3);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(native_archs())
        .syscalls(rules)
        .build()
        .map_err(build_err("default profile"))
}

/// A profile file: the OCI `linux.seccomp` object, or Docker's format with
/// `archMap`, `name` and capability/arch `includes`/`excludes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<ProfileRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileRule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn native_go_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    }
}

fn kernel_at_least(min: &str) -> bool {
    let parse = |s: &str| -> (u32, u32) {
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        (
            it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
        )
    };
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&release) >= parse(min)
}

/// Read a profile file (OCI or Docker JSON) for a container holding `caps`.
pub fn load_profile(path: &Path, caps: &[Capability]) -> Result<LinuxSeccomp, RuntimeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError::io("read seccomp profile", path, e))?;
    parse_profile(&text, caps).map_err(|reason| RuntimeError::SeccompProfile {
        path: path.to_path_buf(),
        reason,
    })
}

/// The pure half of [`load_profile`].
pub fn parse_profile(text: &str, caps: &[Capability]) -> Result<LinuxSeccomp, String> {
    let f: ProfileFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let names: Vec<String> = caps.iter().map(super::caps::cap_name).collect();
    let go_arch = native_go_arch();
    let mut archs = f.architectures.unwrap_or_default();
    for m in f.arch_map.iter().flatten() {
        // Docker lists every architecture; only the native one and its
        // sub-architectures belong in this host's filter.
        let native = native_archs();
        if native.first() == Some(&m.architecture) {
            archs.push(m.architecture);
            archs.extend(m.sub_architectures.iter().copied());
        }
    }
    let mut rules = Vec::new();
    for r in f.syscalls.into_iter().flatten() {
        let inc = &r.includes;
        let exc = &r.excludes;
        if !inc.caps.iter().all(|c| names.contains(c))
            || (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == go_arch))
            || inc
                .min_kernel
                .as_deref()
                .is_some_and(|k| !kernel_at_least(k))
            || (!exc.caps.is_empty() && exc.caps.iter().any(|c| names.contains(c)))
            || exc.arches.iter().any(|a| a == go_arch)
        {
            continue;
        }
        let mut all_names = r.names;
        all_names.extend(r.name);
        let mut rule = LinuxSyscall::default();
        rule.set_names(all_names);
        rule.set_action(r.action);
        rule.set_errno_ret(r.errno_ret);
        rule.set_args(r.args);
        rules.push(rule);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(f.default_action);
    out.set_default_errno_ret(f.default_errno_ret);
    out.set_architectures((!archs.is_empty()).then_some(archs));
    out.set_flags(f.flags);
    out.set_syscalls(Some(rules));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow && r.names().iter().any(|n| n == name)
        })
    }

    fn program_bytes(f: &Compiled) -> Vec<u8> {
        f.insns
            .iter()
            .flat_map(|i| {
                let mut b = i.code.to_ne_bytes().to_vec();
                b.extend([i.jt, i.jf]);
                b.extend(i.k.to_ne_bytes());
                b
            })
            .collect()
    }

    #[test]
    fn a_cached_program_is_the_compiled_one_and_a_bad_cache_file_is_compiled_again() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let profile = default_profile(&[]).unwrap();
        let fresh = Compiled::compile(&profile, None).unwrap();
        assert!(
            fresh.insns.len() > 100,
            "Docker's profile compiles to a real program"
        );

        let first = Compiled::compile(&profile, Some(&cache)).unwrap();
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one program cached");
        let file = files[0].path();
        assert_eq!(std::fs::read(&file).unwrap(), program_bytes(&fresh));
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            cache.metadata().unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(program_bytes(&first), program_bytes(&fresh));

        // A hit reads the file: a (valid) program planted there is what loads.
        std::fs::write(&file, [6u8, 0, 0, 0, 0, 0, 0xff, 0x7f]).unwrap();
        let planted = Compiled::compile(&profile, Some(&cache)).unwrap();
        assert_eq!(planted.insns.len(), 1, "the cache was read");
        // A torn or empty file is not a program: compiled again, rewritten.
        for bad in [&b""[..], &[1u8, 2, 3][..]] {
            std::fs::write(&file, bad).unwrap();
            let again = Compiled::compile(&profile, Some(&cache)).unwrap();
            assert_eq!(program_bytes(&again), program_bytes(&fresh));
            assert_eq!(std::fs::read(&file).unwrap(), program_bytes(&fresh));
        }
        // Another profile is another program under another key.
        let other = default_profile(&[Capability::SysAdmin]).unwrap();
        Compiled::compile(&other, Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }

    #[test]
    fn a_program_is_whole_instructions_within_the_kernel_limit() {
        assert!(parse_program(&[]).is_none());
        assert!(parse_program(&[0; 12]).is_none());
        assert_eq!(parse_program(&[0; 16]).map(|p| p.len()), Some(2));
        assert!(parse_program(&vec![0; 8 * (BPF_MAXINSNS + 1)]).is_none());
    }

    #[test]
    fn default_profile_blocks_dangerous_calls_without_caps() {
        let p = default_profile(&[Capability::NetBindService]).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        for bad in [
            "keyctl",
            "unshare",
            "mount",
            "kexec_load",
            "init_module",
            "bpf",
            "setns",
            "add_key",
            "open_by_handle_at",
        ] {
            assert!(!allowed(&p, bad), "{bad} must be blocked");
        }
        for ok in ["read", "execve", "clone", "socket", "ptrace"] {
            assert!(allowed(&p, ok), "{ok} must be allowed");
        }
    }

    #[test]
    fn sys_admin_unlocks_mount_and_unshare() {
        let p = default_profile(&[Capability::SysAdmin]).unwrap();
        assert!(allowed(&p, "mount") && allowed(&p, "unshare"));
        assert!(!allowed(&p, "keyctl"));
    }

    #[test]
    fn a_failed_build_is_an_error_not_allow_all() {
        // What `unwrap_or_default()` used to hand back on a failed build: an
        // empty profile, which allows every call.
        assert_eq!(
            LinuxSeccomp::default().default_action(),
            LinuxSeccompAction::ScmpActAllow
        );
        let e = build_err("default profile")(oci_spec::OciSpecError::Other("broken".into()));
        assert!(
            matches!(&e, RuntimeError::SeccompBuild { what, .. } if what == "default profile"),
            "{e}"
        );
        // Every part of the default profile is real: no rule without names,
        // the default action denies.
        for caps in [&[][..], &[Capability::SysAdmin][..]] {
            let p = default_profile(caps).unwrap();
            assert_ne!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
            let rules = p.syscalls().clone().unwrap_or_default();
            assert!(rules.len() > 5);
            assert!(rules.iter().all(|r| !r.names().is_empty()));
        }
        // A profile file without a default action is refused, not allow-all.
        assert!(parse_profile(r#"{"syscalls": []}"#, &[]).is_err());
    }

    #[test]
    fn default_profile_compiles() {
        let p = default_profile(&[]).unwrap();
        build_filter(&p).expect("compile");
    }

    #[test]
    fn docker_profile_includes_by_capability() {
        let text = r#"{
          "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
          "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                      {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
          "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"name": "chroot", "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
          ]}"#;
        let p = parse_profile(text, &[]).unwrap();
        assert!(allowed(&p, "read") && allowed(&p, "chroot") && !allowed(&p, "mount"));
        let p = parse_profile(text, &[Capability::SysAdmin]).unwrap();
        assert!(allowed(&p, "mount") && !allowed(&p, "chroot"));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
            );
        }
        build_filter(&p).expect("compile");
    }

    #[test]
    fn oci_profile_parses_as_is() {
        let p = parse_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(p.syscalls().as_ref().unwrap()[0].errno_ret(), Some(38));
        assert!(parse_profile("{}", &[]).is_err());
    }
}
