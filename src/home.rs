//! Where pkgcell keeps its state: `$PKGCELL_HOME`, by default
//! `$XDG_DATA_HOME/pkgcell` (`~/.local/share/pkgcell`).
//!
//! Only paths are computed here; each stage creates what it needs.

use std::path::{Path, PathBuf};

/// `$PKGCELL_HOME` could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// None of PKGCELL_HOME, XDG_DATA_HOME or HOME is set.
    #[error("cannot find pkgcell's state directory: set PKGCELL_HOME (or XDG_DATA_HOME or HOME)")]
    Unset,
}

/// The state directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
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

    /// Scratch space for one run (same file system as the caches, so that
    /// results can be renamed into place).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}
