//! Applying an nftables transaction (`nft -f -`: one file is one
//! transaction). Interim: helper "nft" replaces this file with the measured
//! choice.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft: {0}")]
    Failed(String),
}

pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NftError::Failed(format!(
                "cannot run nft: {e} (install the nftables package)"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NftError::Failed(e.to_string()))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
    }
}
