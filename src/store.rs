//! The content-addressed store under `$PKGCELL_HOME/store`: build outputs
//! by BLAKE3 hash and one build record per pkgid.
//!
//! Layout:
//! - `objects/ab/cdef…`: each file once, named by its BLAKE3 hash, read-only;
//! - `records/<pkgid>.json`: what a successful build of that pkgid produced;
//! - `locks/<pkgid>.lock`: flock(2) files, so that two processes asked for
//!   the same pkgid build it once;
//! - `tmp/`: temporary files, renamed into place (same file system).
//!
//! Every write is temp file + fsync + rename (+ fsync of the directory), so
//! a crash at any point leaves the old state or the new one, never a partial
//! file under its final name. Objects are written before the record that
//! names them, so a record never points at a missing object unless the
//! store was damaged afterwards; `fsck` finds and repairs that.
//!
//! This module knows nothing of sandboxes or makepkg: the build stage hands
//! it files and a record.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use alpm_types::{Name, Sha256Checksum};
use serde::{Deserialize, Serialize};

use crate::error::{IoPath, io_err};
use crate::home::GcMode;
use crate::ids::{Blake3, PkgId};

/// Version of the record format (and of `store ls --json`).
pub const RECORD_VERSION: u32 = 1;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// A record is not valid JSON of the expected shape.
    #[error("build record {} is damaged", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// One output file of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The file name makepkg gave it (`hello-1.0-1-x86_64.pkg.tar.zst`).
    pub name: String,
    /// Its content hash: the object that holds it.
    pub blake3: Blake3,
    /// Its size in bytes.
    pub size: u64,
}

/// A file written into the store's tmp directory by [`Store::stage`], to
/// be put in place by [`Store::commit`] (dropped: removed).
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    /// What it will be in the record.
    pub output: Output,
}

/// What a build ended as. Only successful builds are recorded today; the
/// field is there so that failed attempts can be kept later without a new
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// makepkg succeeded and every output is in the store.
    Built,
}

/// Which mechanism carried a build's memory and process limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsApplied {
    /// No limit was set.
    None,
    /// A cgroup of the build: totals over all its processes.
    Cgroup,
    /// rlimits: per process (memory) and per sandbox user (processes).
    Rlimit,
}

/// The record of one build: `records/<pkgid>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The pkgid built.
    pub pkgid: PkgId,
    /// How it ended.
    pub status: RecordStatus,
    /// The package files.
    pub outputs: Vec<Output>,
    /// The .BUILDINFO of the (first) package, as text.
    pub buildinfo: String,
    /// The build log, as an object.
    pub log: Blake3,
    /// The base the build ran on (see `build::base_id`).
    pub base_id: crate::ids::BaseId,
    /// What was installed for the build, besides the base: one per
    /// package file, sorted by line.
    pub deps: Vec<DepRef>,
    /// Local package files installed before `deps` (`-I FILE`): one line
    /// per file (`<file name> <file blake3>`), in the order given. The
    /// build puts each file into the store as an object (see
    /// [`Record::local_files`]), so that repro can install it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<String>,
    /// Peak resident memory of the largest process of makepkg's sandbox, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_kib: Option<u64>,
    /// How the memory and process limits of the build were applied
    /// (absent in records made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsApplied>,
    /// What the dependency layer's pacman database holds beyond the base,
    /// read after it was made: `<name> <version>` lines, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<String>,
    /// Unix time the build started, in seconds.
    pub started: u64,
    /// Wall time of the build, in seconds.
    pub seconds: f64,
    /// Wall time of each step, in seconds.
    #[serde(default)]
    pub timings: Timings,
    /// The pkgcell version that built it.
    pub pkgcell: String,
}

/// Wall time of the steps of a build, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// Fetching the sources.
    pub fetch: f64,
    /// Finding the dependencies and making or reusing their layer.
    pub deps: f64,
    /// Setting up the build sandbox and running makepkg (and its cleanup).
    pub makepkg: f64,
    /// makepkg itself, as the sandbox timed it (part of `makepkg`: the
    /// rest of that is the sandbox's setup and cleanup). 0 in records made
    /// before pkgcell measured it, and then left out, so that such a record
    /// is written back as it was read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub makepkg_run: f64,
    /// Copying the outputs and the log into the store (their flush to disk
    /// comes after, with the record's).
    pub store: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Record {
    /// Every object the record needs.
    pub fn objects(&self) -> impl Iterator<Item = Blake3> + '_ {
        self.outputs.iter().map(|o| o.blake3).chain(std::iter::once(self.log))
    }

    /// The `-I` files of [`Record::local`]: (file name, hash of the object
    /// holding it). They are not among [`Record::objects`]: a record whose
    /// local file is missing (made before the build stored them) still has
    /// good outputs; only a repro needs the file. A line that does not
    /// parse is skipped (the record's pkgid already covers it).
    pub fn local_files(&self) -> impl Iterator<Item = (&str, Blake3)> + '_ {
        self.local.iter().filter_map(|line| {
            let (name, hash) = line.rsplit_once(' ')?;
            Some((name, hash.parse().ok()?))
        })
    }

    /// The file names in the shared package cache that the build installed:
    /// the `<file name>` of each `<name> sha256:<hex> <file name>` line of
    /// `deps` (packages of the store have no such line).
    pub fn cached_packages(&self) -> impl Iterator<Item = &str> + '_ {
        self.deps.iter().filter_map(|d| match d {
            DepRef::Repo { filename, .. } => Some(filename.as_str()),
            DepRef::Store { .. } => None,
        })
    }
}

/// A package file a build installed besides the base, as [`Record::deps`]
/// names it. Serialized as one line (see [`Display`](std::fmt::Display)),
/// the form records held before this type: the records of earlier
/// versions load, and are written back the same. Ordered by that line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum DepRef {
    /// A package of the store, built by another entry: `<pkgname> <blake3>`.
    Store {
        /// Its pkgname.
        name: Name,
        /// The hash of the package file (an object of the store).
        blake3: Blake3,
    },
    /// A package file of a repository, kept in the shared package cache:
    /// `<pkgname> sha256:<hex> <filename>`.
    Repo {
        /// Its pkgname.
        name: Name,
        /// The SHA-256 its repository database states.
        sha256: Sha256Checksum,
        /// Its file name in the repository and the package cache.
        filename: String,
    },
}

impl DepRef {
    /// Its pkgname.
    pub fn name(&self) -> &Name {
        match self {
            DepRef::Store { name, .. } | DepRef::Repo { name, .. } => name,
        }
    }
}

/// A [`Record::deps`] line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line:?} is not a dependency line (`<pkgname> <blake3>` or `<pkgname> sha256:<hex> <filename>`): {why}")]
pub struct DepRefError {
    /// The line.
    pub line: String,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for DepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DepRef::Store { name, blake3 } => write!(f, "{name} {blake3}"),
            DepRef::Repo { name, sha256, filename } => write!(f, "{name} sha256:{sha256} {filename}"),
        }
    }
}

impl FromStr for DepRef {
    type Err = DepRefError;

    fn from_str(line: &str) -> Result<DepRef, DepRefError> {
        let bad = |why: String| DepRefError { line: line.to_owned(), why };
        let words: Vec<&str> = line.split(' ').collect();
        let name = |w: &str| Name::new(w).map_err(|e| bad(e.to_string()));
        match words[..] {
            [n, hash] => Ok(DepRef::Store { name: name(n)?, blake3: hash.parse().map_err(|e: crate::ids::IdError| bad(e.to_string()))? }),
            [n, hash, filename] => {
                let hex = hash.strip_prefix("sha256:").ok_or_else(|| bad("the hash is not sha256:<hex>".into()))?;
                let sha256 = Sha256Checksum::from_str(hex).map_err(|e| bad(e.to_string()))?;
                Ok(DepRef::Repo { name: name(n)?, sha256, filename: filename.to_owned() })
            }
            _ => Err(bad("not two or three words".into())),
        }
    }
}

impl TryFrom<String> for DepRef {
    type Error = DepRefError;

    fn try_from(line: String) -> Result<DepRef, DepRefError> {
        line.parse()
    }
}

impl From<DepRef> for String {
    fn from(d: DepRef) -> String {
        d.to_string()
    }
}

impl Ord for DepRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // By line: the order records and layer keys have always had.
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for DepRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A store at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held lock on one pkgid; released on drop (and by the kernel when the
/// process dies, so a killed build never leaves a stale lock).
#[derive(Debug)]
pub struct PkgLock {
    _file: File,
}

/// What `fsck` found (and, with repair, removed).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Objects checked.
    pub objects: usize,
    /// Records checked.
    pub records: usize,
    /// Objects whose content does not match their name.
    pub bad_objects: Vec<String>,
    /// Records that cannot be read, or that name a missing or bad object.
    pub bad_records: Vec<String>,
    /// `-I` files that a record names but the store lacks (or had bad):
    /// `<pkgid> <file name> <blake3>`. The record stays (its outputs are
    /// good), but `pkgcell repro` of it needs the file given again with
    /// `-I FILE`, which puts it back.
    pub missing_local: Vec<String>,
    /// Leftover temporary files.
    pub temp_files: usize,
}

impl FsckReport {
    /// Whether nothing was wrong (leftover temporary files are harmless).
    pub fn is_clean(&self) -> bool {
        self.bad_objects.is_empty() && self.bad_records.is_empty() && self.missing_local.is_empty()
    }
}

/// What `gc` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Records dropped (older builds of a pkgbase).
    pub records: Vec<String>,
    /// Objects dropped (needed by no kept record).
    pub objects: usize,
    /// Bytes freed by the objects.
    pub bytes: u64,
}

/// Whether `fsck` repairs what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Only report.
    No,
    /// Drop bad objects and the records that need them.
    Yes,
}

impl Store {
    /// The store at `root` (created on first write).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object with hash `h` lives.
    pub fn object_path(&self, h: &Blake3) -> PathBuf {
        let hex = h.to_string();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    fn record_path(&self, id: &PkgId) -> PathBuf {
        self.root.join("records").join(format!("{id}.json"))
    }

    fn tmp_dir(&self) -> Result<PathBuf, StoreError> {
        let t = self.root.join("tmp");
        fs::create_dir_all(&t).map_err(io_err("create", &t))?;
        Ok(t)
    }

    /// Take the lock of `id`, waiting while another process holds it.
    pub fn lock(&self, id: &PkgId) -> Result<PkgLock, StoreError> {
        self.lock_with(id, || {})
    }

    /// [`Store::lock`], calling `on_wait` first when another process holds
    /// the lock (and only then), so that "waiting" is said only when true.
    pub fn lock_with(&self, id: &PkgId, on_wait: impl FnOnce()) -> Result<PkgLock, StoreError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{id}.lock"));
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(io_err("lock", &path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e).into()),
        }
        Ok(PkgLock { _file: file })
    }

    /// Whether a process holds the build lock of `id` now (a build of it is
    /// running), without waiting.
    pub fn is_locked(&self, id: &PkgId) -> bool {
        let path = self.root.join("locks").join(format!("{id}.lock"));
        let Ok(file) = File::options().write(true).open(&path) else { return false };
        matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
    }

    /// Put the file at `src` into the store (copied; `src` is left alone).
    pub fn put_file(&self, src: &Path) -> Result<Output, StoreError> {
        let staged = self.stage_file(src)?;
        self.commit_object(staged.tmp, &staged.output.blake3)?;
        Ok(staged.output)
    }

    /// Put what `r` yields into the store, if its hash is `expected`;
    /// otherwise nothing is stored and the hash found is returned.
    pub fn put_reader_expecting(&self, r: &mut dyn Read, expected: &Blake3) -> Result<Result<(), Blake3>, StoreError> {
        let staged = self.stage("", r, Path::new(&format!("the download of object {expected}")))?;
        if &staged.output.blake3 != expected {
            return Ok(Err(staged.output.blake3));
        }
        self.commit_object(staged.tmp, expected)?;
        Ok(Ok(()))
    }

    /// Put `data` into the store.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Blake3, StoreError> {
        let h = Blake3::of(data);
        if self.object_path(&h).exists() {
            return Ok(h);
        }
        let tmp_dir = self.tmp_dir()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err("create a file in", &tmp_dir))?;
        tmp.write_all(data).map_err(io_err("write", tmp.path()))?;
        self.commit_object(tmp, &h)?;
        Ok(h)
    }

    fn commit_object(&self, tmp: tempfile::NamedTempFile, h: &Blake3) -> Result<(), StoreError> {
        let dst = self.object_path(h);
        if dst.exists() {
            // Already there: same content by construction.
            return Ok(());
        }
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        sync_dir(&self.place_object(tmp, dst)?)
    }

    /// Rename `tmp` (flushed already) to the object path `dst`, read-only;
    /// returns its directory, which the caller flushes.
    fn place_object(&self, tmp: tempfile::NamedTempFile, dst: PathBuf) -> Result<PathBuf, StoreError> {
        // Read-only for everyone: the store's directory keeps it private,
        // and a published repository can hard-link the file as it is (a
        // web server reading it runs as another user).
        let perm = std::os::unix::fs::PermissionsExt::from_mode(0o444);
        tmp.as_file().set_permissions(perm).map_err(io_err("chmod", tmp.path()))?;
        let dir = dst.parent().expect("objects have a parent").to_owned();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        tmp.persist(&dst).map_err(|e| StoreError::Io(IoPath::new("rename into", dst, e.error)))?;
        Ok(dir)
    }

    /// Write what `input` yields to a file of the store's tmp directory,
    /// hashed, but neither flushed nor in place yet: [`Store::commit`]
    /// does both for a build's files at once. Streams, as `put_reader`.
    pub fn stage(&self, name: &str, input: &mut dyn Read, src: &Path) -> Result<Staged, StoreError> {
        let tmp_dir = self.tmp_dir()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err("create a file in", &tmp_dir))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(io_err("read", src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err("write", tmp.path()))?;
            size += n as u64;
        }
        let blake3 = Blake3::from_bytes(*hasher.finalize().as_bytes());
        Ok(Staged { tmp, output: Output { name: name.to_owned(), blake3, size } })
    }

    /// [`Store::stage`] the file at `src` (copied; `src` is left alone).
    pub fn stage_file(&self, src: &Path) -> Result<Staged, StoreError> {
        let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut input = File::open(src).map_err(io_err("open", src))?;
        self.stage(&name, &mut input, src)
    }

    /// Put staged objects and then the record that names them in place,
    /// durably and in that order, so that after a crash a record never
    /// names an object that is missing or short. The disk is waited on three
    /// times in all (the files' data, side by side; the objects'
    /// directories, side by side; the record's directory) instead of twice
    /// per file, which on a small build is most of the store step.
    pub fn commit(&self, staged: Vec<Staged>, record: &Record) -> Result<(), StoreError> {
        let tmp_dir = self.tmp_dir()?;
        let mut rec_tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err("create a file in", &tmp_dir))?;
        let data = serde_json::to_vec_pretty(record).expect("records serialize");
        rec_tmp.write_all(&data).map_err(io_err("write", rec_tmp.path()))?;
        // Objects already present (same content by construction) are dropped.
        let staged: Vec<Staged> = staged.into_iter().filter(|s| !self.object_path(&s.output.blake3).exists()).collect();
        let mut files: Vec<(&File, &Path)> = staged.iter().map(|s| (s.tmp.as_file(), s.tmp.path())).collect();
        files.push((rec_tmp.as_file(), rec_tmp.path()));
        sync_side_by_side(&files)?;
        drop(files);
        let mut dirs = BTreeSet::new();
        for s in staged {
            let dst = self.object_path(&s.output.blake3);
            dirs.insert(self.place_object(s.tmp, dst)?);
        }
        let opened = dirs.iter().map(|d| File::open(d).map_err(io_err("open", d))).collect::<Result<Vec<_>, _>>()?;
        sync_side_by_side(&opened.iter().zip(&dirs).map(|(f, d)| (f, d.as_path())).collect::<Vec<_>>())?;
        let dst = self.record_path(&record.pkgid);
        let dir = dst.parent().expect("records have a parent");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        rec_tmp.persist(&dst).map_err(|e| StoreError::Io(IoPath::new("rename into", dst.clone(), e.error)))?;
        sync_dir(dir)
    }

    /// Write the record of a build (replacing an older one of the same pkgid).
    pub fn put_record(&self, record: &Record) -> Result<(), StoreError> {
        let dst = self.record_path(&record.pkgid);
        let data = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&self.tmp_dir()?, &dst, &data)
    }

    /// The record of `id`, if it was built.
    pub fn record(&self, id: &PkgId) -> Result<Option<Record>, StoreError> {
        read_record(&self.record_path(id))
    }

    /// Every readable record, sorted by pkgid; damaged ones are skipped.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self.record_files()?.into_iter().filter_map(|p| read_record(&p).ok().flatten()).collect())
    }

    fn record_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.root.join("records");
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(io_err("read", &dir))?;
                    if e.file_name().to_string_lossy().ends_with(".json") {
                        out.push(e.path());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &dir)(e).into()),
        }
        out.sort();
        Ok(out)
    }

    fn object_files(&self) -> Result<Vec<(PathBuf, String)>, StoreError> {
        let dir = self.root.join("objects");
        let mut out = Vec::new();
        let outer = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("read", &dir)(e).into()),
        };
        for sub in outer {
            let sub = sub.map_err(io_err("read", &dir))?;
            let prefix = sub.file_name().to_string_lossy().into_owned();
            let sub_path = sub.path();
            for e in fs::read_dir(&sub_path).map_err(io_err("read", &sub_path))? {
                let e = e.map_err(io_err("read", &sub_path))?;
                out.push((e.path(), format!("{prefix}{}", e.file_name().to_string_lossy())));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Copy the object `h` to `dst` (a fresh, writable file).
    pub fn copy_out(&self, h: &Blake3, dst: &Path) -> Result<(), StoreError> {
        let src = self.object_path(h);
        let tmp = dst.with_extension("pkgcell-part");
        fs::copy(&src, &tmp).map_err(io_err("copy", &src))?;
        let mut perm = fs::metadata(&tmp).map_err(io_err("stat", &tmp))?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        fs::set_permissions(&tmp, perm).map_err(io_err("chmod", &tmp))?;
        Ok(fs::rename(&tmp, dst).map_err(io_err("rename into", dst))?)
    }

    /// Re-hash every object and check every record; with [`Repair::Yes`],
    /// drop bad objects, records that cannot be read or need a missing or bad
    /// object, and leftover temporary files.
    pub fn fsck(&self, repair: Repair) -> Result<FsckReport, StoreError> {
        let mut report = FsckReport::default();
        let mut good: BTreeSet<String> = BTreeSet::new();
        for (path, name) in self.object_files()? {
            report.objects += 1;
            let ok = match hash_file(&path) {
                Ok(h) => h.to_string() == name,
                Err(_) => false,
            };
            if ok {
                good.insert(name);
            } else {
                report.bad_objects.push(name);
                if repair == Repair::Yes {
                    remove_file(&path)?;
                }
            }
        }
        for path in self.record_files()? {
            report.records += 1;
            let bad = match read_record(&path) {
                Ok(Some(r)) => {
                    for (name, h) in r.local_files() {
                        if !good.contains(&h.to_string()) {
                            report.missing_local.push(format!("{} {name} {h}", r.pkgid));
                        }
                    }
                    r.objects().any(|h| !good.contains(&h.to_string()))
                }
                Ok(None) => false,
                Err(_) => true,
            };
            if bad {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                report.bad_records.push(name);
                if repair == Repair::Yes {
                    remove_file(&path)?;
                }
            }
        }
        let tmp = self.root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                report.temp_files += 1;
                if repair == Repair::Yes {
                    remove_file(&e.path())?;
                }
            }
        }
        Ok(report)
    }

    /// Drop old records and unneeded objects. The rule: for each pkgbase,
    /// keep the `keep` newest records (by start time), plus every record in
    /// `pinned` (what the current plan or repo needs); then drop every object
    /// that no kept record names. Takes no lock: run it when no build runs.
    /// With [`GcMode::DryRun`] the report says what would go, and nothing goes.
    pub fn gc(&self, keep: usize, pinned: &BTreeSet<PkgId>, mode: GcMode) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut by_base: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for r in self.records()? {
            by_base.entry(r.pkgid.pkgbase().to_string()).or_default().push(r);
        }
        let mut needed: BTreeSet<String> = BTreeSet::new();
        for (_, mut rs) in by_base {
            rs.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.pkgid.to_string().cmp(&a.pkgid.to_string())));
            for (i, r) in rs.into_iter().enumerate() {
                if i < keep || pinned.contains(&r.pkgid) {
                    needed.extend(r.objects().map(|h| h.to_string()));
                    // The -I files too: a repro of the record installs them.
                    needed.extend(r.local_files().map(|(_, h)| h.to_string()));
                } else {
                    if mode == GcMode::Remove {
                        remove_file(&self.record_path(&r.pkgid))?;
                    }
                    report.records.push(r.pkgid.to_string());
                }
            }
        }
        for (path, name) in self.object_files()? {
            if !needed.contains(&name) {
                report.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if mode == GcMode::Remove {
                    remove_file(&path)?;
                }
                report.objects += 1;
            }
        }
        Ok(report)
    }
}

fn read_record(path: &Path) -> Result<Option<Record>, StoreError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e).into()),
    };
    serde_json::from_slice(&data).map(Some).map_err(|source| StoreError::BadRecord { path: path.to_owned(), source })
}

fn remove_file(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e).into()),
    }
}

/// The BLAKE3 hash of a file's content.
pub fn hash_file(path: &Path) -> Result<Blake3, StoreError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Blake3::from_bytes(*hasher.finalize().as_bytes()))
}

/// Write `data` to `dst` atomically: a temp file in `tmp_dir` (same file
/// system), fsync, rename, fsync of the directory.
pub fn write_atomic(tmp_dir: &Path, dst: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = dst.parent().expect("destination has a parent");
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    fs::create_dir_all(tmp_dir).map_err(io_err("create", tmp_dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err("create a file in", tmp_dir))?;
    tmp.write_all(data).map_err(io_err("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
    tmp.persist(dst).map_err(|e| StoreError::Io(IoPath::new("rename into", dst.to_owned(), e.error)))?;
    sync_dir(dir)
}

/// fsync these files from one thread each (a few at a time), so that the
/// file system can flush them in one journal commit rather than one each.
fn sync_side_by_side(files: &[(&File, &Path)]) -> Result<(), StoreError> {
    if let [(f, p)] = files {
        return Ok(f.sync_all().map_err(io_err("fsync", p))?);
    }
    for chunk in files.chunks(8) {
        std::thread::scope(|s| {
            let running: Vec<_> = chunk.iter().map(|(f, p)| s.spawn(move || f.sync_all().map_err(io_err("fsync", p)))).collect();
            running.into_iter().map(|t| t.join().expect("fsync does not panic")).collect::<Result<Vec<()>, _>>()
        })?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    Ok(File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkgid(base: &str, n: u8) -> PkgId {
        let tree = crate::ids::TreeId::from_bytes(&[n; 20]).unwrap();
        PkgId::new(base.parse().unwrap(), tree, crate::ids::DepHash::of(&[n]))
    }

    fn record(store: &Store, id: PkgId, started: u64, content: &[u8]) -> Record {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(format!("{}-1-1-x86_64.pkg.tar.zst", id.pkgbase()));
        fs::write(&f, content).unwrap();
        let out = store.put_file(&f).unwrap();
        let log = store.put_bytes(b"log").unwrap();
        Record {
            version: RECORD_VERSION,
            pkgid: id,
            status: RecordStatus::Built,
            outputs: vec![out],
            buildinfo: String::new(),
            log,
            base_id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            deps: vec![],
            local: vec![],
            peak_memory_kib: None,
            limits: None,
            installed: vec![],
            started,
            seconds: 1.0,
            timings: Timings::default(),
            pkgcell: "0".into(),
        }
    }

    #[test]
    fn objects_are_stored_once_read_only_and_by_hash() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let a = s.put_bytes(b"hello").unwrap();
        let b = s.put_bytes(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Blake3::of(b"hello"));
        let p = s.object_path(&a);
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert!(fs::metadata(&p).unwrap().permissions().readonly());
        assert_eq!(s.fsck(Repair::No).unwrap().objects, 1);
    }

    #[test]
    fn staged_files_are_put_in_place_with_their_record_and_nothing_is_left_in_tmp() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        // One of the two is already there: staged again, it is dropped.
        let old = s.put_bytes(b"log text").unwrap();
        let pkg = s.stage("foo-1-1-any.pkg.tar.zst", &mut &b"package bytes"[..], Path::new("pkg")).unwrap();
        let log = s.stage("log", &mut &b"log text"[..], Path::new("log")).unwrap();
        assert_eq!(log.output.blake3, old);
        assert_eq!((pkg.output.blake3, pkg.output.size), (Blake3::of(b"package bytes"), 13));
        // Nothing is in place before the commit.
        assert!(!s.object_path(&pkg.output.blake3).exists());
        let mut r = record(&s, pkgid("foo", 7), 10, b"other");
        r.outputs = vec![pkg.output.clone()];
        r.log = log.output.blake3;
        s.commit(vec![pkg, log], &r).unwrap();
        assert_eq!(s.record(&r.pkgid).unwrap(), Some(r.clone()));
        let p = s.object_path(&r.outputs[0].blake3);
        assert_eq!(fs::read(&p).unwrap(), b"package bytes");
        assert!(fs::metadata(&p).unwrap().permissions().readonly());
        assert_eq!(fs::read(s.object_path(&old)).unwrap(), b"log text");
        assert!(s.fsck(Repair::No).unwrap().is_clean());
        assert_eq!(fs::read_dir(s.tmp_dir().unwrap()).unwrap().count(), 0, "temp files left behind");
    }

    #[test]
    fn a_staged_file_dropped_without_a_commit_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let staged = s.stage("x", &mut &b"abc"[..], Path::new("x")).unwrap();
        let h = staged.output.blake3;
        drop(staged);
        assert!(!s.object_path(&h).exists());
        assert_eq!(fs::read_dir(s.tmp_dir().unwrap()).unwrap().count(), 0);
    }

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let r = record(&s, pkgid("foo-bar", 1), 10, b"pkg");
        s.put_record(&r).unwrap();
        assert_eq!(s.record(&r.pkgid).unwrap(), Some(r.clone()));
        assert_eq!(s.records().unwrap(), vec![r]);
        assert_eq!(s.record(&pkgid("foo-bar", 2)).unwrap(), None);
    }

    #[test]
    fn fsck_finds_and_repairs_a_bad_object_and_its_record() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let r = record(&s, pkgid("foo", 1), 10, b"pkg");
        s.put_record(&r).unwrap();
        assert!(s.fsck(Repair::No).unwrap().is_clean());
        let p = s.object_path(&r.outputs[0].blake3);
        let mut perm = fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        fs::set_permissions(&p, perm).unwrap();
        fs::write(&p, b"rot").unwrap();
        let report = s.fsck(Repair::No).unwrap();
        assert_eq!(report.bad_objects, vec![r.outputs[0].blake3.to_string()]);
        assert_eq!(report.bad_records, vec![r.pkgid.to_string()]);
        s.fsck(Repair::Yes).unwrap();
        assert!(s.fsck(Repair::No).unwrap().is_clean());
        assert_eq!(s.record(&r.pkgid).unwrap(), None);
    }

    #[test]
    fn gc_keeps_the_newest_build_per_pkgbase_and_what_it_needs() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let old = record(&s, pkgid("foo", 1), 10, b"old");
        let new = record(&s, pkgid("foo", 2), 20, b"new");
        let other = record(&s, pkgid("bar", 3), 5, b"bar");
        for r in [&old, &new, &other] {
            s.put_record(r).unwrap();
        }
        let report = s.gc(1, &BTreeSet::new(), GcMode::Remove).unwrap();
        assert_eq!(report.records, vec![old.pkgid.to_string()]);
        assert_eq!(report.objects, 1);
        assert!(!s.object_path(&old.outputs[0].blake3).exists());
        assert!(s.object_path(&new.outputs[0].blake3).exists());
        assert!(s.fsck(Repair::No).unwrap().is_clean());
        assert_eq!(s.records().unwrap().len(), 2);
    }

    #[test]
    fn gc_keeps_the_local_files_of_kept_records_and_fsck_names_a_missing_one_without_dropping_the_record() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let kept_local = s.put_bytes(b"local package").unwrap();
        let dropped_local = s.put_bytes(b"old local package").unwrap();
        let mut old = record(&s, pkgid("foo", 1), 10, b"old");
        old.local = vec![format!("dep-1-1-any.pkg.tar.zst {dropped_local}")];
        let mut new = record(&s, pkgid("foo", 2), 20, b"new");
        new.local = vec![format!("dep-1-2-any.pkg.tar.zst {kept_local}")];
        for r in [&old, &new] {
            s.put_record(r).unwrap();
        }
        assert_eq!(new.local_files().collect::<Vec<_>>(), [("dep-1-2-any.pkg.tar.zst", kept_local)]);
        assert!(s.fsck(Repair::No).unwrap().is_clean());
        s.gc(1, &BTreeSet::new(), GcMode::Remove).unwrap();
        assert!(s.object_path(&kept_local).exists(), "gc dropped the -I file of a kept record");
        assert!(!s.object_path(&dropped_local).exists());

        // The file gone (a record made before builds stored them): named, not repaired away.
        fs::remove_file(s.object_path(&kept_local)).unwrap();
        let report = s.fsck(Repair::Yes).unwrap();
        assert_eq!(report.missing_local, [format!("{} dep-1-2-any.pkg.tar.zst {kept_local}", new.pkgid)]);
        assert!(report.bad_records.is_empty() && !report.is_clean());
        assert_eq!(s.record(&new.pkgid).unwrap(), Some(new));
    }

    #[test]
    fn cached_packages_are_the_file_names_of_repository_deps() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let mut r = record(&s, pkgid("foo", 1), 10, b"pkg");
        r.deps = vec![
            format!("lib {}", Blake3::of(b"lib")).parse().unwrap(),
            format!("tool sha256:{} tool-1.0-1-any.pkg.tar.zst", "0f".repeat(32)).parse().unwrap(),
        ];
        assert_eq!(r.cached_packages().collect::<Vec<_>>(), ["tool-1.0-1-any.pkg.tar.zst"]);
    }

    #[test]
    fn the_lock_of_a_pkgid_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path());
        let id = pkgid("foo", 1);
        let held = s.lock(&id).unwrap();
        let f = File::options().write(true).open(d.path().join(format!("locks/{id}.lock"))).unwrap();
        assert!(matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(held);
        f.try_lock().unwrap();
    }

    /// A record as pkgcell 0.1.0 wrote it, before dependency lines were typed.
    const RECORD_V1: &str = include_str!("../tests/fixtures/records/record-v1.json");

    #[test]
    fn a_record_written_by_an_earlier_version_loads_and_is_written_back_the_same() {
        let r: Record = serde_json::from_str(RECORD_V1).unwrap();
        assert_eq!(r.pkgid.pkgbase().to_string(), "hello");
        assert_eq!(r.cached_packages().collect::<Vec<_>>(), ["zlib-1:1.3.1-2-x86_64.pkg.tar.zst"]);
        assert_eq!(r.local_files().map(|(name, _)| name).collect::<Vec<_>>(), ["mine-1-1-any.pkg.tar.zst"]);
        assert_eq!(String::from_utf8(serde_json::to_vec_pretty(&r).unwrap()).unwrap(), RECORD_V1.trim_end());
    }

    #[test]
    fn dependency_lines_parse_into_what_they_print() {
        let store = format!("libhello {}", Blake3::of(b"x"));
        let repo = format!("zlib sha256:{} zlib-1:1.3.1-2-x86_64.pkg.tar.zst", "c".repeat(64));
        for line in [&store, &repo] {
            let d: DepRef = line.parse().unwrap();
            assert_eq!(&d.to_string(), line);
        }
        assert!(matches!(store.parse(), Ok(DepRef::Store { .. })));
        assert!(matches!(repo.parse(), Ok(DepRef::Repo { ref filename, .. }) if filename == "zlib-1:1.3.1-2-x86_64.pkg.tar.zst"));
        for bad in ["", "a", "a b", "a sha256:00 f", &format!("a md5:{} f", "c".repeat(64)), &format!("a {} f g", Blake3::of(b"x"))] {
            assert!(bad.parse::<DepRef>().is_err(), "{bad:?}");
        }
        // Ordered by line, as records always were: `libhello <hex>` < `libhello-dev <hex>`.
        let a: DepRef = format!("lib {}", Blake3::of(b"x")).parse().unwrap();
        let b: DepRef = format!("lib-dev {}", Blake3::of(b"x")).parse().unwrap();
        assert!(a < b);
    }
}
