//! What runs leave under `$PKGCELL_HOME` besides the store, and its
//! collection by `pkgcell store gc`:
//!
//! - `logs/<pkgbase>/<pkgbase>-<version>-<tree12>-<deps12>.*log` (or, made
//!   by older versions, `<pkgid>.*log`): a log of every build attempt. Those of
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

use crate::buildlog::LogKey;
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
    /// Snapshots of a base's loaded makepkg (`cache/srcinfo-snapshot/`)
    /// no parse used for [`SNAPSHOT_MAX_AGE`]: another pkgcell, or a base
    /// with another makepkg, made them. A parse makes one again if needed.
    pub snapshots: Vec<Freed>,
}

/// How long a parse snapshot may go unused before gc removes it (each use
/// renews its mtime).
pub const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

impl LeftoversGc {
    /// Bytes of all of it.
    pub fn bytes(&self) -> u64 {
        self.logs.iter().chain(&self.failed).chain(&self.tmp).chain(&self.snapshots).map(|f| f.bytes).sum()
    }
}

/// Collect logs, `failed/` trees and scratch leftovers; `kept` are the
/// pkgids that have a record after the store's gc. The caller holds
/// [`Home::gc_lock`].
pub fn gc(home: &Home, kept: &BTreeSet<PkgId>, rules: &Rules, mode: GcMode) -> Result<LeftoversGc, LeftoversError> {
    let mut report = LeftoversGc::default();
    let now = SystemTime::now();

    // Logs, per pkgbase directory. Their names carry the short hashes of
    // the pkgid (older ones the whole pkgid): enough to tell its builds apart.
    let kept_keys: BTreeSet<(String, LogKey)> = kept.iter().map(|id| (id.pkgbase().to_string(), LogKey::of(id))).collect();
    for (pkgbase, dir, meta) in list(&home.logs())? {
        if !meta.is_dir() {
            continue;
        }
        // build → its files, and the newest mtime among them.
        let mut attempts: BTreeMap<LogKey, (SystemTime, Vec<(PathBuf, u64)>)> = BTreeMap::new();
        for (name, path, meta) in list(&dir)? {
            if !meta.is_file() {
                continue;
            }
            if name.ends_with(".tail") {
                // The ring of a log whose run was killed: no run is writing it.
                report.logs.push(Freed { path, bytes: meta.len() });
                continue;
            }
            let Some(key) = LogKey::of_name(&name) else { continue };
            if kept_keys.contains(&(pkgbase.clone(), key.clone())) {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let e = attempts.entry(key).or_insert((mtime, Vec::new()));
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

    for (_, path, meta) in list(&home.srcinfo_snapshots())? {
        let age = meta.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
        if meta.is_file() && age >= SNAPSHOT_MAX_AGE {
            report.snapshots.push(Freed { path, bytes: meta.len() });
        }
    }

    if mode == GcMode::Remove {
        for f in report.logs.iter().chain(&report.snapshots) {
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
    use crate::buildlog::LogKind;

    #[test]
    fn parse_snapshots_unused_for_a_month_are_collected_and_fresh_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().to_owned());
        let dir = home.srcinfo_snapshots();
        fs::create_dir_all(&dir).unwrap();
        let (old, fresh) = (dir.join("old.sh"), dir.join("fresh.sh"));
        fs::write(&old, "x").unwrap();
        fs::write(&fresh, "y").unwrap();
        let long_ago = SystemTime::now() - SNAPSHOT_MAX_AGE - std::time::Duration::from_secs(60);
        fs::File::options().write(true).open(&old).unwrap().set_modified(long_ago).unwrap();
        let rules = Rules { keep_logs: 1, failed_age: std::time::Duration::from_secs(3600) };
        let dry = gc(&home, &BTreeSet::new(), &rules, GcMode::DryRun).unwrap();
        assert_eq!(dry.snapshots, vec![Freed { path: old.clone(), bytes: 1 }]);
        assert!(old.exists(), "a dry run removes nothing");
        gc(&home, &BTreeSet::new(), &rules, GcMode::Remove).unwrap();
        assert!(!old.exists() && fresh.exists());
    }

    #[test]
    fn log_names_short_or_old_give_the_key_of_their_pkgid_even_when_the_pkgbase_has_dots() {
        const TREE: &str = "0123456789abcdef0123456789abcdef01234567";
        const DEPS: &str = "fedcba9876543210fedcba9876543210";
        for base in ["hello", "python3.11-foo"] {
            let id: PkgId = format!("{base}-{TREE}-{DEPS}").parse().unwrap();
            let srcinfo = "pkgbase = x\n\tpkgver = 1.2.3\n\tpkgrel = 1\n\tepoch = 2\n\npkgname = x\n\tpkgver = 9\n";
            for (kind, suffix) in [(LogKind::Build, ".log"), (LogKind::Deps, ".deps.log"), (LogKind::Repro("twice-1"), ".repro-twice-1.log")] {
                let path = crate::buildlog::log_path(Path::new("/logs"), &id, srcinfo, kind);
                let name = path.file_name().unwrap().to_str().unwrap();
                assert_eq!(name, format!("{base}-2:1.2.3-1-0123456789ab-fedcba987654{suffix}"));
                assert_eq!(path.parent().unwrap(), Path::new("/logs").join(base));
                assert_eq!(LogKey::of_name(name), Some(LogKey::of(&id)), "{name}");
                assert_eq!(LogKey::of_name(&format!("{id}{suffix}")), Some(LogKey::of(&id)), "old {suffix}");
            }
        }
        assert_eq!(LogKey::of_name("notes.txt"), None);
        assert_eq!(LogKey::of_name("x.log"), None);
        assert_eq!(LogKey::of_name("x-0123456789ab-fedcba987654.log.tail"), None);
        // A version with characters no file name should carry is left out.
        let id: PkgId = format!("x-{TREE}-{DEPS}").parse().unwrap();
        let path = crate::buildlog::log_path(Path::new("/l"), &id, "pkgver = a/b\npkgrel = 1\n", LogKind::Build);
        assert_eq!(path, Path::new("/l/x/x-0123456789ab-fedcba987654.log"));
    }
}
