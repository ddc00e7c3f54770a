//! Error parts shared by the stage modules.
//!
//! Each stage keeps its own error enum (callers branch on it); what they
//! have in common, a failed file operation on a known path, lives here once
//! so that every stage words it the same way.

use std::io;
use std::path::{Path, PathBuf};

/// A file system operation on `path` failed: "cannot <action> <path>", with
/// the `io::Error` as the source.
///
/// Stage enums embed it as `#[error(transparent)] Io(#[from] IoPath)`, so
/// their message is this one.
///
/// ```
/// use pkgcell::error::IoPath;
/// let e = IoPath::new("read", "/x/y", std::io::ErrorKind::NotFound.into());
/// assert_eq!(e.to_string(), "cannot read /x/y");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct IoPath {
    /// What was being done, as a verb phrase: "read", "rename into".
    pub action: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl IoPath {
    /// An `IoPath` for `action` on `path`.
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IoPath {
            action,
            path: path.into(),
            source,
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A `map_err` adapter: `fs::read(p).map_err(io_err("read", p))?` turns the
/// `io::Error` into an [`IoPath`], and `?` into the stage's enum.
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IoPath + 'a {
    move |source| IoPath::new(action, path, source)
}

/// The entries of `dir` (none when it does not exist), sorted by name: the
/// name, the path and the metadata of the entry itself (a symlink is not
/// followed). An entry gone between the listing and its stat is left out.
pub(crate) fn dir_entries(dir: &std::path::Path) -> Result<Vec<(String, std::path::PathBuf, std::fs::Metadata)>, IoPath> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoPath::new("read", dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| IoPath::new("read", dir, err))?;
        let path = e.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) => out.push((e.file_name().to_string_lossy().into_owned(), path, m)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(IoPath::new("stat", path, err)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
