//! `berth cp` (files between the host and a running container, `rootcopy`)
//! and `berth commit` (a running container's changes as a new image,
//! `image::commit`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::load_globals;
use crate::containers as ct;
use crate::distribution::commit::parse_change;
use crate::distribution::reference::Reference;
use crate::rootcopy::{self, ContainerRoot, CopyOptions};
use crate::store::layer::IdMap;
use crate::store::Store;

/// Copy files between a running container and the host
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth cp web:/etc/nginx/nginx.conf .        a file out of the container\n  berth cp ./site web:/srv/                    a directory into /srv/site\n  berth cp -a web:/var/lib/app /backup/app     keep owners (as the container sees them)\n  berth cp web:/var/log - | tar t              a tar stream on stdout\n  tar c conf | berth cp - web:/etc/app         a tar stream from stdin, into a directory\n\nOne of SRC and DEST is NAME:PATH. PATH is resolved inside the container's root:\nits symlinks (absolute ones too) lead only to its own files. A DEST that is a\ndirectory receives the source under its own name; a DEST ending in / must be one.\nCopied in, files belong to the container's root (its user namespace's, with\nuserns = \"auto\"), or with -a to their owners on the host, mapped the same way."
)]
pub struct CpArgs {
    /// Keep owners (uid/gid), mapped across the container's user namespace
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symlink at SRC (only there; links below it are copied as links)
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// NAME:PATH in a running container, a host path, or - (a tar stream on
    /// stdin, extracted into the directory NAME:PATH)
    pub src: String,
    /// NAME:PATH in a running container, a host path, or - (a tar stream on stdout)
    pub dest: String,
}

/// `NAME:PATH` as (NAME, PATH): a colon before any `/`, not a path that
/// starts with `/` or `.` (`docker cp`'s rule, so `./a:b` stays local).
fn container_side(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (name, path) = arg.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

/// A container path as given, relative ones from its `/` (the container's
/// working directory is not known here; `docker cp` uses `/` too).
fn inside(path: &str) -> PathBuf {
    Path::new("/").join(if path.is_empty() { "." } else { path })
}

fn open_root(root: &Path, name: &str) -> anyhow::Result<ContainerRoot> {
    let g = load_globals(root)?;
    let run = match ct::running(root, &g, name) {
        Ok(r) => r,
        Err(e) => {
            ct::load_definition(root, name)?;
            return Err(e.into());
        }
    };
    Ok(ContainerRoot::open(
        name,
        run.pid,
        run.state.container_start_time,
    )?)
}

pub fn cp(root: &Path, args: CpArgs) -> anyhow::Result<ExitCode> {
    let opts = CopyOptions {
        archive: args.archive,
        follow: args.follow_link,
    };
    match (container_side(&args.src), container_side(&args.dest)) {
        (Some(_), Some(_)) => {
            anyhow::bail!("copying between two containers is not supported: copy to the host first")
        }
        (None, None) => anyhow::bail!(
            "one of \"{}\" and \"{}\" must be NAME:PATH (a container's path)",
            args.src,
            args.dest
        ),
        (Some((name, path)), None) => {
            let r = open_root(root, name)?;
            let src = inside(path);
            if args.dest == "-" {
                let out = std::io::stdout().lock();
                rootcopy::tar_out(&r, &src, opts.follow, std::io::BufWriter::new(out))
            } else {
                rootcopy::copy_out(&r, &src, Path::new(&args.dest), &args.dest, opts)
            }
            .with_context(|| {
                format!(
                    "cannot copy \"{}\" out of container \"{name}\"",
                    src.display()
                )
            })?;
        }
        (None, Some((name, path))) => {
            let r = open_root(root, name)?;
            let dest = inside(path);
            if args.src == "-" {
                let input = std::io::BufReader::new(std::io::stdin().lock());
                rootcopy::tar_in(&r, &dest, opts.archive, input).with_context(|| {
                    format!(
                        "cannot extract stdin into \"{}\" of container \"{name}\"",
                        dest.display()
                    )
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            rootcopy::copy_in(&r, Path::new(&args.src), &dest, path, opts).with_context(|| {
                format!("cannot copy \"{}\" into container \"{name}\"", args.src)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Make an image of a running container's changes
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth commit web localhost/web:fixed\n  berth commit -m 'add tools' web tools:1\n  berth commit -c 'ENV DEBUG=1' -c 'CMD [\"/bin/app\", \"-v\"]' web app:debug\n\nThe container's writes (its overlay upper dir: new, changed and deleted files)\nbecome one gzip layer over its image's layers; volumes are not part of it.\nThe container is paused while its files are read (--pause=false to not).\n--change takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME\nand WORKDIR. The new image is in `berth images` and `berth history`."
)]
pub struct CommitArgs {
    /// History comment of the new layer
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author recorded in the config and history
    #[arg(short, long)]
    pub author: Option<String>,
    /// A Containerfile instruction applied to the config (repeatable)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Freeze the container while its changes are read
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// Running container
    pub name: String,
    /// Reference for the new image: NAME[:TAG]
    pub reference: String,
}

pub fn commit(root: &Path, args: CommitArgs) -> anyhow::Result<ExitCode> {
    let changes = args
        .change
        .iter()
        .map(|c| parse_change(c))
        .collect::<Result<Vec<_>, _>>()?;
    let target = Reference::parse(&args.reference)?;
    let g = load_globals(root)?;
    let run = match ct::running(root, &g, &args.name) {
        Ok(r) => r,
        Err(e) => {
            ct::load_definition(root, &args.name)?;
            return Err(e.into());
        }
    };
    let name = &args.name;
    let (Some(base_ref), Some(base_digest)) = (&run.state.image, &run.state.image_digest) else {
        anyhow::bail!("container \"{name}\" does not run an image from the store (a rootfs directory has no layers to add to)");
    };
    let store = Store::open(&g.storage_root)
        .with_context(|| format!("cannot open image store '{}'", g.storage_root.display()))?
        .with_limits(crate::store::LayerLimits::from_globals(&g));
    let uids = IdMap::of_process(run.pid, "uid_map").context("read the container's uid_map")?;
    let gids = IdMap::of_process(run.pid, "gid_map").context("read the container's gid_map")?;
    let upper = ct::paths(root, &g, name).upper();
    // Freeze unless it is frozen already (then it stays so).
    let freeze = match (&run.cgroup, args.pause) {
        (Some(cg), true) if !crate::cgroup::read_state(cg).is_ok_and(|s| s.frozen) => {
            crate::cgroup::freeze(cg, true)
                .with_context(|| format!("cannot pause container \"{name}\""))?;
            Some(cg.clone())
        }
        _ => None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let created_by = format!("berth commit {name}");
    let done = crate::image::commit::commit(
        &store,
        &crate::image::commit::CommitOptions {
            upper: &upper,
            uids,
            gids,
            mount_points: mount_points(run.pid),
            base_reference: base_ref,
            base_digest,
            target: &target,
            message: args.message.as_deref(),
            author: args.author.as_deref(),
            changes: &changes,
            created_by: &created_by,
            created: &crate::image::offline::rfc3339(now),
        },
    );
    if let Some(cg) = freeze {
        crate::cgroup::freeze(&cg, false)
            .with_context(|| format!("cannot unpause container \"{name}\""))?;
    }
    let (image, _) = done.with_context(|| format!("cannot commit container \"{name}\""))?;
    println!("{} {}", image.reference, image.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

/// The mount points of process `pid` as paths relative to its root
/// (`/proc/PID/mountinfo` field 5, its octal escapes undone).
fn mount_points(pid: i32) -> std::collections::BTreeSet<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    parse_mount_points(&text)
}

fn parse_mount_points(text: &str) -> std::collections::BTreeSet<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let b = m.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let oct = b
                    .get(i + 1..i + 4)
                    .filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
                match oct.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok()) {
                    Some(c) => {
                        out.push(c);
                        i += 4;
                    }
                    None => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
                .strip_prefix("/")
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_side_is_the_container() {
        assert_eq!(container_side("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(container_side("web:"), Some(("web", "")));
        assert_eq!(container_side("./a:b"), None);
        assert_eq!(container_side("/tmp/a:b"), None);
        assert_eq!(container_side("dir/a:b"), None);
        assert_eq!(container_side("file"), None);
        assert_eq!(inside("etc"), Path::new("/etc"));
        assert_eq!(inside(""), Path::new("/."));
        let m = parse_mount_points(
            "1 0 0:1 / / rw - overlay o rw\n2 1 0:2 /h /etc/hosts rw - ext4 x rw\n3 1 0:3 / /srv/a\\040b rw - tmpfs t rw\n",
        );
        let want: Vec<PathBuf> = vec!["etc/hosts".into(), "srv/a b".into()];
        assert_eq!(m.into_iter().collect::<Vec<_>>(), want);
    }
}
