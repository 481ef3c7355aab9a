//! Device access control on cgroup v2: `linux.resources.devices` compiled to
//! a BPF_PROG_TYPE_CGROUP_DEVICE program and attached to the container's
//! cgroup (runc `libcontainer/cgroups/devices/devicefilter.go`, crun
//! `ebpf.c`). Without it a container holding CAP_MKNOD could create and open
//! the host's disks.
//!
//! `plan_device_program` is pure (rules → instructions, unit-tested);
//! `apply_device_filter` loads and attaches it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::RuntimeError;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// The rules a container always gets after the spec's own, as runc adds
/// them: the default device nodes, /dev/pts and /dev/ptmx, and mknod of any
/// device (opening one is what matters).
pub fn default_allow_rules() -> Vec<(LinuxDeviceType, Option<i64>, Option<i64>, &'static str)> {
    vec![
        (LinuxDeviceType::C, None, None, "m"),
        (LinuxDeviceType::B, None, None, "m"),
        (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
        (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
        (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
        (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
        (LinuxDeviceType::C, Some(5), Some(1), "rwm"),
        (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
        (LinuxDeviceType::C, Some(136), None, "rwm"),
    ]
}

struct Rule {
    allow: bool,
    typ: Option<i32>,
    major: Option<i64>,
    minor: Option<i64>,
    access: i32,
}

fn access_bits(s: &str) -> i32 {
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    a
}

fn dev_type(t: Option<LinuxDeviceType>) -> Option<i32> {
    match t {
        Some(LinuxDeviceType::B) => Some(DEVCG_DEV_BLOCK),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEVCG_DEV_CHAR),
        _ => None,
    }
}

/// Compile device rules (last match wins, default deny) to a program.
/// `extra_allow` are the devices the container was given (`linux.devices`).
pub fn plan_device_program(
    spec_rules: &[LinuxDeviceCgroup],
    extra_allow: &[(LinuxDeviceType, i64, i64)],
) -> Vec<Insn> {
    let mut rules: Vec<Rule> = spec_rules
        .iter()
        .map(|r| Rule {
            allow: r.allow(),
            typ: dev_type(r.typ()),
            major: r.major().filter(|m| *m >= 0),
            minor: r.minor().filter(|m| *m >= 0),
            access: access_bits(r.access().as_deref().unwrap_or("rwm")),
        })
        .collect();
    for (t, major, minor, access) in default_allow_rules() {
        rules.push(Rule {
            allow: true,
            typ: dev_type(Some(t)),
            major,
            minor,
            access: access_bits(access),
        });
    }
    for (t, major, minor) in extra_allow {
        rules.push(Rule {
            allow: true,
            typ: dev_type(Some(*t)),
            major: Some(*major),
            minor: Some(*minor),
            access: ACC_READ | ACC_WRITE | ACC_MKNOD,
        });
    }
    // Prologue: R2 = type, R3 = access, R4 = major, R5 = minor
    // (struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }).
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // Last rule wins: test from the last one back, the first match decides.
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        if let Some(t) = r.typ {
            block.push((insn(JMP_JNE_K, 2, 0, 0, t), true));
        }
        if r.access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Requested access must be a subset: (access & allowed) == access.
            block.push((insn(ALU32_MOV_X, 1, 3, 0, 0), false));
            block.push((insn(ALU32_AND_K, 1, 0, 0, r.access), false));
            block.push((insn(JMP_JNE_X, 1, 3, 0, 0), true));
        }
        if let Some(m) = r.major {
            block.push((insn(JMP_JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor {
            block.push((insn(JMP_JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(ALU32_MOV_K, 0, 0, 0, i32::from(r.allow)), false));
        block.push((insn(JMP_EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        let unconditional = len == 2;
        for (i, (mut ins, is_jump)) in block.into_iter().enumerate() {
            if is_jump {
                // Skip to the first instruction after this block.
                ins.off = (len - i - 1) as i16;
            }
            prog.push(ins);
        }
        // A rule matching everything decides alone; the verifier rejects
        // the unreachable rules behind it.
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Load `prog` and attach it to the cgroup open at `cgroup`. The program
/// lives as long as the cgroup; nothing else needs recording.
pub fn apply_device_filter(cgroup: &std::fs::File, prog: &[Insn]) -> Result<(), RuntimeError> {
    // Without a log first, as libbpf does: a verifier asked for one prints
    // its state at every instruction, even when the program is accepted,
    // and that was most of a load. A refused program is loaded again with
    // the log, for the error to say why.
    let fd = match load_program(prog, None) {
        Ok(fd) => fd,
        Err(e) => {
            let mut log = vec![0u8; 16 * 1024];
            let _ = load_program(prog, Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            return Err(RuntimeError::sys(
                format!(
                    "load the device filter ({})",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
                e,
            ));
        }
    };
    let prog_fd = fd;
    let attach = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: as above, for the attach attributes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const AttachAttr,
            std::mem::size_of::<AttachAttr>(),
        )
    };
    if r < 0 {
        return Err(RuntimeError::sys(
            "attach the device filter to the cgroup",
            nix::Error::last(),
        ));
    }
    Ok(())
}

/// BPF_PROG_LOAD of the device program, with the verifier's log into `log`
/// when one is given.
fn load_program(prog: &[Insn], log: Option<&mut [u8]>) -> Result<OwnedFd, nix::Error> {
    let license = c"Apache";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"berth_devcg");
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: the attribute struct, instructions, license and log buffer all
    // outlive the call; the kernel reads at most the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn deny_all_then_defaults_compiles_to_blocks_that_skip_to_the_next() {
        let deny = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let prog = plan_device_program(&[deny], &[]);
        assert_eq!(prog[0], insn(LDX_MEM_W, 2, 1, 0, 0));
        assert_eq!(*prog.last().unwrap(), insn(JMP_EXIT, 0, 0, 0, 0));
        // Every jump lands inside the program.
        for (i, ins) in prog.iter().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                assert!(
                    i + 1 + (ins.off as usize) < prog.len(),
                    "jump at {i} leaves the program"
                );
                let prev = prog[i + ins.off as usize];
                assert_eq!(
                    prev.code, JMP_EXIT,
                    "a jump skips exactly to the end of its block"
                );
            }
        }
        // The spec's deny-all is tested last and ends the program unconditionally.
        let n = prog.len();
        assert_eq!(
            prog[n - 2],
            insn(ALU32_MOV_K, 0, 0, 0, 0),
            "deny-all block returns 0"
        );
        assert_ne!(
            prog[n - 3].code,
            ALU32_MOV_K,
            "no unreachable default after it"
        );
    }

    #[test]
    fn access_letters_map_to_bits() {
        assert_eq!(access_bits("rwm"), 7);
        assert_eq!(access_bits("m"), ACC_MKNOD);
        assert_eq!(access_bits("rw"), ACC_READ | ACC_WRITE);
    }
}
