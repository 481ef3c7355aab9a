//! Link the berth binary position-dependent (`-no-pie`) unless `BERTH_PIE=1`.
//!
//! Every container start executes berth twice: the caller's exec and the
//! re-execution from a sealed copy (CVE-2019-5736, `runtime/exe.rs`). As a PIE,
//! each exec has ld.so apply ~30,000 relative relocations, which dirties the
//! whole `.data.rel.ro` (≈500 KiB of vtables and static tables) page by page:
//! a third of a start's page faults and 12% of its CPU (`benches/runtime-results.md`),
//! and the same pages stay private in every waiting supervisor. A
//! position-dependent link has the linker resolve them once, at build time.
//!
//! What this gives up is the randomised address of berth's own code and
//! static data; heap, stacks, mmaps and shared libraries stay randomised.
//! Debian ships runc, containerd and podman the same way (Go builds
//! non-PIE executables). A distribution whose policy requires PIE builds
//! with `BERTH_PIE=1`; berth then works the same, only slower to start.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BERTH_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let pie = std::env::var("BERTH_PIE").is_ok_and(|v| v == "1");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
