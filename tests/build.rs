//! `berth build` end to end: a Containerfile FROM a busybox image in a real
//! registry on loopback (in the test's own network namespace), built into a
//! store, run with `berth run` in a `Sandbox` (its own namespaces and
//! cgroup), rebuilt from the cache to the same digest; and the bad inputs a
//! user meets, each an error naming the Containerfile's line.
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
        let root = reg::globals_root(
            tmp.path(),
            &storage,
            &format!(
                "[[registry]]\nhost = \"{}\"\ninsecure = true\n",
                registry.host()
            ),
        );
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
