//! Documentation made from the clap definitions themselves: one man page per
//! subcommand (`berth __man DIR`, clap_mangen) and the shell completions
//! (`berth completion bash|zsh|fish`, clap_complete), so neither can drift from
//! `--help`.
//!
//! Completions are clap_complete's dynamic kind: the installed script asks
//! `berth` itself at each TAB (`BERTH_COMPLETE=SHELL berth -- WORDS…`), which
//! completes subcommands and flags from the same definitions and container
//! names from the definitions on disk (`config::load::definition_names`). The
//! static kind cannot list names that exist only at completion time. The
//! variable is berth's own, not clap's default `COMPLETE`, so that an unrelated
//! `COMPLETE=1` in a unit's environment never turns `berth run` into a
//! completer. Must not: read anything but the definition directories.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use clap_complete::{ArgValueCandidates, CompleteEnv, CompletionCandidate};

/// The variable that turns `berth` into its own completer.
pub const COMPLETE_VAR: &str = "BERTH_COMPLETE";

/// Subcommands whose positional NAME is not a container (an image, a
/// network, a volume): everything else that takes `name`/`names` does.
const NOT_CONTAINER_NAMES: &[&str] = &[
    "network", "volume", "import", "images", "pull", "rmi", "tag", "push", "save", "load",
    "history", "commit", "login", "logout", "build", "compose", "system", "generate",
];

/// A shell berth writes a completion script for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print the completion script for a shell
///
/// Install it where the shell looks (the packages do):
/// bash: /usr/share/bash-completion/completions/berth;
/// zsh: a directory on $fpath, as _berth;
/// fish: /usr/share/fish/vendor_completions.d/berth.fish.
/// Or try it at once: `source <(berth completion bash)`.
/// Container names are completed from the definitions on disk.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    pub shell: Shell,
}

/// The `berth` command as clap sees it, with container-name completion on
/// every positional NAME of a container command.
pub fn command() -> clap::Command {
    let mut cmd = super::Cli::command();
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !NOT_CONTAINER_NAMES.contains(&s.get_name()))
        .map(|s| s.get_name().to_string())
        .collect();
    for sub in subs {
        cmd = cmd.mut_subcommand(sub, with_name_candidates);
    }
    cmd
}

fn with_name_candidates(mut sub: clap::Command) -> clap::Command {
    // `mut_arg` moves the argument to the end of the list; re-adding every
    // positional in its order keeps their order (and so which one is last,
    // which `trailing_var_arg` of `exec` asserts).
    let positionals: Vec<String> = sub
        .get_positionals()
        .map(|a| a.get_id().to_string())
        .collect();
    // `inspect`'s `target` is a container first (an image only when no
    // container has that name).
    let is_name = |id: &str| matches!(id, "name" | "names" | "target");
    if !positionals.iter().any(|id| is_name(id)) {
        return sub;
    }
    for id in positionals {
        let names = is_name(&id);
        sub = sub.mut_arg(id, |a| {
            if names {
                a.add(ArgValueCandidates::new(container_names))
            } else {
                a
            }
        });
    }
    sub
}

/// Declared containers under `$BERTH_ROOT` (else `/`), masked ones left out.
fn container_names() -> Vec<CompletionCandidate> {
    let root = crate::generator::root_from_env();
    crate::config::load::definition_names(&root)
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// Answer a completion request (`BERTH_COMPLETE` set) and exit; otherwise
/// return at once. Called before the argument parser.
pub fn complete_if_asked() {
    CompleteEnv::with_factory(command)
        .var(COMPLETE_VAR)
        .completer("berth")
        .complete();
}

/// clap_complete's zsh script is made to be sourced: it defines the completer
/// and registers it with `compdef`. The packages install it as `_berth` on
/// zsh's fpath instead, where compinit autoloads the file as the function
/// `_berth` at the first TAB: that run would only define and register, and
/// complete nothing until the second TAB. This line completes in that first
/// run, and does nothing when the script is sourced (no function is running
/// then; `if`, so that `source` still returns 0). The idiom of zsh's own fpath files and clap's static scripts
/// (`funcstack`); the same fix as wavelens/gradient#293.
const ZSH_AUTOLOAD_BRIDGE: &str =
    "\nif [[ ${funcstack[1]} = _berth ]]; then _clap_dynamic_completer_berth \"$@\"; fi\n";

/// `berth completion SHELL`: the registration script on stdout. It calls
/// `berth` by name, so it follows PATH as the shell's own lookup does.
pub fn completion(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = Vec::new();
    shell.write_registration(COMPLETE_VAR, "berth", "berth", "berth", &mut out)?;
    if matches!(args.shell, Shell::Zsh) {
        out.extend_from_slice(ZSH_AUTOLOAD_BRIDGE.as_bytes());
    }
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `berth __man DIR`: one page per visible subcommand, `berth-NAME.1` (and
/// `berth-network-ls.1` for nested ones). berth.1 itself is hand-written
/// (packaging/berth.1: the overview, files, examples), so it is not made here.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("berth {}", env!("CARGO_PKG_VERSION")))
        .manual("berth");
    let mut page = Vec::new();
    man.render(&mut page)?;
    // clap_mangen has no SEE ALSO: the parent page and berth(1).
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut see_also = vec!["berth (1)".to_string()];
    if let Some((parent, _)) = name.rsplit_once('-') {
        if parent != "berth" {
            see_also.push(format!("{parent} (1)"));
        }
    }
    writeln!(page, ".SH \"SEE ALSO\"")?;
    let last = see_also.len() - 1;
    for (i, s) in see_also.iter().enumerate() {
        let comma = if i < last { " ," } else { "" };
        writeln!(page, ".BR {s}{comma}")?;
    }
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_completed(cmd: &clap::Command, sub: &str) -> bool {
        let s = cmd.find_subcommand(sub).unwrap();
        s.get_positionals()
            .any(|a| a.get::<ArgValueCandidates>().is_some())
    }

    #[test]
    fn container_commands_complete_names_and_image_commands_do_not() {
        let cmd = command();
        for sub in ["start", "stop", "logs", "inspect", "exec", "check"] {
            assert!(names_completed(&cmd, sub), "{sub}");
        }
        for sub in ["import", "network", "volume"] {
            assert!(!names_completed(&cmd, sub), "{sub}");
        }
    }
}
