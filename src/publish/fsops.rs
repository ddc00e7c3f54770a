//! File operations the atomic publish is built from: write-to-temp, fsync,
//! rename into place, hard link (or copy when linking is impossible), the
//! repository lock, and the fault-injection hook the crash tests use.
//!
//! Temporary files are hidden (`.NAME.pkgcell-tmp`) in the same directory
//! as their final name, so the rename is atomic and a crashed run's
//! leftovers are recognisable and removed by the next run.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::error::{PublishError, Result};

/// Marks our temporary files and directories; anything carrying it is a
/// leftover of an interrupted run when no publisher holds the lock.
pub(crate) const TMP_MARK: &str = ".pkgcell-tmp";

/// The temporary name next to `final_path`.
pub(crate) fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}{TMP_MARK}"))
}

/// Writes `bytes` to a temporary file next to `final_path` and fsyncs it,
/// so that the rename that follows publishes complete content only.
pub(crate) fn write_temp(final_path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temp_path(final_path);
    let mut file = File::create(&tmp).map_err(PublishError::io("creating", &tmp))?;
    file.write_all(bytes).map_err(PublishError::io("writing", &tmp))?;
    file.sync_all().map_err(PublishError::io("syncing", &tmp))?;
    Ok(tmp)
}

/// Renames `from` onto `to` (atomic within one directory).
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(PublishError::io("renaming into place", to))
}

/// Makes `to` a hard link of `from`, or a copy with the same mtime where the
/// file system refuses links (another device, no link support). Never a
/// symlink: object stores and some static servers cannot hold those.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    remove_if_exists(to)?;
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(PublishError::io("copying to", to))?;
    let file = OpenOptions::new().write(true).open(to).map_err(PublishError::io("opening", to))?;
    // The copy keeps the mtime so that the incremental stamp of the input
    // and of the published file agree.
    let mtime = fs::metadata(from).and_then(|m| m.modified()).map_err(PublishError::io("reading mtime of", from))?;
    file.set_modified(mtime).map_err(PublishError::io("setting mtime of", to))?;
    file.sync_all().map_err(PublishError::io("syncing", to))?;
    Ok(())
}

/// Removes a file; a missing file is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PublishError::io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// fsyncs a directory, making the renames in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(PublishError::io("syncing directory", dir))
}

/// Size and mtime of a file: what decides "unchanged since the last run"
/// without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Stamp {
    /// The stamp of `path`, or `None` if it cannot be read.
    pub(crate) fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp { size: meta.size(), mtime: meta.mtime(), mtime_nsec: meta.mtime_nsec() })
    }
}

/// An exclusive flock on the repository's lock file, held until dropped.
#[derive(Debug)]
pub(crate) struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Takes the lock, waiting (and saying so) while another publisher
    /// holds it. The lock file stays: deleting a flock file races with the
    /// next locker.
    pub(crate) fn acquire(path: &Path) -> Result<RepoLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(PublishError::io("opening lock file", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                tracing::warn!(lock = %path.display(), "another publisher holds the repository lock; waiting");
                file.lock().map_err(PublishError::io("locking", path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(PublishError::io("locking", path)(e)),
        }
        Ok(RepoLock { _file: file })
    }
}

/// Environment variable naming the step at which the process aborts.
pub const KILL_AT_ENV: &str = "PKGCELL_TEST_KILL_AT";

/// Fault injection for the crash tests: aborts the process (no unwinding,
/// no cleanup, like a SIGKILL or a power cut would) when
/// `PKGCELL_TEST_KILL_AT` names `step`. A no-op otherwise.
pub(crate) fn kill_point(step: &str) {
    if std::env::var_os(KILL_AT_ENV).is_some_and(|v| v == step) {
        eprintln!("pkgcell: {KILL_AT_ENV}={step}: aborting");
        std::process::abort();
    }
}
