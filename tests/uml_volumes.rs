//! Volume files of a network or block filesystem (`/etc/berth/volumes/
//! NAME.toml` with `type = "nfs"`, `"cifs"`, `"ext4"`), mounted for a real
//! container under systemd and written through: the host's kernel here has
//! neither NFS nor CIFS and its loop devices are the machine's, so this runs
//! in a User-Mode Linux guest (tests/support/uml.rs), whose kernel loads the
//! nfsd, nfs and cifs modules and has a block device of its own (`/dev/ubda`).
//!
//! One guest boot for every check: the guest serves
//! - NFSv4.2 with the kernel's nfsd (`rpc.nfsd`, `exportfs`, `rpc.mountd`
//!   from Debian `nfs-kernel-server`) of a tmpfs on its loopback,
//! - SMB3 with Debian `samba`'s smbd of a directory on its loopback, a user
//!   with a password given to berth in a `credentials=` file,
//! - and an ext4 filesystem made on `/dev/ubda` with `mkfs.ext4`.
//!
//! Each container has a network namespace of its own (`mode = "none"`: only
//! its own `lo`), so the servers on the guest's loopback are out of its
//! reach: berth must mount from the host's side, as Docker's and Podman's
//! local volume drivers do. Each writes a file through its volume; the test
//! reads it on the server's side (the exported tmpfs, the share's
//! directory) and, for ext4, from the device with `debugfs` after the
//! container stopped (nothing may keep it mounted). A volume whose server
//! is not there stops the start with an error naming its file, and the
//! container never runs on an empty directory in its place.
//! `BERTH_UML_KEEP=1` keeps the guest's dir (console.log, out/log) in /tmp.
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use support::uml::{self, GuestOptions, GuestRun, Mode};

const ROOTFS: &str = "/srv/root";
const SMB_PASSWORD: &str = "Sm8-pa55,word";

/// Modules, dependencies first (modules.dep of the UML kernel). With the
/// crypto modules left out the SMB3 mount fails with ENOENT: the client asks
/// the crypto API for an algorithm, and there is no modprobe to load it.
const MODULES: &[&str] = &[
    "kernel/net/sunrpc/sunrpc.ko",
    "kernel/fs/nfs_common/grace.ko",
    "kernel/fs/lockd/lockd.ko",
    "kernel/fs/nfs_common/nfs_acl.ko",
    "kernel/lib/oid_registry.ko",
    "kernel/net/sunrpc/auth_gss/auth_rpcgss.ko",
    "kernel/fs/nfsd/nfsd.ko",
    "kernel/fs/netfs/netfs.ko",
    "kernel/fs/fscache/fscache.ko",
    "kernel/fs/nfs/nfs.ko",
    "kernel/net/dns_resolver/dns_resolver.ko",
    "kernel/fs/nfs/nfsv4.ko",
    "kernel/lib/asn1_decoder.ko",
    "kernel/fs/smb/common/cifs_arc4.ko",
    "kernel/fs/smb/common/cifs_md4.ko",
    "kernel/crypto/hmac.ko",
    "kernel/crypto/cmac.ko",
    "kernel/crypto/sha512_generic.ko",
    "kernel/crypto/ecb.ko",
    "kernel/crypto/cbc.ko",
    "kernel/crypto/ctr.ko",
    "kernel/crypto/seqiv.ko",
    "kernel/crypto/gf128mul.ko",
    "kernel/crypto/ghash-generic.ko",
    "kernel/crypto/gcm.ko",
    "kernel/crypto/ccm.ko",
    "kernel/crypto/md4.ko",
    "kernel/lib/crypto/libarc4.ko",
    "kernel/crypto/arc4.ko",
    "kernel/lib/crypto/libdes.ko",
    "kernel/crypto/des_generic.ko",
    "kernel/fs/nls/nls_utf8.ko",
    "kernel/fs/nls/nls_iso8859-1.ko",
    "kernel/fs/smb/client/cifs.ko",
];

/// The servers' and the filesystem's programs, run inside the guest
/// (scripts/install-deps installs them on the host, whose root it boots on).
const PROGRAMS: &[&str] = &[
    "/usr/sbin/exportfs",
    "/usr/sbin/rpc.mountd",
    "/usr/sbin/rpc.nfsd",
    "/usr/sbin/smbd",
    "/usr/bin/smbpasswd",
    "/usr/sbin/useradd",
    "/usr/sbin/mkfs.ext4",
    "/usr/sbin/debugfs",
];

/// Skip unless UML runs here and the guest's programs are installed.
macro_rules! require_guest {
    () => {
        require_uml!();
        if let Some(p) = PROGRAMS.iter().find(|p| !std::path::Path::new(p).is_file()) {
            support::skip(&format!(
                "{p} is missing (nfs-kernel-server, samba, e2fsprogs: scripts/install-deps installs them)"
            ));
            return;
        }
    };
}

fn definition(volume: &str, cmd: &str) -> String {
    format!(
        "rootfs = \"{ROOTFS}\"\ncommand = [\"sh\", \"-c\", \"{cmd}\"]\n[[volume]]\nsource = \"{volume}\"\ntarget = \"/data\"\n[network]\nmode = \"none\"\n[service]\nrestart = \"no\"\nstop_timeout = \"1s\"\n"
    )
}

/// What each container runs: its volume's line of its own mountinfo, then
/// a file written through the volume, then it waits to be stopped.
const WRITER: &str = "grep ' /data ' /proc/self/mountinfo | sed 's/^/mnt: /'; echo written-by-$0 > /data/hello && echo wrote; exec sleep 300";

const SCRIPT: &str = r#"
sc() { systemctl --no-pager "$@"; }
now() { read -r up _ < /proc/uptime; echo "${up%.*}"; }
wait_active() {
    end=$(( $(now) + 40 ))
    while [ "$(now)" -lt $end ]; do
        case $(sc is-active berth@$1) in active) return 0 ;; failed|inactive) return 1 ;; esac
        sleep 0.2
    done
}
log_of() { journalctl --no-pager -b -u berth@$1 -o cat | tr '\n' ' ' | tail -c 2500; }
# --- NFSv4 server: the kernel's nfsd exporting a tmpfs (overlayfs on hostfs
# cannot be exported), on the guest's loopback.
ip link set lo up
mkdir -p /srv/nfs
mount -t tmpfs -o mode=0777 tmpfs /srv/nfs
mount -t nfsd nfsd /proc/fs/nfsd
mkdir -p /var/lib/nfs/v4recovery
echo '/srv/nfs 127.0.0.1(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0)' > /etc/exports
exportfs -ra; result exportfs $?
rpc.mountd -N 2 -N 3 --no-udp; result mountd $?
rpc.nfsd -N 3 -U 4; result nfsd $?
result nfsd_versions "$(cat /proc/fs/nfsd/versions)"
# --- SMB server: smbd with one share, user "berthsmb".
mkdir -p /srv/smb /var/lib/samba/private /var/cache/samba /run/samba /var/log/samba
chmod 0777 /srv/smb
useradd -M -s /bin/false berthsmb; result useradd $?
cat > /etc/samba/berth-test.conf <<EOF
[global]
server role = standalone server
map to guest = never
interfaces = lo
bind interfaces only = yes
smb ports = 445
disable netbios = yes
server min protocol = SMB3
log file = /var/log/samba/log.smbd
[share]
path = /srv/smb
read only = no
valid users = berthsmb
EOF
printf '%s\n%s\n' "$SMBPW" "$SMBPW" | smbpasswd -c /etc/samba/berth-test.conf -s -a berthsmb; result smbpasswd $?
smbd -D -s /etc/samba/berth-test.conf; result smbd $?
end=$(( $(now) + 20 ))
while [ "$(now)" -lt $end ] && ! grep -q ':01BD ' /proc/net/tcp; do sleep 0.2; done
result smbd_listening "$(grep -c ':01BD ' /proc/net/tcp)"
# --- ext4 on the guest's own block device.
mkfs.ext4 -q -F /dev/ubda; result mkfs $?
# --- the containers
mnt_before="$(grep -c . /proc/self/mountinfo)"
# A credentials file others may read is refused, naming it.
sc start berth@cifs; result cifs_open_cred_start $?
result cifs_open_cred_log "$(log_of cifs)"
sc reset-failed berth@cifs
chmod 0600 /etc/berth/volumes/cifsvol.cred
for n in nfs cifs ext4; do
    sc start berth@$n; result ${n}_start $?
    wait_active $n
    end=$(( $(now) + 20 ))
    while [ "$(now)" -lt $end ] && ! journalctl --no-pager -b -u berth@$n -o cat | grep -q '^wrote'; do sleep 0.2; done
    result ${n}_log "$(log_of $n)"
    result ${n}_active "$(sc is-active berth@$n)"
done
result nfs_server_file "$(cat /srv/nfs/hello)"
result cifs_server_file "$(cat /srv/smb/hello)"
result smbd_log "$(tail -c 2500 /var/log/samba/log.smbd)"
result cifs_dmesg "$(dmesg | grep -i cifs | tail -20 | tr '\n' ' ')"
result host_mountinfo_running "$(grep -E ' (nfs4|cifs|ext4) ' /proc/self/mountinfo | tr '\n' ' ')"
result secret_in_files "$(grep -rl -F "$SMBPW" /run /var/lib/berth /etc/systemd /proc/self/mountinfo 2>/dev/null | tr '\n' ' ')"
result secret_in_journal "$(journalctl --no-pager -b -o cat | grep -c -F "$SMBPW")"
CIFS_PID=$(sc show -p MainPID --value berth@cifs)
for p in $(cat /sys/fs/cgroup/berth.slice/berth@cifs.service/payload/cgroup.procs); do
    result cifs_container_mounts "$(grep -F ' /data ' /proc/$p/mountinfo)"
    grep -q -F "$SMBPW" /proc/$p/mountinfo && result cifs_password_in_mountinfo yes
done
for n in nfs cifs ext4; do sc stop berth@$n; done
result mountinfo_after "$(grep -E ' (nfs4|cifs|ext4) ' /proc/self/mountinfo | tr '\n' ' ')"
result mnt_count "$mnt_before $(grep -c . /proc/self/mountinfo)"
result ext4_device_file "$(debugfs -R 'cat /hello' /dev/ubda 2>/dev/null)"
# --- a volume whose server is not there: the start fails, the container
# never runs, nothing is left.
sc start berth@nfsdown; result nfsdown_start $?
result nfsdown_state "$(sc is-active berth@nfsdown)"
result nfsdown_log "$(log_of nfsdown)"
result nfsdown_mounts "$(grep -c . /proc/self/mountinfo)"
result run_left "$(ls /run/berth/containers 2>/dev/null | tr '\n' ' ')"
"#;

fn guest() -> &'static GuestRun {
    static RUN: OnceLock<Result<GuestRun, String>> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let rootfs = tempfile::tempdir().unwrap();
        support::busybox_rootfs(rootfs.path());
        let script = format!("SMBPW='{SMB_PASSWORD}'\n{SCRIPT}");
        let mut opts = GuestOptions::new(Mode::Systemd, script)
            .with_berth()
            .dir(rootfs.path(), ROOTFS)
            .file(
                "/etc/berth/volumes/nfsvol.toml",
                "type = \"nfs\"\ndevice = \"127.0.0.1:/\"\noptions = [\"vers=4.2\"]\n",
            )
            .file(
                "/etc/berth/volumes/cifsvol.toml",
                "type = \"cifs\"\ndevice = \"//127.0.0.1/share\"\noptions = [\"credentials=/etc/berth/volumes/cifsvol.cred\", \"vers=3.1.1\"]\n",
            )
            .file(
                "/etc/berth/volumes/cifsvol.cred",
                format!("username=berthsmb\npassword={SMB_PASSWORD}\n"),
            )
            .file(
                "/etc/berth/volumes/ext4vol.toml",
                "type = \"ext4\"\ndevice = \"/dev/ubda\"\n",
            )
            .file(
                "/etc/berth/volumes/downvol.toml",
                "type = \"nfs\"\ndevice = \"127.0.0.2:/\"\noptions = [\"vers=4.2\", \"port=2050\", \"soft\", \"timeo=10\", \"retrans=1\"]\n",
            );
        opts.modules = MODULES.iter().map(|s| s.to_string()).collect();
        opts.disk = Some(64 << 20);
        opts.timeout = Duration::from_secs(180);
        for (name, vol) in [
            ("nfs", "nfsvol"),
            ("cifs", "cifsvol"),
            ("ext4", "ext4vol"),
            ("nfsdown", "downvol"),
        ] {
            opts = opts.file(
                &format!("/etc/berth/containers/{name}.toml"),
                definition(vol, WRITER),
            );
        }
        let run = uml::run(&opts).map_err(|e| format!("UML guest: {e}"))?;
        eprintln!(
            "volumes guest: {:?} wall, script ended at {}s of guest uptime",
            run.wall,
            run.get("script_end_s").unwrap_or("?")
        );
        uml::finished(run)
    });
    run.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// The line of `/data` in a container's mountinfo, as it printed it.
fn mount_line<'a>(g: &'a GuestRun, name: &str) -> &'a str {
    let log = g.value(&format!("{name}_log"));
    log.split("mnt: ")
        .nth(1)
        .and_then(|l| l.split(" wrote").next())
        .unwrap_or_else(|| panic!("{name}: no mount line\n{}", g.diagnostics()))
}

fn started_and_wrote(g: &GuestRun, name: &str) {
    assert_eq!(
        g.value(&format!("{name}_start")),
        "0",
        "{}",
        g.diagnostics()
    );
    assert_eq!(
        g.value(&format!("{name}_active")),
        "active",
        "{}",
        g.diagnostics()
    );
    assert!(
        g.value(&format!("{name}_log")).contains(" wrote"),
        "{}",
        g.diagnostics()
    );
}

#[test]
fn nfs_volume_is_written_through_to_the_export() {
    require_guest!();
    let g = guest();
    started_and_wrote(g, "nfs");
    // NFSv4.2 from the guest's loopback, although the container's own
    // network namespace has no server: mounted from the host's side.
    let m = mount_line(g, "nfs");
    assert!(
        m.contains(" /data ") && m.contains(" - nfs4 127.0.0.1:/ "),
        "{m}"
    );
    assert!(m.contains("vers=4.2") && m.contains("nosuid,nodev"), "{m}");
    assert_eq!(
        g.value("nfs_server_file"),
        "written-by-sh",
        "{}",
        g.diagnostics()
    );
}

#[test]
fn cifs_volume_is_written_through_to_the_share_and_its_password_is_nowhere() {
    require_guest!();
    let g = guest();
    started_and_wrote(g, "cifs");
    let m = mount_line(g, "cifs");
    assert!(m.contains(" - cifs //127.0.0.1/share "), "{m}");
    assert!(
        m.contains("username=berthsmb") && m.contains("vers=3.1.1"),
        "{m}"
    );
    assert_eq!(
        g.value("cifs_server_file"),
        "written-by-sh",
        "{}",
        g.diagnostics()
    );
    // The password of the credentials file reached the kernel alone: not
    // the spec, state, unit files, mountinfo (the container's or the
    // host's) or the journal.
    assert!(!g.value("cifs_container_mounts").contains(SMB_PASSWORD));
    assert_eq!(g.get("cifs_password_in_mountinfo"), None);
    assert_eq!(g.value("secret_in_files"), "", "{}", g.diagnostics());
    assert_eq!(g.value("secret_in_journal"), "0", "{}", g.diagnostics());
    // A credentials file others may read is refused, naming both files.
    assert_ne!(g.value("cifs_open_cred_start"), "0");
    let log = g.value("cifs_open_cred_log");
    assert!(
        log.contains("/etc/berth/volumes/cifsvol.toml: options: credentials file \"/etc/berth/volumes/cifsvol.cred\" holds a password but is not root's alone (mode 0644"),
        "{log}"
    );
    assert!(!log.contains("started"), "{log}");
}

#[test]
fn block_volume_is_written_through_to_the_device() {
    require_guest!();
    let g = guest();
    started_and_wrote(g, "ext4");
    let m = mount_line(g, "ext4");
    assert!(
        m.contains(" /data ") && m.contains(" - ext4 /dev/ubda "),
        "{m}"
    );
    // Read from the device itself (debugfs), once the container stopped:
    // nothing kept it mounted.
    assert_eq!(
        g.value("ext4_device_file"),
        "written-by-sh",
        "{}",
        g.diagnostics()
    );
}

#[test]
fn volume_filesystems_never_appear_in_the_hosts_mount_table() {
    require_guest!();
    let g = guest();
    assert_eq!(g.value("host_mountinfo_running"), "", "{}", g.diagnostics());
    assert_eq!(g.value("mountinfo_after"), "", "{}", g.diagnostics());
    let counts: Vec<&str> = g.value("mnt_count").split(' ').collect();
    assert_eq!(counts[0], counts[1], "{}", g.diagnostics());
}

#[test]
fn unreachable_server_stops_the_start_naming_the_volume_file() {
    require_guest!();
    let g = guest();
    assert_ne!(g.value("nfsdown_start"), "0");
    assert_eq!(g.value("nfsdown_state"), "failed");
    let log = g.value("nfsdown_log");
    assert!(
        log.contains("/etc/berth/volumes/downvol.toml: type \"nfs\", device \"127.0.0.2:/\", options \"vers=4.2,port=2050,soft,timeo=10,retrans=1,addr=127.0.0.2,clientaddr=127.0.0.1\": mount failed: ECONNREFUSED"),
        "{log}"
    );
    // The container never ran on an empty directory in its place.
    assert!(
        !log.contains("mnt: ") && !log.contains("wrote") && !log.contains("started"),
        "{log}"
    );
    let counts: Vec<&str> = g.value("mnt_count").split(' ').collect();
    assert_eq!(g.value("nfsdown_mounts"), counts[0]);
    assert_eq!(g.value("run_left"), "", "{}", g.diagnostics());
}
