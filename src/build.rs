//! Build: makepkg per package in its own sandbox, outputs into the store.
//!
//! Input: a [`Plan`] (from `plan`), the base and options. Per package, in a
//! worker thread (each runs its own sandbox, which is safe from threads):
//!
//! 1. take the pkgid's lock in the store; if the store has a record of the
//!    pkgid, it is *cached* and nothing runs;
//! 2. fetch its remote sources into the cache, and the repository packages
//!    it installs into the shared package cache ([`crate::fetch`]);
//! 3. find the packages of other entries it installs in the store (and the
//!    packages of repositories, fetched in step 2 into the shared package
//!    cache) and make (or reuse) the *dependency layer* for that set: an
//!    overlay upper directory on disk in which root inside ran `pacman -U`
//!    of exactly those files over the base, offline; it is made once per set
//!    (`layers/<hash of base id and files>`) and is a read-only lower of
//!    every later build with that set. Its pacman database is then checked
//!    against the plan, so that the pkgid's dephash is what was installed;
//! 4. run makepkg as the build user (uid 1000) over base + layer + a fresh
//!    upper, with no network unless asked: PKGBUILD dir read-only at
//!    /startdir, sources read-only at /srcdest, BUILDDIR=/build, packages to
//!    /pkgdest, SOURCE_DATE_EPOCH and BUILDTOOL set, output to a log file;
//! 5. put the package files and the log into the store, then the record.
//!
//! Scheduling: an entry starts once every entry it needs is built or
//! cached; if one of them failed or was skipped, it is skipped. Up to
//! `jobs` builds run at once. Events go to a callback so the CLI can draw
//! progress; this module prints nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Seek};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pkgcell_sandbox::{Access, Mount, Network, Rlimit, RlimitResource, Root, Sandbox, Spec, Upper};
use serde::Serialize;

use crate::buildlog;
use crate::confined::{Confined, ConfinedError, ConfinedFile, Kind};
use crate::error::{IoPath, io_err};
use crate::fetch::{self, FetchError, Fetched, Fetcher};
use crate::home::{GcMode, Home};
use crate::ids::{Blake3, PkgId};
use crate::local::LocalPackage;
use crate::plan::{Install, InstallFrom, Plan, Status};
use crate::remote::{RemoteError, RemoteStore};
use crate::cgroup::{BuildCgroup, Delegated};
use crate::store::{LimitsApplied, Output, RECORD_VERSION, Record, RecordStatus, Store, StoreError, Timings};
use crate::sync::Checkout;

/// Version of the `--json` form of a build run.
pub const BUILD_JSON_VERSION: u32 = 1;

/// The build user inside the sandbox (the test base's `builder`, devtools' too).
pub const BUILD_UID: u32 = 1000;

/// The base root a build runs on, and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// What identifies its content: its [`crate::ids::BaseId`], or for a
    /// plain directory see [`base_of_dir`].
    pub id: String,
    /// Its root directory.
    pub root: PathBuf,
}

/// Something that stops a build run before any package is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The base directory has no pacman database.
    #[error("{} is not a base root file system (no var/lib/pacman/local)", .0.display())]
    NotABase(PathBuf),
    /// The base could not be read.
    #[error("cannot read the base {}", path.display())]
    ReadBase {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Asked to build an entry that is not in the config.
    #[error("no [pkgbuilds] entry named {name} (entries: {known})")]
    UnknownPackage {
        /// The name asked for.
        name: String,
        /// The entries there are.
        known: String,
    },
    /// A `-d` directory could not be lent to the build user.
    #[error("cannot make a -d directory writable by the build user")]
    Lend(#[from] crate::lent::LentError),
}

/// A base given as a plain directory (`--base-dir`, not made by
/// `pkgcell base`): identified by a hash of the entries (name-version) of
/// its pacman database. Managed bases carry their own [`crate::ids::BaseId`].
pub fn base_of_dir(dir: &Path) -> Result<Base, SetupError> {
    let db = dir.join("var/lib/pacman/local");
    if !db.is_dir() {
        return Err(SetupError::NotABase(dir.to_owned()));
    }
    let mut names: Vec<String> = fs::read_dir(&db)
        .map_err(|source| SetupError::ReadBase { path: db.clone(), source })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let listing = names.join("\n");
    Ok(Base { id: Blake3::of(listing.as_bytes()).to_string()[..32].to_owned(), root: dir.to_owned() })
}

/// Whether a failed build's directory is kept to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepFailed {
    /// Remove it.
    No,
    /// Move it to `$PKGCELL_HOME/failed/<pkgid>`.
    Yes,
}

/// The environment makepkg runs in that a reproducibility check varies or
/// pins (see [`crate::repro`]). `Default` is what `build` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakepkgEnv {
    /// SOURCE_DATE_EPOCH; `None`: the PKGBUILD's commit time (or mtime).
    pub epoch: Option<u64>,
    /// The host name inside.
    pub hostname: String,
    /// `TZ`.
    pub tz: String,
    /// `LANG`.
    pub lang: String,
    /// The umask makepkg starts with; `None` leaves the sandbox's.
    pub umask: Option<u32>,
    /// `PACKAGER`, over [`BuildOptions::packager`] (repro: the recorded one).
    pub packager: Option<String>,
}

impl Default for MakepkgEnv {
    fn default() -> Self {
        MakepkgEnv { epoch: None, hostname: "pkgcell".into(), tz: "UTC".into(), lang: "C.UTF-8".into(), umask: None, packager: None }
    }
}

/// Settings of a build run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The state directory.
    pub home: Home,
    /// The base.
    pub base: Base,
    /// Network of makepkg.
    pub network: Network,
    /// Time limit per build.
    pub timeout: Duration,
    /// Builds at the same time.
    pub jobs: usize,
    /// What happens to the directory of a failed build.
    pub keep_failed: KeepFailed,
    /// The architecture built for (source_<arch> entries).
    pub arch: String,
    /// Per entry, directories of the build user's home kept between its
    /// builds (`home_binds`, relative to the home), under
    /// `$PKGCELL_HOME/homes/<entry>/`.
    pub home_binds: BTreeMap<String, Vec<PathBuf>>,
    /// Extra binds into every makepkg sandbox (`-d`/`-D`).
    pub binds: Vec<Mount>,
    /// Package files installed into every build's dependency layer before
    /// its dependencies (`-I`).
    pub local: Vec<LocalPackage>,
    /// Whether dependency layers are reused or made afresh (`-c`).
    pub layers: LayerMode,
    /// Memory and process limits of the fetch, dependency layer and makepkg sandboxes.
    pub limits: Limits,
    /// Bytes of each log of a build kept (`[build] log_limit`).
    pub log_limit: u64,
    /// A cgroup v2 delegated to the user: when there is one, [`Limits`]
    /// are totals of a per-build cgroup in it, not rlimits.
    pub cgroup: Option<Delegated>,
    /// A remote store: looked up before building, uploaded to after.
    pub remote: Option<Arc<RemoteStore>>,
    /// Whether a pkgid already in the store is built again (`-f`).
    pub rebuild: Rebuild,
    /// Extra makepkg flags (after `--`), checked by [`MakepkgFlags::new`].
    pub makepkg_flags: MakepkgFlags,
    /// makepkg's `PACKAGER` (else makepkg's default, `Unknown Packager`).
    pub packager: Option<String>,
    /// Host directories `file://` sources may read
    /// (`Config::file_source_dirs`).
    pub file_sources: Vec<PathBuf>,
    /// Where the logs of the dependency layer and makepkg go besides their
    /// files as they come (laptop mode: stderr).
    pub echo: buildlog::Echo,
}

/// Whether a build whose pkgid is in the store (or the remote store) runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Rebuild {
    /// No: the stored result is the result.
    #[default]
    IfMissing,
    /// Yes for these entries (`-f`, as makepkg's: the entries named, or all);
    /// the new record replaces the stored one, and objects only the old one
    /// named go with the next `store gc`. What they need is built only when
    /// missing, as always.
    Entries(BTreeSet<String>),
}

impl Rebuild {
    fn forced(&self, entry: &str) -> bool {
        match self {
            Rebuild::IfMissing => false,
            Rebuild::Entries(e) => e.contains(entry),
        }
    }
}

/// makepkg flags a user may add to every makepkg run (`pkgcell build --
/// --nocheck`, as makechrootpkg passes them). Only flags that change how
/// makepkg gets to the package, not what pkgcell expects of it: no
/// `--nobuild`, `--noarchive`, `--install`, `--syncdeps`, `--config` and the
/// like, which would leave no package or reach outside the sandbox's job.
/// They are not part of the pkgid: a stored result is not built again
/// because of them (`-f` does that); the build log's header names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakepkgFlags(Vec<String>);

impl MakepkgFlags {
    /// The flags makepkg may be given, long form first.
    pub const ALLOWED: [(&'static str, Option<&'static str>); 9] = [
        ("--nocheck", None),
        ("--check", None),
        ("--skippgpcheck", None),
        ("--skipchecksums", None),
        ("--skipinteg", None),
        ("--holdver", None),
        ("--cleanbuild", Some("-C")),
        ("--nocolor", Some("-m")),
        ("--noprepare", None),
    ];

    /// Check `flags` against [`Self::ALLOWED`].
    pub fn new(flags: &[String]) -> Result<MakepkgFlags, String> {
        for f in flags {
            if !Self::ALLOWED.iter().any(|(long, short)| f == long || Some(f.as_str()) == *short) {
                let allowed: Vec<String> = Self::ALLOWED
                    .iter()
                    .map(|(l, s)| s.map_or_else(|| l.to_string(), |s| format!("{s}/{l}")))
                    .collect();
                return Err(format!(
                    "makepkg flag {f:?} is not one pkgcell can pass on (it would leave no package, or do what pkgcell does itself); allowed after --: {}",
                    allowed.join(" ")
                ));
            }
        }
        Ok(MakepkgFlags(flags.to_vec()))
    }

    /// The flags, as given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl BuildOptions {
    /// How the limits are applied to a build.
    pub fn limits_applied(&self) -> LimitsApplied {
        match (self.limits.memory.is_some() || self.limits.pids.is_some(), &self.cgroup) {
            (false, _) => LimitsApplied::None,
            (true, Some(_)) => LimitsApplied::Cgroup,
            (true, None) => LimitsApplied::Rlimit,
        }
    }

    /// The limits as a build's log header says them.
    fn limits_text(&self, cgroup: Option<&BuildCgroup>) -> String {
        let memory = self.limits.memory.map_or("unlimited".into(), size_text);
        let pids = self.limits.pids.map_or("unlimited".into(), |p| p.to_string());
        match cgroup {
            Some(cg) => format!("memory {memory}, processes {pids}, for the whole build (cgroup {})", cg.path().display()),
            None => format!("memory {memory} per process, processes {pids} (rlimits)"),
        }
    }
}

/// Whether a build reuses the cached dependency layer of its set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerMode {
    /// Reuse it when it is there (it is keyed by content).
    #[default]
    Reuse,
    /// Reuse only a layer made at or after this time (the start of the
    /// run), else make a fresh one and put it in the cache's place (`-c`, as
    /// makechrootpkg's `-c`): later builds reuse the fresh one; a build
    /// still running on the old one keeps it (its overlay holds it) until
    /// `store gc` removes it.
    Fresh(SystemTime),
}

impl LayerMode {
    /// Whether the layer whose `ready` marker is at `ready` may be used.
    fn usable(&self, ready: &Path) -> bool {
        match self {
            LayerMode::Reuse => ready.exists(),
            LayerMode::Fresh(since) => fs::metadata(ready).and_then(|m| m.modified()).is_ok_and(|t| t >= *since),
        }
    }
}

/// Per-build resource limits, applied as rlimits to every process of the
/// fetch, dependency layer and makepkg sandboxes (no cgroup: see docs/build.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory of each process, in bytes (RLIMIT_DATA: heap and private
    /// writable mappings).
    pub memory: Option<u64>,
    /// Processes at once of the sandbox's user, in its sandbox (RLIMIT_NPROC,
    /// which the kernel counts per user namespace and uid, so one build's
    /// processes never count against another's limit).
    pub pids: Option<u64>,
    /// Size of the package files of one build, each and together, in bytes
    /// (None: [`DEFAULT_MAX_OUTPUT`]). Read by the host, not an rlimit.
    pub max_output: Option<u64>,
    /// Size of each of /tmp and /dev/shm in the makepkg sandbox, in bytes
    /// (none: the sandbox's default, [`pkgcell_sandbox::DEFAULT_TMP_SIZE`]).
    pub tmp: Option<u64>,
}

/// The default of [`Limits::max_output`]: 8 GiB, more than the largest
/// packages of Arch's repositories (a few GiB, compressed).
pub const DEFAULT_MAX_OUTPUT: u64 = 8 << 30;
/// The largest `.BUILDINFO` read back from a build.
const MAX_BUILDINFO: u64 = 1 << 20;
/// The largest pacman `desc` file read back from a dependency layer.
const MAX_DESC: u64 = 1 << 20;

impl Limits {
    /// [`Limits::max_output`] or its default.
    pub fn max_output(&self) -> u64 {
        self.max_output.unwrap_or(DEFAULT_MAX_OUTPUT)
    }

    /// The rlimits that carry these limits.
    pub fn rlimits(&self) -> Vec<Rlimit> {
        let mut out = Vec::new();
        if let Some(m) = self.memory {
            out.push(Rlimit { resource: RlimitResource::Data, limit: m });
        }
        if let Some(p) = self.pids {
            out.push(Rlimit { resource: RlimitResource::Processes, limit: p });
        }
        out
    }

    /// A hint for a failed sandbox whose cgroup saw a limit hit: (memory:
    /// the OOM killer ran, pids: a fork was refused).
    fn cgroup_hint(&self, (memory, pids): (bool, bool)) -> Option<String> {
        if let (true, Some(m)) = (memory, self.memory) {
            return Some(format!(
                "killed by the kernel's OOM killer: over the memory limit of {} for the whole build (cgroup memory.max; [build] memory, --memory)",
                size_text(m)
            ));
        }
        if let (true, Some(p)) = (pids, self.pids) {
            return Some(format!("fork failed: over the process limit of {p} for the whole build (cgroup pids.max; [build] pids, --pids)"));
        }
        None
    }

    /// A hint for a failed sandbox whose log shows that a limit was hit.
    fn hint(&self, log: &str) -> Option<String> {
        let log = log.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| log.contains(n));
        if let Some(m) = self.memory
            && any(&["cannot allocate", "out of memory", "memory exhausted", "bad_alloc", "memoryerror", "xmalloc", "xrealloc"])
        {
            return Some(format!("memory allocation failed: over the memory limit of {} per process ([build] memory, --memory)", size_text(m)));
        }
        if let Some(p) = self.pids
            && any(&["cannot fork", "fork: retry", "fork: resource temporarily unavailable", "cannot create thread", "resource temporarily unavailable"])
        {
            return Some(format!("fork failed: over the process limit of {p} ([build] pids, --pids)"));
        }
        None
    }
}

/// Put the memory and process limits of `opts` on `spec`: a cgroup of its
/// own where the host delegates one (totals; it is removed when the
/// returned value is dropped, after the sandbox), else rlimits.
fn apply_limits(opts: &BuildOptions, spec: &mut Spec) -> Result<Option<BuildCgroup>, BuildError> {
    match opts.limits_applied() {
        LimitsApplied::None => Ok(None),
        LimitsApplied::Rlimit => {
            spec.rlimits.extend(opts.limits.rlimits());
            Ok(None)
        }
        LimitsApplied::Cgroup => {
            let delegated = opts.cgroup.as_ref().expect("limits_applied said cgroup");
            let cg = delegated
                .create(opts.limits.memory, opts.limits.pids)
                .map_err(|source| BuildError::Cgroup { path: delegated.parent().to_owned(), source })?;
            spec.cgroup = Some(cg.path().to_owned());
            Ok(Some(cg))
        }
    }
}

/// Bytes as the config writes them (`4G`, `512M`, `65536K`), by the one
/// printer of sizes, [`pkgcell_sandbox::Size`].
fn size_text(b: u64) -> String {
    pkgcell_sandbox::Size::new(b).map_or_else(|_| format!("{b} bytes"), |s| s.to_string())
}

/// The host directory of one `home_binds` entry, made on first use and
/// given to the build user: 0755 and owned by the build user's id outside
/// (a subordinate id), so the build can write to it and no other local
/// user can plant files in it for a later build. The config refuses
/// entries that leave the home; this checks again, as it builds a path.
fn home_bind_dir(opts: &BuildOptions, entry: &str, rel: &Path) -> Result<PathBuf, BuildError> {
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(BuildError::HomeBind { path: rel.to_owned(), reason: "not a relative path inside the home".into() });
    }
    // Earlier builds wrote in these directories (another bind may hold
    // this one's parent): made beneath the entry's directory, never
    // through a symlink they left (see docs/build.md, "What the host reads").
    let homes = opts.home.root().join("homes").join(entry);
    fs::DirBuilder::new().recursive(true).mode(0o755).create(&homes).map_err(io_err("create", &homes))?;
    let refused = |source| BuildError::Refused { what: "a home_binds directory", source };
    let dir = Confined::open(&homes).and_then(|h| h.create_dir_all(rel, 0o755)).map_err(refused)?;
    let src = dir.path().to_owned();
    let ours = fs::metadata(opts.home.root()).map_err(io_err("read", opts.home.root()))?.uid();
    if dir.owner().map_err(refused)? != ours {
        // Given to the build user already (by an earlier build).
        return Ok(src);
    }
    // Made by us just now, or left 0777 by an older pkgcell: close it, then
    // hand it over from inside the user namespace, where root may chown to
    // the build user (the host user may not chown to a subordinate id).
    dir.set_mode(0o755).map_err(refused)?;
    let inside = "/pkgcell/home-bind";
    let mut spec = Spec::new(
        Root::Overlay { lowers: vec![opts.base.root.clone()], upper: Upper::Tmpfs { size: 16 << 20 } },
        vec!["chown".into(), format!("{BUILD_UID}:{BUILD_UID}"), inside.into()],
    );
    spec.mounts.push(Mount::Bind { src: src.clone(), dst: inside.into(), access: Access::ReadWrite });
    spec.env.insert("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let outcome = Sandbox::new(spec)
        .stdout(Stdio::null())
        .run()
        .map_err(|source| BuildError::Sandbox { what: "giving a home_binds directory to the build user", source })?;
    if !outcome.status.success() {
        return Err(BuildError::HomeBind { path: src, reason: format!("chown to the build user failed ({:?})", outcome.status) });
    }
    Ok(src)
}

/// What happened to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    /// Built in this run.
    Built,
    /// Its pkgid was already in the store.
    Cached,
    /// Its pkgid was in the remote store, and was downloaded, not built.
    Downloaded,
    /// Its plan, fetch or build failed.
    Failed,
    /// Not built because something it needs failed or was skipped.
    Skipped,
    /// Not built because its `arch` leaves out the repository's: not a
    /// failure.
    NotForArch,
}

/// One package file of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputFile {
    /// The package file name.
    pub name: String,
    /// Where it is in the store.
    pub path: PathBuf,
    /// Its BLAKE3 hash.
    pub blake3: Blake3,
    /// Its size in bytes.
    pub size: u64,
}

/// The result for one `[pkgbuilds]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct PackageResult {
    /// The entry name.
    pub name: String,
    /// Its pkgbase, when parsed.
    pub pkgbase: Option<String>,
    /// Its pkgid, when planned.
    pub pkgid: Option<PkgId>,
    /// What happened.
    pub status: PackageStatus,
    /// Its package files (built or cached).
    pub files: Vec<OutputFile>,
    /// The build log of this run.
    pub log: Option<PathBuf>,
    /// Why: the error, what it waited for, or why it was not built.
    pub reason: Option<String>,
    /// Wall time of the build in this run, in seconds.
    pub seconds: Option<f64>,
    /// Peak resident memory of the largest process of makepkg, in KiB
    /// (of the build that made it, for a cached one).
    pub peak_memory_kib: Option<u64>,
    /// How the memory and process limits were applied (of the build that
    /// made it, for a cached one; none for records made before this was recorded).
    pub limits: Option<LimitsApplied>,
    /// The dependency layer the build ran on, when it needed one.
    pub layer: Option<LayerUse>,
}

/// The dependency layer of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerUse {
    /// Its key: the directory under `$PKGCELL_HOME/layers`.
    pub key: String,
    /// Whether this build made it (false: reused from the cache).
    pub made: bool,
}

/// Progress of a run, for display.
#[derive(Debug)]
pub enum Event<'a> {
    /// A package's work began (it may still wait for its lock).
    Started {
        /// The entry.
        name: &'a str,
    },
    /// A package moved to another step (fetch, deps, makepkg, store).
    Step {
        /// The entry.
        name: &'a str,
        /// The step.
        step: &'static str,
    },
    /// A package is done.
    Finished(&'a PackageResult),
}

/// A build of one package that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Its sources could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sandbox could not start.
    #[error("cannot start the sandbox for {what}")]
    Sandbox {
        /// Which sandbox.
        what: &'static str,
        /// The cause.
        #[source]
        source: pkgcell_sandbox::Error,
    },
    /// makepkg failed; the log tail says why.
    #[error("makepkg failed ({status}); log: {}\n{tail}", log.display())]
    Makepkg {
        /// Exit status, or "timed out".
        status: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// pacman could not install the dependency set.
    #[error("cannot install the dependencies ({status}); log: {}\n{tail}", log.display())]
    DepLayer {
        /// Exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A package file of a repository does not have the SHA-256 its
    /// database states.
    #[error("dependency file {} does not match its repository database: sha256 expected {expected}, got {got}", path.display())]
    DepChecksum {
        /// The file.
        path: PathBuf,
        /// The database's `%SHA256SUM%`.
        expected: String,
        /// What the file has.
        got: String,
    },
    /// The dependency layer's pacman database does not hold what was planned.
    #[error(
        "the dependency layer {} holds other packages than planned: planned {expected}, installed {got}; \
         does the repository database match its package files?", layer.display()
    )]
    LayerMismatch {
        /// The layer's upper directory.
        layer: PathBuf,
        /// Planned `<name> <version>`, comma-separated.
        expected: String,
        /// Found `<name> <version>`, comma-separated.
        got: String,
    },
    /// A package of another entry that this build installs is not in the store.
    #[error("dependency {pkgname} (built by {entry}) is not in the store")]
    MissingDependency {
        /// The entry that builds it.
        entry: String,
        /// The package name.
        pkgname: String,
    },
    /// A `home_binds` directory cannot be used.
    #[error("home_binds directory {}: {reason}", path.display())]
    HomeBind {
        /// The directory (or the entry, when it is not a plain relative path).
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A package file that the original build installed is no longer in the store.
    #[error("dependency {line} of the original build is not in the store")]
    MissingDependencyFile {
        /// The record's line: `<pkgname> <blake3>`.
        line: String,
    },
    /// A `-I` file is no longer what was read and hashed before the run.
    #[error(
        "the package file {} (-I) changed since the run started (blake3 {expected}, now {found}); run again",
        path.display()
    )]
    LocalChanged {
        /// The file.
        path: PathBuf,
        /// Its hash when it was read.
        expected: Blake3,
        /// Its hash now.
        found: Blake3,
    },
    /// The cgroup of a build could not be made.
    #[error("cannot make a cgroup for the build in {}", path.display())]
    Cgroup {
        /// The delegated cgroup it was made in.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A kept failed build could not be made the user's (chown inside).
    #[error("cannot make the kept build {} yours: chown -R ended with {status}", path.display())]
    HandOver {
        /// The kept tree.
        path: PathBuf,
        /// How chown ended.
        status: String,
    },
    /// The entry is not in the plan, or its plan failed.
    #[error("{0} is not planned (see `pkgcell plan`)")]
    NotPlanned(String),
    /// makepkg succeeded but wrote no package.
    #[error("makepkg wrote no package file; log: {}", .0.display())]
    NoOutputs(PathBuf),
    /// A file the sandbox wrote could not be read as what it should be (a
    /// symlink, a FIFO, too large): the build fails rather than trust it.
    #[error("refused {what}")]
    Refused {
        /// What was being read: "a package file of the build".
        what: &'static str,
        /// Why.
        #[source]
        source: ConfinedError,
    },
    /// A package file of the build is not the package its name says, or
    /// not one of the PKGBUILD's.
    #[error("refused the package file {file:?} of the build: {why}")]
    BadOutput {
        /// Its name in PKGDEST.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// The package files of a build are larger than [`Limits::max_output`] together.
    #[error("the package files of the build are larger than the limit of {} together ([build] max_output)", size_text(*limit))]
    OutputsTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The PKGBUILD's tree could not be checked out of git.
    #[error("cannot check out {commit} of {}: {message}", repo.display())]
    Checkout {
        /// The bare repository.
        repo: PathBuf,
        /// The commit.
        commit: String,
        /// git's message.
        message: String,
    },
    /// The remote store could not be asked for the pkgid.
    #[error("cannot look the package up in the remote store")]
    Remote(#[source] RemoteError),
    /// The build is in the local store, but could not be uploaded.
    #[error("built and stored locally, but not uploaded to the remote store (the next build run retries)")]
    RemoteUpload(#[source] RemoteError),
    /// A file of the build could not be read or written.
    #[error(transparent)]
    Io(#[from] IoPath),
}

/// Build what `selected` names (all entries when empty) and what they
/// need, in dependency order, `opts.jobs` at a time. Returns one result per
/// entry involved, in config order.
pub fn build_plan(
    plan: &Plan,
    selected: &[String],
    opts: &BuildOptions,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Vec<PackageResult>, SetupError> {
    let index: BTreeMap<&str, usize> = plan.packages.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    // The selection and, transitively, what it needs.
    let mut wanted: BTreeSet<usize> = BTreeSet::new();
    let mut stack: Vec<usize> = Vec::new();
    for s in selected {
        match index.get(s.as_str()) {
            Some(&i) => stack.push(i),
            None => {
                return Err(SetupError::UnknownPackage {
                    name: s.clone(),
                    known: plan.packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    if selected.is_empty() {
        stack.extend(0..plan.packages.len());
    }
    while let Some(i) = stack.pop() {
        if wanted.insert(i) {
            stack.extend(plan.packages[i].after.iter().filter_map(|a| index.get(a.as_str()).copied()));
        }
    }

    let mut results: BTreeMap<usize, PackageResult> = BTreeMap::new();
    let blank = |i: usize, status, reason: String| PackageResult {
        name: plan.packages[i].name.clone(),
        pkgbase: plan.packages[i].pkgbase.clone(),
        pkgid: plan.packages[i].pkgid.clone(),
        status,
        files: Vec::new(),
        log: None,
        reason: Some(reason),
        seconds: None,
        peak_memory_kib: None,
        limits: None,
        layer: None,
    };
    // Plan errors fail their entry here; blocked entries are decided by the
    // scheduler below like any dependent of a failure.
    for &i in &wanted {
        let r = match &plan.packages[i].status {
            Status::Error { stage, message } => blank(i, PackageStatus::Failed, format!("{stage}: {message}")),
            Status::NotForArch { archs } => {
                blank(i, PackageStatus::NotForArch, format!("not built for {} (arch = {})", opts.arch, archs.join(" ")))
            }
            Status::ToBuild | Status::Blocked { .. } => continue,
        };
        on_event(Event::Finished(&r));
        results.insert(i, r);
    }
    let pkgids: BTreeMap<String, PkgId> =
        plan.packages.iter().filter_map(|p| p.pkgid.clone().map(|id| (p.name.clone(), id))).collect();
    let store = Store::at(opts.home.store());
    let fetcher = Fetcher::new(opts.home.clone(), opts.base.root.clone())
        .with_rlimits(opts.limits.rlimits())
        .with_file_sources(opts.file_sources.clone());
    // `-d` directories: writable by the build user for the whole run (its
    // builds may share them), the caller's again after it.
    crate::lent::repair(&opts.home, &opts.base.root);
    let lent = crate::lent::lend(&opts.home, &opts.base.root, &opts.binds)?;

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, PackageResult)>();
        let mut running = 0usize;
        let mut started: BTreeSet<usize> = BTreeSet::new();
        loop {
            // Decide every entry whose needs are settled: skip it, or start it.
            let mut progress = true;
            while progress {
                progress = false;
                for &i in &wanted {
                    if results.contains_key(&i) || started.contains(&i) {
                        continue;
                    }
                    let p = &plan.packages[i];
                    let needs: Vec<usize> = p.after.iter().filter_map(|a| index.get(a.as_str()).copied()).collect();
                    let bad: Vec<&str> = needs
                        .iter()
                        .filter(|j| matches!(results.get(j).map(|r| r.status), Some(PackageStatus::Failed | PackageStatus::Skipped)))
                        .map(|&j| plan.packages[j].name.as_str())
                        .collect();
                    let blocked = match &p.status {
                        Status::Blocked { by } => by.clone(),
                        Status::ToBuild | Status::Error { .. } | Status::NotForArch { .. } => Vec::new(),
                    };
                    if !bad.is_empty() || !blocked.is_empty() {
                        let mut by: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
                        by.extend(blocked);
                        by.sort();
                        by.dedup();
                        let r = blank(i, PackageStatus::Skipped, format!("needs {}, which did not build", by.join(", ")));
                        on_event(Event::Finished(&r));
                        results.insert(i, r);
                        progress = true;
                        continue;
                    }
                    let ready = needs.iter().all(|j| {
                        matches!(
                            results.get(j).map(|r| r.status),
                            Some(PackageStatus::Built | PackageStatus::Cached | PackageStatus::Downloaded)
                        )
                    });
                    if ready && running < opts.jobs.max(1) {
                        started.insert(i);
                        running += 1;
                        let tx = tx.clone();
                        let (store, fetcher, pkgids) = (&store, &fetcher, &pkgids);
                        scope.spawn(move || {
                            on_event(Event::Started { name: &p.name });
                            let r = build_entry(plan, i, opts, store, fetcher, pkgids, on_event);
                            let _ = tx.send((i, r));
                        });
                    }
                }
            }
            if running == 0 {
                break;
            }
            let (i, r) = rx.recv().expect("a worker is running");
            running -= 1;
            on_event(Event::Finished(&r));
            results.insert(i, r);
        }
    });
    if let Err(e) = lent.give_back() {
        tracing::warn!(error = %error_chain(&e), "cannot give a -d directory back to you: the next `pkgcell build` tries again");
    }
    Ok(results.into_values().collect())
}

/// Build one planned entry (in a worker thread) and say how it went.
fn build_entry(
    plan: &Plan,
    i: usize,
    opts: &BuildOptions,
    store: &Store,
    fetcher: &Fetcher,
    pkgids: &BTreeMap<String, PkgId>,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> PackageResult {
    let p = &plan.packages[i];
    let mut result = PackageResult {
        name: p.name.clone(),
        pkgbase: p.pkgbase.clone(),
        pkgid: p.pkgid.clone(),
        status: PackageStatus::Failed,
        files: Vec::new(),
        log: None,
        reason: None,
        seconds: None,
        peak_memory_kib: None,
        limits: None,
        layer: None,
    };
    let (Some(pkgid), Some(checkout), Some(srcinfo)) = (&p.pkgid, &p.checkout, &p.srcinfo) else {
        result.reason = Some("not planned".into());
        return result;
    };
    let span = tracing::info_span!("build", pkgbase = p.pkgbase.as_deref().unwrap_or(""), %pkgid);
    let _enter = span.enter();
    let job = Job { name: &p.name, pkgid, checkout, srcinfo, installs: &p.built_deps, packages: &p.installs, pkgnames: &p.pkgnames };
    let step = |s| on_event(Event::Step { name: &p.name, step: s });
    match build_one(&job, opts, store, fetcher, pkgids, &step) {
        Ok(Built { status, record, log, seconds, layer, note }) => {
            result.status = status;
            result.peak_memory_kib = record.peak_memory_kib;
            result.limits = record.limits;
            result.layer = layer;
            result.files = record
                .outputs
                .iter()
                .map(|o| OutputFile { name: o.name.clone(), path: store.object_path(&o.blake3), blake3: o.blake3, size: o.size })
                .collect();
            result.log = log;
            result.seconds = seconds;
            match (status, note) {
                (PackageStatus::Cached, _) => {
                    result.reason = Some(format!("{pkgid} is in the store (built {})", ago(record.started)))
                }
                (PackageStatus::Downloaded, _) => {
                    result.reason = Some(format!("{pkgid} downloaded from the remote store (built {})", ago(record.started)))
                }
                (_, note) => result.reason = note,
            }
        }
        Err(failure) => {
            let (e, log) = *failure;
            result.reason = Some(error_chain(&e));
            result.log = log;
        }
    }
    result
}

fn ago(unix: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let s = now.saturating_sub(unix);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// What one build needs from the plan.
struct Job<'a> {
    name: &'a str,
    pkgid: &'a PkgId,
    checkout: &'a Checkout,
    srcinfo: &'a str,
    installs: &'a [(String, String)],
    packages: &'a [Install],
    /// The pkgnames of its PKGBUILD: the only packages it may output.
    pkgnames: &'a [String],
}

/// A package file the dependency layer installs.
#[derive(Debug, Clone)]
struct DepFile {
    /// Its pkgname.
    pkgname: String,
    /// Its version, as its pacman database entry must say.
    version: String,
    /// Its file name (pacman -U reads the format from it).
    filename: String,
    /// Where it is.
    src: PathBuf,
    /// The SHA-256 its copy must have (files of a repository database).
    sha256: Option<String>,
    /// Its [`Record::deps`] line.
    line: String,
}

impl DepFile {
    /// A package file of the store.
    fn of_store(store: &Store, pkgname: &str, o: &Output) -> DepFile {
        DepFile {
            pkgname: pkgname.to_owned(),
            version: version_of(&o.name).unwrap_or_default().to_owned(),
            filename: o.name.clone(),
            src: store.object_path(&o.blake3),
            sha256: None,
            line: format!("{pkgname} {}", o.blake3),
        }
    }

    /// A package file of a repository, in the shared package cache.
    fn of_cache(home: &Home, pkgname: &str, version: &str, filename: &str, sha256: &str) -> DepFile {
        DepFile {
            pkgname: pkgname.to_owned(),
            version: version.to_owned(),
            filename: filename.to_owned(),
            src: home.package_cache().join(filename),
            sha256: Some(sha256.to_owned()),
            line: format!("{pkgname} sha256:{sha256} {filename}"),
        }
    }
}

/// The package files of repositories that `packages` installs, fetched
/// into the shared package cache ([`Fetcher::fetch_packages`]).
fn fetch_repo_deps(fetcher: &Fetcher, home: &Home, packages: &[Install]) -> Result<Vec<DepFile>, FetchError> {
    let mut out = Vec::new();
    for (i, _) in fetcher.fetch_packages(packages)? {
        let p = &packages[i];
        if let InstallFrom::Sync { filename, sha256, .. } | InstallFrom::Repo { filename, sha256, .. } = &p.from {
            out.push(DepFile::of_cache(home, &p.name, &p.version, filename, sha256));
        }
    }
    Ok(out)
}

/// A build that ended well: built or cached.
struct Built {
    status: PackageStatus,
    record: Record,
    log: Option<PathBuf>,
    seconds: Option<f64>,
    layer: Option<LayerUse>,
    /// What happened on the way (a damaged remote copy).
    note: Option<String>,
}

/// A failed build and its log, when it got that far (boxed: errors are large).
type Failure = Box<(BuildError, Option<PathBuf>)>;

/// Lock, then cached or fetch + deps + makepkg + store.
fn build_one(
    job: &Job<'_>,
    opts: &BuildOptions,
    store: &Store,
    fetcher: &Fetcher,
    pkgids: &BTreeMap<String, PkgId>,
    step: &dyn Fn(&'static str),
) -> Result<Built, Failure> {
    let no_log = |e: BuildError| Box::new((e, None));
    let _lock = store.lock_with(job.pkgid, || step("waiting for lock")).map_err(|e| no_log(e.into()))?;
    // Whatever comes next (cached, downloaded or built), the record names
    // the -I files: this also puts back one that a record made before
    // builds stored them lacks.
    store_local(store, &opts.local).map_err(no_log)?;
    let forced = opts.rebuild.forced(job.name);
    let stored = if forced { None } else { store.record(job.pkgid).map_err(|e| no_log(e.into()))? };
    if let Some(r) = stored {
        // Built here earlier, perhaps when the remote store was down: share it now.
        if let Some(remote) = &opts.remote
            && !remote.has_record(job.pkgid).map_err(|e| no_log(BuildError::RemoteUpload(e)))?
        {
            step("upload");
            remote.upload(&r, store).map_err(|e| no_log(BuildError::RemoteUpload(e)))?;
        }
        return Ok(Built { status: PackageStatus::Cached, record: r, log: None, seconds: None, layer: None, note: None });
    }
    let mut note = None;
    if let Some(remote) = opts.remote.as_ref().filter(|_| !forced) {
        step("remote store");
        match remote.fetch(job.pkgid, store) {
            Ok(Some(r)) => {
                return Ok(Built { status: PackageStatus::Downloaded, record: r, log: None, seconds: None, layer: None, note: None });
            }
            Ok(None) => {}
            // Damage is not ours to repair by hand: build, and the upload
            // replaces the damaged objects.
            Err(e) if e.is_damage() => {
                let msg = error_chain(&e);
                tracing::warn!(error = %msg, "building locally instead");
                note = Some(format!("built locally: {msg}"));
            }
            Err(e) => return Err(no_log(BuildError::Remote(e))),
        }
    }
    let started = SystemTime::now();
    let clock = Instant::now();

    step("fetch");
    let mut timings = Timings::default();
    let mut lap = Instant::now();
    let mut split = |slot: &mut f64| {
        *slot = lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };
    let fetched = fetcher.fetch(&fetch::sources_of(job.srcinfo, &opts.arch)).map_err(|e| no_log(e.into()))?;
    let mut deps = fetch_repo_deps(fetcher, &opts.home, job.packages).map_err(|e| no_log(e.into()))?;

    split(&mut timings.fetch);
    step("deps");
    for (entry, pkgname) in job.installs {
        let missing = || BuildError::MissingDependency { entry: entry.clone(), pkgname: pkgname.clone() };
        let id = pkgids.get(entry).ok_or_else(|| no_log(missing()))?;
        let rec = store.record(id).map_err(|e| no_log(e.into()))?.ok_or_else(|| no_log(missing()))?;
        let out = rec.outputs.iter().find(|o| pkgname_of(&o.name) == Some(pkgname.as_str())).ok_or_else(|| no_log(missing()))?;
        deps.push(DepFile::of_store(store, pkgname, out));
    }
    deps.sort_by(|a, b| a.line.cmp(&b.line));
    let dep_lines: Vec<String> = deps.iter().map(|d| d.line.clone()).collect();
    let layer = dep_layer(opts, job, &deps)?;
    let installed = match &layer {
        Some(layer) => check_layer(&layer.upper, &opts.base.root, &deps, &opts.local).map_err(no_log)?,
        None => Vec::new(),
    };

    split(&mut timings.deps);
    step("makepkg");
    let dir = BuildDir::new(&opts.home, DirKind::Build, job.pkgid).map_err(no_log)?;
    let log_path = buildlog::log_path(&opts.home.logs(), job.pkgid, job.srcinfo, buildlog::LogKind::Build);
    let result = run_makepkg(job, opts, &dir, layer.as_ref(), &fetched, &log_path, &MakepkgEnv::default());
    let made = match result {
        Ok(made) => made,
        Err(e) => {
            dir.finish(opts.keep_failed, opts, job.pkgid);
            return Err(Box::new((e, Some(log_path))));
        }
    };

    split(&mut timings.makepkg);
    step("store");
    let with_log = |e: BuildError| Box::new((e, Some(log_path.clone())));
    let mut stored = Vec::new();
    let limit = opts.limits.max_output();
    for o in made.files {
        let path = o.file.path.clone();
        let mut r = o.file.limited(limit).map_err(|source| with_log(BuildError::Refused { what: "a package file of the build", source }))?;
        stored.push(store.put_reader(&o.name, &mut r, &path).map_err(|e| with_log(e.into()))?);
    }
    let buildinfo = made.buildinfo;
    // Streamed: a log may be as large as its limit.
    let log = store.put_file(&log_path).map_err(|e| with_log(e.into()))?.blake3;
    split(&mut timings.store);
    let seconds = clock.elapsed().as_secs_f64();
    let record = Record {
        version: RECORD_VERSION,
        pkgid: job.pkgid.clone(),
        status: RecordStatus::Built,
        outputs: stored,
        buildinfo,
        log,
        base_id: opts.base.id.clone(),
        deps: dep_lines,
        local: opts.local.iter().map(LocalPackage::line).collect(),
        peak_memory_kib: Some(made.peak_memory_kib),
        limits: Some(opts.limits_applied()),
        installed,
        started: started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        seconds,
        timings,
        pkgcell: env!("CARGO_PKG_VERSION").to_owned(),
    };
    store.put_record(&record).map_err(|e| with_log(e.into()))?;
    dir.finish(KeepFailed::No, opts, job.pkgid);
    let layer = layer.map(|l| LayerUse { key: l.key, made: l.made });
    if let Some(remote) = &opts.remote {
        step("upload");
        remote.upload(&record, store).map_err(|e| with_log(BuildError::RemoteUpload(e)))?;
    }
    Ok(Built { status: PackageStatus::Built, record, log: Some(log_path), seconds: Some(seconds), layer, note })
}

/// What a [`rebuild`] made.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Its package files, in the directory asked for.
    pub files: Vec<PathBuf>,
    /// Its build log.
    pub log: PathBuf,
}

/// Build the planned entry `name` again as [`build_plan`] would, but in
/// the environment `menv`, on exactly the dependency set `deps` (the lines
/// of a [`Record::deps`]), and with the package files copied into `dest`
/// instead of the store: nothing is recorded, no lock is taken. `tag`
/// names the log (`….repro-<tag>.log`). For [`crate::repro`].
pub fn rebuild(
    plan: &Plan,
    name: &str,
    deps: &[String],
    opts: &BuildOptions,
    menv: &MakepkgEnv,
    tag: &str,
    dest: &Path,
) -> Result<Rebuilt, BuildError> {
    let p = plan.packages.iter().find(|p| p.name == name).ok_or_else(|| BuildError::NotPlanned(name.to_owned()))?;
    let (Some(pkgid), Some(checkout), Some(srcinfo)) = (&p.pkgid, &p.checkout, &p.srcinfo) else {
        return Err(BuildError::NotPlanned(name.to_owned()));
    };
    let span = tracing::info_span!("rebuild", pkgbase = p.pkgbase.as_deref().unwrap_or(""), %pkgid, tag);
    let _enter = span.enter();
    let job = Job { name: &p.name, pkgid, checkout, srcinfo, installs: &p.built_deps, packages: &p.installs, pkgnames: &p.pkgnames };
    let store = Store::at(opts.home.store());
    // Sources come from the cache; only what it lacks is downloaded, on
    // the host, before the build (which has no network).
    let fetcher = Fetcher::new(opts.home.clone(), opts.base.root.clone())
        .with_rlimits(opts.limits.rlimits())
        .with_file_sources(opts.file_sources.clone());
    let fetched = fetcher.fetch(&fetch::sources_of(srcinfo, &opts.arch))?;
    let dep_files = dep_files_of_lines(&opts.home, &store, deps)?;
    let layer = dep_layer(opts, &job, &dep_files).map_err(|f| f.0)?;
    if let Some(layer) = &layer {
        check_layer(&layer.upper, &opts.base.root, &dep_files, &opts.local)?;
    }
    let dir = BuildDir::new(&opts.home, DirKind::Repro, pkgid)?;
    let log = buildlog::log_path(&opts.home.logs(), pkgid, srcinfo, buildlog::LogKind::Repro(tag));
    let made = run_makepkg(&job, opts, &dir, layer.as_ref(), &fetched, &log, menv);
    let copied = made.and_then(|Made { files, .. }| {
        fs::create_dir_all(dest).map_err(io_err("create", dest))?;
        let mut out = Vec::new();
        for f in files {
            // The name was checked: a plain file name.
            let dst = dest.join(&f.name);
            let mut w = fs::File::create(&dst).map_err(io_err("create", &dst))?;
            f.file
                .copy_to(&mut w, opts.limits.max_output())
                .map_err(|source| BuildError::Refused { what: "a package file of the build", source })?;
            out.push(dst);
        }
        Ok(out)
    });
    dir.finish(KeepFailed::No, opts, pkgid);
    Ok(Rebuilt { files: copied?, log })
}

/// The dependency set a build of the planned entry `name` would install
/// now, as [`Record::deps`] lines (sorted): the packages of the entries it
/// needs, from their records in the store, and those of repositories.
pub fn dep_lines(plan: &Plan, name: &str, store: &Store) -> Result<Vec<String>, BuildError> {
    let p = plan.packages.iter().find(|p| p.name == name).ok_or_else(|| BuildError::NotPlanned(name.to_owned()))?;
    let mut lines = Vec::new();
    for (entry, pkgname) in &p.built_deps {
        let missing = || BuildError::MissingDependency { entry: entry.clone(), pkgname: pkgname.clone() };
        let id = plan.packages.iter().find(|q| q.name == *entry).and_then(|q| q.pkgid.as_ref()).ok_or_else(missing)?;
        let rec = store.record(id)?.ok_or_else(missing)?;
        let out = rec.outputs.iter().find(|o| pkgname_of(&o.name) == Some(pkgname.as_str())).ok_or_else(missing)?;
        lines.push(format!("{pkgname} {}", out.blake3));
    }
    for i in &p.installs {
        if let InstallFrom::Sync { filename, sha256, .. } | InstallFrom::Repo { filename, sha256, .. } = &i.from {
            lines.push(format!("{} sha256:{sha256} {filename}", i.name));
        }
    }
    lines.sort();
    Ok(lines)
}

/// The package files of a record's dependency lines: `<pkgname> <blake3>`
/// found by hash among the outputs of the store's records,
/// `<pkgname> sha256:<hex> <file>` in the shared package cache.
fn dep_files_of_lines(home: &Home, store: &Store, deps: &[String]) -> Result<Vec<DepFile>, BuildError> {
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let records = store.records()?;
    let mut out = Vec::new();
    for line in deps {
        let mut words = line.split(' ');
        let (pkgname, hash, file) = (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next());
        if let (Some(sha256), Some(filename)) = (hash.strip_prefix("sha256:"), file) {
            let d = DepFile::of_cache(home, pkgname, version_of(filename).unwrap_or_default(), filename, sha256);
            if !d.src.is_file() || filename.contains('/') {
                return Err(BuildError::MissingDependencyFile { line: line.clone() });
            }
            out.push(d);
            continue;
        }
        let found = records
            .iter()
            .flat_map(|r| &r.outputs)
            .find(|o| o.blake3.to_string() == hash && store.object_path(&o.blake3).exists());
        match found {
            Some(o) => out.push(DepFile::of_store(store, pkgname, o)),
            None => return Err(BuildError::MissingDependencyFile { line: line.clone() }),
        }
    }
    out.sort_by(|a, b| a.line.cmp(&b.line));
    Ok(out)
}

/// Check that the dependency layer's pacman database holds exactly the
/// planned packages beyond the base (name and version), so that what the
/// dephash says is what is installed; the `<name> <version>` lines found.
fn check_layer(upper: &Path, base: &Path, deps: &[DepFile], local_pkgs: &[LocalPackage]) -> Result<Vec<String>, BuildError> {
    // The layer was made by pacman as root inside, running the install
    // scripts of -I files: its upper is read like a build's PKGDEST.
    let refused = |source| BuildError::Refused { what: "the dependency layer's pacman database", source };
    let local = Confined::open(upper).and_then(|u| u.open_dir("var/lib/pacman/local")).map_err(refused)?;
    let in_base = |entry: &str| base.join("var/lib/pacman/local").join(entry).join("desc").exists();
    let mut got: Vec<String> = Vec::new();
    for (name, kind) in local.entries().map_err(refused)? {
        // Whiteouts and ALPM_DB_VERSION are no entries; a name that is no
        // plain file name cannot be one pacman wrote.
        let Ok(name) = String::from_utf8(name) else { continue };
        if kind != Kind::Dir || name.starts_with('.') || in_base(&name) {
            continue;
        }
        let text = match local.read_to_string(Path::new(&name).join("desc"), MAX_DESC) {
            Ok(text) => text,
            Err(ConfinedError::Io(e)) if e.source.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(refused(e)),
        };
        let field = |k: &str| text.lines().skip_while(|l| *l != k).nth(1).unwrap_or("").to_owned();
        got.push(format!("{} {}", field("%NAME%"), field("%VERSION%")));
    }
    got.sort();
    let mut expected: Vec<String> = deps.iter().map(|d| format!("{} {}", d.pkgname, d.version)).collect();
    expected.extend(local_pkgs.iter().map(|l| format!("{} {}", l.name, l.version)));
    expected.sort();
    expected.dedup();
    if got != expected {
        return Err(BuildError::LayerMismatch { layer: upper.to_owned(), expected: expected.join(", "), got: got.join(", ") });
    }
    Ok(got)
}

/// Whether the layer `upper` removed an entry of the base's pacman database
/// (a package replaced by another version, or removed): the overlay keeps
/// such a removal as a whiteout, i.e. anything but a directory, in the
/// upper's `var/lib/pacman/local`. Unreadable counts as yes (then makepkg
/// checks the dependencies itself).
fn replaces_base_package(upper: &Path) -> bool {
    let Ok(local) = Confined::open(upper).and_then(|u| u.open_dir("var/lib/pacman/local")) else { return true };
    let Ok(entries) = local.entries() else { return true };
    entries.iter().any(|(name, kind)| name != b"ALPM_DB_VERSION" && *kind != Kind::Dir)
}

/// The version (`[epoch:]pkgver-pkgrel`) of a package file name.
fn version_of(file: &str) -> Option<&str> {
    let stem = &file[..file.find(".pkg.tar")?];
    let name = pkgname_of(file)?;
    let rest = stem.get(name.len() + 1..)?;
    Some(&rest[..rest.rfind('-')?])
}

/// The pkgname of a package file name `<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.*`.
pub fn pkgname_of(file: &str) -> Option<&str> {
    let stem = &file[..file.find(".pkg.tar")?];
    let mut it = stem.rsplitn(4, '-');
    let (_arch, _rel, _ver) = (it.next()?, it.next()?, it.next()?);
    it.next()
}

/// The `.BUILDINFO` that makepkg's script copied into PKGDEST ("" when
/// there is none), read beneath it like the package files.
fn read_buildinfo(pkgdest: &Confined) -> Result<String, BuildError> {
    let refused = |source| BuildError::Refused { what: "the .BUILDINFO of the build", source };
    match pkgdest.read_to_string(".BUILDINFO", MAX_BUILDINFO) {
        Ok(text) => Ok(text),
        Err(ConfinedError::Io(e)) if e.source.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(refused(e)),
    }
}

/// Whose scratch directory it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirKind {
    /// A build, which holds the pkgid's lock: other directories of the
    /// pkgid are leftovers of killed builds and are removed.
    Build,
    /// A repro rebuild, which takes no lock (it may run next to a build of
    /// the same pkgid) and so leaves other directories alone.
    Repro,
}

/// The scratch directory of one build: overlay upper and work, pkgdest,
/// srcdest, and the exported tree of a git source.
struct BuildDir {
    root: PathBuf,
}

impl BuildDir {
    fn new(home: &Home, kind: DirKind, pkgid: &PkgId) -> Result<BuildDir, BuildError> {
        let tmp = home.tmp();
        fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        // We hold the pkgid's lock: any other directory of this pkgid was
        // left by a build that was killed.
        let word = match kind {
            DirKind::Build => "build",
            DirKind::Repro => "repro",
        };
        let prefix = format!("{word}-{}-", pkgid.short());
        if let (Ok(rd), DirKind::Build) = (fs::read_dir(&tmp), kind) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    tracing::info!(path = %e.path().display(), "removing the directory of an interrupted build");
                    let _ = remove_dir(&e.path());
                }
            }
        }
        let root = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&tmp)
            .map_err(io_err("create a directory in", &tmp))?
            .keep();
        let d = BuildDir { root };
        // 0755: the build user, a subordinate id outside, gets PKGDEST and
        // SRCDEST (and /build) by a chown inside the sandbox (its spec's
        // owners), not by opening them to every user of the host.
        for sub in ["upper", "pkgdest", "srcdest"] {
            let p = d.root.join(sub);
            fs::DirBuilder::new().mode(0o755).create(&p).map_err(io_err("create", &p))?;
        }
        let gitconfig = d.gitconfig();
        fs::write(&gitconfig, "[safe]\n\tdirectory = *\n").map_err(io_err("write", &gitconfig))?;
        Ok(d)
    }

    fn pkgdest(&self) -> PathBuf {
        self.root.join("pkgdest")
    }

    /// The build's git config, bound read-only (GIT_CONFIG_GLOBAL).
    fn gitconfig(&self) -> PathBuf {
        self.root.join("gitconfig")
    }

    fn finish(&self, keep: KeepFailed, opts: &BuildOptions, pkgid: &PkgId) {
        match keep {
            KeepFailed::Yes => {
                let dst = opts.home.failed().join(pkgid.to_string());
                let _ = remove_dir(&dst);
                let _ = fs::create_dir_all(dst.parent().expect("has a parent"));
                if fs::rename(&self.root, &dst).is_ok() {
                    // Its mtime is when it was kept: `store gc --failed-age` counts from there.
                    if let Err(e) = fs::File::open(&dst).and_then(|f| f.set_modified(SystemTime::now())) {
                        tracing::debug!(path = %dst.display(), error = %e, "cannot set the time of a kept build");
                    }
                    if let Err(e) = hand_over(&dst, &opts.base.root) {
                        tracing::warn!(path = %dst.display(), error = %error_chain(&e), "cannot hand the kept build to you: remove it with `pkgcell store gc --failed-age 0`");
                    }
                    tracing::warn!(path = %dst.display(), "kept the failed build's directory");
                }
            }
            KeepFailed::No => {
                if let Err(e) = remove_dir(&self.root) {
                    tracing::warn!(path = %self.root.display(), error = %error_chain(&e), "cannot remove a build directory");
                }
            }
        }
    }
}

/// Make every file of the tree at `path` the caller's and readable and
/// writable by it (`chown -R` as root inside a user namespace, where the
/// build user's subordinate ids are mapped), so that the user can look at a
/// kept build and remove it by hand. The tree's files are not followed:
/// chown -R does not follow links by default.
pub(crate) fn hand_over(path: &Path, base: &Path) -> Result<(), BuildError> {
    let mut spec = Spec::new(
        Root::Overlay { lowers: vec![base.to_owned()], upper: Upper::Tmpfs { size: 1 << 20 } },
        vec!["sh".into(), "-c".into(), "chown -R 0:0 /tree && chmod -R u+rwX /tree".into()],
    );
    spec.mounts.push(Mount::Bind { src: path.to_owned(), dst: "/tree".into(), access: Access::ReadWrite });
    spec.env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    spec.cwd = "/".into();
    spec.timeout = Some(Duration::from_secs(600));
    let what = "handing a kept build over";
    let outcome = Sandbox::new(spec).stdin(Stdio::null()).stdout(Stdio::null()).run().map_err(|source| BuildError::Sandbox { what, source })?;
    if !outcome.status.success() {
        let status = format!("exit status {}", outcome.status.exit_code());
        return Err(BuildError::HandOver { path: path.to_owned(), status });
    }
    Ok(())
}

/// Remove a tree that may hold files of subordinate ids.
pub(crate) fn remove_dir(path: &Path) -> Result<(), BuildError> {
    if !path.exists() {
        return Ok(());
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    pkgcell_sandbox::remove_tree(path).map_err(|source| BuildError::Sandbox { what: "removing a build directory", source })
}

/// A dependency layer ready to be a lower of a build.
#[derive(Debug, Clone)]
struct Layer {
    /// Its upper directory: the lower of the build.
    upper: PathBuf,
    /// Its key (directory name under `layers/`).
    key: String,
    /// Whether this build made it.
    made: bool,
}

/// The dependency layer for `deps` and the -I files (None when nothing is
/// installed): made once per (base, -I files, set of package files), under
/// a lock, by pacman -U as root inside over the base, with its upper on
/// disk. With [`LayerMode::Fresh`] a ready layer is made again, next to
/// the cached one, and swapped into its place.
fn dep_layer(
    opts: &BuildOptions,
    job: &Job<'_>,
    deps: &[DepFile],
) -> Result<Option<Layer>, Failure> {
    let no_log = |e: BuildError| Box::new((e, None));
    if deps.is_empty() && opts.local.is_empty() {
        return Ok(None);
    }
    // The layer installs the store's copies (a rebuild comes here without
    // build_one, which stores them first).
    let store = Store::at(opts.home.store());
    store_local(&store, &opts.local).map_err(no_log)?;
    let lines: Vec<String> = deps.iter().map(|d| d.line.clone()).collect();
    let local: Vec<String> = opts.local.iter().map(LocalPackage::line).collect();
    let key = layer_key(&opts.base.id, &local, &lines);
    let layers = opts.home.layers();
    let dir = layers.join(&key);
    let ready = dir.join("ready");
    let reuse = |made| Ok(Some(Layer { upper: dir.join("upper"), key: key.clone(), made }));
    if opts.layers.usable(&ready) {
        return reuse(false);
    }
    fs::create_dir_all(&layers).map_err(|e| no_log(io_err("create", &layers)(e).into()))?;
    let lock_path = layers.join(format!("{key}.lock"));
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| no_log(io_err("open", &lock_path)(e).into()))?;
    lock.lock().map_err(|e| no_log(io_err("lock", &lock_path)(e).into()))?;
    if opts.layers.usable(&ready) {
        return reuse(false);
    }
    let fresh = ready.exists();
    // A ready layer that must be made again is made beside it (builds may be
    // running on it); otherwise in place, over what a killed run left.
    let target = if fresh { layers.join(format!("{key}.fresh")) } else { dir.clone() };
    remove_dir(&target).map_err(no_log)?;
    let pkgs = target.join("pkgs");
    fs::create_dir_all(&pkgs).map_err(|e| no_log(io_err("create", &pkgs)(e).into()))?;
    let mut spec = Spec::new(
        Root::Overlay {
            lowers: vec![opts.base.root.clone()],
            upper: Upper::Dir { upper: target.join("upper"), work: target.join("work") },
        },
        Vec::new(),
    );
    // The base's pacman.conf with pkgcell's trust for the files it checked
    // itself (base::layer_conf says why); the base is pkgcell's, not the build's.
    let base_conf = opts.base.root.join("etc/pacman.conf");
    let conf_text = fs::read_to_string(&base_conf).unwrap_or_default();
    let conf = target.join("pacman.conf");
    fs::write(&conf, crate::base::layer_conf(&conf_text)).map_err(|e| no_log(io_err("write", &conf)(e).into()))?;
    spec.mounts.push(Mount::Bind { src: conf, dst: "/pkgcell/pacman.conf".into(), access: Access::ReadOnly });
    let mut argv: Vec<String> =
        ["pacman", "-U", "--noconfirm", "--noprogressbar", "--config", "/pkgcell/pacman.conf"].map(String::from).to_vec();
    // The -I files first, each bound read-only, in the same transaction as
    // the dependencies so either may need the other. The store's copy, not
    // the file given: it is the content the pkgid was hashed from.
    for (i, l) in opts.local.iter().enumerate() {
        let dst = PathBuf::from(format!("/pkgcell/local/{i}/{}", l.file_name));
        spec.mounts.push(Mount::Bind { src: store.object_path(&l.blake3), dst: dst.clone(), access: Access::ReadOnly });
        argv.push(dst.display().to_string());
    }
    for d in deps {
        let dst = pkgs.join(&d.filename);
        if fs::hard_link(&d.src, &dst).is_err() {
            fs::copy(&d.src, &dst).map_err(|e| no_log(io_err("copy", &d.src)(e).into()))?;
        }
        // The copy is what pacman installs: check it, not the source.
        if let Some(expected) = &d.sha256 {
            let got = fetch::sha256_of(&dst).map_err(|e| no_log(io_err("read", &dst)(e).into()))?;
            if got != *expected {
                return Err(no_log(BuildError::DepChecksum { path: d.src.clone(), expected: expected.clone(), got }));
            }
        }
        argv.push(format!("/pkgcell/pkgs/{}", d.filename));
    }
    let log_path = buildlog::log_path(&opts.home.logs(), job.pkgid, job.srcinfo, buildlog::LogKind::Deps);
    spec.argv = argv;
    spec.mounts.insert(0, Mount::Bind { src: pkgs.clone(), dst: "/pkgcell/pkgs".into(), access: Access::ReadOnly });
    spec.env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    spec.env.insert("HOME".into(), "/root".into());
    spec.cwd = "/".into();
    spec.timeout = Some(Duration::from_secs(3600));
    let cgroup = apply_limits(opts, &mut spec).map_err(no_log)?;
    let what = if fresh { "made afresh (-c)" } else { "made" };
    let header = format!("pkgcell: dependency layer {key} for {}, {what}\n", job.pkgid);
    let ran = run_logged(spec, &log_path, "installing dependencies", &header, opts, cgroup.as_ref())
        .map_err(|e| Box::new((e, Some(log_path.clone()))))?;
    if !ran.ok {
        return Err(Box::new((BuildError::DepLayer { status: ran.status, log: log_path.clone(), tail: ran.tail }, Some(log_path))));
    }
    let _ = fs::remove_dir_all(&pkgs);
    let _ = fs::remove_file(target.join("pacman.conf"));
    let target_ready = target.join("ready");
    fs::write(&target_ready, "").map_err(|e| no_log(io_err("write", &target_ready)(e).into()))?;
    if fresh {
        swap_in(&layers, &key).map_err(no_log)?;
    }
    tracing::info!(key, fresh, "dependency layer made");
    reuse(true)
}

/// Put each `-I` file into the store as an object (read once: one already
/// there is left alone), so that a record naming it is self-contained and
/// `pkgcell repro` can install the very same file again. The file must
/// still have the hash it was read with: that hash is in the pkgid.
pub fn store_local(store: &Store, local: &[LocalPackage]) -> Result<(), BuildError> {
    for l in local {
        if store.object_path(&l.blake3).is_file() {
            continue;
        }
        let data = fs::read(&l.path).map_err(io_err("read", &l.path))?;
        let found = Blake3::of(&data);
        if found != l.blake3 {
            return Err(BuildError::LocalChanged { path: l.path.clone(), expected: l.blake3, found });
        }
        store.put_bytes(&data)?;
    }
    Ok(())
}

/// Put `layers/<key>.fresh` in the place of `layers/<key>` in one step
/// (renameat2 RENAME_EXCHANGE: the path always names a ready layer), then
/// move the old one aside as `<key>.old-<time>`. A build still running on
/// the old one keeps it: its overlay holds the old directories, and `store
/// gc` (run when no build is running) removes them.
fn swap_in(layers: &Path, key: &str) -> Result<(), BuildError> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let (fresh, live) = (layers.join(format!("{key}.fresh")), layers.join(key));
    renameat2(AT_FDCWD, &fresh, AT_FDCWD, &live, RenameFlags::RENAME_EXCHANGE)
        .map_err(|e| BuildError::Io(IoPath::new("swap a fresh dependency layer into", live.clone(), e.into())))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let old = layers.join(format!("{key}.old-{nanos}"));
    Ok(fs::rename(&fresh, &old).map_err(io_err("rename", &fresh))?)
}

/// The name of the dependency layer of a base, the -I files (`<file name>
/// <blake3>` lines, in order) and a set of installed packages
/// (`<pkgname> <blake3>` lines, sorted, as in [`Record::deps`]).
fn layer_key(base_id: &str, local: &[String], deps: &[String]) -> String {
    let mut key = format!("base {base_id}\n");
    // Without -I files the key is what it was before -I existed.
    for l in local {
        key.push_str("local ");
        key.push_str(l);
        key.push('\n');
    }
    for l in deps {
        key.push_str(l);
        key.push('\n');
    }
    Blake3::of(key.as_bytes()).to_string()[..32].to_owned()
}

/// Remove the dependency layers that no record in `keep` was built on
/// (after `store gc`); returns how many were removed. Run it when no build
/// is running: a layer being made has no record yet. With
/// [`GcMode::DryRun`], only counts them. Returns (layers, bytes).
pub fn gc_layers(home: &Home, keep: &[Record], mode: GcMode) -> Result<(usize, u64), BuildError> {
    let needed: BTreeSet<String> =
        keep.iter().filter(|r| !r.deps.is_empty() || !r.local.is_empty()).map(|r| layer_key(&r.base_id, &r.local, &r.deps)).collect();
    let layers = home.layers();
    let rd = match fs::read_dir(&layers) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_err("read", &layers)(e).into()),
    };
    let (mut removed, mut bytes) = (0, 0);
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !needed.contains(&name) {
            bytes += crate::leftovers::tree_bytes(&e.path());
            if mode == GcMode::Remove {
                remove_dir(&e.path())?;
                let _ = fs::remove_file(layers.join(format!("{name}.lock")));
            }
            removed += 1;
        }
    }
    Ok((removed, bytes))
}

/// How a sandbox run with its output to a log went.
struct Ran {
    /// It exited with 0.
    ok: bool,
    /// Its exit status, and a hint when the log shows a limit was hit.
    status: String,
    /// The log's last lines.
    tail: String,
    /// Peak resident memory of its largest process, in KiB.
    peak_memory_kib: u64,
}

/// Run a sandbox with its stdout and stderr streamed to `log`, keeping at
/// most `opts.log_limit` bytes of them and echoing them as `opts.echo`
/// says (see [`crate::buildlog`]); `opts.limits` name a limit it hit.
fn run_logged(
    spec: Spec,
    log: &Path,
    what: &'static str,
    header: &str,
    opts: &BuildOptions,
    cgroup: Option<&BuildCgroup>,
) -> Result<Ran, BuildError> {
    let limits = &opts.limits;
    let (out, pump) = buildlog::start(log, header, opts.log_limit, opts.echo)?;
    let err = out.try_clone().map_err(io_err("make a pipe for", log))?;
    let outcome = Sandbox::new(spec).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)).run();
    // The pipe's write ends went with the sandbox: the pump sees its end.
    let written = pump.finish()?;
    let outcome = outcome.map_err(|source| BuildError::Sandbox { what, source })?;
    if written.cut > 0 {
        tracing::warn!(log = %log.display(), cut = written.cut, printed = written.printed, "log over its limit: its middle was cut");
    }
    let mut status = match outcome.status {
        pkgcell_sandbox::Status::TimedOut => "timed out".to_owned(),
        s => format!("exit status {}", s.exit_code()),
    };
    // Only the end of the log is read back: that is where a failure shows.
    let text = buildlog::window(log, header.len() as u64);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    let ok = outcome.status.success();
    let hint = match cgroup {
        // The kernel counted: its events say which limit was hit.
        Some(cg) => limits.cgroup_hint(cg.limits_hit()),
        None => limits.hint(&text),
    };
    if !ok && let Some(hint) = hint {
        status.push_str(", ");
        status.push_str(&hint);
    }
    Ok(Ran { ok, status, tail, peak_memory_kib: outcome.peak_memory_kib })
}

/// makepkg in the sandbox; the package files it wrote and its peak memory (KiB).
fn run_makepkg(
    job: &Job<'_>,
    opts: &BuildOptions,
    dir: &BuildDir,
    layer: Option<&Layer>,
    fetched: &[Fetched],
    log: &Path,
    menv: &MakepkgEnv,
) -> Result<Made, BuildError> {
    let (startdir, tree_epoch) = match job.checkout {
        Checkout::Dir { dir } => {
            let pkgbuild = dir.join("PKGBUILD");
            let mtime = fs::metadata(&pkgbuild).and_then(|m| m.modified()).map_err(io_err("stat", &pkgbuild))?;
            (dir.clone(), mtime.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
        }
        Checkout::Git { repo, commit, subtree, .. } => export_git(repo, commit, subtree.as_deref(), &dir.root.join("startdir"))?,
    };
    let epoch = menv.epoch.unwrap_or(tree_epoch);
    let srcdest = dir.root.join("srcdest");
    let mut mounts = vec![
        Mount::Bind { src: startdir, dst: "/startdir".into(), access: Access::ReadOnly },
        // makepkg insists on a writable SRCDEST; the directory is this
        // build's own, and the cached files in it are read-only to the
        // build user (they belong to the caller), git mirrors bound read-only.
        Mount::Bind { src: srcdest.clone(), dst: "/srcdest".into(), access: Access::ReadWrite },
        Mount::Bind { src: dir.pkgdest(), dst: "/pkgdest".into(), access: Access::ReadWrite },
        Mount::Bind { src: dir.gitconfig(), dst: "/pkgcell/gitconfig".into(), access: Access::ReadOnly },
    ];
    for f in fetched {
        match f {
            Fetched::File { filename, path } => {
                let dst = srcdest.join(filename);
                if fs::hard_link(path, &dst).is_err() {
                    fs::copy(path, &dst).map_err(io_err("copy", path))?;
                }
            }
            Fetched::Git { filename, path } => {
                let dst = srcdest.join(filename);
                fs::create_dir_all(&dst).map_err(io_err("create", &dst))?;
                mounts.push(Mount::Bind { src: path.clone(), dst: Path::new("/srcdest").join(filename), access: Access::ReadOnly });
            }
        }
    }
    let mut lowers: Vec<PathBuf> = layer.into_iter().map(|l| l.upper.clone()).collect();
    lowers.push(opts.base.root.clone());
    // makepkg, then the .BUILDINFO next to the packages (it is inside them
    // too, but reading it here needs no archive tool on the host).
    // --nodeps when makepkg's own check (two `pacman -T` runs, ~40 ms here)
    // would only repeat pkgcell's: the plan resolved every dependency
    // against the base's packages and the layer's, and check_layer saw the
    // layer add exactly those. Not when the layer replaced or removed a
    // package of the base (an -I file or a repository package of the same
    // name): the plan's answer for that name was the base's version, so
    // makepkg must check again. It changes nothing in the package.
    let nodeps = layer.is_none_or(|l| !replaces_base_package(&l.upper));
    let mut script = String::new();
    if let Some(mask) = menv.umask {
        script.push_str(&format!("umask {mask:03o}\n"));
    }
    script.push_str(if nodeps { "makepkg --nodeps " } else { "makepkg " });
    // Checked against MakepkgFlags::ALLOWED: plain words, nothing to quote.
    for f in opts.makepkg_flags.as_slice() {
        script.push_str(f);
        script.push(' ');
    }
    script.push_str(
        "--noconfirm --noprogressbar --holdver || exit $?\n\
         for f in /build/*/pkg/*/.BUILDINFO; do cp \"$f\" /pkgdest/.BUILDINFO; break; done\n",
    );
    let mut spec = Spec::new(
        Root::Overlay { lowers, upper: Upper::Dir { upper: dir.root.join("upper"), work: dir.root.join("work") } },
        vec!["sh".into(), "-c".into(), script],
    );
    spec.mounts = mounts;
    spec.hostname = menv.hostname.clone();
    spec.network = opts.network;
    spec.uid = BUILD_UID;
    spec.gid = BUILD_UID;
    spec.cwd = "/startdir".into();
    // Given to the build user inside the user namespace (outside: its
    // subordinate id), so they need not be open to every user of the host.
    // /build is the base's, made for builder when the base was prepared;
    // a base that lacks that gets it here too.
    spec.owners = ["/pkgdest", "/srcdest", "/build"]
        .map(|p| pkgcell_sandbox::Owner { path: p.into(), uid: BUILD_UID, gid: BUILD_UID })
        .to_vec();
    spec.timeout = Some(opts.timeout);
    // Unless a failed build is kept to look at, the sandbox's own helper
    // removes the build's trees as it ends and hands PKGDEST back (their
    // files are the build user's, a subordinate id outside): the build
    // directory is then ours to remove without a second sandbox.
    if opts.keep_failed == KeepFailed::No {
        use pkgcell_sandbox::{Cleanup, CleanupAction};
        let remove = |path: PathBuf| Cleanup { path, action: CleanupAction::Remove };
        spec.cleanup = vec![
            remove(dir.root.join("upper")),
            remove(dir.root.join("work")),
            remove(srcdest.clone()),
            Cleanup { path: dir.pkgdest(), action: CleanupAction::HandBack },
        ];
    }
    let home = if opts.base.root.join("home/builder").is_dir() { "/home/builder" } else { "/build" };
    spec.mounts.extend(opts.binds.iter().cloned());
    for rel in opts.home_binds.get(job.name).into_iter().flatten() {
        let src = home_bind_dir(opts, job.name, rel)?;
        spec.mounts.push(Mount::Bind { src, dst: Path::new(home).join(rel), access: Access::ReadWrite });
    }
    spec.tmp_size = opts.limits.tmp;
    spec.shm_size = opts.limits.tmp;
    for (k, v) in [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", home),
        ("LANG", menv.lang.as_str()),
        ("TZ", menv.tz.as_str()),
        ("BUILDDIR", "/build"),
        ("PKGDEST", "/pkgdest"),
        ("SRCDEST", "/srcdest"),
        ("PKGEXT", ".pkg.tar.zst"),
        ("BUILDTOOL", "pkgcell"),
        ("BUILDTOOLVER", env!("CARGO_PKG_VERSION")),
        // The cached git mirrors belong to the caller (root inside), not to
        // the build user; git refuses such repositories unless its global
        // (protected) config allows them, see git-config(1) safe.directory.
        ("GIT_CONFIG_GLOBAL", "/pkgcell/gitconfig"),
    ] {
        spec.env.insert(k.into(), v.into());
    }
    spec.env.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    // makepkg takes PACKAGER from the environment over its makepkg.conf.
    if let Some(p) = menv.packager.as_ref().or(opts.packager.as_ref()) {
        spec.env.insert("PACKAGER".into(), p.clone());
    }
    // Share the cores between the builds running at once (the makepkg.conf
    // of managed bases reads this for MAKEFLAGS, see docs/base.md).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    spec.env.insert("PKGCELL_MAKE_JOBS".into(), (cores / opts.jobs.max(1)).max(1).to_string());
    // No core dumps: a crashing test suite would fill the upper with them.
    spec.rlimits.push(Rlimit { resource: RlimitResource::Core, limit: 0 });
    let cgroup = apply_limits(opts, &mut spec)?;
    let header = format!(
        "pkgcell {}: building {} on base {}, network {:?}, SOURCE_DATE_EPOCH={epoch}\ndependency layer: {}\nlimits: {}\nmakepkg flags: {}\n\n",
        env!("CARGO_PKG_VERSION"),
        job.pkgid,
        opts.base.id,
        opts.network,
        layer.map_or("none".into(), |l| format!("{} ({})", l.upper.display(), if l.made { "made" } else { "reused" })),
        opts.limits_text(cgroup.as_ref()),
        if opts.makepkg_flags.as_slice().is_empty() { "none".into() } else { opts.makepkg_flags.as_slice().join(" ") },
    );
    if opts.keep_failed == KeepFailed::Yes {
        crate::kept::save_spec(&dir.root, &spec);
    }
    let ran = run_logged(spec, log, "makepkg", &header, opts, cgroup.as_ref())?;
    if !ran.ok {
        return Err(BuildError::Makepkg { status: ran.status, log: log.to_owned(), tail: ran.tail });
    }
    let pkgdest = Confined::open(&dir.pkgdest()).map_err(|source| BuildError::Refused { what: "the build's PKGDEST", source })?;
    let files = take_outputs(&pkgdest, job, &opts.arch, opts.limits.max_output())?;
    if files.is_empty() {
        return Err(BuildError::NoOutputs(log.to_owned()));
    }
    let buildinfo = read_buildinfo(&pkgdest)?;
    Ok(Made { files, buildinfo, peak_memory_kib: ran.peak_memory_kib })
}

/// What [`run_makepkg`] made.
#[derive(Debug)]
struct Made {
    /// The package files, open and checked.
    files: Vec<MadeFile>,
    /// The `.BUILDINFO` ("" if there was none).
    buildinfo: String,
    /// The peak memory of its largest process, in KiB.
    peak_memory_kib: u64,
}

/// A package file that a build left in PKGDEST, opened beneath it and checked.
#[derive(Debug)]
struct MadeFile {
    /// Its name: `<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.zst`, as its .PKGINFO says.
    name: String,
    /// The open file, at its start.
    file: ConfinedFile,
}

/// The package files makepkg left in `pkgdest` (every entry whose name has
/// `.pkg.tar`), sorted by name, each checked: a plain name, a regular file
/// opened without following anything, within `limit` (each and together),
/// and a package whose .PKGINFO agrees with its name and is one of the
/// PKGBUILD's pkgnames, of the build's architecture or `any`.
fn take_outputs(pkgdest: &Confined, job: &Job<'_>, arch: &str, limit: u64) -> Result<Vec<MadeFile>, BuildError> {
    let refused = |source| BuildError::Refused { what: "a package file of the build", source };
    let mut out = Vec::new();
    let mut total = 0u64;
    for (raw, _kind) in pkgdest.entries().map_err(|source| BuildError::Refused { what: "the build's PKGDEST", source })? {
        if !raw.windows(8).any(|w| w == b".pkg.tar") {
            continue;
        }
        let name = String::from_utf8_lossy(&raw).into_owned();
        let bad = |why: String| BuildError::BadOutput { file: name.clone(), why };
        check_output_name(&raw).map_err(|why| bad(why.to_owned()))?;
        let mut file = pkgdest.open_file(&name).map_err(refused)?;
        if file.size > limit {
            return Err(refused(ConfinedError::TooLarge { path: file.path, size: file.size, limit }));
        }
        total = total.saturating_add(file.size);
        if total > limit {
            return Err(BuildError::OutputsTooLarge { limit });
        }
        // .PKGINFO is the first member makepkg writes; the reader stops there.
        let text = crate::publish::package::pkginfo_text(crate::confined::LimitedReader::new(&file.file, limit))
            .map_err(|e| bad(format!("it is not a readable package: {}", error_chain(&e))))?;
        check_pkginfo(&name, &text, job.pkgnames, job.pkgid.pkgbase().as_ref(), arch).map_err(bad)?;
        file.file.rewind().map_err(io_err("read", &file.path))?;
        out.push(MadeFile { name, file });
    }
    Ok(out)
}

/// Whether the `.PKGINFO` `text` of the package file `name` agrees with
/// the name (pkgname, pkgver, arch), names one of `pkgnames` (or makepkg's
/// `<pkgbase>-debug` package), and is of `arch` or `any`; Err says why not.
fn check_pkginfo(name: &str, text: &str, pkgnames: &[String], pkgbase: &str, arch: &str) -> Result<(), String> {
    let field = |k: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(key, _)| key.trim() == k)
            .map_or(String::new(), |(_, v)| v.trim().to_owned())
    };
    let (pkgname, pkgver, pkgarch) = (field("pkgname"), field("pkgver"), field("arch"));
    let claimed = format!("{pkgname}-{pkgver}-{pkgarch}.pkg.tar.zst");
    if claimed != name {
        return Err(format!(
            "its .PKGINFO says pkgname {pkgname:?}, pkgver {pkgver:?}, arch {pkgarch:?}, so its name would be {claimed:?}"
        ));
    }
    if !pkgnames.contains(&pkgname) && pkgname != format!("{pkgbase}-debug") {
        return Err(format!("{pkgname:?} is not a package of this PKGBUILD (pkgname: {})", pkgnames.join(", ")));
    }
    if pkgarch != arch && pkgarch != "any" {
        return Err(format!("its arch {pkgarch:?} is neither the build's ({arch}) nor \"any\""));
    }
    Ok(())
}

/// Whether `name` may be the name of a package file a build made: a plain
/// file name (no `/`, no control characters, not hidden) ending in
/// `.pkg.tar.zst`, the only format pkgcell asks makepkg for (PKGEXT) and
/// publishes.
fn check_output_name(name: &[u8]) -> Result<(), &'static str> {
    let Ok(name) = std::str::from_utf8(name) else { return Err("its name is not UTF-8") };
    if name.starts_with('.') || name.contains('/') || name.chars().any(char::is_control) {
        return Err("its name is not a plain file name");
    }
    if !name.ends_with(".pkg.tar.zst") || pkgname_of(name).is_none() {
        return Err("its name is not <pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.zst");
    }
    Ok(())
}

/// Export the tree of a git source into `dst`; (dst, commit time).
fn export_git(repo: &Path, commit: &str, subtree: Option<&Path>, dst: &Path) -> Result<(PathBuf, u64), BuildError> {
    let fail = |message: String| BuildError::Checkout { repo: repo.to_owned(), commit: commit.to_owned(), message };
    fs::create_dir_all(dst).map_err(io_err("create", dst))?;
    let treeish = match subtree {
        Some(s) => format!("{commit}:{}", s.display()),
        None => commit.to_owned(),
    };
    let archive = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["archive", "--format=tar", &treeish])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !archive.status.success() {
        return Err(fail(String::from_utf8_lossy(&archive.stderr).trim().to_owned()));
    }
    let mut tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg("-")
        .arg("-C")
        .arg(dst)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("tar: {e}")))?;
    io::Write::write_all(tar.stdin.as_mut().expect("piped"), &archive.stdout).map_err(|e| fail(format!("tar: {e}")))?;
    drop(tar.stdin.take());
    if !tar.wait().map_err(|e| fail(format!("tar: {e}")))?.success() {
        return Err(fail("tar could not unpack the tree".into()));
    }
    let time = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["log", "-1", "--format=%ct", commit])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let epoch = String::from_utf8_lossy(&time.stdout).trim().parse().unwrap_or(0);
    Ok((dst.to_owned(), epoch))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_must_be_the_package_its_name_and_its_pkginfo_say_of_this_pkgbuild() {
        let names = ["a".to_owned(), "a-doc".to_owned()];
        let info = |n: &str, v: &str, arch: &str| format!("pkgname = {n}\npkgbase = a\npkgver = {v}\narch = {arch}\n");
        let check = |file: &str, text: &str| check_pkginfo(file, text, &names, "a", "x86_64");
        assert_eq!(check("a-1:2.0-3-x86_64.pkg.tar.zst", &info("a", "1:2.0-3", "x86_64")), Ok(()));
        assert_eq!(check("a-doc-2.0-3-any.pkg.tar.zst", &info("a-doc", "2.0-3", "any")), Ok(()));
        assert_eq!(check("a-debug-2.0-3-x86_64.pkg.tar.zst", &info("a-debug", "2.0-3", "x86_64")), Ok(()));
        let e = check("a-2.0-3-any.pkg.tar.zst", &info("glibc", "2.0-3", "any")).unwrap_err();
        assert!(e.contains("pkgname \"glibc\"") && e.contains("glibc-2.0-3-any.pkg.tar.zst"), "{e}");
        let e = check("a-2.0-3-any.pkg.tar.zst", &info("a", "9.9-1", "any")).unwrap_err();
        assert!(e.contains("pkgver \"9.9-1\""), "{e}");
        let e = check("glibc-9-1-any.pkg.tar.zst", &info("glibc", "9-1", "any")).unwrap_err();
        assert!(e.contains("\"glibc\" is not a package of this PKGBUILD (pkgname: a, a-doc)"), "{e}");
        let e = check("a-2.0-3-aarch64.pkg.tar.zst", &info("a", "2.0-3", "aarch64")).unwrap_err();
        assert!(e.contains("arch \"aarch64\""), "{e}");
        assert!(check("a-2.0-3-any.pkg.tar.zst", "").is_err());
    }

    #[test]
    fn output_names_are_plain_package_file_names() {
        assert_eq!(check_output_name(b"a-1.0-1-any.pkg.tar.zst"), Ok(()));
        for bad in [&b".a-1.0-1-any.pkg.tar.zst"[..], b"zz.pkg.tar.zst", b"a-1.0-1-any.pkg.tar.xz", b"a-1.0-1-any.pkg.tar.zst.sig", b"a\n-1.0-1-any.pkg.tar.zst", b"\xff-1.0-1-any.pkg.tar.zst"] {
            assert!(check_output_name(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn pkgnames_are_read_from_package_file_names() {
        assert_eq!(version_of("my-lib-2:1.0.r3-2-any.pkg.tar.gz"), Some("2:1.0.r3-2"));
        assert_eq!(version_of("x.tar"), None);
        assert_eq!(pkgname_of("hello-1.0-1-x86_64.pkg.tar.zst"), Some("hello"));
        assert_eq!(pkgname_of("my-lib-2:1.0.r3-2-any.pkg.tar.gz"), Some("my-lib"));
        assert_eq!(pkgname_of("x.tar"), None);
    }

    #[test]
    fn limits_become_rlimits_and_failures_that_hit_them_name_them() {
        assert!(Limits::default().rlimits().is_empty());
        let l = Limits { memory: Some(256 << 20), pids: Some(64), tmp: None, max_output: None };
        assert_eq!(
            l.rlimits(),
            [
                Rlimit { resource: RlimitResource::Data, limit: 256 << 20 },
                Rlimit { resource: RlimitResource::Processes, limit: 64 }
            ]
        );
        let hint = l.hint("dd: memory exhausted\n").unwrap();
        assert!(hint.contains("memory limit of 256M per process"), "{hint}");
        let hint = l.hint("sh: 0: Cannot fork\n").unwrap();
        assert!(hint.contains("process limit of 64"), "{hint}");
        assert_eq!(l.hint("error: test failed\n"), None);
        // No limit set: no hint, whatever the log says.
        assert_eq!(Limits::default().hint("memory exhausted, Cannot fork"), None);
        assert_eq!(size_text(4 << 30), "4G");
        assert_eq!(size_text(1536 << 20), "1536M");
        assert_eq!(size_text(1000), "1000");
        assert_eq!(size_text(0), "0 bytes");
    }

    #[test]
    fn layer_keys_without_local_files_are_as_before_and_local_files_change_them() {
        let deps = ["a 00".to_owned()];
        let before = Blake3::of(b"base B\na 00\n").to_string()[..32].to_owned();
        assert_eq!(layer_key("B", &[], &deps), before);
        let one = layer_key("B", &["x.pkg.tar.zst 11".into()], &deps);
        let two = layer_key("B", &["x.pkg.tar.zst 22".into()], &deps);
        assert!(one != before && one != two);
    }

    #[test]
    fn the_base_id_follows_its_package_database() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(base_of_dir(d.path()), Err(SetupError::NotABase(_))));
        fs::create_dir_all(d.path().join("var/lib/pacman/local/a-1-1")).unwrap();
        let one = base_of_dir(d.path()).unwrap();
        assert_eq!(one, base_of_dir(d.path()).unwrap());
        fs::create_dir_all(d.path().join("var/lib/pacman/local/b-1-1")).unwrap();
        assert_ne!(one.id, base_of_dir(d.path()).unwrap().id);
    }
}
