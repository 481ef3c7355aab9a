//! `userns = "auto"`: a private range of 65536 host IDs per container,
//! recorded so that two containers never share one.
//!
//! The pool: the `containers` entry of `/etc/subuid` (and `/etc/subgid`,
//! intersected) when there is one, as Podman's `--userns=auto` does; else
//! the built-in `[1048576, 2^31)` (16 × 65536 up), far above any host user
//! or the usual `/etc/subuid` ranges of login users (100000…).
//!
//! Allocations live in `/run/berth/userns/`: one file per range, named after
//! the range's first host ID and holding the container's name. A file is
//! created with O_EXCL while `/run/berth/userns/.lock` is flocked, so two
//! starts never take one range. A container that still has a file keeps that
//! range (a restart after a crash); `berth cleanup NAME` (ExecStopPost, so
//! every stop) releases it. The uid and the gid ranges are the same numbers.
//!
//! The choice of a range (`plan_next_free`) is pure and unit-tested; the rest
//! is small file I/O. Must not touch the container's processes or mounts.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::SuperviseError;
use crate::spec::{IdRange, USERNS_SIZE};

/// The built-in pool's first ID: 16 ranges of 65536 up, clear of host users.
pub const POOL_START: u32 = 0x10000 * 16;
/// The built-in pool's end (exclusive): IDs stay positive as signed 32-bit.
pub const POOL_END: u64 = 1 << 31;
/// The user whose `/etc/subuid` entry, when present, is the pool.
pub const SUBID_USER: &str = "containers";
const LOCK_FILE: &str = ".lock";

/// A pool of host IDs, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub start: u64,
    pub end: u64,
}

impl Pool {
    pub const BUILTIN: Pool = Pool {
        start: POOL_START as u64,
        end: POOL_END,
    };
}

/// `/run/berth/userns` under the host's root prefix.
pub fn userns_dir(root: &Path) -> PathBuf {
    super::run_root(root).join("userns")
}

/// The `START:COUNT` of `user` in a subuid/subgid file (subuid(5)); the
/// first entry wins. Malformed lines are skipped, as shadow-utils does.
pub fn parse_subid(text: &str, user: &str) -> Option<Pool> {
    text.lines().find_map(|line| {
        let mut it = line.trim().split(':');
        let (who, start, count) = (it.next()?, it.next()?, it.next()?);
        if who != user {
            return None;
        }
        let start: u64 = start.trim().parse().ok()?;
        let count: u64 = count.trim().parse().ok()?;
        Some(Pool {
            start,
            end: (start + count).min(1 << 32),
        })
    })
}

/// The pool from the `containers` entries of subuid and subgid (their
/// intersection, since a range maps both), or the built-in one.
pub fn plan_pool(subuid: Option<&str>, subgid: Option<&str>) -> Pool {
    let u = subuid.and_then(|t| parse_subid(t, SUBID_USER));
    let g = subgid.and_then(|t| parse_subid(t, SUBID_USER));
    match (u, g) {
        (Some(u), Some(g)) => Pool {
            start: u.start.max(g.start),
            end: u.end.min(g.end),
        },
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => Pool::BUILTIN,
    }
}

/// The lowest range start in `pool` whose 65536 IDs overlap none of the
/// `taken` ranges (by start; each `USERNS_SIZE` long, aligned or not, so a
/// record left from another pool still counts), or `None` when full.
pub fn plan_next_free(pool: Pool, taken: &[u32]) -> Option<u32> {
    let size = u64::from(USERNS_SIZE);
    let mut taken: Vec<u64> = taken.iter().map(|&t| u64::from(t)).collect();
    taken.sort_unstable();
    let mut cand = pool.start;
    for t in taken {
        if t + size <= cand {
            continue;
        }
        if t >= cand + size {
            break;
        }
        // Overlap: the next candidate starts right after this range.
        cand = t + size;
    }
    if cand + size <= pool.end && cand + size <= 1 << 32 {
        u32::try_from(cand).ok()
    } else {
        None
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> SuperviseError {
    SuperviseError::io(op, path, e)
}

/// An exclusive flock on `dir/.lock`, held until dropped (the fd closes).
struct Lock(#[allow(dead_code)] std::fs::File);

fn lock(dir: &Path) -> Result<Lock, SuperviseError> {
    crate::private::dir(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Lock(file));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(io("flock", &path, e));
        }
    }
}

/// Every record in `dir`: range start → container name.
fn read_records(dir: &Path) -> Result<BTreeMap<u32, String>, SuperviseError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io("read", dir, e))?;
        let Some(start) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // An unreadable record still takes its range: never hand it out twice.
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.insert(start, owner.trim().to_string());
    }
    Ok(out)
}

/// The range of container `name`: the one its record names, else the next
/// free one in `pool`, recorded in `dir` before it is returned.
pub fn allocate(dir: &Path, pool: Pool, name: &str) -> Result<IdRange, SuperviseError> {
    let _lock = lock(dir)?;
    let records = read_records(dir)?;
    if let Some((&start, _)) = records.iter().find(|(_, owner)| *owner == name) {
        return Ok(IdRange {
            host_start: start,
            size: USERNS_SIZE,
        });
    }
    let taken: Vec<u32> = records.keys().copied().collect();
    let start = plan_next_free(pool, &taken).ok_or_else(|| SuperviseError::State {
        path: dir.to_path_buf(),
        reason: format!(
            "container \"{name}\": no free range of {USERNS_SIZE} IDs left in the pool {}..{} ({} taken)",
            pool.start,
            pool.end,
            taken.len()
        ),
    })?;
    let path = dir.join(start.to_string());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io("create", &path, e))?;
    f.write_all(format!("{name}\n").as_bytes())
        .map_err(|e| io("write", &path, e))?;
    Ok(IdRange {
        host_start: start,
        size: USERNS_SIZE,
    })
}

/// Release every range recorded for `name` (none is fine).
pub fn release(dir: &Path, name: &str) -> Result<(), SuperviseError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let _lock = lock(dir)?;
    for (start, owner) in read_records(dir)? {
        if owner == name {
            let path = dir.join(start.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path, e)),
            }
        }
    }
    Ok(())
}

/// The pool this host uses: `/etc/subuid` and `/etc/subgid` under `root`.
pub fn host_pool(root: &Path) -> Pool {
    let read = |f: &str| std::fs::read_to_string(root.join(f)).ok();
    plan_pool(read("etc/subuid").as_deref(), read("etc/subgid").as_deref())
}

/// Give the range's root ownership of `paths` (the fresh overlay upper and
/// work dirs), so the container's root owns its writable layer.
pub fn chown_to_range(range: IdRange, paths: &[PathBuf]) -> Result<(), SuperviseError> {
    for p in paths {
        std::os::unix::fs::chown(p, Some(range.host_start), Some(range.host_start))
            .map_err(|e| io("chown", p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u32 = USERNS_SIZE;

    #[test]
    fn first_range_is_pool_start_and_gaps_are_filled() {
        let p = Pool::BUILTIN;
        assert_eq!(plan_next_free(p, &[]), Some(POOL_START));
        assert_eq!(plan_next_free(p, &[POOL_START]), Some(POOL_START + S));
        // A released range in the middle is reused first.
        assert_eq!(
            plan_next_free(p, &[POOL_START + 2 * S, POOL_START]),
            Some(POOL_START + S)
        );
    }

    #[test]
    fn unaligned_records_still_block_what_they_overlap() {
        let p = Pool::BUILTIN;
        // A record from another pool that straddles the first two slots.
        let odd = POOL_START + S / 2;
        let next = plan_next_free(p, &[odd]).unwrap();
        assert!(next >= odd + S, "{next} overlaps {odd}");
        // Records outside the pool do not matter.
        assert_eq!(plan_next_free(p, &[0, 100_000]), Some(POOL_START));
    }

    #[test]
    fn a_full_pool_is_none() {
        let p = Pool {
            start: 1_000_000,
            end: 1_000_000 + 2 * u64::from(S),
        };
        assert_eq!(plan_next_free(p, &[1_000_000, 1_000_000 + S]), None);
        let tiny = Pool {
            start: 10,
            end: 10 + u64::from(S) - 1,
        };
        assert_eq!(plan_next_free(tiny, &[]), None);
        // The built-in pool ends below 2^31.
        let last = (POOL_END - u64::from(S)) as u32;
        let all: Vec<u32> = (POOL_START..=last).step_by(S as usize).collect();
        assert_eq!(plan_next_free(Pool::BUILTIN, &all), None);
        assert_eq!(plan_next_free(Pool::BUILTIN, &all[1..]), Some(POOL_START));
    }

    #[test]
    fn subid_containers_entry_is_the_pool() {
        let subuid = "alice:100000:65536\ncontainers:2147483648:268435456\n";
        let subgid = "containers:2147483648:131072\n";
        assert_eq!(
            plan_pool(Some(subuid), Some(subgid)),
            Pool {
                start: 2147483648,
                end: 2147483648 + 131072
            }
        );
        assert_eq!(
            plan_pool(Some("alice:1:2\nbad line\n"), None),
            Pool::BUILTIN
        );
        assert_eq!(plan_pool(None, None), Pool::BUILTIN);
        assert_eq!(
            parse_subid("containers:5:10", "containers"),
            Some(Pool { start: 5, end: 15 })
        );
    }

    #[test]
    fn allocations_never_collide_and_are_kept_and_released() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("userns");
        let a = allocate(&dir, Pool::BUILTIN, "a").unwrap();
        let b = allocate(&dir, Pool::BUILTIN, "b").unwrap();
        assert_eq!(a.host_start, POOL_START);
        assert_eq!(b.host_start, POOL_START + S);
        // Again for "a": its record still names it, so the same range.
        assert_eq!(allocate(&dir, Pool::BUILTIN, "a").unwrap(), a);
        assert_eq!(
            std::fs::read_to_string(dir.join(POOL_START.to_string())).unwrap(),
            "a\n"
        );
        // A foreign file planted at the next slot (another berth, a crash
        // mid-write with an empty file) is skipped, not overwritten.
        std::fs::write(dir.join((POOL_START + 2 * S).to_string()), "").unwrap();
        let c = allocate(&dir, Pool::BUILTIN, "c").unwrap();
        assert_eq!(c.host_start, POOL_START + 3 * S);
        release(&dir, "a").unwrap();
        assert!(!dir.join(POOL_START.to_string()).exists());
        let d = allocate(&dir, Pool::BUILTIN, "d").unwrap();
        assert_eq!(d.host_start, POOL_START);
        release(&dir, "nobody").unwrap();
        release(&tmp.path().join("missing"), "a").unwrap();
        // A full pool is a clear error naming the container.
        let small = Pool {
            start: u64::from(POOL_START),
            end: u64::from(POOL_START) + 4 * u64::from(S),
        };
        let err = allocate(&dir, small, "e").unwrap_err().to_string();
        assert!(
            err.contains("\"e\"") && err.contains("no free range"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_allocations_get_distinct_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("userns");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    allocate(&dir, Pool::BUILTIN, &format!("c{i}"))
                        .unwrap()
                        .host_start
                })
            })
            .collect();
        let mut starts: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(starts.len(), 8);
    }
}
