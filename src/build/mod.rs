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
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::alpm_file::pkgname_of;
use crate::confined::ConfinedError;
use crate::error::IoPath;
use crate::fetch::{self, FetchError, Fetcher};
use crate::ids::{Blake3, PkgId};
use crate::local::LocalPackage;
use crate::plan::{Install, Plan, Status};
use crate::remote::RemoteError;
use crate::store::{DepRef, DepRefError, LimitsApplied, Output, RECORD_VERSION, Record, RecordStatus, Staged, Store, StoreError, Timings};
use crate::sync::Checkout;

mod deps;
mod layer;
mod logged;
mod makepkg;
mod options;
mod outputs;
mod rebuild;
mod schedule;
pub(crate) mod workdir;

pub use crate::error::error_chain;
pub use deps::{dep_lines, store_local};
pub use layer::gc_layers;
pub use options::{BuildOptions, DEFAULT_MAX_OUTPUT, KeepFailed, LayerMode, Limits, MakepkgEnv, MakepkgFlags, OnDownload, Rebuild};
pub use rebuild::{Rebuilt, rebuild};

use deps::{DepFile, fetch_repo_deps};
use layer::{check_layer, dep_layer};
use makepkg::{MadeFile, run_makepkg};
use options::size_text;
use schedule::{Decision, Schedule};
use workdir::{BuildDir, DirKind};

/// Version of the `--json` form of a build run.
pub const BUILD_JSON_VERSION: u32 = 1;

/// The build user inside the sandbox (the test base's `builder`, devtools' too).
pub const BUILD_UID: u32 = 1000;

/// Something that stops a build run before any package is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
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
    #[error("dependency {dep} of the original build is not in the store")]
    MissingDependencyFile {
        /// How the record names it.
        dep: DepRef,
    },
    /// A dependency of the plan cannot be named in a record (a pkgname or
    /// a checksum that is not one).
    #[error(transparent)]
    BadDependency(#[from] DepRefError),
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
    /// git or tar could not be run (or fed) to check the tree out.
    #[error("cannot check out {commit} of {}: {tool}", repo.display())]
    CheckoutRun {
        /// The bare repository.
        repo: PathBuf,
        /// The commit.
        commit: String,
        /// "git" or "tar".
        tool: &'static str,
        /// Why.
        #[source]
        source: io::Error,
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
            Status::Error(e) => blank(i, PackageStatus::Failed, format!("{}: {}", e.stage(), error_chain(e))),
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

    let mut schedule = Schedule::new(opts.jobs);
    for &i in &wanted {
        let p = &plan.packages[i];
        let blocked = matches!(&p.status, Status::Blocked { by } if !by.is_empty());
        schedule.want(i, p.after.iter().filter_map(|a| index.get(a.as_str()).copied()).collect(), blocked);
    }
    for (&i, r) in &results {
        schedule.settle(i, r.status);
    }
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, PackageResult)>();
        loop {
            for decision in schedule.decide() {
                match decision {
                    Decision::Skip { entry, failed } => {
                        let mut by: Vec<String> = failed.iter().map(|&j| plan.packages[j].name.clone()).collect();
                        if let Status::Blocked { by: blocked } = &plan.packages[entry].status {
                            by.extend(blocked.iter().cloned());
                        }
                        by.sort();
                        by.dedup();
                        let r = blank(entry, PackageStatus::Skipped, format!("needs {}, which did not build", by.join(", ")));
                        on_event(Event::Finished(&r));
                        results.insert(entry, r);
                    }
                    Decision::Start(i) => {
                        let p = &plan.packages[i];
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
            if schedule.running() == 0 {
                break;
            }
            let (i, r) = rx.recv().expect("a worker is running");
            schedule.settle(i, r.status);
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
        Err(Failure { error, log }) => {
            result.reason = Some(error_chain(&*error));
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
    installs: &'a [crate::plan::BuiltDep],
    packages: &'a [Install],
    /// The pkgnames of its PKGBUILD: the only packages it may output.
    pkgnames: &'a [String],
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

/// A failed build, and the log of the step that failed when that step
/// writes one (the dependency layer's, makepkg's): the result points the
/// user at it. `?` turns any error of a step before that into a failure
/// without a log.
struct Failure {
    /// Boxed: errors are large, and this travels in every `Result`.
    error: Box<BuildError>,
    log: Option<PathBuf>,
}

impl Failure {
    /// A `map_err` adapter for the steps after `log` exists.
    fn logged(log: &Path) -> impl FnOnce(BuildError) -> Failure + '_ {
        move |error| Failure { error: Box::new(error), log: Some(log.to_owned()) }
    }
}

impl<E: Into<BuildError>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure { error: Box::new(error.into()), log: None }
    }
}

/// Lock, then cached or fetch + deps + makepkg + store.
fn build_one(
    job: &Job<'_>,
    opts: &BuildOptions,
    store: &Store,
    fetcher: &Fetcher,
    pkgids: &BTreeMap<String, PkgId>,
    step: &dyn Fn(&'static str),
) -> Result<Built, Failure> {
    let _lock = store.lock_with(job.pkgid, || step("waiting for lock"))?;
    // Whatever comes next (cached, downloaded or built), the record names
    // the -I files: this also puts back one that a record made before
    // builds stored them lacks.
    store_local(store, &opts.local)?;
    let forced = opts.rebuild.forced(job.name);
    let mut note = None;
    if !forced {
        match stored_result(job, opts, store, step)? {
            Stored::Found(built) => return Ok(*built),
            Stored::Missing { note: n } => note = n,
        }
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut timings = Timings::default();
    let mut lap = Instant::now();
    let mut split = |slot: &mut f64| {
        *slot = lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };

    step("fetch");
    // The run's fetcher, telling the observer which entry downloads.
    let observed;
    let fetcher = match &opts.on_download {
        Some(on) => {
            let (on, name) = (on.0.clone(), job.name.to_owned());
            observed = fetcher.clone().with_progress(move |d| on(&name, d));
            &observed
        }
        None => fetcher,
    };
    let fetched = fetcher.fetch(&fetch::sources_of(job.srcinfo, &opts.arch))?;
    let mut deps = fetch_repo_deps(fetcher, &opts.home, job.packages)?;
    split(&mut timings.fetch);

    step("deps");
    deps.extend(built_deps(job, store, pkgids)?);
    deps.sort_by(|a, b| a.line.cmp(&b.line));
    let layer = dep_layer(opts, job, &deps)?;
    let installed = match &layer {
        Some(layer) => check_layer(&layer.upper, &opts.base.root, &deps, &opts.local)?,
        None => Vec::new(),
    };
    split(&mut timings.deps);

    step("makepkg");
    let dir = BuildDir::new(&opts.home, DirKind::Build, job.pkgid)?;
    let log_path = crate::buildlog::log_path(&opts.home.logs(), job.pkgid, job.srcinfo, crate::buildlog::LogKind::Build);
    let made = match run_makepkg(job, opts, &dir, layer.as_ref(), &fetched, &log_path, &MakepkgEnv::default()) {
        Ok(made) => made,
        Err(e) => {
            dir.finish(opts.keep_failed, opts, job.pkgid);
            return Err(Failure::logged(&log_path)(e));
        }
    };
    split(&mut timings.makepkg);
    timings.makepkg_run = made.run_secs;

    step("store");
    let mut staged = stage_outputs(store, made.files, opts.limits.max_output()).map_err(Failure::logged(&log_path))?;
    let outputs: Vec<Output> = staged.iter().map(|s| s.output.clone()).collect();
    // Streamed: a log may be as large as its limit.
    let log_staged = store.stage_file(&log_path).map_err(|e| Failure::logged(&log_path)(e.into()))?;
    let log = log_staged.output.blake3;
    staged.push(log_staged);
    split(&mut timings.store);
    let seconds = clock.elapsed().as_secs_f64();
    let record = Record {
        version: RECORD_VERSION,
        pkgid: job.pkgid.clone(),
        status: RecordStatus::Built,
        outputs,
        buildinfo: made.buildinfo,
        log,
        base_id: opts.base.id,
        deps: deps.iter().map(|d| d.line.clone()).collect(),
        local: opts.local.iter().map(LocalPackage::line).collect(),
        peak_memory_kib: Some(made.peak_memory_kib),
        limits: Some(opts.limits_applied()),
        installed,
        started: started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        seconds,
        timings,
        pkgcell: env!("CARGO_PKG_VERSION").to_owned(),
    };
    store.commit(staged, &record).map_err(|e| Failure::logged(&log_path)(e.into()))?;
    dir.finish(KeepFailed::No, opts, job.pkgid);

    if let Some(remote) = &opts.remote {
        step("upload");
        remote.upload(&record, store).map_err(|e| Failure::logged(&log_path)(BuildError::RemoteUpload(e)))?;
    }
    let layer = layer.map(|l| LayerUse { key: l.key, made: l.made });
    Ok(Built { status: PackageStatus::Built, record, log: Some(log_path), seconds: Some(seconds), layer, note })
}

/// Whether a build of `job` is already done, in the store or the remote store.
enum Stored {
    /// It is: cached or downloaded (boxed: a record is large).
    Found(Box<Built>),
    /// It is not; `note` says why a remote copy was not used.
    Missing { note: Option<String> },
}

/// The stored result of `job`: the local store's record (shared with the
/// remote store if that lacks it), else the remote store's.
fn stored_result(job: &Job<'_>, opts: &BuildOptions, store: &Store, step: &dyn Fn(&'static str)) -> Result<Stored, BuildError> {
    let found = |status, record| Stored::Found(Box::new(Built { status, record, log: None, seconds: None, layer: None, note: None }));
    if let Some(r) = store.record(job.pkgid)? {
        // Built here earlier, perhaps when the remote store was down: share it now.
        if let Some(remote) = &opts.remote
            && !remote.has_record(job.pkgid).map_err(BuildError::RemoteUpload)?
        {
            step("upload");
            remote.upload(&r, store).map_err(BuildError::RemoteUpload)?;
        }
        return Ok(found(PackageStatus::Cached, r));
    }
    let Some(remote) = &opts.remote else { return Ok(Stored::Missing { note: None }) };
    step("remote store");
    match remote.fetch(job.pkgid, store) {
        Ok(Some(r)) => Ok(found(PackageStatus::Downloaded, r)),
        Ok(None) => Ok(Stored::Missing { note: None }),
        // Damage is not ours to repair by hand: build, and the upload
        // replaces the damaged objects.
        Err(e) if e.is_damage() => {
            let msg = error_chain(&e);
            tracing::warn!(error = %msg, "building locally instead");
            Ok(Stored::Missing { note: Some(format!("built locally: {msg}")) })
        }
        Err(e) => Err(BuildError::Remote(e)),
    }
}

/// The package files of other entries that `job` installs, from their
/// records in the store.
fn built_deps(job: &Job<'_>, store: &Store, pkgids: &BTreeMap<String, PkgId>) -> Result<Vec<DepFile>, BuildError> {
    let mut out = Vec::new();
    for crate::plan::BuiltDep { entry, pkgname } in job.installs {
        let missing = || BuildError::MissingDependency { entry: entry.clone(), pkgname: pkgname.clone() };
        let id = pkgids.get(entry).ok_or_else(missing)?;
        let rec = store.record(id)?.ok_or_else(missing)?;
        let out_file = rec.outputs.iter().find(|o| pkgname_of(&o.name).as_deref() == Some(pkgname.as_str())).ok_or_else(missing)?;
        out.push(DepFile::of_store(store, pkgname, out_file)?);
    }
    Ok(out)
}

/// Copy the package files a build made into the store's tmp directory,
/// each read within `limit` (put in place with the record).
fn stage_outputs(store: &Store, files: Vec<MadeFile>, limit: u64) -> Result<Vec<Staged>, BuildError> {
    let mut staged = Vec::new();
    for o in files {
        let path = o.file.path.clone();
        let mut r = o.file.limited(limit).map_err(|source| BuildError::Refused { what: "a package file of the build", source })?;
        staged.push(store.stage(&o.name, &mut r, &path)?);
    }
    Ok(staged)
}
