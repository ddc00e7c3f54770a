//! Repro: does a package pkgcell built come out byte for byte the same when
//! it is built again, with no network?
//!
//! Input: a [`Target`] (a pkgid in the store, or a package file whose
//! record the store has), the [`Plan`] of the config that built it and the
//! [`BuildOptions`] of the rebuild. Steps:
//!
//! 1. find the build record ([`find`]): by pkgid, by the file's BLAKE3
//!    hash, or by its .BUILDINFO (pkgbase, version, `pkgbuild_sha256sum`);
//! 2. read the .BUILDINFO and check that every `installed` package version
//!    is at hand (in the base, or among the packages the original build
//!    installed from the store); all missing ones are reported at once;
//! 3. rebuild the planned entry with that pkgid ([`crate::build::rebuild`])
//!    at SOURCE_DATE_EPOCH = `builddate`, on the same dependency set, with
//!    no network, into a temporary directory: the store is not touched;
//! 4. compare every output file byte for byte and, for a differing one,
//!    each member of the two archives (path, size, hash, mode, mtime, link).
//!
//! [`twice`] needs no record: it builds a planned entry twice, the second
//! time with a varied environment ([`Variation`]), and when the outputs
//! differ, builds again to tell a build that is not deterministic by
//! itself from one that depends on a variation, and names the variation.
//!
//! This module runs no sandbox itself and prints nothing; the CLI prints
//! the [`Report`].
//!
//! The .BUILDINFO and the archives' members are read by
//! [`crate::alpm_file`].

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::alpm_file::{self, BuildInfo, BuildInfoError, Member};
use crate::error::{IoPath, io_err};
use crate::build::{self, BuildError, BuildOptions, MakepkgEnv};
use crate::ids::{Blake3, PkgId};
use crate::local::{LocalPackage, LocalPackageError};
use crate::config::{Config, Location};
use crate::plan::Plan;
use crate::sync::{Checkout, Synced};
use crate::store::{DepRef, Record, Store, StoreError};

/// Version of the `--json` form of a [`Report`].
pub const REPRO_JSON_VERSION: u32 = 1;

/// The build directory and start directory of every pkgcell build.
const BUILDDIR: &str = "/build";
const STARTDIR: &str = "/startdir";

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The outputs of a build record of the store.
    PkgId(PkgId),
    /// A package file that pkgcell built.
    File(PathBuf),
}

/// Why a check could not be made (exit 2; a difference is not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReproError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No record of that pkgid.
    #[error("{0} is not in the store (see `pkgcell store ls`)")]
    UnknownPkgId(Box<PkgId>),
    /// No record produced that file, nor one with its .BUILDINFO.
    #[error("no build record in the store made {} (pkgbase {pkgbase}, version {pkgver})", path.display())]
    UnknownFile {
        /// The file.
        path: PathBuf,
        /// Its .BUILDINFO's pkgbase.
        pkgbase: String,
        /// Its .BUILDINFO's pkgver.
        pkgver: String,
    },
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// A .BUILDINFO lacks a field or has a bad value, or a package has none.
    #[error(transparent)]
    BadBuildInfo(#[from] BuildInfoError),
    /// The package was not built the way pkgcell builds.
    #[error("{what} was built with {field} = {found}, pkgcell builds with {expected}")]
    ForeignBuild {
        /// Whose.
        what: String,
        /// The field.
        field: &'static str,
        /// Its value.
        found: String,
        /// pkgcell's.
        expected: &'static str,
    },
    /// Packages of the original build environment are not at hand.
    #[error("cannot make the build environment: {} installed package versions are not available: {}", .0.len(), .0.join(", "))]
    Unavailable(Vec<String>),
    /// The config has no PKGBUILD with that pkgid (its tree or its
    /// dependencies changed, or it is not listed).
    #[error("the config plans no PKGBUILD with pkgid {pkgid} (planned for {}: {planned})", pkgid.pkgbase())]
    NotInPlan {
        /// The pkgid of the record.
        pkgid: Box<PkgId>,
        /// What the plan has for that pkgbase.
        planned: String,
    },
    /// git could not look through a PKGBUILD repository's history.
    #[error("cannot find the recorded tree in the PKGBUILD's git history")]
    Sync(#[from] crate::sync::SyncError),
    /// The rebuild failed.
    #[error("the rebuild failed")]
    Rebuild(#[source] Box<BuildError>),
    /// Local package files (`-I`) of the original build are neither in the
    /// store nor given again.
    #[error(
        "the build of {pkgid} installed local package files (-I) that the store does not have: {}; \
         pass each to repro with -I FILE (the very file: its BLAKE3 must match)",
        missing.join(", ")
    )]
    MissingLocal {
        /// The record's pkgid.
        pkgid: Box<PkgId>,
        /// `<file name> (blake3 <hex>)` of each.
        missing: Vec<String>,
    },
    /// A file given with `-I` is none of the original build's.
    #[error(
        "{} (-I, blake3 {blake3}) is not a local package file of the build of {pkgid}, which installed: {installed}",
        path.display()
    )]
    UnknownLocal {
        /// The file given.
        path: PathBuf,
        /// Its hash.
        blake3: Blake3,
        /// The record's pkgid.
        pkgid: Box<PkgId>,
        /// The record's `local` lines, comma-separated, or "none".
        installed: String,
    },
    /// A `local` line of the record does not read as `<file name> <blake3>`.
    #[error("the record of {pkgid} has a bad local line {line:?}")]
    BadLocalLine {
        /// The record's pkgid.
        pkgid: Box<PkgId>,
        /// The line.
        line: String,
    },
    /// A local package file given with `-I` could not be put into the store.
    #[error("cannot put {} (-I) into the store", path.display())]
    PutLocal {
        /// The file given.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<BuildError>,
    },
    /// The store's copy of a local package file cannot be used.
    #[error("the store's copy of the local package file {file_name} is damaged (run `pkgcell store fsck`, then pass the file with -I FILE)")]
    DamagedLocal {
        /// The package file name.
        file_name: String,
        /// Why.
        #[source]
        source: LocalPackageError,
    },
}

/// A build to check: its record, its .BUILDINFO, and the original files.
#[derive(Debug, Clone)]
pub struct Found {
    /// The record of the original build.
    pub record: Record,
    /// Its .BUILDINFO (of the file given, or of the record).
    pub buildinfo: BuildInfo,
    /// The original package files: (file name, path).
    pub originals: Vec<(String, PathBuf)>,
}

/// Find the record of `target` in the store.
pub fn find(store: &Store, target: &Target) -> Result<Found, ReproError> {
    let objects = |r: &Record| -> Vec<(String, PathBuf)> {
        r.outputs.iter().map(|o| (o.name.clone(), store.object_path(&o.blake3))).collect()
    };
    match target {
        Target::PkgId(id) => {
            let record = store.record(id)?.ok_or_else(|| ReproError::UnknownPkgId(Box::new(id.clone())))?;
            let buildinfo = BuildInfo::parse(&record.buildinfo, &format!("the record of {id}"))?;
            let originals = objects(&record);
            Ok(Found { record, buildinfo, originals })
        }
        Target::File(path) => {
            let hash = FileSide::of(path)?.blake3;
            let text = alpm_file::buildinfo_text(path)?.ok_or_else(|| BuildInfoError {
                what: path.display().to_string(),
                problem: "the package has no .BUILDINFO".into(),
            })?;
            let buildinfo = BuildInfo::parse(&text, &path.display().to_string())?;
            let records = store.records()?;
            let by_hash = records.iter().find(|r| r.outputs.iter().any(|o| o.blake3 == hash));
            // A copy that was changed since (re-signed, repacked) is found
            // by what its .BUILDINFO says; the newest such build wins.
            let by_info = || {
                records
                    .iter()
                    .filter(|r| {
                        BuildInfo::parse(&r.buildinfo, "").is_ok_and(|b| {
                            b.pkgbase == buildinfo.pkgbase
                                && b.pkgver == buildinfo.pkgver
                                && b.pkgbuild_sha256sum == buildinfo.pkgbuild_sha256sum
                        })
                    })
                    .max_by_key(|r| r.started)
            };
            let record = by_hash.or_else(by_info).cloned().ok_or_else(|| ReproError::UnknownFile {
                path: path.clone(),
                pkgbase: buildinfo.pkgbase.clone(),
                pkgver: buildinfo.pkgver.clone(),
            })?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut originals = objects(&record);
            match originals.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = path.clone(),
                None => originals.push((name, path.clone())),
            }
            Ok(Found { record, buildinfo, originals })
        }
    }
}

/// The `installed` entries of `info` that are neither in the base (its
/// pacman database) nor among the package files the record installed
/// (found in the store by hash, or named by their file in the shared
/// package cache for packages of repositories) nor among the `local`
/// package files the rebuild installs (see [`local_packages`]).
pub fn unavailable(
    info: &BuildInfo,
    base_root: &Path,
    record: &Record,
    store: &Store,
    local: &[LocalPackage],
) -> Result<Vec<String>, ReproError> {
    let mut have: BTreeSet<String> = BTreeSet::new();
    for l in local {
        // From its .PKGINFO, as .BUILDINFO names it: the file may be renamed.
        have.insert(if l.arch.is_empty() {
            l.file_name[..l.file_name.find(".pkg.tar").unwrap_or(l.file_name.len())].to_owned()
        } else {
            format!("{}-{}-{}", l.name, l.version, l.arch)
        });
    }
    let db = base_root.join("var/lib/pacman/local");
    for e in fs::read_dir(&db).map_err(io_err("read", &db))?.flatten() {
        let Ok(desc) = fs::read_to_string(e.path().join("desc")) else { continue };
        let field = |k| crate::alpm_file::desc_field(&desc, k);
        have.insert(format!("{}-{}-{}", field("%NAME%"), field("%VERSION%"), field("%ARCH%")));
    }
    // Package files of repositories: `<name> sha256:<hex> <file>`, kept in
    // the shared package cache (see build::dep_files_of_lines).
    for file in record.cached_packages() {
        if let Some(stem) = file.find(".pkg.tar").map(|i| &file[..i]) {
            have.insert(stem.to_owned());
        }
    }
    if !record.deps.is_empty() {
        // Packages of the store, found by hash among the outputs of its records.
        let hashes: BTreeSet<Blake3> = record
            .deps
            .iter()
            .filter_map(|d| match d {
                DepRef::Store { blake3, .. } => Some(*blake3),
                DepRef::Repo { .. } => None,
            })
            .collect();
        for r in store.records()? {
            for o in &r.outputs {
                if hashes.contains(&o.blake3) && store.object_path(&o.blake3).exists() {
                    // `<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.*` is what
                    // `installed` names, plus the extension.
                    have.insert(o.name[..o.name.find(".pkg.tar").unwrap_or(o.name.len())].to_owned());
                }
            }
        }
    }
    Ok(info.installed.iter().filter(|i| !have.contains(*i)).cloned().collect())
}

/// The local package files (`-I`) of `record`, in its order, as the
/// rebuild installs them: each from the store (the build put it there), or
/// from `given` (files passed to repro with `-I`, matched by BLAKE3), which
/// then goes back into the store. Every file missing is named at once; a
/// given file the build did not install is an error, not ignored.
pub fn local_packages(store: &Store, record: &Record, given: &[LocalPackage]) -> Result<Vec<LocalPackage>, ReproError> {
    let pkgid = || Box::new(record.pkgid.clone());
    for g in given {
        if !record.local.iter().any(|l| l.rsplit_once(' ').is_some_and(|(_, h)| h == g.blake3.to_string())) {
            let installed = if record.local.is_empty() { "none".to_owned() } else { record.local.join(", ") };
            return Err(ReproError::UnknownLocal { path: g.path.clone(), blake3: g.blake3, pkgid: pkgid(), installed });
        }
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for line in &record.local {
        let parsed = line.rsplit_once(' ').and_then(|(name, h)| Some((name, h.parse::<Blake3>().ok()?)));
        let Some((file_name, hash)) = parsed else {
            return Err(ReproError::BadLocalLine { pkgid: pkgid(), line: line.clone() });
        };
        let object = store.object_path(&hash);
        if !object.is_file() {
            match given.iter().find(|g| g.blake3 == hash) {
                Some(g) => {
                    build::store_local(store, std::slice::from_ref(g))
                        .map_err(|e| ReproError::PutLocal { path: g.path.clone(), source: Box::new(e) })?;
                    tracing::info!(file = file_name, blake3 = %hash, "local package file put back into the store");
                }
                None => {
                    missing.push(format!("{file_name} (blake3 {hash})"));
                    continue;
                }
            }
        }
        let damaged = |source| ReproError::DamagedLocal { file_name: file_name.to_owned(), source };
        let l = LocalPackage::read_named(&object, file_name.to_owned()).map_err(damaged)?;
        if l.blake3 != hash {
            let why = format!("its BLAKE3 is {}, not {hash}", l.blake3);
            return Err(damaged(LocalPackageError::NotAPackage { path: object, why }));
        }
        out.push(l);
    }
    if !missing.is_empty() {
        return Err(ReproError::MissingLocal { pkgid: pkgid(), missing });
    }
    Ok(out)
}

/// Whether a file or a member came out the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Byte for byte the same.
    Reproducible,
    /// Different, or missing from the rebuild.
    NotReproducible,
}

/// One side of a compared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSide {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its BLAKE3 hash.
    pub blake3: Blake3,
}

impl FileSide {
    /// Hash the file as it streams by: packages can be large.
    fn of(path: &Path) -> Result<FileSide, ReproError> {
        let mut file = File::open(path).map_err(io_err("open", path))?;
        let mut hasher = blake3::Hasher::new();
        let size = io::copy(&mut file, &mut hasher).map_err(io_err("read", path))?;
        Ok(FileSide { path: path.to_owned(), size, blake3: Blake3::from_bytes(*hasher.finalize().as_bytes()) })
    }
}

/// A member that differs between the original and the rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberDiff {
    /// Its path in the archive.
    pub path: String,
    /// The original's, if it has it.
    pub original: Option<Member>,
    /// The rebuild's, if it has it.
    pub rebuilt: Option<Member>,
}

/// The comparison of one output file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The package file name.
    pub name: String,
    /// The outcome.
    pub verdict: Verdict,
    /// The original file.
    pub original: FileSide,
    /// The rebuilt file (none when the rebuild made no file of that name).
    pub rebuilt: Option<FileSide>,
    /// The members that differ (empty when the files are equal, or when
    /// only the archive's order or compression differs).
    pub members: Vec<MemberDiff>,
    /// The diffoscope report, when diffoscope is installed and they differ.
    pub diffoscope: Option<PathBuf>,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPRO_JSON_VERSION`].
    pub version: u32,
    /// The pkgid rebuilt.
    pub pkgid: PkgId,
    /// The SOURCE_DATE_EPOCH of the rebuild (the original `builddate`).
    pub source_date_epoch: u64,
    /// Whether every file is reproducible.
    pub reproducible: bool,
    /// One entry per original file.
    pub files: Vec<FileReport>,
    /// The rebuild's log.
    pub log: PathBuf,
}

/// Rebuild `found` as the plan entry with its pkgid, into `dest`, and
/// compare. `opts.network` should be loopback: the caller decides.
pub fn check(found: &Found, plan: &Plan, opts: &BuildOptions, dest: &Path, reports: &Path) -> Result<Report, ReproError> {
    let info = &found.buildinfo;
    let pkgid = &found.record.pkgid;
    let what = pkgid.to_string();
    for (field, found_value, expected) in [("builddir", &info.builddir, BUILDDIR), ("startdir", &info.startdir, STARTDIR)] {
        if found_value != expected {
            return Err(ReproError::ForeignBuild { what, field, found: found_value.clone(), expected });
        }
    }
    let missing = unavailable(info, &opts.base.root, &found.record, &Store::at(opts.home.store()), &opts.local)?;
    if !missing.is_empty() {
        return Err(ReproError::Unavailable(missing));
    }
    let entry = planned_entry(plan, pkgid).ok_or_else(|| {
        let same: Vec<String> = plan
            .packages
            .iter()
            .filter(|p| p.pkgbase.as_deref() == Some(pkgid.pkgbase().to_string().as_str()))
            .map(|p| p.pkgid.as_ref().map_or_else(|| format!("{} (not planned)", p.name), |i| i.to_string()))
            .collect();
        ReproError::NotInPlan {
            pkgid: Box::new(pkgid.clone()),
            planned: if same.is_empty() { "nothing".into() } else { same.join(", ") },
        }
    })?;
    // The packager is in the packages' metadata: the rebuild says the same.
    let packager = Some(info.packager.clone()).filter(|p| !p.is_empty());
    let menv = MakepkgEnv { epoch: Some(info.builddate), packager, ..MakepkgEnv::default() };
    let rebuilt = build::rebuild(plan, &entry.name, &found.record.deps, opts, &menv, "check", dest).map_err(|e| ReproError::Rebuild(Box::new(e)))?;
    let files = compare(&found.originals, &rebuilt.files, Some(reports))?;
    Ok(Report {
        version: REPRO_JSON_VERSION,
        pkgid: pkgid.clone(),
        source_date_epoch: info.builddate,
        reproducible: files.iter().all(|f| f.verdict == Verdict::Reproducible),
        files,
        log: rebuilt.log,
    })
}

/// The plan entry that builds `pkgid`'s PKGBUILD: the one with that pkgid,
/// else one with its pkgbase and tree-id (its dependencies changed since,
/// which does not matter: the rebuild installs the record's own set).
pub fn planned_entry<'a>(plan: &'a Plan, pkgid: &PkgId) -> Option<&'a crate::plan::PlannedPackage> {
    plan.packages.iter().find(|p| p.pkgid.as_ref() == Some(pkgid)).or_else(|| {
        plan.packages.iter().find(|p| {
            p.pkgid.as_ref().is_some_and(|i| i.pkgbase() == pkgid.pkgbase() && i.tree_id() == pkgid.tree_id())
        })
    })
}

/// Package files left in a path source (laptop mode copies them next to
/// the PKGBUILD) change its tree-id, and so the pkgid. The config again,
/// with each path entry of the record's pkgbase replaced by a copy (under
/// `scratch`) of its directory without the record's package files and
/// their signatures; `None` when there is no such entry.
pub fn without_outputs(config: &Config, plan: &Plan, found: &Found, scratch: &Path) -> Result<Option<Config>, ReproError> {
    let pkgbase = found.record.pkgid.pkgbase().to_string();
    let mut skip: BTreeSet<OsString> = BTreeSet::new();
    for o in &found.record.outputs {
        skip.insert(o.name.clone().into());
        skip.insert(format!("{}.sig", o.name).into());
    }
    let mut copy = config.clone();
    let mut changed = false;
    for entry in &mut copy.pkgbuilds {
        let same_base =
            plan.packages.iter().any(|p| p.name == entry.name.to_string() && p.pkgbase.as_deref() == Some(pkgbase.as_str()));
        let Location::Path { dir } = &mut entry.location else { continue };
        if !same_base {
            continue;
        }
        let dst = scratch.join(entry.name.to_string());
        copy_tree(dir, &dst, &skip)?;
        *dir = dst;
        changed = true;
    }
    Ok(changed.then_some(copy))
}

/// Copy a PKGBUILD directory (files, their modes, symlinks, `.git` left
/// out as the tree-id leaves it out), without the top-level names in `skip`.
fn copy_tree(src: &Path, dst: &Path, skip: &BTreeSet<OsString>) -> Result<(), ReproError> {
    fs::create_dir_all(dst).map_err(io_err("create", dst))?;
    for e in fs::read_dir(src).map_err(io_err("read", src))? {
        let e = e.map_err(io_err("read", src))?;
        let name = e.file_name();
        if skip.contains(&name) || name == ".git" {
            continue;
        }
        let (from, to) = (e.path(), dst.join(&name));
        let kind = e.file_type().map_err(io_err("stat", &from))?;
        if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(io_err("read", &from))?;
            std::os::unix::fs::symlink(target, &to).map_err(io_err("create", &to))?;
        } else if kind.is_dir() {
            copy_tree(&from, &to, &BTreeSet::new())?;
        } else {
            // fs::copy keeps the mode bits, and the executable bit is part of the tree-id.
            fs::copy(&from, &to).map_err(io_err("copy", &from))?;
        }
    }
    Ok(())
}

/// For each git entry of `pkgid`'s pkgbase, look through its mirror's
/// history for a commit whose tree (at the entry's subtree) is the
/// recorded tree-id, and make that the entry's commit. Whether one was found.
pub fn pin_recorded_tree(synced: &mut [Synced], plan: &Plan, pkgid: &PkgId) -> Result<bool, ReproError> {
    let want = pkgid.tree_id().to_string();
    let pkgbase = pkgid.pkgbase().to_string();
    let mut pinned = false;
    for s in synced.iter_mut() {
        let same_base =
            plan.packages.iter().any(|p| p.name == s.name.to_string() && p.pkgbase.as_deref() == Some(pkgbase.as_str()));
        let Ok(Checkout::Git { repo, commit, subtree, .. }) = &mut s.checkout else { continue };
        if !same_base {
            continue;
        }
        if let Some(c) = crate::sync::commit_with_tree(repo, &want, subtree.as_deref())? {
            tracing::info!(commit = c, tree = %want, "rebuilding an older commit");
            *commit = c;
            pinned = true;
        }
    }
    Ok(pinned)
}

/// Compare each original with the rebuilt file of the same name; with
/// `reports`, a diffoscope report per differing file goes there when
/// diffoscope is on PATH.
pub fn compare(originals: &[(String, PathBuf)], rebuilt: &[PathBuf], reports: Option<&Path>) -> Result<Vec<FileReport>, ReproError> {
    let mut out = Vec::new();
    for (name, path) in originals {
        let original = FileSide::of(path)?;
        let twin = rebuilt.iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *name));
        let Some(twin) = twin else {
            out.push(FileReport { name: name.clone(), verdict: Verdict::NotReproducible, original, rebuilt: None, members: Vec::new(), diffoscope: None });
            continue;
        };
        let side = FileSide::of(twin)?;
        if side.blake3 == original.blake3 {
            out.push(FileReport { name: name.clone(), verdict: Verdict::Reproducible, original, rebuilt: Some(side), members: Vec::new(), diffoscope: None });
            continue;
        }
        let (a, b) = (alpm_file::members(path)?, alpm_file::members(twin)?);
        let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let members = paths
            .into_iter()
            .filter(|p| a.get(*p) != b.get(*p))
            .map(|p| MemberDiff { path: p.clone(), original: a.get(p).cloned(), rebuilt: b.get(p).cloned() })
            .collect();
        let diffoscope = reports.and_then(|r| diffoscope(path, twin, &r.join(format!("{name}.diffoscope.txt"))));
        out.push(FileReport { name: name.clone(), verdict: Verdict::NotReproducible, original, rebuilt: Some(side), members, diffoscope });
    }
    Ok(out)
}

/// One thing `--twice` varies between its two builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variation {
    /// The host name inside (`pkgcell` / `pkgcell-twice`).
    Hostname,
    /// `TZ` (`UTC` / `XST-13`, a POSIX zone that needs no tzdata).
    TimeZone,
    /// `LANG` (`C.UTF-8` / `C`).
    Locale,
    /// The umask (022 / 002).
    Umask,
}

impl Variation {
    /// Every variation, in the order they are tried alone.
    pub const ALL: [Variation; 4] = [Variation::Hostname, Variation::TimeZone, Variation::Locale, Variation::Umask];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variation::Hostname => "hostname",
            Variation::TimeZone => "time zone",
            Variation::Locale => "locale",
            Variation::Umask => "umask",
        }
    }

    fn apply(self, env: &mut MakepkgEnv) {
        match self {
            Variation::Hostname => env.hostname = "pkgcell-twice".into(),
            Variation::TimeZone => env.tz = "XST-13".into(),
            Variation::Locale => env.lang = "C".into(),
            Variation::Umask => env.umask = Some(0o002),
        }
    }
}

/// The environment of the first `--twice` build (and of the control).
fn reference_env() -> MakepkgEnv {
    MakepkgEnv { umask: Some(0o022), ..MakepkgEnv::default() }
}

/// The result of `--twice`.
#[derive(Debug, Clone, Serialize)]
pub struct TwiceReport {
    /// [`REPRO_JSON_VERSION`].
    pub version: u32,
    /// The pkgid built.
    pub pkgid: PkgId,
    /// Whether the two builds are the same.
    pub reproducible: bool,
    /// What the second build varied (besides its build directory, which
    /// always differs).
    pub varied: Vec<Variation>,
    /// The first build's files against the second's.
    pub files: Vec<FileReport>,
    /// When they differ: a third build with nothing varied also differs
    /// from the first, so the build is not deterministic by itself (time,
    /// randomness, ordering), whatever the environment.
    pub nondeterministic: bool,
    /// When they differ and the build is deterministic: the variations
    /// that, alone, change the output.
    pub matters: Vec<Variation>,
    /// The logs of every build made, in order.
    pub logs: Vec<PathBuf>,
}

/// Build the planned entry `name` twice, the second time with every
/// [`Variation`], and compare; when they differ, find out why with more
/// builds (one with nothing varied, then one per variation). Both builds
/// use the PKGBUILD's own SOURCE_DATE_EPOCH and the dependency set a build
/// would install now (the entries it needs must be in the store). Nothing
/// is stored; `work` holds the builds.
pub fn twice(plan: &Plan, name: &str, opts: &BuildOptions, work: &Path, reports: &Path) -> Result<TwiceReport, ReproError> {
    let store = Store::at(opts.home.store());
    let entry = plan.packages.iter().find(|p| p.name == name);
    let pkgid = entry
        .and_then(|p| p.pkgid.clone())
        .ok_or_else(|| ReproError::Rebuild(Box::new(BuildError::NotPlanned(name.to_owned()))))?;
    let deps = build::dep_lines(plan, name, &store).map_err(|e| ReproError::Rebuild(Box::new(e)))?;
    let mut logs = Vec::new();
    let mut n = 0;
    let mut build_with = |menv: &MakepkgEnv, tag: &str| -> Result<Vec<PathBuf>, ReproError> {
        n += 1;
        let dest = work.join(format!("{n}-{}", tag.replace(' ', "-")));
        let r = build::rebuild(plan, name, &deps, opts, menv, &format!("twice-{n}"), &dest).map_err(|e| ReproError::Rebuild(Box::new(e)))?;
        logs.push(r.log);
        Ok(r.files)
    };
    let named = |files: &[PathBuf]| -> Vec<(String, PathBuf)> {
        files.iter().map(|f| (f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), f.clone())).collect()
    };
    let same = |a: &[PathBuf], b: &[PathBuf]| -> Result<bool, ReproError> {
        Ok(compare(&named(a), b, None)?.iter().all(|f| f.verdict == Verdict::Reproducible) && a.len() == b.len())
    };

    let reference = reference_env();
    let first = build_with(&reference, "reference")?;
    let mut varied_env = reference.clone();
    for v in Variation::ALL {
        v.apply(&mut varied_env);
    }
    let second = build_with(&varied_env, "varied")?;
    let files = compare(&named(&first), &second, Some(reports))?;
    let reproducible = files.iter().all(|f| f.verdict == Verdict::Reproducible) && first.len() == second.len();
    let (mut nondeterministic, mut matters) = (false, Vec::new());
    if !reproducible {
        let control = build_with(&reference, "control")?;
        nondeterministic = !same(&first, &control)?;
        if !nondeterministic {
            for v in Variation::ALL {
                let mut one = reference.clone();
                v.apply(&mut one);
                let alone = build_with(&one, v.name())?;
                if !same(&first, &alone)? {
                    matters.push(v);
                }
            }
        }
    }
    Ok(TwiceReport {
        version: REPRO_JSON_VERSION,
        pkgid,
        reproducible,
        varied: Variation::ALL.to_vec(),
        files,
        nondeterministic,
        matters,
        logs,
    })
}

/// Run diffoscope on the host, if it is installed; the report's path.
fn diffoscope(a: &Path, b: &Path, report: &Path) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("diffoscope").is_file()));
    if !found {
        return None;
    }
    fs::create_dir_all(report.parent()?).ok()?;
    // diffoscope exits 1 when the files differ, which they do here.
    let status = Command::new("diffoscope").arg("--text").arg(report).arg(a).arg(b).status();
    match status {
        Ok(s) if s.code().is_some_and(|c| c <= 1) && report.exists() => Some(report.to_owned()),
        Ok(_) | Err(_) => {
            tracing::warn!(report = %report.display(), "diffoscope failed");
            None
        }
    }
}
