//! Link the berth binary position-dependent (`-no-pie`) unless `BERTH_PIE=1`.
//!
//! Every container start executes berth once or twice: the caller's exec
//! and, unless the trampoline serves (`runtime/trampoline.rs`), the
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
//!
//! It also compiles berth's two programs without std or libc (static: a
//! few KiB each), each on its own, for berth to embed (`cfg(berth_waiter)`):
//! `src/waiter/waiter.rs`, the idle supervisor's waiting program
//! (supervise/watch.rs executes it from a memfd), and
//! `src/waiter/trampoline.rs`, the last exec into a container
//! (runtime/trampoline.rs). Only on x86_64 Linux, where their raw system
//! calls are right; elsewhere, or when they cannot be built, a supervisor
//! waits in itself and re-executes from a protected copy of berth.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BERTH_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let pie = std::env::var("BERTH_PIE").is_ok_and(|v| v == "1");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rustc-check-cfg=cfg(berth_waiter)");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if linux && x86_64 {
        println!("cargo:rerun-if-changed=src/waiter/sys.rs");
        let built = build_program("src/waiter/waiter.rs", "berth-wait")
            .and_then(|()| build_program("src/waiter/trampoline.rs", "berth-trampoline"));
        match built {
            Ok(()) => println!("cargo:rustc-cfg=berth_waiter"),
            Err(e) => println!(
                "cargo:warning=berth's programs without std (src/waiter/) were not built, supervisors will wait in themselves and re-execute berth at each start: {e}"
            ),
        }
    }
}

fn build_program(src: &str, name: &str) -> Result<(), String> {
    println!("cargo:rerun-if-changed={src}");
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?).join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET").map_err(|e| e.to_string())?;
    let status = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args([
            "-C",
            "relocation-model=static",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static", "-C", "link-arg=-no-pie"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .arg("-o")
        .arg(&out)
        .arg(src)
        .status()
        .map_err(|e| format!("rustc: {e}"))?;
    if !status.success() {
        return Err(format!("rustc {src}: {status}"));
    }
    Ok(())
}
