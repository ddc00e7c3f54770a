//! Where pkgcell keeps its state: `$PKGCELL_HOME`, by default
//! `$XDG_DATA_HOME/pkgcell` (`~/.local/share/pkgcell`).
//!
//! Only paths are computed here; each stage creates what it needs.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{IoPath, io_err};

/// `$PKGCELL_HOME` could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// None of PKGCELL_HOME, XDG_DATA_HOME or HOME is set.
    #[error("cannot find pkgcell's state directory: set PKGCELL_HOME (or XDG_DATA_HOME or HOME)")]
    Unset,
}

/// Whether a gc removes what it finds or only says what it would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Remove it.
    Remove,
    /// Only report it (`store gc --dry-run`).
    DryRun,
}

/// The state directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

/// A held flock on `$PKGCELL_HOME/gc.lock`, released when dropped: shared
/// by every process that uses the home ([`Home::use_lock`]), exclusive for
/// `store gc` ([`Home::gc_lock`]).
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

impl Home {
    /// A home at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The home named by the environment.
    pub fn from_env() -> Result<Home, HomeError> {
        let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(h) = var("PKGCELL_HOME") {
            // Absolute, so that every process names the same lock files
            // (fetch hashes cache paths into lock names) wherever it runs.
            return Ok(Home::at(std::path::absolute(&h).unwrap_or(h)));
        }
        if let Some(d) = var("XDG_DATA_HOME") {
            return Ok(Home::at(d.join("pkgcell")));
        }
        var("HOME").map(|h| Home::at(h.join(".local/share/pkgcell"))).ok_or(HomeError::Unset)
    }

    /// Hold the home in use, against `store gc`, until the lock is dropped.
    /// Builds, fetches, repro and publish hold it: gc would otherwise see a
    /// download, a dependency layer or a source of a build that has no
    /// record yet as unneeded. Many holders at once; waits only while a gc
    /// runs, and calls `on_wait` first then.
    pub fn use_lock(&self, on_wait: impl FnOnce()) -> Result<HomeLock, IoPath> {
        self.take_gc_lock(false, on_wait)
    }

    /// Hold the home for `store gc` alone: waits until no process holds
    /// [`Home::use_lock`]; `on_wait` is called first when it has to wait.
    pub fn gc_lock(&self, on_wait: impl FnOnce()) -> Result<HomeLock, IoPath> {
        self.take_gc_lock(true, on_wait)
    }

    /// Take `gc.lock`, exclusive or shared; when it is held the other way,
    /// call `on_wait`, then wait.
    fn take_gc_lock(&self, exclusive: bool, on_wait: impl FnOnce()) -> Result<HomeLock, IoPath> {
        fs::create_dir_all(&self.root).map_err(io_err("create", &self.root))?;
        let path = self.root.join("gc.lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
        match if exclusive { file.try_lock() } else { file.try_lock_shared() } {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait();
                if exclusive { file.lock() } else { file.lock_shared() }.map_err(io_err("lock", &path))?;
            }
            Err(TryLockError::Error(e)) => return Err(IoPath::new("lock", path, e)),
        }
        Ok(HomeLock { _file: file })
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Base chroots, one directory per [`crate::ids::BaseId`], plus
    /// `.tmp-*` directories of bases being made.
    pub fn bases(&self) -> PathBuf {
        self.root.join("bases")
    }

    /// Package files downloaded by pacman, shared by every base and build
    /// (bound at `/var/cache/pacman/pkg` at build time).
    pub fn package_cache(&self) -> PathBuf {
        self.root.join("cache/pkg")
    }

    /// Bare git repositories of git sources, one per URL.
    pub fn git_sources(&self) -> PathBuf {
        self.root.join("sources/git")
    }

    /// Parsed .SRCINFO text, by tree-id and parser version.
    pub fn srcinfo_cache(&self) -> PathBuf {
        self.root.join("cache/srcinfo")
    }

    /// Snapshots of the parse driver's loaded makepkg, one per base's
    /// makepkg (see [`crate::plan::srcinfo`]).
    pub fn srcinfo_snapshots(&self) -> PathBuf {
        self.root.join("cache/srcinfo-snapshot")
    }

    /// The stat index of path sources' files: path and stat data to blob
    /// id, so that a tree-id hashes only what changed
    /// ([`crate::plan::treeid::StatIndex`]).
    pub fn tree_index(&self) -> PathBuf {
        self.root.join("cache/treeid-index")
    }

    /// The content-addressed store of build outputs.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Downloaded sources, by integrity checksum (`sources/<algo>/<sum>`).
    pub fn sources(&self) -> PathBuf {
        self.root.join("sources")
    }

    /// Dependency layers (overlay upper directories), by dependency set.
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Build logs, one per build attempt.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Directories of failed builds kept to look at (`--keep-failed`),
    /// one per pkgid.
    pub fn failed(&self) -> PathBuf {
        self.root.join("failed")
    }

    /// Scratch space for one run (same file system as the caches, so that
    /// results can be renamed into place).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn users_share_the_home_and_gc_waits_for_them_and_they_for_gc() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let a = home.use_lock(|| panic!("nothing holds it")).unwrap();
        let _b = home.use_lock(|| panic!("users share it")).unwrap();
        drop(_b);

        // gc waits while `a` is held, and says so first.
        let (tx, rx) = mpsc::channel();
        let gc_home = home.clone();
        let gc = std::thread::spawn(move || {
            let lock = gc_home.gc_lock(|| tx.send(()).unwrap()).unwrap();
            (lock, std::time::Instant::now())
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("gc did not say it waits");
        let released = std::time::Instant::now();
        drop(a);
        let (gc_lock, taken) = gc.join().unwrap();
        assert!(taken >= released, "gc took the lock while a user held it");

        // A user waits while gc holds it.
        let waited = AtomicBool::new(false);
        std::thread::scope(|s| {
            let user = s.spawn(|| home.use_lock(|| waited.store(true, Ordering::SeqCst)).unwrap());
            while !waited.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(gc_lock);
            user.join().unwrap();
        });
    }
}
