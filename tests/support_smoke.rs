//! The fixtures in tests/support build what they promise.
mod support;

#[test]
fn busybox_rootfs_has_a_shell() {
    if !std::path::Path::new(support::BUSYBOX).exists() {
        support::skip("busybox-static is not installed (tests/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = support::busybox_rootfs(dir.path());
    let sh = std::fs::read_link(root.join("bin/sh")).unwrap();
    assert_eq!(sh, std::path::PathBuf::from("/bin/busybox"));
    assert!(root.join("bin/busybox").metadata().unwrap().len() > 100_000);
}
