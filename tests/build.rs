//! `berth build` end to end: a Containerfile FROM a busybox image in a real
//! registry on loopback (in the test's own network namespace), built into a
//! store, run with `berth run` in a `Sandbox` (its own namespaces and
//! cgroup), rebuilt from the cache to the same digest; a multi-stage
//! Containerfile FROM that registry built by berth and by `podman build` to
//! the same tree and config, and run; and the bad inputs a user meets, each
//! an error naming the Containerfile's line.
#[path = "support/podman.rs"]
mod podman;
#[path = "support/registry.rs"]
mod reg;
#[path = "support/runtime.rs"]
mod rt;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reg::{Registry, RegistryOptions};

const CONTAINERFILE: &str = r#"# A build with no RUN: config steps and COPY.
ARG BASE
FROM ${BASE}
ENV GREETING="hello from build" \
    APPDIR=/srv/app
WORKDIR $APPDIR
COPY --chown=1000:1000 app/ ./
COPY --chown=web top.txt /top.txt
ADD data.tar /opt/
USER 1000
LABEL built.by=berth
EXPOSE 8080
CMD ["/bin/sh", "-c", "echo $GREETING; pwd; id -u; cat a.txt sub/b.txt /top.txt; ls -ln a.txt; test -e skip.log || echo no-log; cat /opt/d/f; stat -c %u:%g /opt/d/f; stat -c %u:%g /top.txt"]
"#;

struct Env {
    tmp: tempfile::TempDir,
    root: PathBuf,
    base: String,
    _registry: Registry,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry::start(RegistryOptions::default());
        let layout = reg::busybox_image_layout(tmp.path());
        registry.push(&layout, "1", "base/busybox:1");
        let storage = tmp.path().join("store");
        let root = reg::globals_root(tmp.path(), &storage, &registry.insecure_toml());
        let base = format!("{}/base/busybox:1", registry.host());
        let ctx = tmp.path().join("ctx");
        std::fs::create_dir_all(ctx.join("app/sub")).unwrap();
        std::fs::write(ctx.join("app/a.txt"), "file-a\n").unwrap();
        std::fs::write(ctx.join("app/sub/b.txt"), "file-b\n").unwrap();
        std::fs::write(ctx.join("app/skip.log"), "ignored\n").unwrap();
        std::fs::write(ctx.join("top.txt"), "file-top\n").unwrap();
        std::fs::write(ctx.join(".containerignore"), "**/*.log\n").unwrap();
        std::fs::write(ctx.join("Containerfile"), CONTAINERFILE).unwrap();
        // ADD unpacks a local archive, owners kept.
        std::fs::create_dir_all(tmp.path().join("arc/d")).unwrap();
        std::fs::write(tmp.path().join("arc/d/f"), "in-archive\n").unwrap();
        let tar = Command::new("tar")
            .arg("-C")
            .arg(tmp.path().join("arc"))
            .args(["--owner=5", "--group=6", "-cf"])
            .arg(ctx.join("data.tar"))
            .arg("d")
            .status()
            .unwrap();
        assert!(tar.success());
        Env {
            tmp,
            root,
            base,
            _registry: registry,
        }
    }

    fn ctx(&self) -> PathBuf {
        self.tmp.path().join("ctx")
    }

    fn build(&self, file: &Path, tag: &str) -> Output {
        Command::new(support::berth_bin())
            .arg("build")
            .args(["-t", tag, "-f"])
            .arg(file)
            .args(["--build-arg", &format!("BASE={}", self.base)])
            .arg(self.ctx())
            .env("BERTH_ROOT", &self.root)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }

    /// A Containerfile in the context with `text`; the failing build's stderr.
    fn build_fails(&self, name: &str, text: &str) -> String {
        let f = self.ctx().join(name);
        std::fs::write(&f, text).unwrap();
        let out = self.build(&f, "localhost/bad:1");
        assert!(!out.status.success(), "{name} built");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The manifest digest a build printed last.
fn digest(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("sha256:"), "{}", text(o));
    last
}

#[test]
fn build_copy_env_workdir_cmd_runs_and_rebuilds_to_the_same_digest() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let env = Env::new();
    let file = env.ctx().join("Containerfile");
    let first = env.build(&file, "localhost/built:1");
    assert!(first.status.success(), "{}", text(&first));
    let d1 = digest(&first);
    assert!(!String::from_utf8_lossy(&first.stdout).contains("(cached)"));

    // The same Containerfile and context: every COPY from the cache, the
    // same image digest.
    let second = env.build(&file, "localhost/built:1");
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    // The WORKDIR that made /srv/app, two COPYs and the ADD.
    assert_eq!(out.matches("(cached)").count(), 4, "{out}");
    assert_eq!(digest(&second), d1);

    let images = Command::new(support::berth_bin())
        .arg("images")
        .env("BERTH_ROOT", &env.root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&images.stdout).contains("localhost/built:1"),
        "{}",
        text(&images)
    );

    // What the image holds, seen from inside it.
    let sb = rt::Sandbox::new();
    let run = sb
        .command()
        .arg(support::berth_bin())
        .env("BERTH_ROOT", &env.root)
        .args(["run", "--rm", "localhost/built:1"])
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", text(&run));
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "hello from build",
            "/srv/app",
            "1000",
            "file-a",
            "file-b",
            "file-top"
        ],
        "{}",
        text(&run)
    );
    let ls: Vec<&str> = lines[6].split_whitespace().collect();
    assert_eq!(
        (ls[0], ls[2], ls[3]),
        ("-rw-r--r--", "1000", "1000"),
        "{seen}"
    );
    assert_eq!(lines[7], "no-log", "the ignored file was copied: {seen}");
    assert_eq!(lines[8..11], ["in-archive", "5:6", "101:101"], "{seen}");

    // A changed file under a COPY: a new layer, a new digest.
    std::fs::write(env.ctx().join("top.txt"), "changed\n").unwrap();
    let third = env.build(&file, "localhost/built:2");
    let out = String::from_utf8_lossy(&third.stdout);
    // The WORKDIR and the first COPY are reused; top.txt's COPY and the ADD
    // after it (its parent changed) are not.
    assert_eq!(out.matches("(cached)").count(), 2, "{out}");
    assert!(out.contains("COPY --chown=web top.txt /top.txt\n"), "{out}");
    assert_ne!(digest(&third), d1);

    // COPY --from an earlier stage made of several layers (read through a
    // read-only overlay of them).
    let multi = env.ctx().join("Multi");
    std::fs::write(
        &multi,
        "ARG BASE\nFROM localhost/built:1 AS first\nFROM ${BASE}\n\
         COPY --from=first /srv/app /copied/\nCOPY --from=0 /opt/d/f /f\n\
         WORKDIR /made/here\n\
         CMD cat /copied/a.txt /copied/sub/b.txt /f; pwd; stat -c %a:%u /made/here\n",
    )
    .unwrap();
    let out = env.build(&multi, "localhost/multi:1");
    assert!(out.status.success(), "{}", text(&out));
    let run = sb
        .command()
        .arg(support::berth_bin())
        .env("BERTH_ROOT", &env.root)
        .args(["run", "--rm", "localhost/multi:1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "file-a\nfile-b\nin-archive\n/made/here\n755:0\n",
        "{}",
        text(&run)
    );
}

#[test]
fn bad_input_names_the_containerfile_line() {
    require_root!();
    require_program!("docker-registry");
    require_program!("skopeo");
    let env = Env::new();
    std::os::unix::fs::symlink("/etc", env.ctx().join("out")).unwrap();
    let cases = [
        (
            "Unknown",
            "FROM scratch\nENV A=1\nFETCH x\n",
            ":3:1: unknown instruction FETCH",
        ),
        (
            "Dotdot",
            "FROM scratch\n\nCOPY ../x /x\n",
            ":3:1: ../x: outside the build context",
        ),
        (
            "Symlink",
            "FROM scratch\nCOPY out/passwd /p\n",
            ":2:1: out/passwd: a symlink leads outside the build context",
        ),
        ("Unreachable", "FROM 127.0.0.1:1/none:1\n", ":1:1: "),
    ];
    for (name, containerfile, want) in cases {
        let err = env.build_fails(name, containerfile);
        let want = format!("{}{want}", env.ctx().join(name).display());
        assert!(err.contains(&want), "{name}: want {want:?} in {err}");
    }
    // No partial image.
    let images = Command::new(support::berth_bin())
        .arg("images")
        .env("BERTH_ROOT", &env.root)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&images.stdout).contains("bad"));
}

/// RUN tests: a store and an OCI layout of busybox (no registry needed:
/// `FROM oci:LAYOUT:1`), every `berth build` inside a `Sandbox` (its own
/// mount, PID, network, cgroup, UTS and IPC namespaces).
struct RunEnv {
    tmp: tempfile::TempDir,
    root: PathBuf,
    layout: PathBuf,
    sb: rt::Sandbox,
}

impl RunEnv {
    fn new() -> RunEnv {
        // A path Podman can name the `FROM oci:` base after: lowercase, no
        // component starting with a dot.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-build-{}-{n}", std::process::id()))
            .rand_bytes(0)
            .tempdir()
            .unwrap();
        // Its config counts the layer in `history` (buildah refuses a base
        // whose history counts no layer).
        let layout = reg::busybox_image_layout_with_history(
            tmp.path(),
            &["busybox-static, its applet links"],
        );
        let root = reg::globals_root(tmp.path(), &tmp.path().join("store"), "");
        std::fs::create_dir_all(tmp.path().join("ctx")).unwrap();
        RunEnv {
            tmp,
            root,
            layout,
            sb: rt::Sandbox::new(),
        }
    }

    /// A `RunEnv` whose berth may also pull from a registry on loopback
    /// holding its busybox as `base/busybox:1`: the registry and the
    /// base's reference.
    fn with_registry() -> (RunEnv, Registry, String) {
        let env = RunEnv::new();
        let registry = Registry::start(RegistryOptions::default());
        registry.push(&env.layout, "1", "base/busybox:1");
        reg::globals_root(env.tmp.path(), &env.store(), &registry.insecure_toml());
        let base = format!("{}/base/busybox:1", registry.host());
        (env, registry, base)
    }

    fn ctx(&self) -> PathBuf {
        self.tmp.path().join("ctx")
    }

    fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// `text` with `{BASE}` replaced, as the context's file `name`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let f = self.ctx().join(name);
        let base = format!("oci:{}:1", self.layout.display());
        std::fs::write(&f, text.replace("{BASE}", &base)).unwrap();
        f
    }

    /// `sh -c SCRIPT` in the sandbox, `$B` being `berth build -t TAG -f
    /// FILE … CONTEXT`'s command line up to the context (append it).
    fn sh(&self, script: &str) -> Output {
        self.sb
            .command()
            .args(["sh", "-c", script])
            .env("BERTH_ROOT", &self.root)
            .env("B", support::berth_bin())
            .env("CTX", self.ctx())
            .env("STORE", self.store())
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }

    fn build(&self, file: &Path, tag: &str, extra: &str) -> Output {
        self.sh(&format!(
            "exec $B build -t {tag} -f {} {extra} $CTX",
            file.display()
        ))
    }

    /// `berth run --rm REF [CMD…]` in the sandbox: its stdout.
    fn run(&self, reference: &str, cmd: &[&str]) -> String {
        let run = self
            .sb
            .command()
            .arg(support::berth_bin())
            .env("BERTH_ROOT", &self.root)
            .args(["run", "--rm", reference])
            .args(cmd)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run));
        String::from_utf8_lossy(&run.stdout).into_owned()
    }

    /// The members of the layer a RUN step made: the blob its progress
    /// line (`  --> sha256:…`, after the step's line) names.
    fn layer_of(&self, out: &Output, step: &str) -> Vec<String> {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.ends_with(step))
            .unwrap_or_else(|| panic!("no step {step:?} in {stdout}"));
        let short = lines[at..]
            .iter()
            .find_map(|l| l.strip_prefix("  --> sha256:"))
            .unwrap_or_else(|| panic!("no layer line after {step:?} in {stdout}"));
        let blob = std::fs::read_dir(self.store().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(short))
            .unwrap_or_else(|| panic!("no blob sha256:{short}"));
        let tar = Command::new("tar").arg("tzf").arg(&blob).output().unwrap();
        assert!(tar.status.success(), "{}", text(&tar));
        String::from_utf8_lossy(&tar.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// An OCI layout at `work/layout` holding `:1`: the busybox tree of
const RUN_FILE: &str = r#"FROM {BASE}
ARG WHO=arg
ENV GREETING=hello
RUN echo "made by $WHO" > /made && mkdir -p /srv/data && echo "ran step one: $GREETING $WHO"
RUN rm /bin/vi && echo ran-step-two
WORKDIR /srv/data
RUN ["/bin/sh", "-c", "pwd > here && echo ran-step-three"]
CMD ["/bin/sh", "-c", "cat /made /srv/data/here; test -e /bin/vi && echo has-vi || echo no-vi"]
"#;

#[test]
fn run_makes_layers_with_whiteouts_and_is_cached() {
    require_root!();
    require_program!("tar");
    require_program!("faketime");
    let env = RunEnv::new();
    let file = env.file("Containerfile", RUN_FILE);
    let first = env.build(&file, "localhost/run:1", "");
    assert!(first.status.success(), "{}", text(&first));
    let out = String::from_utf8_lossy(&first.stdout);
    // Each RUN's output under its step line, prefixed; ARG and ENV seen.
    assert!(out.contains("\n  | ran step one: hello arg\n"), "{out}");
    assert!(out.contains("\n  | ran-step-two\n"), "{out}");
    assert!(out.contains("\n  | ran-step-three\n"), "{out}");
    assert!(!out.contains("(cached)"), "{out}");
    // The deleting step's layer: the whiteout of /bin/vi, and nothing of
    // the mount points the RUN's start made.
    let layer = env.layer_of(&first, "RUN rm /bin/vi && echo ran-step-two");
    assert_eq!(layer, ["bin/", "bin/.wh.vi"], "{}", text(&first));
    let layer = env.layer_of(
        &first,
        "mkdir -p /srv/data && echo \"ran step one: $GREETING $WHO\"",
    );
    assert_eq!(layer, ["made", "srv/", "srv/data/"], "{}", text(&first));
    let d1 = digest(&first);

    // The image, unpacked and run: the new files, not the deleted one.
    assert_eq!(
        env.run("localhost/run:1", &[]),
        "made by arg\n/srv/data\nno-vi\n"
    );

    // Again: every RUN from the cache, none runs (no output line), the
    // same digest.
    let second = env.build(&file, "localhost/run:1", "");
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    // The three RUNs (WORKDIR's directory exists: no layer of its own).
    assert_eq!(out.matches("(cached)").count(), 3, "{out}");
    assert!(!out.contains("  | "), "a cached RUN ran: {out}");
    assert_eq!(digest(&second), d1);

    // A changed RUN line rebuilds from there: the first RUN is reused, the
    // second and third run.
    let changed = env.file(
        "Changed",
        &RUN_FILE.replace("echo ran-step-two", "echo ran-step-two-changed"),
    );
    let third = env.build(&changed, "localhost/run:2", "");
    assert!(third.status.success(), "{}", text(&third));
    let out = String::from_utf8_lossy(&third.stdout);
    assert!(!out.contains("  | ran step one"), "{out}");
    assert!(out.contains("\n  | ran-step-two-changed\n"), "{out}");
    assert!(out.contains("\n  | ran-step-three\n"), "{out}");
    assert_eq!(out.matches("(cached)").count(), 1, "{out}");
    // A changed ARG value is a changed RUN too.
    let fourth = env.build(&file, "localhost/run:3", "--build-arg WHO=other");
    let out = String::from_utf8_lossy(&fourth.stdout);
    assert!(
        out.contains("\n  | ran step one: hello other\n"),
        "{}",
        text(&fourth)
    );
    // --no-cache runs every RUN again, to the same layers (the same digest).
    let fifth = env.build(&file, "localhost/run:1", "--no-cache");
    let out = String::from_utf8_lossy(&fifth.stdout);
    assert!(!out.contains("(cached)"), "{out}");
    assert!(out.contains("\n  | ran step one: hello arg\n"), "{out}");
    assert_eq!(digest(&fifth), d1);

    // On another day: berth's clock 400 days ahead (libfaketime), every
    // RUN again, still the same image.
    let ahead = env.sh("faketime -f +400d date +%s; date +%s");
    let secs: Vec<i64> = String::from_utf8_lossy(&ahead.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(
        secs.len() == 2 && secs[0] - secs[1] > 399 * 86400,
        "faketime does not move the clock here: {}",
        text(&ahead)
    );
    let later = env.sh(&format!(
        "exec faketime -f +400d $B build -t localhost/run:1 -f {} --no-cache $CTX",
        file.display()
    ));
    assert!(later.status.success(), "{}", text(&later));
    assert!(
        String::from_utf8_lossy(&later.stdout).contains("\n  | ran step one: hello arg\n"),
        "{}",
        text(&later)
    );
    assert_eq!(digest(&later), d1);
}

#[test]
fn run_is_confined_and_cannot_touch_the_host() {
    require_root!();
    require_program!("ip");
    let env = RunEnv::new();
    // Host paths a hostile RUN aims at: a marker it tries to read, a
    // directory it links to and a later COPY writes through.
    let host = tempfile::tempdir().unwrap();
    let marker = host.path().join("marker");
    std::fs::write(&marker, "host secret\n").unwrap();
    std::fs::write(env.ctx().join("payload"), "payload\n").unwrap();
    let h = host.path().display();
    let file = env.file(
        "Containerfile",
        &format!(
            r#"FROM {{BASE}}
RUN cat {h}/marker 2>/dev/null || echo no-host-marker; echo "nets: $(ls /sys/class/net | tr '\n' ' ')"; grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status
RUN for f in /proc/self/fd/*; do echo "fd: $(readlink $f)"; echo pwned > $f/pwned; echo pwned > $f/../../../../../..{h}/pwned; done 2>/dev/null; for f in /proc/1/fd/*; do echo pwned > $f/pwned; done 2>/dev/null; echo tried
RUN ln -s {h} /escape && mkdir /x && ln -s {h} /x/link
COPY payload /escape/
COPY payload /x/link/copied
"#
        ),
    );
    // In the sandbox's own network namespace, a link the host network has.
    let out = env.sh(&format!(
        "ip link add berthtest0 type bridge && $B build -t localhost/conf:1 -f {f} $CTX && \
         $B build -t localhost/conf:2 -f {f} --network host $CTX",
        f = file.display()
    ));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("  | no-host-marker\n"), "{stdout}");
    assert!(!stdout.contains("host secret"), "{stdout}");
    // --network none: only lo; --network host: the sandbox's links (a new
    // cache key: the RUN ran again).
    assert_eq!(stdout.matches("  | nets: lo \n").count(), 1, "{stdout}");
    assert_eq!(
        stdout.matches("  | nets: berthtest0 lo \n").count(),
        1,
        "{stdout}"
    );
    // The default confinement: no new privileges, seccomp filter, berth's
    // default capability set (Podman's: Docker's less NET_RAW, MKNOD and
    // AUDIT_WRITE), as `berth run` gives.
    assert!(stdout.contains("  | NoNewPrivs:\t1\n"), "{stdout}");
    assert!(stdout.contains("  | Seccomp:\t2\n"), "{stdout}");
    assert!(
        stdout.contains("  | CapEff:\t00000000800405fb\n"),
        "{stdout}"
    );
    // Its descriptors: /dev/null and the output pipe, no host file or dir
    // (an empty one was the glob's own, closed before the loop).
    for l in stdout.lines().filter_map(|l| l.strip_prefix("  | fd: ")) {
        assert!(
            l.is_empty() || l == "/dev/null" || l.starts_with("pipe:"),
            "fd {l}: {stdout}"
        );
    }
    assert!(stdout.contains("  | tried\n"), "{stdout}");
    // Nothing reached the host: not through a descriptor, not through the
    // links the layer holds.
    let mut left: Vec<String> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["marker"], "the build wrote into the host's {h}");
    assert!(!env.ctx().join("pwned").exists());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host secret\n");
    // The image holds what the COPYs wrote, in the image (its first two
    // RUNs made the same empty layer: the overlay takes it once).
    assert_eq!(
        env.run(
            "localhost/conf:1",
            &["sh", "-c", "cat /escape/payload /x/link/copied"]
        ),
        "payload\npayload\n"
    );
}

#[test]
fn a_failing_run_names_its_step_and_leaves_nothing() {
    require_root!();
    let env = RunEnv::new();
    let file = env.file(
        "Containerfile",
        "FROM {BASE}\nRUN echo ok\nRUN echo before-failing; sleep 60 & exit 3\n",
    );
    let out = env.sh(&format!(
        "$B build -t localhost/fail:1 -f {} $CTX; echo rc=$?; \
         echo overlays=$(grep -c ' - overlay ' /proc/self/mountinfo); \
         echo tmp=$(ls -A $STORE/tmp | wc -l); \
         echo cgroups=$(find /sys/fs/cgroup -mindepth 1 -type d | wc -l); \
         echo sleeps=$(cat /proc/[0-9]*/comm | grep -c -x sleep)",
        file.display()
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("  | before-failing\n"), "{}", text(&out));
    assert!(stdout.contains("rc=1\n"), "{}", text(&out));
    let want = format!(
        "{}:3:1: STEP 2/2: RUN echo before-failing; sleep 60 & exit 3: the command exited with status 3",
        file.display()
    );
    assert!(stderr.contains(&want), "want {want:?} in {}", text(&out));
    // No mount, temp dir, cgroup or process of the build is left (the
    // `sleep` it started went with its PID namespace).
    for l in ["overlays=0", "tmp=0", "cgroups=0", "sleeps=0"] {
        assert!(stdout.contains(&format!("{l}\n")), "{l}: {}", text(&out));
    }
    // No image of that name.
    let images = Command::new(support::berth_bin())
        .arg("images")
        .env("BERTH_ROOT", &env.root)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&images.stdout).contains("fail"));
}

/// What both builders get (issue 17's first test): two stages FROM busybox
/// in the registry; ARG before FROM (the base, a version) and after it;
/// RUN in shell and exec form creating, changing (content, mode, owner)
/// and deleting files and a directory, links; COPY from the context and
/// `--from` the first stage, with `--chown`; ENV, WORKDIR, USER, LABEL,
/// EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD. The image runs as `web` and its
/// command prints what it sees. (`noise.bin` is random: berth's layer
/// stores such chunks instead of deflating them, and Podman's tools, Go's
/// gzip, read it.) (/srv/app is made by a RUN: buildah 1.28
/// makes a WORKDIR's directory only when a later step needs it, so a
/// `COPY --chown` into it gives it that owner, where Docker's and berth's
/// WORKDIR make it root's at once.)
const COMPARED: &str = r#"ARG BASE
ARG VERSION=7
FROM ${BASE} AS build
ARG VERSION
WORKDIR /work
COPY app.txt ./
RUN echo "v$VERSION" > version && mkdir -p out/sub && cp app.txt out/sub/app \
 && echo "built" >> out/sub/app && echo tmp > out/gone && rm out/gone

FROM ${BASE}
ARG VERSION
ENV APP=/srv/app PATH=/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /srv/app
WORKDIR /srv/app
COPY --chown=101:101 app.txt ./
COPY noise.bin ./
COPY --from=build --chown=101:101 /work/version ./
COPY --from=build /work/out ./out/
RUN chmod 640 version && ln -s version current && mkdir -p data/a/b && echo deep > data/a/b/f \
 && echo extra >> /etc/group && rm /bin/vi && rm -rf /tmp && mkdir -m 1777 /tmp \
 && chmod 4755 /bin/busybox && mkfifo /srv/app/fifo
RUN ["/bin/sh", "-c", "rm -r data/a/b && echo $APP > app-dir && touch -d @0 empty"]
RUN mkdir /home && mkdir -m 700 /home/web && chown web:web /home/web
USER web
RUN echo "by $(id -u):$(id -g)" > /home/web/by-web
LABEL org.example.built=yes org.example.version=$VERSION
EXPOSE 8080/tcp 5353/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=2s --retries=4 CMD test -e /srv/app/version
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo \"$APP\"; pwd; id -u; id -g; cat version out/sub/app /home/web/by-web; ls -n app.txt; test -e /bin/vi || echo no-vi"]
"#;

#[test]
fn run_builds_the_same_tree_as_podman_build() {
    require_root!();
    require_program!("podman");
    require_program!("skopeo");
    require_program!("umoci");
    require_program!("docker-registry");
    require_program!("curl");
    let (env, registry, base) = RunEnv::with_registry();
    std::fs::write(env.ctx().join("app.txt"), "app\n").unwrap();
    let mut noise = vec![0u8; 600 * 1024];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(env.ctx().join("noise.bin"), noise).unwrap();
    // Written as it is: its base is the ARG, not `{BASE}`.
    let file = env.ctx().join("Containerfile");
    std::fs::write(&file, COMPARED).unwrap();
    let pm = podman::Podman::new();
    let t = pm.sandbox.path().join("podman");
    // Both build in Podman's sandbox (its own network namespace: the
    // registry is served there too). Podman (buildah inside it) runs RUN
    // with `--isolation chroot`: its OCI isolation needs a cgroup manager
    // this sandbox lacks (no controllers), and the tree does not depend on
    // the isolation. `--format docker`: in its default OCI format buildah
    // drops HEALTHCHECK (with a warning); berth keeps Docker's
    // `Healthcheck` in the config whatever the format (as BuildKit does).
    let script = format!(
        "{serve}export BERTH_ROOT={root}\n\
         {berth} build -t localhost/cmp:1 -f {file} --build-arg BASE={base} {ctx} > $T/berth-build.out 2>&1; echo rc_berth=$?\n\
         {berth} save -o $T/berth.tar localhost/cmp:1; echo rc_save=$?\n\
         skopeo copy -q oci-archive:$T/berth.tar oci:$T/b:1; echo rc_copy=$?\n\
         P build --isolation chroot --format docker --tls-verify=false -t localhost/cmp:1 -f {file} --build-arg BASE={base} {ctx} > $T/podman-build.out 2>&1; echo rc_podman=$?\n\
         P push -q localhost/cmp:1 oci:$T/p:1; echo rc_push=$?\n\
         umoci unpack --image $T/b:1 $T/bb > /dev/null; echo rc_ub=$?\n\
         umoci unpack --image $T/p:1 $T/pb > /dev/null; echo rc_up=$?\n\
         skopeo inspect --config oci:$T/b:1 > $T/b.json; skopeo inspect --config oci:$T/p:1 > $T/p.json\n\
         skopeo inspect --config --raw oci:$T/b:1 > $T/b-raw.json\n\
         P image inspect --format '{{{{json .HealthCheck}}}}' localhost/cmp:1 > $T/p-health.json\n",
        serve = registry.serve_in_script(),
        root = env.root.display(),
        berth = support::berth_bin().display(),
        file = file.display(),
        ctx = env.ctx().display(),
    );
    let out = pm.sh(Path::new("/usr/bin/runc"), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let read = |n: &str| std::fs::read_to_string(t.join(n)).unwrap_or_default();
    assert!(
        stdout.contains("rc_berth=0\n"),
        "berth build: {}\n{}",
        read("berth-build.out"),
        text(&out)
    );
    if !stdout.contains("rc_podman=0\n") {
        support::skip(&format!(
            "podman build cannot run here: {}",
            read("podman-build.out").lines().last().unwrap_or_default()
        ));
        return;
    }
    for rc in ["rc_save", "rc_copy", "rc_push", "rc_ub", "rc_up"] {
        assert!(
            stdout.contains(&format!("{rc}=0\n")),
            "{rc}: {}",
            text(&out)
        );
    }
    // The same tree: names, kinds, modes, owners, contents, link targets
    // (not mtimes). But buildah's chroot isolation leaves the mount points
    // it made for /etc/hosts and /etc/resolv.conf in the image (empty files
    // the base lacked); berth takes them out, as BuildKit does.
    let stub = |l: &String| {
        l.starts_with("etc/hosts file e3b0c44298fc ")
            || l.starts_with("etc/resolv.conf file e3b0c44298fc ")
    };
    let b = reg::describe_tree(&t.join("bb/rootfs"));
    let mut p = reg::describe_tree(&t.join("pb/rootfs"));
    assert!(!b.iter().any(stub), "{b:?}");
    p.retain(|l| !stub(l));
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|l| !y.contains(l)).cloned().collect()
    };
    assert_eq!(
        (only(&b, &p), only(&p, &b)),
        (vec![], vec![]),
        "(only berth's, only podman's)\nberth: {}\npodman: {}",
        read("berth-build.out"),
        read("podman-build.out")
    );
    for want in [
        "home/web/by-web file ",
        "srv/app/version file ",
        "srv/app/out/sub/app file ",
        "srv/app/noise.bin file ",
    ] {
        assert!(b.iter().any(|l| l.starts_with(want)), "{want}: {b:?}");
    }
    assert!(
        !b.iter().any(|l| l.starts_with("srv/app/out/gone ")),
        "{b:?}"
    );
    // The same config, but what Podman adds about itself.
    let cfg = |n: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(&read(n)).unwrap();
        let c = v["config"].take();
        let mut labels = c["Labels"].clone();
        if let Some(l) = labels.as_object_mut() {
            l.remove("io.buildah.version");
        }
        // As a set: an ENV of a name the base has replaces it in place in
        // berth's (and Docker's) list, buildah moves it to the end.
        let mut env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap_or_default();
        env.sort();
        serde_json::json!({
            "Env": env, "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"],
            "WorkingDir": c["WorkingDir"], "User": c["User"],
            "ExposedPorts": c["ExposedPorts"], "Labels": labels,
        })
    };
    let (bc, pc) = (cfg("b.json"), cfg("p.json"));
    assert_eq!(bc, pc);
    assert_eq!(bc["Labels"]["org.example.version"], "7", "{bc}");
    assert_eq!(bc["User"], "web", "{bc}");
    // The health check: berth's config (Docker's field) and what Podman
    // keeps of it in its docker-format image (its push to an OCI layout
    // drops it, the OCI config has no such field).
    let berth_raw: serde_json::Value = serde_json::from_str(&read("b-raw.json")).unwrap();
    let health = |h: &serde_json::Value| {
        serde_json::json!([
            h["Test"],
            h["Interval"].as_u64().unwrap_or(0),
            h["Timeout"].as_u64().unwrap_or(0),
            h["StartPeriod"].as_u64().unwrap_or(0),
            h["Retries"].as_u64().unwrap_or(0),
        ])
    };
    let podman_health: serde_json::Value =
        serde_json::from_str(&read("p-health.json")).unwrap_or_default();
    let bh = health(&berth_raw["config"]["Healthcheck"]);
    assert_eq!(bh, health(&podman_health), "berth's, podman's");
    assert_eq!(
        bh,
        serde_json::json!([
            ["CMD-SHELL", "test -e /srv/app/version"],
            30_000_000_000u64,
            5_000_000_000u64,
            2_000_000_000u64,
            4
        ])
    );

    // The image under `berth run`: its environment, workdir, user and
    // files as the Containerfile wrote them.
    let seen = env.run("localhost/cmp:1", &[]);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..9],
        [
            "/srv/app",
            "/srv/app",
            "101",
            "101",
            "v7",
            "app",
            "built",
            "by 101:101",
            lines[8]
        ],
        "{seen}"
    );
    let ls: Vec<&str> = lines[8].split_whitespace().collect();
    assert_eq!(
        (ls[0], ls[2], ls[3]),
        ("-rw-r--r--", "101", "101"),
        "{seen}"
    );
    assert_eq!(lines[9..], ["no-vi"], "{seen}");
}

/// A build killed (SIGKILL, by PID) at several points while it stages its
/// COPYs and writes their layers (which become the store's layer
/// directories by rename) leaves nothing under a final name that is not
/// complete: the next build succeeds, reusing what is there, to the digest
/// a clean store gives, and the image holds its files whole.
#[test]
fn a_killed_build_leaves_no_partial_layer() {
    require_root!();
    let env = RunEnv::new();
    let ctx = env.ctx();
    std::fs::create_dir_all(ctx.join("small")).unwrap();
    for i in 0..300 {
        std::fs::write(ctx.join(format!("small/f{i}")), format!("file {i}\n")).unwrap();
    }
    let mut big = vec![0u8; 24 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut big).unwrap();
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    let file = env.file(
        "Containerfile",
        "FROM {BASE}\nCOPY big.bin /big.bin\nCOPY small/ /small/\n",
    );
    // Wherever 0.1 s, 0.2 s, … after its start falls in the build on this
    // machine; then a build that runs to its end.
    let out = env.sh(&format!(
        "for d in 0.1 0.2 0.3 0.5 0.7 1 1.5 2; do \
           $B build -t localhost/killed:1 -f {f} $CTX >/dev/null 2>&1 & p=$!; \
           sleep $d; kill -9 $p 2>/dev/null; wait $p; \
         done; $B build -t localhost/killed:1 -f {f} $CTX",
        f = file.display()
    ));
    assert!(out.status.success(), "{}", text(&out));
    let clean_root = reg::globals_root(
        &env.tmp.path().join("clean"),
        &env.tmp.path().join("clean-store"),
        "",
    );
    let clean = env
        .sb
        .command()
        .arg(support::berth_bin())
        .env("BERTH_ROOT", &clean_root)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "-t", "localhost/killed:1", "-f"])
        .arg(&file)
        .arg(env.ctx())
        .output()
        .unwrap();
    assert!(clean.status.success(), "{}", text(&clean));
    assert_eq!(digest(&out), digest(&clean));
    assert_eq!(
        env.run(
            "localhost/killed:1",
            &["sh", "-c", "sha256sum /big.bin; ls /small | wc -l"]
        ),
        format!("{}  /big.bin\n300\n", &reg::sha256(&big)[7..])
    );
}

#[test]
fn run_and_copy_take_here_documents() {
    require_root!();
    let env = RunEnv::new();
    let file = env.file(
        "Containerfile",
        "FROM {BASE}\nARG NAME=world\nENV GREETING=hello\n\
         RUN <<EOF\necho \"$GREETING $NAME\" > /greeting\necho ran-heredoc\nEOF\n\
         RUN <<-END cat > /chomped\n\ttab-indented\n\tEND\n\
         COPY <<conf <<'raw' /etc/app/\ngreeting = \"$GREETING\"\nconf\nliteral $GREETING\nraw\n\
         COPY --chmod=0755 <<run.sh /usr/local/bin/run\n#!/bin/sh\necho script-ran\nrun.sh\n\
         CMD [\"/bin/sh\", \"-c\", \"cat /greeting /chomped /etc/app/conf /etc/app/raw; /usr/local/bin/run; stat -c %a /etc/app/conf /usr/local/bin/run\"]\n",
    );
    let out = env.build(&file, "localhost/heredoc:1", "--build-arg NAME=berth");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\n  | ran-heredoc\n"),
        "{}",
        text(&out)
    );
    assert_eq!(
        env.run("localhost/heredoc:1", &[]),
        "hello berth\ntab-indented\ngreeting = \"hello\"\nliteral $GREETING\nscript-ran\n664\n755\n"
    );
}
