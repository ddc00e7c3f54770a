//! What runs leave under `$PKGCELL_HOME` besides the store, and its
//! collection by `pkgcell store gc`:
//!
//! - `logs/<pkgbase>/<pkgid>.*log`: a log of every build attempt. Those of
//!   builds that have a kept record stay; of the others (failed builds,
//!   dropped records) the newest `keep_logs` pkgids per pkgbase stay.
//!   `*.log.tail` side files of killed runs go.
//! - `failed/<pkgid>`: trees of failed builds kept with `--keep-failed`,
//!   once older than `failed_age`.
//! - `tmp/*`: scratch directories of runs (parse, build, repro, fetch,
//!   publish). Every run that makes them holds `gc.lock` shared
//!   ([`Home::use_lock`]); gc holds it exclusively, so whatever is there
//!   then belongs to a run that was killed.
//!
//! Trees that a sandbox wrote hold files of subordinate ids: they are
//! removed from inside a user namespace that maps them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{IoPath, io_err};
use crate::home::{GcMode, Home};
use crate::ids::PkgId;

/// A leftover that could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeftoversError {
    /// A directory could not be listed or a file removed.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// A tree with files of subordinate ids could not be removed.
    #[error("cannot remove {} (it holds files of subordinate ids)", path.display())]
    RemoveTree {
        /// The tree.
        path: PathBuf,
        /// The cause.
        #[source]
        source: pkgcell_sandbox::Error,
    },
}

/// What [`gc`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Logs of builds with no kept record, per pkgbase (counted by pkgid).
    pub keep_logs: usize,
    /// How old a `failed/` tree must be to go.
    pub failed_age: Duration,
}

/// One thing removed (or, in a dry run, to be removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freed {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes (of a tree: what could be read of it).
    pub bytes: u64,
}

/// What [`gc`] removed, or would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeftoversGc {
    /// Log files.
    pub logs: Vec<Freed>,
    /// `failed/` trees.
    pub failed: Vec<Freed>,
    /// Scratch directories and files of killed runs under `tmp/`.
    pub tmp: Vec<Freed>,
}

impl LeftoversGc {
    /// Bytes of all of it.
    pub fn bytes(&self) -> u64 {
        self.logs.iter().chain(&self.failed).chain(&self.tmp).map(|f| f.bytes).sum()
    }
}

/// Collect logs, `failed/` trees and scratch leftovers; `kept` are the
/// pkgids that have a record after the store's gc. The caller holds
/// [`Home::gc_lock`].
pub fn gc(home: &Home, kept: &BTreeSet<PkgId>, rules: &Rules, mode: GcMode) -> Result<LeftoversGc, LeftoversError> {
    let mut report = LeftoversGc::default();
    let now = SystemTime::now();

    // Logs, per pkgbase directory.
    for (_, dir, meta) in list(&home.logs())? {
        if !meta.is_dir() {
            continue;
        }
        // pkgid → its files, and the newest mtime among them.
        let mut attempts: BTreeMap<String, (SystemTime, Vec<(PathBuf, u64)>)> = BTreeMap::new();
        for (name, path, meta) in list(&dir)? {
            if !meta.is_file() {
                continue;
            }
            if name.ends_with(".tail") {
                // The ring of a log whose run was killed: no run is writing it.
                report.logs.push(Freed { path, bytes: meta.len() });
                continue;
            }
            let Some(id) = pkgid_of_log(&name) else { continue };
            if kept.contains(&id) {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let e = attempts.entry(id.to_string()).or_insert((mtime, Vec::new()));
            e.0 = e.0.max(mtime);
            e.1.push((path, meta.len()));
        }
        let mut attempts: Vec<_> = attempts.into_values().collect();
        attempts.sort_by_key(|a| std::cmp::Reverse(a.0));
        for (_, files) in attempts.into_iter().skip(rules.keep_logs) {
            for (path, bytes) in files {
                report.logs.push(Freed { path, bytes });
            }
        }
    }

    // failed/ trees: their mtime is when they were kept.
    for (_, path, meta) in list(&home.failed())? {
        let age = meta.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
        if age >= rules.failed_age {
            report.failed.push(Freed { bytes: tree_bytes(&path), path });
        }
    }

    // tmp/: every entry is a dead run's (see the module's note on gc.lock).
    for (_, path, _) in list(&home.tmp())? {
        report.tmp.push(Freed { bytes: tree_bytes(&path), path });
    }

    if mode == GcMode::Remove {
        for f in report.logs.iter() {
            remove_file(&f.path)?;
        }
        for f in report.failed.iter().chain(&report.tmp) {
            remove_tree(&f.path)?;
        }
        for (_, dir, meta) in list(&home.logs())? {
            if meta.is_dir() {
                // Only when empty: a pkgbase with no log left.
                let _ = fs::remove_dir(&dir);
            }
        }
    }
    Ok(report)
}

/// The pkgid a log file is named after: `<pkgid>.log`, `<pkgid>.deps.log`,
/// `<pkgid>.repro-<tag>.log`. A pkgbase may hold dots: the first prefix
/// ending at a dot that reads as a pkgid is it.
pub fn pkgid_of_log(name: &str) -> Option<PkgId> {
    if !name.ends_with(".log") {
        return None;
    }
    name.match_indices('.').find_map(|(i, _)| name[..i].parse().ok())
}

/// Remove a tree that may hold files of subordinate ids.
pub fn remove_tree(path: &Path) -> Result<(), LeftoversError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e).into()),
    };
    if !meta.is_dir() {
        return remove_file(path);
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    pkgcell_sandbox::remove_tree(path).map_err(|source| LeftoversError::RemoveTree { path: path.to_owned(), source })
}

fn remove_file(path: &Path) -> Result<(), LeftoversError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e).into()),
    }
}

/// Bytes of the files of a tree that can be read (directories of
/// subordinate ids may not be: what is below them is not counted).
pub fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum()).unwrap_or(0)
}

/// The entries of `dir` ([`crate::error::dir_entries`]).
fn list(dir: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>, LeftoversError> {
    Ok(crate::error::dir_entries(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "0123456789abcdef0123456789abcdef01234567";
    const DEPS: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn log_names_give_their_pkgid_even_when_the_pkgbase_has_dots() {
        for base in ["hello", "python3.11-foo"] {
            let id = format!("{base}-{TREE}-{DEPS}");
            for suffix in [".log", ".deps.log", ".repro-a.log"] {
                assert_eq!(pkgid_of_log(&format!("{id}{suffix}")).map(|p| p.to_string()), Some(id.clone()), "{suffix}");
            }
        }
        assert_eq!(pkgid_of_log("notes.txt"), None);
        assert_eq!(pkgid_of_log("x.log"), None);
    }
}
