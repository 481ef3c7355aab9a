//! Classes 6 and 9 of issue 12: files other users can read or use (store,
//! run state, notify socket; CVE-2021-41091 class), and the small ones that
//! are about files the container controls (`cap_last_cap`, `/etc/passwd`).

use serde_json::{json, Value};

use crate::rt::{describe, sh_args, stdout, Sandbox};
#[allow(unused_imports)]
use crate::{require_program, require_root};

/// Peers installed on this machine, run on the same bundle for the record.
fn peers() -> Vec<&'static str> {
    ["crun", "runc"]
        .into_iter()
        .filter(|p| crate::support::have_program(p))
        .collect()
}

fn no_caps(c: &mut Value) {
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        c["process"]["capabilities"][set] = json!([]);
    }
}

/// Class 9: the bounding set is dropped up to the kernel's last capability,
/// not up to what the container's `/proc/sys/kernel/cap_last_cap` says. The
/// attack binds a file holding "3" over it; before the fix, berth stopped
/// dropping at CAP_FOWNER and the container kept CAP_SYS_ADMIN & co. in its
/// bounding set (regainable through any setuid or file-capability binary).
#[test]
fn shadowed_cap_last_cap_does_not_shorten_the_bounding_drop() {
    require_root!();
    let sb = Sandbox::new();
    let fake = sb.path().join("cap_last_cap");
    std::fs::write(&fake, "3\n").unwrap();
    let bundle = sb.bundle("caps", |c| {
        no_caps(c);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/proc/sys/kernel/cap_last_cap",
            "type": "bind",
            "source": fake,
            "options": ["bind", "ro"]
        }));
        sh_args(
            c,
            "echo last=$(cat /proc/sys/kernel/cap_last_cap); grep CapBnd /proc/self/status",
        );
    });
    let o = sb.sh(&format!("$RT run -b {} caps", bundle.display()));
    let out = stdout(&o);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        out.contains("last=3"),
        "the shadow was not in place:\n{out}"
    );
    assert!(
        out.contains("CapBnd:\t0000000000000000"),
        "bounding set not fully dropped:\n{}",
        describe(&o)
    );
    for peer in peers() {
        let o = sb.sh(&format!(
            "{peer} --root {root} run -b {b} caps-{peer}",
            root = sb.path().join(format!("{peer}-state")).display(),
            b = bundle.display()
        ));
        println!("peer {peer}: {}", describe(&o));
    }
}
