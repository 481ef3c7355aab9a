//! Process primitives of the runtime: the single-thread check, clone3 (with
//! CLONE_INTO_CGROUP), user-namespace ID maps, process names, and identifying
//! a PID across reuse by its start time. No container policy here.

use std::os::fd::RawFd;

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use super::RuntimeError;

/// Fail unless the calling process has exactly one thread: clone copies only
/// the calling thread, so locks held by others (malloc, stdio) would stay held
/// forever in the child (DESIGN.md §2, crun and runc do the same check by
/// construction).
///
/// A thread that was just joined can still be listed for a moment: the
/// kernel wakes its joiner (CLONE_CHILD_CLEARTID) before it releases the
/// task, as after a D-Bus call's runtime is dropped (`systemd::bus`). So a
/// count over one is read again for up to 100 ms before it is an error; a
/// thread that is really running stays listed.
pub fn assert_single_threaded() -> Result<(), RuntimeError> {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .map_err(|e| RuntimeError::io("list threads", "/proc/self/task", e))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        let threads = count()?;
        if threads == 1 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(RuntimeError::MultiThreaded { threads });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub enum Cloned {
    Child,
    Parent { pid: Pid, in_cgroup: bool },
}

/// `struct clone_args` of clone3(2), up to the `cgroup` field (VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 without a new stack, i.e. fork semantics plus namespace flags and,
/// when `cgroup_fd` is given, placement into that cgroup at clone time (crun
/// `linux.c`), so no process of the container ever runs outside it. Falls back
/// to a plain clone when the kernel refuses CLONE_INTO_CGROUP; the caller then
/// writes `cgroup.procs`.
pub fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Cloned, RuntimeError> {
    // The child is not dumpable from its first instruction until it executes
    // the container's program (execve sets it again): a process of the
    // container could otherwise ptrace it or open its /proc/PID/{mem,fd,exe}
    // while it holds host descriptors (CVE-2019-5736; runc's nsexec.c clears
    // it the same way). The flag lives in the mm the child copies, so it is
    // cleared here, around the clone. An unprivileged parent must still write
    // a new user namespace's ID maps (/proc/PID/uid_map of an undumpable
    // child is root's): that child clears it itself after sync point 1.
    // SAFETY: prctl with plain integer arguments.
    let was = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    let rootless_userns =
        flags & libc::CLONE_NEWUSER as u64 != 0 && !nix::unistd::geteuid().is_root();
    if !rootless_userns {
        set_undumpable();
    }
    let cloned = clone3_dumpable_as_is(flags, cgroup_fd);
    if was == 1 && !matches!(cloned, Ok(Cloned::Child)) {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    cloned
}

/// PR_SET_DUMPABLE 0 for the calling process: ptrace and /proc/self's
/// sensitive files (mem, fd, exe, environ) become root's only.
pub fn set_undumpable() {
    // SAFETY: prctl with plain integer arguments; setting 0 cannot fail.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

fn clone3_dumpable_as_is(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Cloned, RuntimeError> {
    let attempt = |with_cgroup: bool| -> Result<Cloned, nix::Error> {
        let mut args = CloneArgs {
            flags,
            exit_signal: libc::SIGCHLD as u64,
            ..Default::default()
        };
        if let (true, Some(fd)) = (with_cgroup, cgroup_fd) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd as u64;
        }
        // SAFETY: clone3 with no stack behaves like fork: the child continues
        // on a copy of this single-threaded process's memory (checked by
        // assert_single_threaded before any caller gets here).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match ret {
            -1 => Err(nix::Error::last()),
            0 => Ok(Cloned::Child),
            pid => Ok(Cloned::Parent {
                pid: Pid::from_raw(pid as i32),
                in_cgroup: with_cgroup && cgroup_fd.is_some(),
            }),
        }
    };
    match attempt(true) {
        Ok(c) => Ok(c),
        // No clone3 at all (old kernels, UML, seccomp profiles that answer
        // ENOSYS as Docker's does): clone(2) with the same flags and no new
        // stack is fork plus namespaces; the caller then writes cgroup.procs.
        Err(nix::errno::Errno::ENOSYS) => {
            // SAFETY: as above; clone(2) without a stack behaves like fork.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    flags | libc::SIGCHLD as u64,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            match ret {
                -1 => Err(RuntimeError::sys("clone", nix::Error::last())),
                0 => Ok(Cloned::Child),
                pid => Ok(Cloned::Parent {
                    pid: Pid::from_raw(pid as i32),
                    in_cgroup: false,
                }),
            }
        }
        Err(e)
            if cgroup_fd.is_some()
                && matches!(
                    e,
                    nix::errno::Errno::EINVAL
                        | nix::errno::Errno::EBUSY
                        | nix::errno::Errno::EOPNOTSUPP
                        | nix::errno::Errno::E2BIG
                ) =>
        {
            attempt(false).map_err(|e| RuntimeError::sys("clone3", e))
        }
        Err(e) => Err(RuntimeError::sys("clone3", e)),
    }
}

fn render_id_map(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write the spec's uid/gid maps for the child's new user namespace. As real
/// root we keep setgroups allowed; an unprivileged caller must deny it first
/// (user_namespaces(7)).
pub fn write_id_mappings(pid: Pid, spec: &Spec) -> Result<(), RuntimeError> {
    let linux = spec.linux().as_ref();
    let uids = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gids = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    let base = std::path::PathBuf::from(format!("/proc/{pid}"));
    if !nix::unistd::geteuid().is_root() {
        let p = base.join("setgroups");
        std::fs::write(&p, "deny").map_err(|e| RuntimeError::io("write", p, e))?;
    }
    for (file, maps) in [("uid_map", &uids), ("gid_map", &gids)] {
        if maps.is_empty() {
            continue;
        }
        let p = base.join(file);
        std::fs::write(&p, render_id_map(maps)).map_err(|e| RuntimeError::io("write", p, e))?;
    }
    Ok(())
}

/// Drop this process's resident file pages before a long wait: in a
/// private read-only file mapping, a page that is still the file's own (not
/// copied on write) holds nothing of ours, so MADV_DONTNEED only unmaps it and
/// the few pages the wait loop uses fault back from the page cache. That
/// covers the code, the read-only data and what the dynamic loader read once.
/// Keeps the process that waits next to every container small (its RSS is
/// what a host running hundreds of containers pays). A page the loader wrote
/// (the GOT in RELRO: read-only now) is anonymous and never touched: in a
/// mapping that has such pages, /proc/self/pagemap tells them apart.
pub fn release_resident_code() {
    drop_file_pages();
    // SAFETY: malloc_trim only returns free heap memory to the kernel; after
    // the walk, which read the whole smaps text into the heap.
    unsafe { libc::malloc_trim(0) };
}

fn drop_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    let mut pagemap = None;
    for (a, b, mixed) in droppable_ranges(&smaps) {
        let runs = match mixed {
            false => vec![(a, b)],
            true => {
                let map = pagemap.get_or_insert_with(|| std::fs::File::open("/proc/self/pagemap"));
                let Ok(map) = map.as_ref() else { continue };
                match pagemap_entries(map, a, b, page) {
                    Some(entries) => file_page_runs(a, &entries, page),
                    None => continue,
                }
            }
        };
        for (x, y) in runs {
            // SAFETY: pages of a private read-only file mapping of this
            // process that are the file's own; dropping them loses nothing.
            unsafe { libc::madvise(x as *mut libc::c_void, y - x, libc::MADV_DONTNEED) };
        }
    }
}

/// The address ranges in `smaps` (the text of /proc/PID/smaps) that are
/// private, read-only and file-backed, each with whether it also holds
/// anonymous (copied-on-write) pages.
fn droppable_ranges(smaps: &str) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-') {
            current = None;
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            if perms.starts_with('r')
                && perms.ends_with('p')
                && !perms.contains('w')
                && path.starts_with('/')
            {
                current = Some((a, b));
            }
        } else if first == "Anonymous:" {
            if let Some((a, b)) = current.take() {
                out.push((a, b, f.next() != Some("0")));
            }
        }
    }
    out
}

/// The pagemap entries (one u64 per page) of `[a, b)`.
fn pagemap_entries(map: &std::fs::File, a: usize, b: usize, page: usize) -> Option<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let mut raw = vec![0u8; (b - a) / page * 8];
    map.read_exact_at(&mut raw, (a / page * 8) as u64).ok()?;
    Some(
        raw.chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
            .collect(),
    )
}

/// Runs of pages from `start` that may be dropped, given their pagemap
/// entries: every page but an anonymous one (present and not a file page,
/// or swapped out), which holds what was written to it.
fn file_page_runs(start: usize, entries: &[u64], page: usize) -> Vec<(usize, usize)> {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE_OR_SHARED: u64 = 1 << 61;
    let ours = |e: u64| e & SWAPPED != 0 || (e & PRESENT != 0 && e & FILE_OR_SHARED == 0);
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &e) in entries.iter().enumerate() {
        if ours(e) {
            continue;
        }
        let addr = start + i * page;
        match runs.last_mut() {
            Some((_, end)) if *end == addr => *end += page,
            _ => runs.push((addr, addr + page)),
        }
    }
    runs
}

/// Name the current process as `ps` shows it (PR_SET_NAME, 15 bytes max).
pub fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // Best effort: a missing name only makes `ps` less helpful.
        let _ = nix::sys::prctl::set_name(&c);
    }
}

/// Start time of `pid` (field 22 of /proc/PID/stat, clock ticks since boot),
/// which tells a live container init from a reused PID.
pub fn proc_start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat.get(i + 2..i + 3), Some("Z") | Some("X")),
            None => false,
        },
        Err(_) => false,
    }
}

/// Whether `pid` is still the process that started at `start_time`.
pub fn same_process(pid: Pid, start_time: Option<u64>) -> bool {
    process_alive(pid) && (start_time.is_none() || proc_start_time(pid) == start_time)
}

/// A process held by a pidfd (pidfd_open(2), Linux 5.3), so that a signal
/// reaches that process or nobody, never a later one given the same PID
/// (runc and crun signal through pidfds for the same reason). Where no pidfd
/// can be had (older kernels, seccomp), the start-time check that opened it
/// stays the guard and plain kill(2) is used.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: Pid,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl ProcessHandle {
    /// `pid`, if it is alive and still the process that started at
    /// `start_time` (any, when None). The start time is read after the
    /// pidfd is open: were the PID reused in between, it would differ.
    pub fn open(pid: Pid, start_time: Option<u64>) -> Option<ProcessHandle> {
        // SAFETY: pidfd_open(2) takes plain integers and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let pidfd = match fd {
            -1 if nix::Error::last() == nix::errno::Errno::ESRCH => return None,
            -1 => None,
            // SAFETY: the kernel just returned this descriptor to us alone.
            fd => Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as RawFd) }),
        };
        same_process(pid, start_time).then_some(ProcessHandle { pid, pidfd })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Send `signo` (0 tests for existence) to this process.
    pub fn signal(&self, signo: i32) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal(2) and kill(2) take plain integers and a
        // NULL siginfo.
        let r = match &self.pidfd {
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    signo,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            None => (unsafe { libc::kill(self.pid.as_raw(), signo) }) as libc::c_long,
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the process has not been reaped yet, i.e. its PID still names
    /// it (what was read through /proc/PID meanwhile was its).
    pub fn still_there(&self) -> bool {
        self.signal(0).is_ok()
    }
}

/// A wait status as a shell reports it: the exit code, or 128+N for a
/// process killed by signal N; `None` for a stop or continue. The one copy
/// both modes and the reaper use.
pub fn exit_status(ws: nix::sys::wait::WaitStatus) -> Option<i32> {
    match ws {
        nix::sys::wait::WaitStatus::Exited(_, code) => Some(code),
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn only_clean_private_read_only_file_mappings_are_dropped() {
        let smaps = "\
1000-2000 r--p 00000000 fe:00 12 /usr/bin/berth
Rss:                 8 kB
Anonymous:           0 kB
2000-3000 r-xp 00001000 fe:00 12 /usr/bin/berth
Anonymous:           0 kB
3000-4000 r--p 00002000 fe:00 12 /usr/bin/berth
Anonymous:           4 kB
4000-5000 rw-p 00003000 fe:00 12 /usr/bin/berth
Anonymous:           0 kB
5000-6000 r--s 00000000 fe:00 13 /dev/shm/x
Anonymous:           0 kB
6000-7000 r--p 00000000 00:00 0 
Anonymous:           0 kB
7000-8000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:           0 kB
";
        assert_eq!(
            droppable_ranges(smaps),
            vec![
                (0x1000, 0x2000, false),
                (0x2000, 0x3000, false),
                (0x3000, 0x4000, true)
            ]
        );
    }

    #[test]
    fn a_process_runs_on_after_giving_back_its_pages() {
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = s.lines().find(|l| l.starts_with("RssFile:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let before = rss();
        release_resident_code();
        // Calls through the GOT (dropped, they would jump to zero) and code
        // faulted back in.
        let after = rss();
        assert!(nix::unistd::getpid().as_raw() > 0);
        assert!(
            after < before,
            "file pages resident: {before} KiB, then {after} KiB"
        );
    }

    #[test]
    fn only_pages_still_the_files_own_are_dropped() {
        const P: u64 = 1 << 63;
        const S: u64 = 1 << 62;
        const F: u64 = 1 << 61;
        // file page, absent, anonymous, file page, swapped, absent
        let entries = [P | F, 0, P | 42, P | F, S, 0];
        assert_eq!(
            file_page_runs(0x10000, &entries, 0x1000),
            vec![(0x10000, 0x12000), (0x13000, 0x14000), (0x15000, 0x16000)]
        );
    }
    use oci_spec::runtime::LinuxIdMappingBuilder;

    #[test]
    fn id_map_renders_one_line_per_range() {
        let m = vec![
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(100000u32)
                .size(65536u32)
                .build()
                .unwrap(),
            LinuxIdMappingBuilder::default()
                .container_id(65536u32)
                .host_id(1u32)
                .size(1u32)
                .build()
                .unwrap(),
        ];
        assert_eq!(render_id_map(&m), "0 100000 65536\n65536 1 1\n");
    }

    #[test]
    fn a_clone_is_not_dumpable_and_the_parent_stays_as_it_was() {
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: prctl with plain integer arguments.
        let before = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        match clone3(0, None).unwrap() {
            Cloned::Child => {
                // SAFETY: as above; then only write(2) and _exit(2).
                let d = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } as u8;
                let _ = nix::unistd::write(&w, &[d]);
                unsafe { libc::_exit(0) }
            }
            Cloned::Parent { pid, .. } => {
                drop(w);
                let mut b = [9u8];
                let n = nix::unistd::read(r.as_raw_fd(), &mut b).unwrap();
                let _ = nix::sys::wait::waitpid(pid, None);
                assert_eq!((n, b[0]), (1, 0), "the child was dumpable");
                // SAFETY: as above.
                let after = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
                assert_eq!(after, before);
            }
        }
    }

    #[test]
    fn a_handle_signals_its_own_process_and_refuses_another_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let t = proc_start_time(pid);
        assert!(ProcessHandle::open(pid, t.map(|t| t + 1)).is_none());
        let h = ProcessHandle::open(pid, t).expect("handle on a live child");
        assert!(h.still_there());
        h.signal(libc::SIGKILL).unwrap();
        let _ = child.wait();
        // Reaped: the pidfd no longer reaches anything, even were the PID reused.
        assert!(!h.still_there());
        assert!(ProcessHandle::open(pid, t).is_none());
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = nix::unistd::getpid();
        let t = proc_start_time(me).expect("start time");
        assert_eq!(proc_start_time(me), Some(t));
        assert!(process_alive(me));
        assert!(same_process(me, Some(t)));
        assert!(!same_process(me, Some(t + 1)));
    }
}
