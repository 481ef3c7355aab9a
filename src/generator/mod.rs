//! generator: definition → systemd unit drop-ins and `wanted_by` links.
use std::process::ExitCode;

/// Entry point of the `berth-generator` personality.
pub fn main() -> ExitCode {
    eprintln!("berth-generator: not implemented yet");
    ExitCode::SUCCESS
}
