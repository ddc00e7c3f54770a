//! Detached signatures with the real gpg (`gpg --detach-sign --no-armor`,
//! as repo-add and makepkg do). GNUPGHOME is honoured because gpg reads it
//! itself; we pass the environment through untouched.

use std::{path::Path, process::Command};

use super::{
    error::{PublishError, Result},
    fsops,
};

/// A gpg key to sign with: anything `gpg --local-user` accepts (key id,
/// fingerprint, user id).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SignKey(String);

impl SignKey {
    /// Wraps a key specification; `gpg` checks it when signing.
    ///
    /// ```
    /// let key = pkgcell::publish::SignKey::new("0xDEADBEEF");
    /// assert_eq!(key.as_str(), "0xDEADBEEF");
    /// ```
    pub fn new(spec: impl Into<String>) -> Self {
        SignKey(spec.into())
    }

    /// The key specification.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who signs: gpg's default key or a named one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Signer {
    pub key: Option<SignKey>,
}

impl Signer {
    /// Signs `file` into `FILE.sig` by way of a temporary file, so a reader
    /// never sees half a signature.
    pub(crate) fn sign(&self, file: &Path, sig: &Path) -> Result<()> {
        let tmp = fsops::temp_path(sig);
        fsops::remove_if_exists(&tmp)?;
        let mut cmd = Command::new("gpg");
        cmd.args(["--batch", "--yes", "--detach-sign", "--no-armor"]);
        if let Some(key) = &self.key {
            cmd.args(["--local-user", key.as_str()]);
        }
        cmd.arg("--output").arg(&tmp).arg(file);
        let failed = |status: String, stderr: &[u8]| {
            let text = String::from_utf8_lossy(stderr);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            PublishError::Sign {
                path: file.to_owned(),
                status,
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
            }
        };
        let out = cmd.output().map_err(|e| failed(format!("cannot run gpg: {e}"), b""))?;
        if !out.status.success() {
            let _ = fsops::remove_if_exists(&tmp);
            return Err(failed(out.status.to_string(), &out.stderr));
        }
        fsops::rename(&tmp, sig)
    }
}
