//! Parsing PKGBUILDs into .SRCINFO text, inside the sandbox, many at a time.
//!
//! Sourcing a PKGBUILD runs its code, so it never happens on the host: one
//! sandbox (the base as a read-only overlay lower, no network, as the build
//! user uid 1000) runs `srcinfo-driver.sh`, which loads makepkg's own
//! libraries once and prints each PKGBUILD's .SRCINFO exactly as `makepkg
//! --printsrcinfo` does, with a time and output limit per PKGBUILD. Results
//! come back as files in a read-write bound output directory.
//!
//! Results are cached under `$PKGCELL_HOME/cache/srcinfo/<parser version>/
//! <tree-id>.json`, where the parser version hashes the driver and the
//! base's makepkg and makepkg.conf: an unchanged tree is never sourced again,
//! and a new makepkg parses everything afresh. Failures are cached too
//! (a PKGBUILD that is broken stays broken until its tree changes), except
//! time-outs, which may depend on the machine's load.
//!
//! Limitation: the PKGBUILDs of one batch share the build user and the
//! output directory, so a hostile PKGBUILD could overwrite the result of
//! another one of the same batch. It can reach nothing outside the sandbox.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pkgcell_sandbox::{Access, Mount, Network, Root, Spec, Upper};
use serde::{Deserialize, Serialize};

use crate::error::{IoPath, io_err};
use crate::home::Home;
use crate::ids::TreeId;

/// The driver script run inside the sandbox.
pub const DRIVER: &str = include_str!("srcinfo-driver.sh");

/// The largest .SRCINFO (and log) a PKGBUILD may print; the driver's
/// `ulimit -f 1024` (KiB) enforces it.
const OUTPUT_LIMIT: u64 = 1024 * 1024;

/// Where the parts of a parse run sit inside the sandbox.
const IN: &str = "/pkgcell/in";
const OUT: &str = "/pkgcell/out";
const SRC: &str = "/pkgcell/src";

/// The build user inside the base.
const BUILD_UID: u32 = 1000;

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
    timeout: Duration,
}

impl Parser {
    /// A parser for PKGBUILDs run against the base root file system `base`,
    /// each given at most `timeout`.
    pub fn new(base: &Path, home: Home, timeout: Duration) -> Result<Parser, SrcinfoError> {
        let mut h = blake3::Hasher::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(DRIVER.as_bytes());
        let mut makepkg_version = None;
        for (what, rel) in [("/usr/bin/makepkg", "usr/bin/makepkg"), ("/etc/makepkg.conf", "etc/makepkg.conf")] {
            let data = std::fs::read(base.join(rel))
                .map_err(|_| SrcinfoError::BaseWithoutMakepkg { base: base.to_owned(), what })?;
            h.update(&(data.len() as u64).to_le_bytes());
            h.update(&data);
            if rel == "usr/bin/makepkg" {
                makepkg_version = declared_version(&String::from_utf8_lossy(&data));
            }
        }
        let version = h.finalize().to_hex()[..16].to_owned();
        Ok(Parser { base: base.to_owned(), home, version, makepkg_version, timeout })
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
                if !matches!(result, Err(PkgbuildError::Timeout { .. })) {
                    write_cache(&cache_dir, job.tree_id, &result)?;
                }
                known.insert(job.tree_id, result);
            }
        }
        let results = jobs.iter().map(|j| known[&j.tree_id].clone()).collect();
        Ok(ParseRun { results, parsed, cached })
    }

    /// Source `jobs` in one sandbox and collect their results.
    fn run_batch(&self, jobs: &[&ParseJob]) -> Result<Vec<Result<Srcinfo, PkgbuildError>>, SrcinfoError> {
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
        // The build user inside is a subordinate id outside: it needs a
        // directory it may write to. The run directory itself stays 0700,
        // so nobody else reaches it.
        set_mode(&out_dir, 0o777).map_err(io_err("chmod", &out_dir))?;

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
            let inside = PathBuf::from(format!("{SRC}/{i}"));
            writeln!(list, "{i}\t{}", inside.display()).expect("writing to a String");
            binds.push((host, inside));
        }
        let list_path = in_dir.join("list");
        std::fs::write(&list_path, list).map_err(io_err("write", &list_path))?;
        let driver = in_dir.join("srcinfo-driver.sh");
        std::fs::write(&driver, DRIVER).map_err(io_err("write", &driver))?;

        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len()).max(1);
        let rounds = jobs.len().div_ceil(workers) as u32;
        let spec = self.spec(&in_dir, &out_dir, binds, workers, self.timeout * rounds + Duration::from_secs(60));
        let status = run_sandbox(&spec)?;
        tracing::debug!(?status, "parse sandbox ended");

        let mut results = Vec::with_capacity(jobs.len());
        for i in 0..jobs.len() {
            match self.collect(&out_dir, i) {
                Some(r) => results.push(r),
                None if status == pkgcell_sandbox::Status::TimedOut => {
                    results.push(Err(PkgbuildError::Timeout { secs: self.timeout.as_secs() }))
                }
                None => return Err(SrcinfoError::Driver { status }),
            }
        }
        Ok(results)
    }

    fn spec(&self, in_dir: &Path, out_dir: &Path, binds: Vec<(PathBuf, PathBuf)>, workers: usize, total: Duration) -> Spec {
        let mut spec = Spec::new(
            Root::Overlay { lowers: vec![self.base.clone()], upper: Upper::Tmpfs { size: 256 << 20 } },
            vec![
                "/bin/bash".into(),
                format!("{IN}/srcinfo-driver.sh"),
                format!("{IN}/list"),
                OUT.into(),
                workers.to_string(),
                self.timeout.as_secs().max(1).to_string(),
            ],
        );
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
        spec.uid = BUILD_UID;
        spec.gid = BUILD_UID;
        spec.cwd = "/".into();
        spec.timeout = Some(total);
        for (k, v) in [
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"),
            ("HOME", "/home/builder"),
            ("USER", "builder"),
            ("LOGNAME", "builder"),
            ("LANG", "C.UTF-8"),
            // A fixed date: .SRCINFO does not show it, but PKGBUILDs may read it.
            ("SOURCE_DATE_EPOCH", "0"),
        ] {
            spec.env.insert(k.into(), v.into());
        }
        spec
    }

    /// The result of job `i` from the output directory, `None` when the
    /// driver never reported on it.
    fn collect(&self, out: &Path, i: usize) -> Option<Result<Srcinfo, PkgbuildError>> {
        let status = std::fs::read_to_string(out.join(format!("{i}.status"))).ok()?;
        let srcinfo_path = out.join(format!("{i}.srcinfo"));
        let size = std::fs::metadata(&srcinfo_path).map(|m| m.len()).unwrap_or(0);
        let log_path = out.join(format!("{i}.log"));
        let log = || log_tail(&log_path);
        let too_large = size >= OUTPUT_LIMIT
            || std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) >= OUTPUT_LIMIT;
        let status = status.trim();
        Some(match status {
            "ok" => match std::fs::read(&srcinfo_path) {
                Ok(bytes) => String::from_utf8(bytes)
                    .map(|text| Srcinfo { text, has_pkgver_func: out.join(format!("{i}.pkgver")).exists() })
                    .map_err(|_| PkgbuildError::NotUtf8),
                Err(_) => Err(PkgbuildError::Exited { log: log() }),
            },
            "timeout" => Err(PkgbuildError::Timeout { secs: self.timeout.as_secs() }),
            _ if too_large => Err(PkgbuildError::TooLarge { limit: OUTPUT_LIMIT }),
            s => {
                let code: i32 = s.strip_prefix("exit ").and_then(|c| c.parse().ok()).unwrap_or(-1);
                match code {
                    0 => Err(PkgbuildError::Exited { log: log() }),
                    91 => Err(PkgbuildError::Missing),
                    92 => Err(PkgbuildError::Crlf),
                    93 => Err(PkgbuildError::Lint { log: log() }),
                    // 128 + SIGXCPU: the CPU limit, i.e. a busy endless loop.
                    152 => Err(PkgbuildError::Timeout { secs: self.timeout.as_secs() }),
                    // 128 + SIGXFSZ: the output limit.
                    153 => Err(PkgbuildError::TooLarge { limit: OUTPUT_LIMIT }),
                    code => Err(PkgbuildError::Source { code, log: log() }),
                }
            }
        })
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

fn log_tail(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let tail = &data[data.len().saturating_sub(2000)..];
    String::from_utf8_lossy(tail).trim().to_owned()
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The one place that starts the parse sandbox.
fn run_sandbox(spec: &Spec) -> Result<pkgcell_sandbox::Status, SrcinfoError> {
    let outcome = pkgcell_sandbox::run(spec).map_err(SrcinfoError::Sandbox)?;
    Ok(outcome.status)
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
}
