//! oci: the OCI runtime command line (`berth-runtime`).
use std::process::ExitCode;

/// Entry point of the `berth-runtime` personality.
pub fn main() -> ExitCode {
    eprintln!("berth-runtime: not implemented yet");
    ExitCode::from(1)
}
