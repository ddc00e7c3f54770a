//! Collecting the caches fetch fills: the shared package cache
//! (`cache/pkg`) and the source cache (`sources/`). Entries are kept while
//! a kept build record (or the config) needs them, while their flock is
//! held, and for a grace period after their last use.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Algo, FetchError, cache_entries, entry_lock, package_locks, sources_of_every_arch};
use crate::error::io_err;
use crate::home::{GcMode, Home};

/// A `.part-*` directory in the package cache younger than this may belong
/// to a download that is running; an older one was left by a killed run
/// (a download has curl's own timeouts and three retries, far below this).
/// Also the grace of [`gc_source_cache`]: a source used this recently may
/// belong to a build that has no record yet.
pub const PARTIAL_DOWNLOAD_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// What [`gc_package_cache`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageCacheGc {
    /// Package files that no kept build record lists, by file name.
    pub files: Vec<String>,
    /// `.part-*` directories of interrupted downloads.
    pub partial: usize,
    /// Bytes freed by both.
    pub bytes: u64,
}

/// Collect the shared package cache (`$PKGCELL_HOME/cache/pkg`): remove
/// every package file not in `needed` (the [`crate::store::Record::cached_packages`]
/// of the kept records) and every `.part-*` directory older than
/// `partial_max_age`. A file whose download lock is held is kept: a fetch
/// is writing it. Like the rest of `store gc`, run it when no build runs: a
/// file fetched for a build that has no record yet is not needed by any.
pub fn gc_package_cache(
    home: &Home,
    needed: &BTreeSet<String>,
    partial_max_age: Duration,
    mode: GcMode,
) -> Result<PackageCacheGc, FetchError> {
    let mut report = PackageCacheGc::default();
    let now = SystemTime::now();
    for (name, path, meta) in list(&home.package_cache())? {
        if meta.is_dir() && name.starts_with(".part-") {
            if age(&meta, now) < partial_max_age {
                continue;
            }
            let bytes = tree_bytes(&path);
            if mode == GcMode::DryRun || remove_entry(&path, true)? {
                report.partial += 1;
                report.bytes += bytes;
            }
        } else if meta.is_file()
            && !needed.contains(&name)
            && !download_running(home, &name)?
            && (mode == GcMode::DryRun || remove_entry(&path, false)?)
        {
            report.bytes += meta.len();
            report.files.push(name);
        }
    }
    report.files.sort();
    Ok(report)
}

/// Whether a [`Fetcher::fetch_package`] holds the lock of `filename` now.
fn download_running(home: &Home, filename: &str) -> Result<bool, FetchError> {
    let path = package_locks(home).join(format!("{filename}.lock"));
    // No lock file: no download ever ran (and none is worth a new file).
    if !path.exists() {
        return Ok(false);
    }
    Ok(try_lock(&path)?.is_none())
}

/// Take the flock at `path` without waiting, making the file if missing:
/// `None` when another process holds it (a fetch is running).
fn try_lock(path: &Path) -> Result<Option<File>, FetchError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io_err("open", path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", path)(e).into()),
    }
}

/// How long ago `meta`'s file was last modified (zero if in the future).
fn age(meta: &fs::Metadata, now: SystemTime) -> Duration {
    meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default()
}

/// The bytes of the files under `path` (or of `path` itself), links not followed.
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum()).unwrap_or(0)
}

/// Remove a file or a directory tree; `false` if it was already gone.
fn remove_entry(path: &Path, dir: bool) -> Result<bool, FetchError> {
    let r = if dir { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e).into()),
    }
}

/// The source cache entries that kept build records need, from the parse
/// cache (a record's pkgid names its tree, and the parse of that tree its
/// sources and checksums).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NeededSources {
    /// Cache paths ([`cache_entries`]) that some record needs.
    pub entries: BTreeSet<PathBuf>,
    /// What has unknown sources: records whose tree has no parse in the
    /// cache, by pkgid, and config entries ([`add_needed_by_config`]). When
    /// there is any, no entry may be removed.
    pub unknown: Vec<String>,
}

impl NeededSources {
    /// Add what the parses of `tree` name; `false` if it has none.
    fn add_tree(&mut self, home: &Home, tree: crate::ids::TreeId) -> bool {
        let parses = crate::plan::srcinfo::cached_parses(home, tree);
        for p in &parses {
            self.entries.extend(cache_entries(home, &sources_of_every_arch(&p.text)));
        }
        !parses.is_empty()
    }
}

/// What the `records` need of the source cache. Every architecture's
/// sources count (a record does not say which one it was built for).
pub fn needed_sources(home: &Home, records: &[crate::store::Record]) -> NeededSources {
    let mut needed = NeededSources::default();
    for r in records {
        if !needed.add_tree(home, r.pkgid.tree_id()) {
            needed.unknown.push(r.pkgid.to_string());
        }
    }
    needed
}

/// Add to `needed` what the `[pkgbuilds]` of `config` need of the source
/// cache: each entry's tree as last synced (a directory as it is now, a
/// git entry at the commit its mirror holds; no network), by its parse in
/// the cache. An entry that cannot be synced offline, or whose tree was not
/// parsed since it last changed (no `pkgcell plan` or `build` since), is
/// unknown, as `[pkgbuilds] NAME`.
pub fn add_needed_by_config(needed: &mut NeededSources, home: &Home, config: &crate::config::Config) {
    use crate::plan::treeid;
    use crate::sync::{self, Checkout, SyncMode};
    for s in sync::sync(config, home, SyncMode::Offline) {
        let tree = match &s.checkout {
            Ok(Checkout::Dir { dir }) => treeid::of_dir(dir).ok(),
            Ok(Checkout::Git { repo, commit, subtree, .. }) => treeid::of_git(repo, commit, subtree.as_deref()).ok(),
            Err(_) => None,
        };
        if !tree.is_some_and(|t| needed.add_tree(home, t)) {
            needed.unknown.push(format!("[pkgbuilds] {}", s.name));
        }
    }
}

/// What [`gc_source_cache`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceCacheGc {
    /// Cached source files, as `<algo>/<sum>` or `url/<hash>` under `sources/`.
    pub files: Vec<String>,
    /// git mirrors, as `vcs/<hash>.git` under `sources/`.
    pub mirrors: Vec<String>,
    /// Temp directories of interrupted downloads (`tmp/fetch-*`) and clones
    /// (`sources/vcs/*.git.part`).
    pub partial: usize,
    /// Bytes freed by all of them.
    pub bytes: u64,
    /// What has unknown sources ([`NeededSources::unknown`]): when there
    /// is anything, no file or mirror was removed.
    pub unknown: Vec<String>,
}

/// Collect the source cache (`$PKGCELL_HOME/sources`): remove every file
/// (`<algo>/<sum>`, `url/<hash>`) and git mirror (`vcs/<hash>.git`) that is
/// not in `needed`, and every temp directory of an interrupted download or
/// clone. Nothing is removed that was used (fetched, or found in the cache
/// by a fetch) less than `max_age` ago, nor anything whose flock is held (a
/// fetch is running); the lock is held while the entry is removed. When
/// some record's sources are unknown, only temp directories go. The
/// PKGBUILD repositories (`sources/git`) and lock files are left alone.
pub fn gc_source_cache(home: &Home, needed: &NeededSources, max_age: Duration, mode: GcMode) -> Result<SourceCacheGc, FetchError> {
    let mut report = SourceCacheGc { unknown: needed.unknown.clone(), ..SourceCacheGc::default() };
    let collect = needed.unknown.is_empty();
    let now = SystemTime::now();
    let sources = home.sources();
    let mut dirs: Vec<&str> = Algo::ALL.iter().map(|a| a.name()).collect();
    dirs.extend(["url", "vcs"]);
    for sub in dirs {
        let dir = sources.join(sub);
        for (name, path, meta) in list(&dir)? {
            // What the entry is, and the cache entry whose lock guards it.
            let (key, is_partial) = match (sub, meta.is_dir()) {
                ("vcs", true) if name.ends_with(".git") => (path.clone(), false),
                ("vcs", true) => match name.strip_suffix(".part") {
                    Some(mirror) if mirror.ends_with(".git") => (dir.join(mirror), true),
                    _ => continue,
                },
                ("vcs", false) | (_, true) => continue,
                (_, false) => (path.clone(), false),
            };
            if (!is_partial && (!collect || needed.entries.contains(&key))) || age(&meta, now) < max_age {
                continue;
            }
            let Some(_lock) = try_lock(&entry_lock(home, &key).0)? else { continue };
            // Look again under the lock: a fetch may have used (touched)
            // the entry since it was listed.
            match fs::symlink_metadata(&path) {
                Ok(m) if is_partial || age(&m, now) >= max_age => {}
                _ => continue,
            }
            let bytes = tree_bytes(&path);
            if mode == GcMode::Remove && !remove_entry(&path, meta.is_dir())? {
                continue;
            }
            report.bytes += bytes;
            match (is_partial, meta.is_dir()) {
                (true, _) => report.partial += 1,
                (false, true) => report.mirrors.push(format!("{sub}/{name}")),
                (false, false) => report.files.push(format!("{sub}/{name}")),
            }
        }
    }
    // `tmp/fetch-<lock name>-*`: a download's temp directory, named after
    // the lock of its entry.
    let tmp = home.tmp();
    for (name, path, meta) in list(&tmp)? {
        let Some(lock_name) = name.strip_prefix("fetch-").and_then(|n| n.get(..64)) else { continue };
        if !meta.is_dir() || age(&meta, now) < max_age {
            continue;
        }
        let Some(_lock) = try_lock(&sources.join("locks").join(format!("{lock_name}.lock")))? else { continue };
        let bytes = tree_bytes(&path);
        if mode == GcMode::DryRun || remove_entry(&path, true)? {
            report.bytes += bytes;
            report.partial += 1;
        }
    }
    report.files.sort();
    report.mirrors.sort();
    Ok(report)
}

/// The entries of `dir` ([`crate::error::dir_entries`]).
fn list(dir: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>, FetchError> {
    Ok(crate::error::dir_entries(dir)?)
}


#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fetch::{Fetched, Fetcher, SourceEntry, SourceKind};

    /// A source cache with one entry of each kind; every entry is an hour
    /// old unless said otherwise.
    fn source_cache(home: &Home) -> BTreeMap<&'static str, PathBuf> {
        let s = home.sources();
        let entries = BTreeMap::from([
            ("needed", s.join("sha256/aaaa")),
            ("old", s.join("sha256/bbbb")),
            ("fresh", s.join("b2/cccc")),
            ("busy", s.join("url/dddd")),
            ("mirror", s.join("vcs/0123.git")),
            ("needed-mirror", s.join("vcs/4567.git")),
            ("clone", s.join("vcs/89ab.git.part")),
            ("pkgbuilds", s.join("git/cdef.git")),
        ]);
        for (what, p) in &entries {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            if p.extension().is_some_and(|x| x == "git" || x == "part") {
                fs::create_dir_all(p.join("objects")).unwrap();
                fs::write(p.join("objects/pack"), "1234567").unwrap();
            } else {
                fs::write(p, "12345").unwrap();
            }
            if *what != "fresh" {
                let hour_ago = SystemTime::now() - Duration::from_secs(3600);
                File::open(p).unwrap().set_modified(hour_ago).unwrap();
            }
        }
        entries
    }

    #[test]
    fn source_cache_gc_removes_unneeded_old_entries_and_keeps_needed_fresh_and_locked_ones() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let e = source_cache(&home);
        let (busy_lock, _) = entry_lock(&home, &e["busy"]);
        let held = try_lock(&busy_lock).unwrap().unwrap();
        // A killed download's temp directory, and a running one's.
        let (_, old_name) = entry_lock(&home, &e["old"]);
        let (killed, running) = (home.tmp().join(format!("fetch-{old_name}-x1")), home.tmp().join(format!("fetch-{old_name}-x2")));
        for t in [&killed, &running] {
            fs::create_dir_all(t).unwrap();
            fs::write(t.join("file"), "123").unwrap();
        }
        File::open(&killed).unwrap().set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();

        let needed = NeededSources { entries: [e["needed"].clone(), e["needed-mirror"].clone()].into(), unknown: vec![] };
        let report = gc_source_cache(&home, &needed, PARTIAL_DOWNLOAD_MAX_AGE, GcMode::Remove).unwrap();
        assert_eq!(
            report,
            SourceCacheGc { files: vec!["sha256/bbbb".into()], mirrors: vec!["vcs/0123.git".into()], partial: 2, bytes: 5 + 7 + 7 + 3, unknown: vec![] }
        );
        for gone in ["old", "mirror", "clone"] {
            assert!(!e[gone].exists(), "{gone}");
        }
        for kept in ["needed", "fresh", "busy", "needed-mirror", "pkgbuilds"] {
            assert!(e[kept].exists(), "{kept}");
        }
        assert!(!killed.exists() && running.exists());
        drop(held);
        let report = gc_source_cache(&home, &needed, PARTIAL_DOWNLOAD_MAX_AGE, GcMode::Remove).unwrap();
        assert_eq!(report.files, ["url/dddd"], "{report:?}");
    }

    #[test]
    fn source_cache_gc_removes_only_temp_directories_when_a_record_s_sources_are_unknown() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let e = source_cache(&home);
        let needed = NeededSources { entries: BTreeSet::new(), unknown: vec!["foo-1-2".into()] };
        let report = gc_source_cache(&home, &needed, PARTIAL_DOWNLOAD_MAX_AGE, GcMode::Remove).unwrap();
        assert_eq!(report, SourceCacheGc { partial: 1, bytes: 7, unknown: vec!["foo-1-2".into()], ..SourceCacheGc::default() });
        assert!(e.iter().all(|(what, p)| *what == "clone" || p.exists()));
    }

    #[test]
    fn a_fetch_that_finds_a_cached_file_marks_it_used() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let e = source_cache(&home);
        let f = Fetcher::new(home.clone(), "/nonexistent".into());
        let entry = SourceEntry {
            filename: "x".into(),
            kind: SourceKind::File { url: "https://h.invalid/x".into() },
            sums: [(Algo::Sha256, "bbbb".to_owned())].into(),
        };
        fs::set_permissions(&e["old"], std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        assert_eq!(f.fetch(&[entry]).unwrap(), [Fetched::File { filename: "x".into(), path: e["old"].clone() }]);
        let age = age(&fs::metadata(&e["old"]).unwrap(), SystemTime::now());
        assert!(age < Duration::from_secs(60), "{age:?}");
    }

    #[test]
    fn package_cache_gc_keeps_needed_files_running_downloads_and_fresh_parts() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let cache = home.package_cache();
        fs::create_dir_all(&cache).unwrap();
        for f in ["needed-1-1-any.pkg.tar.zst", "old-1-1-any.pkg.tar.zst", "busy-1-1-any.pkg.tar.zst"] {
            fs::write(cache.join(f), "12345").unwrap();
        }
        for p in [".part-stale", ".part-fresh"] {
            fs::create_dir(cache.join(p)).unwrap();
            fs::write(cache.join(p).join("file"), "123").unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::open(cache.join(".part-stale")).unwrap().set_modified(hour_ago).unwrap();
        fs::create_dir_all(package_locks(&home)).unwrap();
        let lock = File::create(package_locks(&home).join("busy-1-1-any.pkg.tar.zst.lock")).unwrap();
        lock.lock().unwrap();
        File::create(package_locks(&home).join("old-1-1-any.pkg.tar.zst.lock")).unwrap();

        let needed = BTreeSet::from(["needed-1-1-any.pkg.tar.zst".to_owned()]);
        let report = gc_package_cache(&home, &needed, PARTIAL_DOWNLOAD_MAX_AGE, GcMode::Remove).unwrap();
        assert_eq!(report, PackageCacheGc { files: vec!["old-1-1-any.pkg.tar.zst".into()], partial: 1, bytes: 8 });
        let mut left: Vec<String> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".part-fresh", "busy-1-1-any.pkg.tar.zst", "needed-1-1-any.pkg.tar.zst"]);
        drop(lock);
        let report = gc_package_cache(&home, &needed, PARTIAL_DOWNLOAD_MAX_AGE, GcMode::Remove).unwrap();
        assert_eq!(report.files, ["busy-1-1-any.pkg.tar.zst"]);
    }
}
