//! The one berth binary. Its name picks the personality: installed as
//! `berth-generator` it is the systemd generator, as `berth-runtime` it speaks the
//! OCI runtime command line, otherwise it is the `berth` CLI.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "berth-generator" => berth::generator::main(),
        "berth-runtime" => berth::oci::main(),
        _ => berth::cli::main(),
    }
}
