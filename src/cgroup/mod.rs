//! cgroup planning both modes share, pure: how the OCI spec's cgroup v1-era
//! values map onto cgroup v2's files and systemd's properties. No syscalls
//! here (tests/purity.rs); the cgroupfs writers live in `runtime::cgroup`
//! and `supervise::cgroup`.

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the
/// conversion runc and crun use; 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio weight (10..1000) to `io.weight` (1..10000); 0 means unset.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + ((w.clamp(10, 1000) as u64 - 10) * 9999) / 990
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_map_end_to_end_as_runc_maps_them() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
        assert_eq!(blkio_to_io_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
