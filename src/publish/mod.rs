//! Publish: turn package files into a pacman repository that any static
//! file server can serve: the package files and signatures, the db and
//! files archives written natively (never by calling repo-add), and the
//! `latest/` and `updated/` views.
//!
//! Two entry points share one db writer ([`repo`]):
//! - [`repo_add`] / [`repo_remove`]: a drop-in for repo-add/repo-remove on
//!   one `PATH/NAME.db.tar.zst`;
//! - [`Publisher::publish`]: the pipeline stage, laying out
//!   `<dir>/<arch>/` from a set of [`PackageInput`]s (the store will supply
//!   them) with pruning and views.
//!
//! Order of a publish, so that a reader (pacman in the middle of `-Sy`)
//! never sees a half-written db nor a db naming a missing file: lock; read
//! only new or changed inputs; package files (and signatures) in place
//! under their final names; db temp, fsync, rename (files db, then db);
//! state; then old files pruned and views rebuilt. A crash at any step
//! leaves the previous db or the new one, both complete, and leftovers the
//! next run removes.

mod desc;
mod error;
mod fsops;
pub mod from_store;
mod package;
mod pkginfo;
mod repo;
mod sign;
pub mod upload;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

pub use desc::DescVersion;
pub use error::{PackageError, PublishError, Result};
pub use fsops::KILL_AT_ENV;
pub use repo::RepoName;
pub use sign::SignKey;

use fsops::kill_point;
use package::ReadPackage;
use repo::{DbPaths, Entry, InputStamp, RepoDb};
use sign::Signer;

/// The suffix of the package files this publisher handles.
const PKG_SUFFIX: &str = ".pkg.tar.zst";

/// One package file to publish, and its detached signature if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInput {
    /// The `*.pkg.tar.zst` file.
    pub path: PathBuf,
    /// Its `.sig`, published alongside and put in `%PGPSIG%`.
    pub sig: Option<PathBuf>,
}

impl PackageInput {
    /// An input for `path`, with `path.sig` as its signature when that file
    /// exists.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let sig = package::sig_next_to(&path);
        PackageInput { path, sig }
    }

    /// Expands files and directories (their `*.pkg.tar.zst`, not
    /// recursive) into inputs, sorted by path.
    pub fn collect(paths: &[PathBuf]) -> Result<Vec<PackageInput>> {
        let mut out = Vec::new();
        for path in paths {
            if path.is_dir() {
                let list = fs::read_dir(path).map_err(PublishError::io("listing", path))?;
                let mut found: Vec<PathBuf> = Vec::new();
                for item in list {
                    let item = item.map_err(PublishError::io("listing", path))?.path();
                    if item.is_file() && file_name(&item).is_some_and(|n| n.ends_with(PKG_SUFFIX)) {
                        found.push(item);
                    }
                }
                found.sort();
                out.extend(found.into_iter().map(PackageInput::new));
            } else if path.is_file() {
                out.push(PackageInput::new(path));
            } else {
                return Err(PublishError::NotAnInput { path: path.clone() });
            }
        }
        Ok(out)
    }

    /// The name the file is published under, which becomes `%FILENAME%`
    /// in the db: checked here, before anything is read or written.
    fn file_name(&self) -> Result<&str> {
        let name = file_name(&self.path).ok_or_else(|| PublishError::NotAnInput { path: self.path.clone() })?;
        package::check_file_name(name)
            .map_err(|source| PublishError::Package { path: self.path.clone(), source })?;
        Ok(name)
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// A package that entered the db in this run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublishedPackage {
    /// Package name.
    pub name: String,
    /// Full version (`epoch:pkgver-pkgrel`).
    pub version: String,
    /// The package file name in the repository.
    pub filename: String,
    /// Whether a signature was published with it.
    pub signed: bool,
}

/// What a run did. Serialized as the `--json` output (see docs/publish.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The db written (`.../NAME.db.tar.zst`).
    pub db: PathBuf,
    /// Packages added or replaced.
    pub added: Vec<PublishedPackage>,
    /// Input files skipped because the db already has them, unchanged.
    pub unchanged: Vec<String>,
    /// Package names removed from the db.
    pub removed: Vec<String>,
    /// Package files (and signatures) deleted from the repository directory.
    pub deleted_files: Vec<String>,
    /// Inputs ignored because a newer version of the same package was given
    /// or is published.
    pub skipped_older: Vec<String>,
    /// How many package files were opened and read (the incremental proof).
    pub packages_read: usize,
}

/// Options of [`repo_add`], named after repo-add's flags.
#[derive(Clone, Debug, Default)]
pub struct RepoAddOptions {
    /// `--sign`: sign the dbs.
    pub sign: bool,
    /// `--key KEY`: sign with this key instead of gpg's default.
    pub key: Option<SignKey>,
    /// `--new`: skip packages whose name and version are already in the db.
    pub only_new: bool,
    /// `--remove-old`: delete the replaced package file and its signature.
    pub remove_old: bool,
    /// `--prevent-downgrade`: skip packages older than the db's version.
    pub prevent_downgrade: bool,
    /// Which desc format new entries get.
    pub desc_version: DescVersion,
}

impl RepoAddOptions {
    fn signer(&self) -> Option<Signer> {
        (self.sign || self.key.is_some()).then(|| Signer { key: self.key.clone() })
    }
}

/// `repo-add DB FILE...`, natively: adds (or replaces) the packages in the
/// db at `db_path`, reading only files whose size or mtime changed since
/// they were added. Unlike repo-add, a bad input fails the whole run and
/// nothing is written.
#[tracing::instrument(skip_all, fields(db = %db_path.display()))]
pub fn repo_add(db_path: &Path, files: &[PathBuf], options: &RepoAddOptions) -> Result<Report> {
    let paths = DbPaths::from_db_path(db_path)?;
    let _lock = paths.lock()?;
    // Only this db's temp files: other repositories may share the directory.
    remove_leftovers(&paths.dir, &format!(".{}.", paths.name))?;
    let mut db = RepoDb::load(paths)?;
    let mut report = Report { db: db.paths.db(), ..Report::default() };
    let mut jobs = Vec::new();
    for path in files {
        if !path.is_file() {
            return Err(PublishError::NotAnInput { path: path.clone() });
        }
        let input = PackageInput::new(path);
        let filename = input.file_name()?.to_owned();
        let stamp = InputStamp::of(&input.path, input.sig.as_deref());
        if db.unchanged(&filename, stamp.as_ref()) {
            report.unchanged.push(filename);
        } else {
            jobs.push(ReadJob { input, filename, stamp });
        }
    }
    let read = read_all(&jobs, options.desc_version)?;
    report.packages_read = read.len();
    let mut doomed = Vec::new();
    for (job, pkg) in jobs.iter().zip(read) {
        let name = pkg.info.pkgname.clone();
        if let Some(old) = db.entries.get(&name) {
            if options.only_new && old.summary.version == pkg.info.pkgver {
                tracing::warn!(package = %pkg.info.entry_dir(), "already in the db; skipped (--new)");
                continue;
            }
            if options.prevent_downgrade && newer(&old.summary.version, &pkg.info.pkgver) {
                tracing::warn!(package = %name, "a newer version is in the db; skipped (--prevent-downgrade)");
                report.skipped_older.push(job.filename.clone());
                continue;
            }
            if options.remove_old && old.summary.filename != job.filename {
                doomed.push(old.summary.filename.clone());
            }
        }
        report.added.push(published(&pkg));
        insert(&mut db, job, pkg, options.desc_version);
    }
    db.commit(options.signer().as_ref())?;
    db.save_state()?;
    for filename in doomed {
        delete_package_file(&db.paths.dir, &filename, &mut report)?;
    }
    Ok(report)
}

/// `repo-remove DB NAME...`, natively. Every name must be in the db;
/// otherwise nothing is written.
#[tracing::instrument(skip_all, fields(db = %db_path.display()))]
pub fn repo_remove(db_path: &Path, names: &[String], options: &RepoAddOptions) -> Result<Report> {
    let paths = DbPaths::from_db_path(db_path)?;
    let _lock = paths.lock()?;
    // Only this db's temp files: other repositories may share the directory.
    remove_leftovers(&paths.dir, &format!(".{}.", paths.name))?;
    let mut db = RepoDb::load(paths)?;
    let mut report = Report { db: db.paths.db(), ..Report::default() };
    for name in names {
        let entry = db
            .entries
            .remove(name)
            .ok_or_else(|| PublishError::NotInDb { name: name.clone(), db: db.paths.db() })?;
        db.stamps.remove(&entry.summary.filename);
        report.removed.push(name.clone());
    }
    db.commit(options.signer().as_ref())?;
    db.save_state()?;
    Ok(report)
}

/// Where and how [`Publisher`] writes the repository. The config file's
/// `[repo]` section maps onto this one to one.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// The repository name (`[NAME]` in pacman.conf).
    pub repo: RepoName,
    /// The architecture directory under `dir`, e.g. `x86_64`.
    pub arch: String,
    /// The publish directory; the repository lives in `dir/arch/`.
    pub dir: PathBuf,
    /// Sign packages that have no `.sig`, and the dbs, with this key.
    pub sign: Option<SignKey>,
    /// How many versions of each package to keep as files (at least 1: the
    /// one in the db). Older ones are deleted.
    pub keep: usize,
    /// Which desc format new entries get.
    pub desc_version: DescVersion,
}

impl PublishSettings {
    /// Settings with the defaults: unsigned, keep 2 versions, desc v2.
    pub fn new(repo: RepoName, arch: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        PublishSettings {
            repo,
            arch: arch.into(),
            dir: dir.into(),
            sign: None,
            keep: 2,
            desc_version: DescVersion::default(),
        }
    }
}

/// Writes a repository from package inputs; see the module docs for the
/// order of steps.
///
/// ```no_run
/// use pkgcell::publish::{PackageInput, PublishSettings, Publisher, RepoName};
/// # fn main() -> Result<(), pkgcell::publish::PublishError> {
/// let settings = PublishSettings::new(RepoName::new("myrepo")?, "x86_64", "repo");
/// let report = Publisher::new(settings)?.publish(&[PackageInput::new("hello-1-1-x86_64.pkg.tar.zst")], &[])?;
/// println!("{} added", report.added.len());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Publisher {
    settings: PublishSettings,
}

impl Publisher {
    /// Checks the settings.
    pub fn new(settings: PublishSettings) -> Result<Self> {
        let arch = &settings.arch;
        if arch.is_empty() || arch == "any" || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(PublishError::BadArch { arch: arch.clone() });
        }
        Ok(Publisher { settings })
    }

    /// The directory holding the db and package files: `dir/arch`.
    pub fn arch_dir(&self) -> PathBuf {
        self.settings.dir.join(&self.settings.arch)
    }

    /// Publishes `inputs` and removes the packages named in `remove`.
    #[tracing::instrument(skip_all, fields(repo = %self.settings.repo, dir = %self.arch_dir().display()))]
    pub fn publish(&self, inputs: &[PackageInput], remove: &[String]) -> Result<Report> {
        let s = &self.settings;
        let arch_dir = self.arch_dir();
        let paths = DbPaths { dir: arch_dir.clone(), name: s.repo.clone() };
        // Checked before the lock so that a refused run leaves no lock file.
        refuse_foreign_repo(&arch_dir, &s.repo)?;
        let _lock = paths.lock()?;
        kill_point("locked");
        remove_leftovers(&arch_dir, ".")?;
        let mut db = RepoDb::load(paths)?;
        let mut report = Report { db: db.paths.db(), ..Report::default() };
        for name in remove {
            if !db.entries.contains_key(name) {
                return Err(PublishError::NotInDb { name: name.clone(), db: db.paths.db() });
            }
        }

        // Read only what is new or changed.
        let mut jobs = Vec::new();
        for input in inputs {
            let filename = input.file_name()?.to_owned();
            let stamp = InputStamp::of(&input.path, input.sig.as_deref());
            // Also check the published copy: a file deleted by hand is
            // published again rather than left missing.
            if db.unchanged(&filename, stamp.as_ref()) && arch_dir.join(&filename).is_file() {
                report.unchanged.push(filename);
            } else {
                jobs.push(ReadJob { input: input.clone(), filename, stamp });
            }
        }
        let read = read_all(&jobs, s.desc_version)?;
        report.packages_read = read.len();
        kill_point("read");

        // One candidate per name: the newest input, unless the db already
        // has something newer.
        let mut chosen: BTreeMap<String, (&ReadJob, ReadPackage)> = BTreeMap::new();
        for (job, pkg) in jobs.iter().zip(read) {
            if pkg.info.arch != s.arch && pkg.info.arch != "any" {
                return Err(PublishError::WrongArch {
                    path: job.input.path.clone(),
                    pkg_arch: pkg.info.arch.clone(),
                    repo_arch: s.arch.clone(),
                });
            }
            let name = pkg.info.pkgname.clone();
            match chosen.get(&name) {
                Some((other, prev)) if prev.info.pkgver == pkg.info.pkgver => {
                    return Err(PublishError::DuplicateInput {
                        name,
                        first: other.input.path.clone(),
                        second: job.input.path.clone(),
                    });
                }
                Some((_, prev)) if newer(&prev.info.pkgver, &pkg.info.pkgver) => {
                    report.skipped_older.push(job.filename.clone());
                }
                prev => {
                    if let Some((other, _)) = prev {
                        report.skipped_older.push(other.filename.clone());
                    }
                    chosen.insert(name, (job, pkg));
                }
            }
        }
        // An unchanged input of the same name that is newer wins too.
        let by_filename: HashMap<&str, &Entry> =
            db.entries.values().map(|e| (e.summary.filename.as_str(), e)).collect();
        let unchanged: Vec<(String, String)> = report
            .unchanged
            .iter()
            .filter_map(|f| by_filename.get(f.as_str()))
            .map(|e| (e.summary.name.clone(), e.summary.version.clone()))
            .collect();
        for (name, version) in unchanged {
            if let Some((job, pkg)) = chosen.get(&name)
                && newer(&version, &pkg.info.pkgver)
            {
                report.skipped_older.push(job.filename.clone());
                chosen.remove(&name);
            }
        }

        // Package files and signatures in place before any db names them.
        let signer = s.sign.clone().map(|key| Signer { key: Some(key) });
        for (job, pkg) in chosen.values_mut() {
            let target = arch_dir.join(&job.filename);
            let sig_target = sig_path(&target);
            if db.entries.get(&pkg.info.pkgname).is_some_and(|e| e.summary.filename == job.filename) {
                // Same file name, new bytes (a rebuild without a pkgrel bump):
                // readers between this rename and the db swap get a checksum
                // mismatch and must retry; they never get a missing file.
                tracing::warn!(file = %job.filename, "replacing a published package file with different content");
            }
            if !same_file(&job.input.path, &target) {
                let tmp = fsops::temp_path(&target);
                fsops::link_or_copy(&job.input.path, &tmp)?;
                fsops::rename(&tmp, &target)?;
            }
            match (&job.input.sig, &signer) {
                (Some(sig), _) => {
                    if !same_file(sig, &sig_target) {
                        let tmp = fsops::temp_path(&sig_target);
                        fsops::link_or_copy(sig, &tmp)?;
                        fsops::rename(&tmp, &sig_target)?;
                    }
                }
                (None, Some(signer)) => {
                    signer.sign(&target, &sig_target)?;
                    pkg.facts.pgpsig = Some(package::read_sig(&sig_target).map_err(|source| {
                        PublishError::Package { path: target.clone(), source }
                    })?);
                }
                (None, None) => fsops::remove_if_exists(&sig_target)?,
            }
            kill_point("package-in-place");
        }
        fsops::sync_dir(&arch_dir)?;
        kill_point("packages-in-place");

        // The db: replace, remove, write, swap.
        let mut updated = Vec::new();
        for (_, (job, pkg)) in std::mem::take(&mut chosen) {
            updated.push(job.filename.clone());
            report.added.push(published(&pkg));
            // The input's stamp (not the copy's): the next run compares
            // its inputs, and a signature made here is not part of them.
            insert(&mut db, job, pkg, s.desc_version);
        }
        for name in remove {
            if let Some(entry) = db.entries.remove(name) {
                db.stamps.remove(&entry.summary.filename);
                report.removed.push(name.clone());
            }
        }
        db.commit(signer.as_ref())?;
        db.save_state()?;
        kill_point("state-saved");

        // Only now may old files go: no db names them any more.
        self.prune(&db, &mut report)?;
        kill_point("pruned");
        self.rebuild_views(&db, &updated)?;
        kill_point("views");
        Ok(report)
    }

    /// Deletes package files beyond the newest `keep` of each name, and
    /// every file of a name no longer in the db. Never the db's own file.
    fn prune(&self, db: &RepoDb, report: &mut Report) -> Result<()> {
        let dir = &db.paths.dir;
        let mut by_name: BTreeMap<String, Vec<(alpm_types::FullVersion, String)>> = BTreeMap::new();
        for item in fs::read_dir(dir).map_err(PublishError::io("listing", dir))? {
            let item = item.map_err(PublishError::io("listing", dir))?;
            let Some(filename) = item.file_name().to_str().map(str::to_owned) else { continue };
            if let Some((name, version)) = parse_filename(&filename) {
                by_name.entry(name).or_default().push((version, filename));
            }
        }
        for (name, mut files) in by_name {
            files.sort_by(|a, b| b.0.cmp(&a.0));
            let Some(current) = db.entries.get(&name).map(|e| &e.summary) else {
                // Removed from the db (or never in it): no reader needs these.
                for (_, filename) in files {
                    delete_package_file(dir, &filename, report)?;
                }
                continue;
            };
            let current_version = alpm_types::FullVersion::from_str(&current.version).ok();
            let mut kept = 1;
            for (version, filename) in files {
                if filename == current.filename {
                    continue;
                }
                // Newer than the db's own and not in it: an orphan of an
                // interrupted run, not an old version worth keeping.
                let orphan = current_version.as_ref().is_some_and(|c| &version > c);
                if !orphan && kept < self.settings.keep {
                    kept += 1;
                    continue;
                }
                delete_package_file(dir, &filename, report)?;
            }
        }
        Ok(())
    }

    /// `latest/`: hard links of every file the db names; `updated/`: of the
    /// files added by this run. Each is built aside and swapped in.
    fn rebuild_views(&self, db: &RepoDb, updated: &[String]) -> Result<()> {
        let dir = &db.paths.dir;
        let latest: Vec<String> = db.entries.values().map(|e| e.summary.filename.clone()).collect();
        for (view, files) in [("latest", &latest[..]), ("updated", updated)] {
            let target = dir.join(view);
            let tmp = dir.join(format!(".{view}{}", fsops::TMP_MARK));
            if tmp.exists() {
                fs::remove_dir_all(&tmp).map_err(PublishError::io("removing", &tmp))?;
            }
            fs::create_dir(&tmp).map_err(PublishError::io("creating", &tmp))?;
            for filename in files {
                let src = dir.join(filename);
                fsops::link_or_copy(&src, &tmp.join(filename))?;
                let sig = sig_path(&src);
                if sig.is_file() {
                    fsops::link_or_copy(&sig, &sig_path(&tmp.join(filename)))?;
                }
            }
            // A directory cannot be renamed over a non-empty one: move the
            // old view aside first. For a moment the view is absent; the
            // db and package files are not affected.
            let old = dir.join(format!(".{view}.old{}", fsops::TMP_MARK));
            if target.exists() {
                fs::rename(&target, &old).map_err(PublishError::io("moving aside", &target))?;
            }
            fsops::rename(&tmp, &target)?;
            if old.exists() {
                fs::remove_dir_all(&old).map_err(PublishError::io("removing", &old))?;
            }
        }
        Ok(())
    }
}

/// A package file to read, with the name it is published under.
#[derive(Clone, Debug)]
struct ReadJob {
    input: PackageInput,
    filename: String,
    stamp: Option<InputStamp>,
}

/// Reads the jobs, in parallel across the available cores; the first
/// failure (in input order) is returned.
fn read_all(jobs: &[ReadJob], version: DescVersion) -> Result<Vec<ReadPackage>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    let chunk = jobs.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<ReadPackage>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|job| package::read(&job.input.path, job.input.sig.as_deref(), &job.filename, version))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut out = Vec::with_capacity(jobs.len());
    for part in results {
        out.extend(part?);
    }
    Ok(out)
}

/// Puts a read package into the db, replacing the entry of the same name.
fn insert(db: &mut RepoDb, job: &ReadJob, pkg: ReadPackage, version: DescVersion) {
    let desc = pkg.desc(version);
    let summary = desc::DescSummary {
        filename: job.filename.clone(),
        name: pkg.info.pkgname.clone(),
        version: pkg.info.pkgver.clone(),
        csize: pkg.facts.csize,
        sha256: pkg.facts.sha256.clone(),
    };
    let replaced = db.entries.get(&summary.name).map(|old| old.summary.filename.clone());
    db.set_stamp(replaced.as_deref(), &job.filename, job.stamp);
    let entry = Entry { dir: pkg.info.entry_dir(), summary, desc, files: Some(pkg.files) };
    db.entries.insert(entry.summary.name.clone(), entry);
}

fn published(pkg: &ReadPackage) -> PublishedPackage {
    PublishedPackage {
        name: pkg.info.pkgname.clone(),
        version: pkg.info.pkgver.clone(),
        filename: pkg.facts.filename.clone(),
        signed: pkg.facts.pgpsig.is_some(),
    }
}

/// Whether version `a` is newer than `b` (pacman's vercmp order). Versions
/// were validated when read; an unparsable one counts as oldest.
fn newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| alpm_types::FullVersion::from_str(v).ok();
    parse(a) > parse(b)
}

/// `NAME-[EPOCH:]PKGVER-PKGREL-ARCH.pkg.tar.zst` → name and version.
fn parse_filename(filename: &str) -> Option<(String, alpm_types::FullVersion)> {
    filename.strip_suffix(PKG_SUFFIX)?;
    let parsed = crate::alpm_file::package_file_name(filename)?;
    Some((parsed.name().to_string(), parsed.version().clone()))
}

fn sig_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    s.into()
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn delete_package_file(dir: &Path, filename: &str, report: &mut Report) -> Result<()> {
    let path = dir.join(filename);
    fsops::remove_if_exists(&path)?;
    fsops::remove_if_exists(&sig_path(&path))?;
    report.deleted_files.push(filename.to_owned());
    Ok(())
}

/// A publish directory holds one repository: pruning deletes every package
/// file its db does not name, which would empty another repository's.
fn refuse_foreign_repo(dir: &Path, repo: &RepoName) -> Result<()> {
    let Ok(list) = fs::read_dir(dir) else { return Ok(()) };
    for item in list.flatten() {
        let name = item.file_name();
        if let Some(other) = name.to_str().and_then(|n| n.strip_suffix(".db.tar.zst"))
            && other != repo.as_str()
        {
            return Err(PublishError::ForeignRepo { dir: dir.to_owned(), other: other.to_owned() });
        }
    }
    Ok(())
}

/// Removes the temporary files and views (whose names start with `prefix`)
/// of an interrupted run. Called with the lock held, so nobody else is
/// writing them.
fn remove_leftovers(dir: &Path, prefix: &str) -> Result<()> {
    let Ok(list) = fs::read_dir(dir) else { return Ok(()) };
    for item in list.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(prefix) || !name.ends_with(fsops::TMP_MARK) {
            continue;
        }
        let path = item.path();
        let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(PublishError::io("removing leftover", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_into_name_and_version() {
        let (name, version) = parse_filename("lib32-foo-bar-2:1.0.r3-1.1-x86_64.pkg.tar.zst").unwrap();
        assert_eq!(name, "lib32-foo-bar");
        assert_eq!(version.to_string(), "2:1.0.r3-1.1");
        assert!(parse_filename("foo.db.tar.zst").is_none());
        assert!(parse_filename("foo-1-x86_64.pkg.tar.zst").is_none());
    }

    #[test]
    fn versions_compare_like_vercmp() {
        assert!(newer("1:1.0-1", "2.0-1"));
        assert!(newer("1.0-2", "1.0-1"));
        assert!(newer("1.0-1", "1.0rc1-1"));
        assert!(!newer("1.0-1", "1.0-1"));
    }

    #[test]
    fn publisher_refuses_a_bad_arch() {
        for arch in ["", "any", "x/86", ".."] {
            let settings = PublishSettings::new(RepoName::new("r").unwrap(), arch, "/tmp/x");
            assert!(matches!(Publisher::new(settings), Err(PublishError::BadArch { .. })), "{arch}");
        }
    }
}
