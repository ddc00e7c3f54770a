//! Parsing PKGBUILDs into .SRCINFO text, inside the sandbox, many at a time.
//!
//! Sourcing a PKGBUILD runs its code, so it never happens on the host: one
//! sandbox (the base as a read-only overlay lower, no network) runs
//! `srcinfo-driver.sh`, which loads makepkg's own libraries once and prints
//! each PKGBUILD's .SRCINFO exactly as `makepkg --printsrcinfo` does, with a
//! time and output limit per PKGBUILD.
//!
//! Isolation within a batch: the driver runs as root inside the sandbox and
//! sources only the base's makepkg; each PKGBUILD is sourced in a forked
//! copy of it that first drops to a uid and gid of its own (its index plus
//! [`FIRST_JOB_ID`], from the subordinate id range) with the loadable builtin
//! `srcinfo-dropids.rs` (built by build.rs). Its results go to files that
//! root opened for it in an output directory only root inside (the calling
//! user) can enter; its tree and scratch sit in a directory only its uid can
//! enter. The host reads the output directory beneath a directory fd, never
//! following a symlink, regular files only, non-blocking, up to a limit.
//!
//! Results are cached under `$PKGCELL_HOME/cache/srcinfo/<parser version>/
//! <tree-id>.json`, where the parser version hashes the driver and the
//! base's makepkg and makepkg.conf: an unchanged tree is never sourced again,
//! and a new makepkg parses everything afresh. Failures are cached too
//! (a PKGBUILD that is broken stays broken until its tree changes), except
//! time-outs, which may depend on the machine's load.
//!
//! Loading makepkg's libraries (and the driver's rewrites of them) is most
//! of the fixed cost of a run. The first run against a base has the driver
//! write the state they leave as a snapshot (functions, variables, shell
//! options), kept under `$PKGCELL_HOME/cache/srcinfo-snapshot/<key>.sh`
//! (the key hashes the driver and the base's makepkg and its libraries, not
//! makepkg.conf, which is loaded afresh every run); later runs source it
//! instead. It is bytes from a sandbox: pkgcell only checks that it is whole
//! and hands it back to the driver. One that does not load costs a second
//! run without it, never a failed parse.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pkgcell_sandbox::{Access, Mount, Network, Root, Spec, Upper};
use serde::{Deserialize, Serialize};

use crate::confined::ConfinedError;
use crate::error::{IoPath, io_err};
use crate::home::Home;
use crate::ids::TreeId;

/// The driver script run inside the sandbox.
pub const DRIVER: &str = include_str!("srcinfo-driver.sh");

/// What the driver sources to load makepkg's libraries (when it has no
/// snapshot), beside it in the sandbox.
const LOADER: &str = include_str!("srcinfo-load.sh");

/// The largest snapshot the driver may write (one is ~110 KiB).
const SNAPSHOT_LIMIT: u64 = 4 << 20;

/// The last line of a whole snapshot: after the `return 0` that ends its
/// sourcing (the driver checks that the line before it ran) and the
/// functions it holds as stubs.
const SNAPSHOT_END: &[u8] = b"\n# end of the pkgcell srcinfo snapshot\n";

/// The first line of a snapshot in the cache, before the BLAKE3 of the rest
/// (a bash comment, should it ever be sourced).
const SNAPSHOT_HEADER: &[u8] = b"# pkgcell srcinfo snapshot ";

/// The most the base's makepkg library may hold for its snapshot key; a
/// larger one gets no snapshot.
const LIBRARY_LIMIT: u64 = 32 << 20;

/// The driver's environment (with `PATH` and the makepkg version).
const ENV: [(&str, &str); 6] = [
    ("PATH", pkgcell_sandbox::DEFAULT_PATH),
    // makepkg reads the build user's ~/.makepkg.conf, as when it builds.
    ("HOME", "/home/builder"),
    ("USER", "builder"),
    ("LOGNAME", "builder"),
    ("LANG", "C.UTF-8"),
    // A fixed date: .SRCINFO does not show it, but PKGBUILDs may read it.
    ("SOURCE_DATE_EPOCH", "0"),
];

/// The largest .SRCINFO (and log) a PKGBUILD may print; the driver's
/// `ulimit -f 1024` (KiB) enforces it.
const OUTPUT_LIMIT: u64 = 1024 * 1024;

/// The loadable bash builtin that drops a job to its own ids.
const DROPIDS_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pkgcell_dropids.so"));

/// Where the parts of a parse run sit inside the sandbox. Job `i` has the
/// directory `{JOBS}/i`, with its tree bound at `{JOBS}/i/tree`.
const IN: &str = "/pkgcell/in";
const OUT: &str = "/pkgcell/out";
const JOBS: &str = "/pkgcell/jobs";

/// Job `i` of a sandbox runs as uid and gid `FIRST_JOB_ID + i`: far above
/// the base's users (the build user is 1000) and below `nobody` (65534).
pub const FIRST_JOB_ID: u32 = 10000;

/// At most this many PKGBUILDs per sandbox, so that every job has an id of
/// its own within the 65536 ids of a subordinate range.
const MAX_JOBS_PER_SANDBOX: usize = 50000;

/// The largest status file the driver writes.
const STATUS_LIMIT: u64 = 64;

/// A parse run that could not happen at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrcinfoError {
    /// The base has no makepkg.
    #[error("the base {} has no {what}; is it a base with makepkg?", base.display())]
    BaseWithoutMakepkg {
        /// The base.
        base: PathBuf,
        /// The missing file.
        what: &'static str,
    },
    /// A file of the run or the cache could not be read or written.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// The sandbox could not be started.
    #[error("cannot start the parse sandbox")]
    Sandbox(#[source] pkgcell_sandbox::Error),
    /// The driver failed as a whole (not one PKGBUILD).
    #[error("the parse sandbox failed ({status:?}) without reporting on every PKGBUILD")]
    Driver {
        /// How the driver ended.
        status: pkgcell_sandbox::Status,
    },
    /// The output directory of the run cannot be opened safely.
    #[error("cannot open the parse output directory")]
    Output(#[source] ConfinedError),
    /// The sandbox has no subordinate ids for the PKGBUILDs' own users.
    #[error(
        "parsing PKGBUILDs needs uids and gids {FIRST_JOB_ID}-{last} inside the sandbox, one per PKGBUILD, \
         so that no PKGBUILD can touch another's result, but the sandbox has {mapped}; \
         fix: give your user a subordinate id range of 65536 \
         (`{fix}`) and install newuidmap/newgidmap"
    )]
    NoIdRange {
        /// The highest id needed.
        last: u32,
        /// What was mapped.
        mapped: String,
        /// The command that gives the user a free range.
        fix: String,
    },
}

/// Why one PKGBUILD gave no .SRCINFO. The message carries the tail of what
/// makepkg or bash printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum PkgbuildError {
    /// No PKGBUILD in the tree.
    #[error("no PKGBUILD in the tree")]
    Missing,
    /// makepkg refuses CRLF line ends.
    #[error("PKGBUILD contains CRLF characters and cannot be sourced")]
    Crlf,
    /// Sourcing failed: a syntax error, or a failing command at the top level.
    #[error("sourcing the PKGBUILD failed (exit {code}): {log}")]
    Source {
        /// Exit code of the sourcing shell.
        code: i32,
        /// The tail of its stderr.
        log: String,
    },
    /// makepkg's lint_pkgbuild refused it (bad names, versions, arrays).
    #[error("the PKGBUILD is not valid: {log}")]
    Lint {
        /// makepkg's errors.
        log: String,
    },
    /// The PKGBUILD called `exit` while being sourced.
    #[error("the PKGBUILD exited while being sourced: {log}")]
    Exited {
        /// The tail of its stderr.
        log: String,
    },
    /// It ran for too long.
    #[error("parsing took longer than {secs} s (an endless loop?)")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// It printed more than the output limit.
    #[error("the PKGBUILD printed more than {limit} bytes while being sourced")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The .SRCINFO is not UTF-8 text.
    #[error("the .SRCINFO is not UTF-8 text")]
    NotUtf8,
    /// The .SRCINFO does not satisfy alpm-srcinfo.
    #[error("the .SRCINFO is not valid: {message}")]
    Invalid {
        /// alpm-srcinfo's message.
        message: String,
    },
    /// The sandbox's scratch space was full (perhaps filled by another
    /// PKGBUILD of the batch): not cached, the next run tries again.
    #[error("the parse sandbox's scratch space was full; try again: {log}")]
    NoSpace {
        /// The tail of its stderr.
        log: String,
    },
    /// An output file of the parse run is not what the driver writes (not
    /// a regular file, or too large): not cached.
    #[error("the parse output {file} cannot be read safely: {why}")]
    Output {
        /// The file, relative to the output directory.
        file: String,
        /// Why.
        why: String,
    },
}

impl PkgbuildError {
    /// Whether this failure may not happen again (and is cached).
    fn is_lasting(&self) -> bool {
        !matches!(self, PkgbuildError::Timeout { .. } | PkgbuildError::NoSpace { .. } | PkgbuildError::Output { .. })
    }
}

/// One PKGBUILD tree to parse.
#[derive(Debug, Clone)]
pub struct ParseJob {
    /// Its tree-id: the cache key.
    pub tree_id: TreeId,
    /// Where its files are.
    pub tree: TreeSource,
}

/// Where the files of a tree are.
#[derive(Debug, Clone)]
pub enum TreeSource {
    /// A directory on the host, bound read-only as it is.
    Dir(PathBuf),
    /// A tree in a bare git repository, exported into a scratch directory
    /// only when it has to be parsed.
    Git {
        /// The bare repository.
        repo: PathBuf,
    },
}

/// The parse result of one tree, as cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Srcinfo {
    /// The .SRCINFO text, byte for byte what `makepkg --printsrcinfo` prints.
    pub text: String,
    /// Whether the PKGBUILD has a `pkgver()` function (its version is only
    /// known once its sources are fetched).
    pub has_pkgver_func: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CacheEntry {
    Ok(Srcinfo),
    Err(PkgbuildError),
}

/// What a parse run gives back.
#[derive(Debug)]
pub struct ParseRun {
    /// One result per job, in the order given.
    pub results: Vec<Result<Srcinfo, PkgbuildError>>,
    /// Trees sourced in the sandbox in this run.
    pub parsed: usize,
    /// Trees answered from the cache.
    pub cached: usize,
}

/// Runs parse batches against one base.
#[derive(Debug)]
pub struct Parser {
    base: PathBuf,
    home: Home,
    version: String,
    /// makepkg's `makepkg_version`, read here so the driver need not run
    /// sed for it (an exec costs ~2 ms on a VM); `None` if not found.
    makepkg_version: Option<String>,
    /// BLAKE3 of the base's /usr/bin/makepkg.
    makepkg_hash: blake3::Hash,
    /// The snapshot's key, made when a run first needs it (it reads
    /// makepkg's library); `None` when it cannot be made.
    snapshot_key: std::sync::OnceLock<Option<String>>,
    timeout: Duration,
}

impl Parser {
    /// A parser for PKGBUILDs run against the base root file system `base`,
    /// each given at most `timeout`.
    pub fn new(base: &Path, home: Home, timeout: Duration) -> Result<Parser, SrcinfoError> {
        let mut h = blake3::Hasher::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(DRIVER.as_bytes());
        h.update(LOADER.as_bytes());
        let mut makepkg_version = None;
        let mut makepkg_hash = blake3::hash(b"");
        for (what, rel) in [("/usr/bin/makepkg", "usr/bin/makepkg"), ("/etc/makepkg.conf", "etc/makepkg.conf")] {
            let data = std::fs::read(base.join(rel))
                .map_err(|_| SrcinfoError::BaseWithoutMakepkg { base: base.to_owned(), what })?;
            h.update(&(data.len() as u64).to_le_bytes());
            h.update(&data);
            if rel == "usr/bin/makepkg" {
                makepkg_version = declared_version(&String::from_utf8_lossy(&data));
                makepkg_hash = blake3::hash(&data);
            }
        }
        let version = h.finalize().to_hex()[..16].to_owned();
        Ok(Parser {
            base: base.to_owned(),
            home,
            version,
            makepkg_version,
            makepkg_hash,
            snapshot_key: std::sync::OnceLock::new(),
            timeout,
        })
    }

    /// The parser version: part of every cache key.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Parse every job, from the cache where possible, the rest in one
    /// sandbox. Trees with the same tree-id are parsed once.
    #[tracing::instrument(skip_all, fields(jobs = jobs.len()))]
    pub fn parse(&self, jobs: &[ParseJob]) -> Result<ParseRun, SrcinfoError> {
        let cache_dir = self.home.srcinfo_cache().join(&self.version);
        let mut known: HashMap<TreeId, Result<Srcinfo, PkgbuildError>> = HashMap::new();
        let mut todo: Vec<&ParseJob> = Vec::new();
        let mut cached = 0;
        for job in jobs {
            if known.contains_key(&job.tree_id) || todo.iter().any(|j| j.tree_id == job.tree_id) {
                continue;
            }
            match read_cache(&cache_dir, job.tree_id) {
                Some(r) => {
                    tracing::debug!(tree_id = %job.tree_id, "srcinfo from cache");
                    cached += 1;
                    known.insert(job.tree_id, r);
                }
                None => todo.push(job),
            }
        }
        let parsed = todo.len();
        if !todo.is_empty() {
            tracing::info!(count = todo.len(), "sourcing PKGBUILDs in the sandbox");
            let fresh = self.run_batch(&todo)?;
            std::fs::create_dir_all(&cache_dir)
                .map_err(io_err("create", &cache_dir))?;
            for (job, result) in todo.iter().zip(fresh) {
                if result.as_ref().err().is_none_or(PkgbuildError::is_lasting) {
                    write_cache(&cache_dir, job.tree_id, &result)?;
                }
                known.insert(job.tree_id, result);
            }
        }
        let results = jobs.iter().map(|j| known[&j.tree_id].clone()).collect();
        Ok(ParseRun { results, parsed, cached })
    }

    /// Source `jobs` in sandboxes of at most [`MAX_JOBS_PER_SANDBOX`] and
    /// collect their results.
    fn run_batch(&self, jobs: &[&ParseJob]) -> Result<Vec<Result<Srcinfo, PkgbuildError>>, SrcinfoError> {
        let mut results = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(MAX_JOBS_PER_SANDBOX) {
            results.extend(self.run_with_snapshot(chunk)?);
        }
        Ok(results)
    }

    /// Source `jobs` in one sandbox, with the snapshot from the cache when
    /// there is a good one, else having the driver write one. A snapshot
    /// that does not load (or a driver that fails with it) gets one more run
    /// without it.
    fn run_with_snapshot(&self, jobs: &[&ParseJob]) -> Result<Vec<Result<Srcinfo, PkgbuildError>>, SrcinfoError> {
        let path = self.snapshot_path();
        let without = |store: Option<&Path>| {
            self.run_sandbox_batch(jobs, None, store).map(|r| r.expect("only a given snapshot fails to load"))
        };
        let given = path.as_deref().and_then(read_snapshot);
        let (Some(path), Some(given)) = (path.as_deref(), given) else {
            return without(path.as_deref());
        };
        let why = match self.run_sandbox_batch(jobs, Some(&given), Some(path)) {
            Ok(Some(results)) => {
                // Used: `store gc` keeps it (it collects those unused for a month).
                let _ = std::fs::File::open(path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
                return Ok(results);
            }
            Ok(None) => "it did not load".to_owned(),
            Err(SrcinfoError::Driver { status }) => format!("the driver failed with it ({status:?})"),
            Err(e) => return Err(e),
        };
        tracing::debug!(path = %path.display(), why, "parsing again without the snapshot");
        let _ = std::fs::remove_file(path);
        without(Some(path))
    }

    /// Where the snapshot of this base's loaded makepkg is kept; `None`
    /// when its key cannot be made.
    fn snapshot_path(&self) -> Option<PathBuf> {
        let key = self.snapshot_key.get_or_init(|| match self.make_snapshot_key(RACY) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::debug!(error = %e, "no snapshot key: makepkg loads without a snapshot");
                None
            }
        });
        Some(self.home.srcinfo_snapshots().join(format!("{}.sh", key.as_ref()?)))
    }

    /// What determines the state the loader leaves: the driver and loader,
    /// the base's makepkg, every file of its library and the driver's
    /// environment (makepkg.conf is loaded after it, in every run).
    ///
    /// Reading the library (about 90 files) costs ~1.6 ms, a tenth of a
    /// small PKGBUILD's parse; so the key is remembered under a fingerprint
    /// of the library's stat data (inode, size, mtime, ctime of every
    /// entry), as git's index does for blobs, and the files are read again
    /// only when that changes, or when an entry changed within the last two
    /// seconds (`racy`: a same-size rewrite could keep its mtime).
    fn make_snapshot_key(&self, racy: Duration) -> std::io::Result<String> {
        let fixed = |h: &mut blake3::Hasher| {
            h.update(b"pkgcell srcinfo snapshot 1\0");
            h.update(env!("CARGO_PKG_VERSION").as_bytes());
            for text in [DRIVER, LOADER] {
                h.update(&(text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
            h.update(self.makepkg_hash.as_bytes());
            h.update(self.makepkg_version.as_deref().unwrap_or("\0none").as_bytes());
            for (k, v) in ENV {
                h.update(format!("\0{k}={v}").as_bytes());
            }
        };
        let library = self.base.join("usr/share/makepkg");
        let mut fp = blake3::Hasher::new();
        fixed(&mut fp);
        fp.update(b"\0stat\0");
        let mut walk = StatWalk { racy_after: std::time::SystemTime::now() - racy, racy: false, entries: 0 };
        stat_tree(&mut fp, &library, Path::new(""), &mut walk)?;
        let memo = self.home.srcinfo_snapshots().join(format!("{}.key", &fp.finalize().to_hex()[..32]));
        if !walk.racy
            && let Ok(key) = std::fs::read_to_string(&memo)
            && key.len() == 32
            && key.bytes().all(|b| b.is_ascii_hexdigit())
        {
            // Used: `store gc` keeps it (it collects what is unused for a month).
            let _ = std::fs::File::open(&memo).and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(key);
        }
        let mut h = blake3::Hasher::new();
        fixed(&mut h);
        h.update(b"\0library\0");
        let mut budget = LIBRARY_LIMIT;
        hash_tree(&mut h, &library, Path::new(""), &mut budget)?;
        let key = h.finalize().to_hex()[..32].to_owned();
        if !walk.racy {
            // A memo that cannot be written costs the next run a read.
            let _ = write_memo(&memo, &key);
        }
        Ok(key)
    }

    /// Source `jobs` in one sandbox and collect their results; `None` when
    /// the given `snapshot` did not load. Without one, the snapshot the
    /// driver writes is stored at `store`.
    fn run_sandbox_batch(
        &self,
        jobs: &[&ParseJob],
        snapshot: Option<&[u8]>,
        store: Option<&Path>,
    ) -> Result<Option<Vec<Result<Srcinfo, PkgbuildError>>>, SrcinfoError> {
        let tmp = self.home.tmp();
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        let run = tempfile::Builder::new()
            .prefix("parse-")
            .tempdir_in(&tmp)
            .map_err(io_err("create a directory in", &tmp))?;
        let (in_dir, out_dir, trees) = (run.path().join("in"), run.path().join("out"), run.path().join("trees"));
        for d in [&in_dir, &out_dir, &trees] {
            std::fs::create_dir(d).map_err(io_err("create", d))?;
        }
        // Inside, the calling user is root: mode 0700 keeps the PKGBUILDs'
        // uids (subordinate ids outside) out of the inputs and the outputs.
        for d in [&in_dir, &out_dir] {
            set_mode(d, 0o700).map_err(io_err("chmod", d))?;
        }

        let mut list = String::new();
        let mut binds = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let host = match &job.tree {
                TreeSource::Dir(d) => d.clone(),
                TreeSource::Git { repo } => {
                    let d = trees.join(i.to_string());
                    std::fs::create_dir(&d).map_err(io_err("create", &d))?;
                    if let Err(e) = crate::sync::export_tree(repo, &job.tree_id.to_string(), &d) {
                        tracing::warn!(error = %e, tree_id = %job.tree_id, "cannot export the tree; it will be reported as missing its PKGBUILD");
                    }
                    d
                }
            };
            writeln!(list, "{i}\t{JOBS}/{i}").expect("writing to a String");
            binds.push((host, PathBuf::from(format!("{JOBS}/{i}/tree"))));
        }
        let mut inputs =
            vec![("list", list.as_bytes()), ("srcinfo-driver.sh", DRIVER.as_bytes()), ("srcinfo-load.sh", LOADER.as_bytes()), ("dropids.so", DROPIDS_SO)];
        if let Some(s) = snapshot {
            inputs.push(("snapshot", s));
        }
        for (name, data) in inputs {
            let path = in_dir.join(name);
            std::fs::write(&path, data).map_err(io_err("write", &path))?;
        }

        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len()).max(1);
        let rounds = jobs.len().div_ceil(workers) as u32;
        let with_snapshot = snapshot.is_some() || store.is_some();
        let spec =
            self.spec(&in_dir, &out_dir, binds, workers, self.timeout * rounds + Duration::from_secs(60), with_snapshot);
        let outcome = pkgcell_sandbox::run(&spec).map_err(SrcinfoError::Sandbox)?;
        let status = outcome.status;
        tracing::debug!(?status, "parse sandbox ended");
        // 97: the driver found the job ids unmapped and sourced nothing.
        if outcome.id_map == pkgcell_sandbox::IdMapUsed::Single || status == (pkgcell_sandbox::Status::Exited { code: 97 }) {
            return Err(SrcinfoError::NoIdRange {
                last: FIRST_JOB_ID + jobs.len() as u32 - 1,
                mapped: match outcome.id_map {
                    pkgcell_sandbox::IdMapUsed::Single => "only uid 0 (a single-id map)".to_owned(),
                    pkgcell_sandbox::IdMapUsed::Subordinate { count } => format!("ids 0-{count}"),
                },
                fix: pkgcell_sandbox::usermod_hint(&std::env::var("USER").unwrap_or_else(|_| "$USER".into())),
            });
        }

        let out = Confined::open(&out_dir)?;
        // 99: the given snapshot did not load; the driver sourced nothing else.
        if snapshot.is_some() && status == (pkgcell_sandbox::Status::Exited { code: 99 }) {
            tracing::debug!(log = %log_tail(&out, "snapshot.log"), "the snapshot did not load");
            return Ok(None);
        }
        if let (None, Some(path)) = (snapshot, store) {
            store_snapshot(&out, path);
        }
        let mut results = Vec::with_capacity(jobs.len());
        for i in 0..jobs.len() {
            match collect(&out, i, self.timeout.as_secs()) {
                Some(r) => results.push(r),
                None if status == pkgcell_sandbox::Status::TimedOut => {
                    results.push(Err(PkgbuildError::Timeout { secs: self.timeout.as_secs() }))
                }
                None => return Err(SrcinfoError::Driver { status }),
            }
        }
        Ok(Some(results))
    }

    /// The sandbox for one run; `snapshot`: whether the driver is given the
    /// snapshot's path (where it sources one, or else writes one).
    fn spec(
        &self,
        in_dir: &Path,
        out_dir: &Path,
        binds: Vec<(PathBuf, PathBuf)>,
        workers: usize,
        total: Duration,
        snapshot: bool,
    ) -> Spec {
        let mut argv = vec![
            "/bin/bash".into(),
            format!("{IN}/srcinfo-driver.sh"),
            format!("{IN}/list"),
            OUT.into(),
            workers.to_string(),
            self.timeout.as_secs().max(1).to_string(),
            FIRST_JOB_ID.to_string(),
            format!("{IN}/dropids.so"),
        ];
        if snapshot {
            argv.push(format!("{IN}/snapshot"));
        }
        let mut spec =
            Spec::new(Root::Overlay { lowers: vec![self.base.clone()], upper: Upper::Tmpfs { size: 256 << 20 } }, argv);
        spec.mounts.push(Mount::Bind { src: in_dir.to_owned(), dst: IN.into(), access: Access::ReadOnly });
        spec.mounts.push(Mount::Bind { src: out_dir.to_owned(), dst: OUT.into(), access: Access::ReadWrite });
        for (src, dst) in binds {
            spec.mounts.push(Mount::Bind { src, dst, access: Access::ReadOnly });
        }
        // Parsing needs no network: only loopback.
        spec.network = Network::Loopback;
        if let Some(v) = &self.makepkg_version {
            spec.env.insert("PKGCELL_MAKEPKG_VERSION".into(), v.clone());
        }
        // Root inside (the calling user outside) runs the driver, which
        // sources only the base's makepkg; each PKGBUILD gets its own ids.
        spec.uid = 0;
        spec.gid = 0;
        spec.cwd = "/".into();
        spec.timeout = Some(total);
        for (k, v) in ENV {
            spec.env.insert(k.into(), v.into());
        }
        spec
    }

}

/// The result of job `i` from the output directory, `None` when the driver
/// never reported on it.
fn collect(out: &Confined, i: usize, timeout_secs: u64) -> Option<Result<Srcinfo, PkgbuildError>> {
    let status = match out.read(&format!("{i}.status"), STATUS_LIMIT) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let status = String::from_utf8_lossy(&status).trim().to_owned();
    let log = || log_tail(out, &format!("{i}.log"));
    let srcinfo_name = format!("{i}.srcinfo");
    // ulimit -f stops a job's file at the limit: one that reached it is
    // too large.
    let srcinfo = out.read(&srcinfo_name, OUTPUT_LIMIT);
    let too_large = matches!(&srcinfo, Ok(Some(b)) if b.len() as u64 >= OUTPUT_LIMIT)
        || out.size(&format!("{i}.log")).unwrap_or(0) >= OUTPUT_LIMIT;
    Some(match status.as_str() {
        "ok" => match srcinfo {
            Ok(Some(_)) if too_large => Err(PkgbuildError::TooLarge { limit: OUTPUT_LIMIT }),
            Ok(Some(bytes)) => String::from_utf8(bytes)
                .map(|text| Srcinfo {
                    text,
                    has_pkgver_func: matches!(out.file(&format!("{i}.pkgver")), Ok(Some(_))),
                })
                .map_err(|_| PkgbuildError::NotUtf8),
            Ok(None) => Err(PkgbuildError::Exited { log: log() }),
            Err(e) => Err(e),
        },
        "timeout" => Err(PkgbuildError::Timeout { secs: timeout_secs }),
        _ if too_large => Err(PkgbuildError::TooLarge { limit: OUTPUT_LIMIT }),
        s => {
            let code: i32 = s.strip_prefix("exit ").and_then(|c| c.parse().ok()).unwrap_or(-1);
            match code {
                0 => Err(PkgbuildError::Exited { log: log() }),
                91 => Err(PkgbuildError::Missing),
                92 => Err(PkgbuildError::Crlf),
                93 => Err(PkgbuildError::Lint { log: log() }),
                95 => Err(PkgbuildError::NoSpace { log: log() }),
                // 128 + SIGXCPU: the CPU limit, i.e. a busy endless loop.
                152 => Err(PkgbuildError::Timeout { secs: timeout_secs }),
                // 128 + SIGXFSZ: the output limit.
                153 => Err(PkgbuildError::TooLarge { limit: OUTPUT_LIMIT }),
                code => Err(PkgbuildError::Source { code, log: log() }),
            }
        }
    })
}

/// Hash the tree at `dir` (shown as `rel`) into `h`: each entry's path, kind
/// and contents (a symlink's target, not followed), in sorted order, reading
/// at most `budget` bytes in all.
fn hash_tree(h: &mut blake3::Hasher, dir: &Path, rel: &Path, budget: &mut u64) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (path, name) = (e.path(), rel.join(e.file_name()));
        let meta = std::fs::symlink_metadata(&path)?;
        h.update(&(name.as_os_str().len() as u64).to_le_bytes());
        h.update(name.as_os_str().as_bytes());
        let too_large = || std::io::Error::other(format!("{} holds more than {LIBRARY_LIMIT} bytes", dir.display()));
        if meta.is_dir() {
            h.update(b"d");
            hash_tree(h, &path, &name, budget)?;
        } else if meta.is_symlink() {
            h.update(b"l");
            let target = std::fs::read_link(&path)?;
            h.update(&(target.as_os_str().len() as u64).to_le_bytes());
            h.update(target.as_os_str().as_bytes());
        } else if meta.is_file() {
            h.update(b"f");
            let mut data = Vec::new();
            std::fs::File::open(&path)?.take(*budget + 1).read_to_end(&mut data)?;
            *budget = budget.checked_sub(data.len() as u64).ok_or_else(too_large)?;
            h.update(&(data.len() as u64).to_le_bytes());
            h.update(&data);
        } else {
            h.update(b"o");
        }
    }
    Ok(())
}

/// How recent a change makes stat data untrustworthy (git's racy rule,
/// with a margin for coarse file system clocks).
const RACY: Duration = Duration::from_secs(2);
/// The most entries [`stat_tree`] walks in makepkg's library (6.0.2 and
/// 7.1 have about 90).
const LIBRARY_ENTRIES: u32 = 10_000;

/// State of a [`stat_tree`] walk.
struct StatWalk {
    /// Entries changed after this are racy.
    racy_after: std::time::SystemTime,
    /// Whether one was.
    racy: bool,
    /// Entries seen so far.
    entries: u32,
}

/// Feeds `h` the name, kind and stat data (device, inode, size, mode,
/// mtime, ctime) of every entry beneath `dir`, in name order, without
/// following links or reading any file.
fn stat_tree(h: &mut blake3::Hasher, dir: &Path, rel: &Path, walk: &mut StatWalk) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        walk.entries += 1;
        if walk.entries > LIBRARY_ENTRIES {
            return Err(std::io::Error::other(format!("{} holds more than {LIBRARY_ENTRIES} entries", dir.display())));
        }
        let (path, name) = (e.path(), rel.join(e.file_name()));
        let m = std::fs::symlink_metadata(&path)?;
        h.update(&(name.as_os_str().len() as u64).to_le_bytes());
        h.update(name.as_os_str().as_bytes());
        for v in [m.dev(), m.ino(), m.size(), u64::from(m.mode())] {
            h.update(&v.to_le_bytes());
        }
        for (secs, nsecs) in [(m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec())] {
            h.update(&secs.to_le_bytes());
            h.update(&nsecs.to_le_bytes());
            let at = std::time::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32);
            walk.racy |= at >= walk.racy_after;
        }
        if m.is_dir() {
            stat_tree(h, &path, &name, walk)?;
        }
    }
    Ok(())
}

/// Writes `key` to `memo` whole (a temporary file renamed into place).
fn write_memo(memo: &Path, key: &str) -> std::io::Result<()> {
    let dir = memo.parent().expect("the memo is in the snapshot directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, key.as_bytes())?;
    tmp.persist(memo).map_err(|e| e.error)?;
    Ok(())
}

/// A snapshot as the cache keeps it: a header line with the BLAKE3 of the
/// driver's bytes, then those bytes.
fn snapshot_file(body: &[u8]) -> Vec<u8> {
    let mut f = SNAPSHOT_HEADER.to_vec();
    f.extend(blake3::hash(body).to_hex().as_bytes());
    f.push(b'\n');
    f.extend(body);
    f
}

/// The driver's bytes of a cached snapshot, when it is one whole (its hash
/// matches and it ends as the driver ends one); else `None`.
fn snapshot_body(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(SNAPSHOT_HEADER)?;
    let (hash, body) = rest.split_at_checked(64)?;
    let body = body.strip_prefix(b"\n")?;
    (blake3::hash(body).to_hex().as_bytes() == hash && body.ends_with(SNAPSHOT_END)).then_some(body)
}

/// The snapshot cached at `path`, if there is a good one.
fn read_snapshot(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = Vec::new();
    let limit = SNAPSHOT_LIMIT + SNAPSHOT_HEADER.len() as u64 + 65;
    match std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut file)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read the snapshot");
            return None;
        }
    }
    let body = snapshot_body(&file);
    if body.is_none() {
        tracing::debug!(path = %path.display(), "the cached snapshot is damaged; a new one is made");
    }
    body.map(<[u8]>::to_vec)
}

/// Keep the snapshot the driver wrote (if it wrote a whole one) at `path`,
/// atomically. A failure only costs the next run the time to make another.
fn store_snapshot(out: &Confined, path: &Path) {
    let body = match out.read("snapshot", SNAPSHOT_LIMIT) {
        Ok(Some(b)) if b.ends_with(SNAPSHOT_END) => b,
        other => {
            let got = other.map(|b| b.map(|b| b.len()));
            tracing::debug!(?got, "the driver wrote no whole snapshot");
            return;
        }
    };
    let dir = path.parent().expect("a snapshot path has a parent");
    let stored = std::fs::create_dir_all(dir).and_then(|()| {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &snapshot_file(&body))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    });
    match stored {
        Ok(()) => tracing::debug!(path = %path.display(), bytes = body.len(), "snapshot stored"),
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot store the snapshot"),
    }
}

/// The `X` of the line `declare -r makepkg_version='X'` in /usr/bin/makepkg,
/// as the driver's fallback `sed` finds it.
fn declared_version(makepkg: &str) -> Option<String> {
    makepkg
        .lines()
        .filter_map(|l| l.strip_prefix("declare -r makepkg_version='")?.strip_suffix('\''))
        .next()
        .map(str::to_owned)
}

/// Every successful parse of `tree` in the cache, under any parser version
/// (for a reader that has no base to compute the version from; the
/// sources of one tree rarely differ between makepkg versions, and a
/// reader that must not miss any takes them all).
pub fn cached_parses(home: &Home, tree: TreeId) -> Vec<Srcinfo> {
    let Ok(rd) = std::fs::read_dir(home.srcinfo_cache()) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.iter().filter_map(|d| read_cache(d, tree)?.ok()).collect()
}

fn read_cache(dir: &Path, tree: TreeId) -> Option<Result<Srcinfo, PkgbuildError>> {
    let data = std::fs::read(dir.join(format!("{tree}.json"))).ok()?;
    match serde_json::from_slice(&data).ok()? {
        CacheEntry::Ok(s) => Some(Ok(s)),
        CacheEntry::Err(e) => Some(Err(e)),
    }
}

fn write_cache(dir: &Path, tree: TreeId, result: &Result<Srcinfo, PkgbuildError>) -> Result<(), SrcinfoError> {
    let entry = match result {
        Ok(s) => CacheEntry::Ok(s.clone()),
        Err(e) => CacheEntry::Err(e.clone()),
    };
    let path = dir.join(format!("{tree}.json"));
    // Write then rename: a reader never sees half an entry.
    let tmp = dir.join(format!(".{tree}.json.{}", std::process::id()));
    let data = serde_json::to_vec(&entry).expect("cache entries serialize");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| SrcinfoError::Io(IoPath::new("write", path, source)))
}

fn log_tail(out: &Confined, name: &str) -> String {
    let tail = out.tail(name, 2000);
    String::from_utf8_lossy(&tail).trim().to_owned()
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The output directory of a parse run, read without trusting what is in
/// it (see [`crate::confined`]: beneath a directory fd, no symlinks,
/// non-blocking, regular files only, with limits). A failure to read one
/// file safely is that job's error, never the batch's.
struct Confined {
    dir: crate::confined::Confined,
}

impl Confined {
    fn open(path: &Path) -> Result<Confined, SrcinfoError> {
        Ok(Confined { dir: crate::confined::Confined::open(path).map_err(SrcinfoError::Output)? })
    }

    fn bad(name: &str, e: &ConfinedError) -> PkgbuildError {
        PkgbuildError::Output { file: name.to_owned(), why: e.to_string() }
    }

    /// The regular file `name`; `None` if there is none.
    fn file(&self, name: &str) -> Result<Option<crate::confined::ConfinedFile>, PkgbuildError> {
        match self.dir.open_file(name) {
            Ok(f) => Ok(Some(f)),
            Err(ConfinedError::Io(e)) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::bad(name, &e)),
        }
    }

    /// The contents of `name` (at most `limit` bytes, else an error);
    /// `None` if there is no such file.
    fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, PkgbuildError> {
        let Some(f) = self.file(name)? else { return Ok(None) };
        let mut data = Vec::new();
        f.copy_to(&mut data, limit).map_err(|e| Self::bad(name, &e))?;
        Ok(Some(data))
    }

    /// The size of the regular file `name`, if there is one.
    fn size(&self, name: &str) -> Option<u64> {
        self.file(name).ok().flatten().map(|f| f.size)
    }

    /// The last `n` bytes of the regular file `name` (empty if none).
    fn tail(&self, name: &str, n: u64) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(Some(mut f)) = self.file(name) else { return Vec::new() };
        let mut data = Vec::new();
        let _ = f.file.seek(SeekFrom::Start(f.size.saturating_sub(n))).and_then(|_| f.file.take(n).read_to_end(&mut data));
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makepkg_version_is_read_from_its_declaration() {
        let script = "#!/bin/bash\nmakepkg_version='not this'\ndeclare -r makepkg_version='6.0.2'\nconfdir='/etc'\n";
        assert_eq!(declared_version(script).as_deref(), Some("6.0.2"));
        assert_eq!(declared_version("declare -r makepkg_version=6.0.2\n"), None);
    }

    /// An output directory as a hostile sandbox could leave it: symlinks to
    /// a host secret, a FIFO, a huge file.
    #[test]
    fn outputs_are_read_without_following_symlinks_blocking_on_fifos_or_reading_without_limit() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let w = |name: &str, data: &[u8]| std::fs::write(out.join(name), data).unwrap();
        // 0: status is a symlink to the secret.
        std::os::unix::fs::symlink(&secret, out.join("0.status")).unwrap();
        // 1: ok, but the .SRCINFO is a symlink to the secret.
        w("1.status", b"ok\n");
        std::os::unix::fs::symlink(&secret, out.join("1.srcinfo")).unwrap();
        // 2: ok, but the .SRCINFO is a FIFO nobody writes.
        w("2.status", b"ok\n");
        nix::unistd::mkfifo(&out.join("2.srcinfo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // 3: a status FIFO.
        nix::unistd::mkfifo(&out.join("3.status"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // 4: a failure whose log is a symlink to the secret.
        w("4.status", b"exit 1\n");
        std::os::unix::fs::symlink(&secret, out.join("4.log")).unwrap();
        // 5: a .SRCINFO larger than the limit, 6: a status larger than its own.
        w("5.status", b"ok\n");
        w("5.srcinfo", &vec![b'a'; OUTPUT_LIMIT as usize + 10]);
        w("6.status", &[b'o'; 200]);
        // 7: a good one, with a pkgver() marker that is a symlink (not trusted).
        w("7.status", b"ok\n");
        w("7.srcinfo", b"pkgbase = x\n");
        std::os::unix::fs::symlink(&secret, out.join("7.pkgver")).unwrap();

        let dir = Confined::open(&out).unwrap();
        let r: Vec<_> = (0..9).map(|i| collect(&dir, i, 10)).collect();
        for (i, r) in r.iter().enumerate() {
            assert!(!format!("{r:?}").contains("host secret"), "{i}: {r:?}");
        }
        let output_err = |r: &Option<Result<Srcinfo, PkgbuildError>>, file: &str| {
            matches!(r, Some(Err(PkgbuildError::Output { file: f, .. })) if f == file)
        };
        assert!(output_err(&r[0], "0.status"), "{:?}", r[0]);
        assert!(output_err(&r[1], "1.srcinfo"), "{:?}", r[1]);
        assert!(output_err(&r[2], "2.srcinfo"), "{:?}", r[2]);
        assert!(output_err(&r[3], "3.status"), "{:?}", r[3]);
        assert!(matches!(&r[4], Some(Err(PkgbuildError::Source { code: 1, log })) if log.is_empty()), "{:?}", r[4]);
        assert!(output_err(&r[5], "5.srcinfo"), "{:?}", r[5]);
        assert!(output_err(&r[6], "6.status"), "{:?}", r[6]);
        assert_eq!(r[7], Some(Ok(Srcinfo { text: "pkgbase = x\n".into(), has_pkgver_func: false })));
        assert_eq!(r[8], None, "no status: the driver did not report");
        // None of these is cached: the next run parses again.
        assert!(r[..7].iter().enumerate().all(|(i, r)| i == 4 || !r.as_ref().unwrap().as_ref().unwrap_err().is_lasting()));
    }

    #[test]
    fn a_cached_snapshot_is_handed_back_only_whole() {
        let body = b"f () \n{ \n    :\n}\n_pkgcell_snapshot_loaded=1\nreturn 0\n# end of the pkgcell srcinfo snapshot\n";
        let file = snapshot_file(body);
        assert!(file.starts_with(b"# pkgcell srcinfo snapshot "), "a bash comment: {:?}", String::from_utf8_lossy(&file));
        assert_eq!(snapshot_body(&file), Some(&body[..]));
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut no_end = snapshot_file(b"f () \n{ \n    :\n}\n");
        for bad in [&b""[..], b"\x00\xffgarbage", &file[..file.len() - 1], &flipped, &no_end, &body[..]] {
            assert_eq!(snapshot_body(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // On disk: a damaged or missing one is none.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k.sh");
        assert_eq!(read_snapshot(&path), None);
        no_end.truncate(10);
        std::fs::write(&path, &no_end).unwrap();
        assert_eq!(read_snapshot(&path), None);
        std::fs::write(&path, &file).unwrap();
        assert_eq!(read_snapshot(&path).as_deref(), Some(&body[..]));
    }

    #[test]
    fn the_snapshot_key_hashes_every_file_of_the_library() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("makepkg");
        std::fs::create_dir_all(lib.join("util")).unwrap();
        std::fs::write(lib.join("util.sh"), "source util/a.sh\n").unwrap();
        std::fs::write(lib.join("util/a.sh"), "a() { :; }\n").unwrap();
        let key = |budget: u64| {
            let mut h = blake3::Hasher::new();
            let mut budget = budget;
            hash_tree(&mut h, &lib, Path::new(""), &mut budget).map(|()| h.finalize())
        };
        let mut seen = vec![key(1000).unwrap()];
        assert_eq!(key(1000).unwrap(), seen[0], "the same tree, the same key");
        let mut changed = |what: &str, change: &dyn Fn()| {
            change();
            let k = key(1000).unwrap();
            assert!(!seen.contains(&k), "{what}: the key did not change");
            seen.push(k);
        };
        changed("contents", &|| std::fs::write(lib.join("util/a.sh"), "a() { false; }\n").unwrap());
        changed("a name", &|| std::fs::rename(lib.join("util/a.sh"), lib.join("util/b.sh")).unwrap());
        changed("a new file", &|| std::fs::write(lib.join("util/c.sh"), "").unwrap());
        changed("a symlink", &|| std::os::unix::fs::symlink("b.sh", lib.join("util/d.sh")).unwrap());
        changed("its target", &|| {
            std::fs::remove_file(lib.join("util/d.sh")).unwrap();
            std::os::unix::fs::symlink("c.sh", lib.join("util/d.sh")).unwrap();
        });
        // More than the budget: no key (and no snapshot).
        assert!(key(20).is_err());
    }

    #[test]
    fn the_snapshot_key_is_remembered_by_the_librarys_stat_data_and_read_again_when_it_changes() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base");
        let lib = base.join("usr/share/makepkg");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(base.join("usr/bin")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("usr/bin/makepkg"), "declare -r makepkg_version='7.1.0'\n").unwrap();
        std::fs::write(base.join("etc/makepkg.conf"), "").unwrap();
        std::fs::write(lib.join("util.sh"), "a() { :; }\n").unwrap();
        let home = Home::at(d.path().join("home"));
        let memos = || -> Vec<PathBuf> {
            std::fs::read_dir(home.srcinfo_snapshots()).map_or(vec![], |r| r.map(|e| e.unwrap().path()).collect())
        };
        let parser = Parser::new(&base, home.clone(), Duration::from_secs(10)).unwrap();
        // Just written: racy, so nothing is remembered.
        let key = parser.make_snapshot_key(Duration::from_secs(3600)).unwrap();
        assert!(memos().is_empty());
        assert_eq!(parser.make_snapshot_key(Duration::ZERO).unwrap(), key);
        let memo = memos();
        assert_eq!(memo.len(), 1, "{memo:?}");
        // The memo answers while the stat data stays the same: the files
        // are not read (a planted memo shows it).
        std::fs::write(&memo[0], "0".repeat(32)).unwrap();
        assert_eq!(parser.make_snapshot_key(Duration::ZERO).unwrap(), "0".repeat(32));
        // ... but not when an entry is racy, nor when a file changed.
        assert_eq!(parser.make_snapshot_key(Duration::from_secs(3600)).unwrap(), key);
        std::fs::write(lib.join("util.sh"), "a() { false; }\n").unwrap();
        let changed = parser.make_snapshot_key(Duration::ZERO).unwrap();
        assert!(changed != key && changed != "0".repeat(32));
        // A damaged memo is no key.
        for m in memos() {
            std::fs::write(&m, "not a key").unwrap();
        }
        assert_eq!(parser.make_snapshot_key(Duration::ZERO).unwrap(), changed);
    }

    #[test]
    fn the_output_directory_itself_must_not_be_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("out")).unwrap();
        assert!(Confined::open(&d.path().join("out")).is_err());
        assert!(Confined::open(&d.path().join("real")).is_ok());
    }
}
