//! Fetch: a PKGBUILD's remote sources into the cache under
//! `$PKGCELL_HOME/sources`, downloaded **in a sandbox with network**.
//!
//! - Files (http, https, ftp, file URLs) are stored by integrity checksum,
//!   `sources/<algo>/<sum>`, using the strongest checksum the PKGBUILD gives,
//!   so a file shared by two PKGBUILDs, or renamed upstream, is stored once.
//!   A source whose checksums are all `SKIP` is stored by URL
//!   (`sources/url/<blake3 of the URL>`) and not downloaded again.
//!   Every checksum given is verified; a mismatch names the file, the
//!   expected and the actual sum, and nothing is stored.
//! - git sources are mirrored once per URL as bare repositories
//!   (`sources/vcs/<blake3 of the URL>.git`, heads and tags only) and updated
//!   on each fetch.
//! - Local sources (no `://`) live in the PKGBUILD's directory: no fetch.
//! - Package files of repositories that a build installs (sync repositories
//!   of the base, pkgcell's own repository) go to the shared package cache
//!   (`cache/pkg/<file name>`), checked against the database's SHA-256
//!   ([`Fetcher::fetch_packages`]).
//!
//! Downloads land in a temp directory and are renamed into place, so the
//! cache never holds a partial file; a flock per cache entry makes
//! concurrent fetches of the same source (threads or processes) download
//! it once. A temp directory is named after its cache entry, so the next
//! fetch of that entry (holding its lock) removes what a killed download
//! left. The sandbox runs as root inside (the calling user outside) so
//! that cached files belong to the caller; it has the network but sees only
//! its output directory, and git may only use file, git, http(s) and ssh.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use pkgcell_sandbox::{Access, Mount, Network, Rlimit, Root, Sandbox, Spec, Upper};

use crate::error::{IoPath, io_err};
use crate::home::Home;
use crate::ids::Blake3;

mod gc;
mod source;

pub use gc::{
    NeededSources, PARTIAL_DOWNLOAD_MAX_AGE, PackageCacheGc, SourceCacheGc, add_needed_by_config, gc_package_cache,
    gc_source_cache, needed_sources,
};
pub use source::{Algo, SourceEntry, SourceKind, sources_of, sources_of_every_arch};


/// A fetched source, ready for the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A cached file to be seen as `filename` in SRCDEST.
    File {
        /// The name in SRCDEST.
        filename: String,
        /// The cache file.
        path: PathBuf,
    },
    /// A bare git mirror to be seen as directory `filename` in SRCDEST.
    Git {
        /// The name in SRCDEST.
        filename: String,
        /// The mirror.
        path: PathBuf,
    },
}

/// A fetch that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A `file://` source outside the directories sources may read.
    #[error(
        "source {filename} ({url}) reads a host path outside the directories file:// sources may read ({allowed}); \
         a PKGBUILD chooses its own sources, so pkgcell only lets them read the PKGBUILD directories of the config \
         and [build] file_sources: add the directory there if you trust it"
    )]
    FileSource {
        /// The source's file name.
        filename: String,
        /// Its URL.
        url: String,
        /// The directories allowed, resolved.
        allowed: String,
    },
    /// The downloaded file does not have the checksum the PKGBUILD states.
    #[error("checksum mismatch for {filename} ({url}): {algo} expected {expected}, got {got}")]
    Checksum {
        /// The source's file name.
        filename: String,
        /// Where it came from.
        url: String,
        /// Which checksum.
        algo: &'static str,
        /// What the PKGBUILD says.
        expected: String,
        /// What the download has.
        got: String,
    },
    /// A package file from a repository does not have the SHA-256 its
    /// database states (the file is not kept).
    #[error("package file {filename} from {url} does not match the {repo} database: sha256 expected {expected}, got {got}")]
    PackageChecksum {
        /// The repository.
        repo: String,
        /// The package file name.
        filename: String,
        /// Where it came from.
        url: String,
        /// The database's `%SHA256SUM%`.
        expected: String,
        /// What the download has.
        got: String,
    },
    /// A repository names no server to download its packages from.
    #[error("the {repo} repository has no Server in the base's pacman.conf to download {filename} from")]
    NoServer {
        /// The repository.
        repo: String,
        /// The package file name.
        filename: String,
    },
    /// The download or the git mirror failed.
    #[error("cannot download {filename} from {url}: {tail}")]
    Download {
        /// The source's file name.
        filename: String,
        /// Where from.
        url: String,
        /// The end of the tool's output.
        tail: String,
    },
    /// The sandbox could not run.
    #[error("cannot start the fetch sandbox for {url}")]
    Sandbox {
        /// Where from.
        url: String,
        /// The cause.
        #[source]
        source: pkgcell_sandbox::Error,
    },
    /// A cache file or directory could not be written.
    #[error(transparent)]
    Io(#[from] IoPath),
}


/// How far a file download is, for a caller that shows it (the library
/// does not print). Git sources report nothing.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Download<'a> {
    /// A download began.
    Started {
        /// The file's name (the source's, or the package file's).
        file: &'a str,
        /// Where it comes from.
        url: &'a str,
    },
    /// Bytes written so far (every ~200 ms while it runs).
    Bytes {
        /// The file's name.
        file: &'a str,
        /// Bytes so far.
        bytes: u64,
    },
    /// The download ended (before its checksums are checked).
    Finished {
        /// The file's name.
        file: &'a str,
        /// Bytes written.
        bytes: u64,
        /// Whether curl succeeded.
        ok: bool,
    },
}

/// The observer of [`Download`]s.
#[derive(Clone)]
struct OnDownload(std::sync::Arc<dyn Fn(Download<'_>) + Send + Sync>);

impl std::fmt::Debug for OnDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDownload")
    }
}

/// How often a running download's size is looked at.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Fetches sources into the cache of a home, in sandboxes over `base`.
#[derive(Debug, Clone)]
pub struct Fetcher {
    home: Home,
    base: PathBuf,
    rlimits: Vec<Rlimit>,
    /// Host directories `file://` sources may read (none: no such source).
    file_sources: Vec<PathBuf>,
    on_download: Option<OnDownload>,
}

impl Fetcher {
    /// A fetcher for `home`, running its downloads over the base root `base`.
    pub fn new(home: Home, base: PathBuf) -> Fetcher {
        Fetcher { home, base, rlimits: Vec::new(), file_sources: Vec::new(), on_download: None }
    }

    /// The same, telling `f` how file downloads go ([`Download`]).
    pub fn with_progress(mut self, f: impl Fn(Download<'_>) + Send + Sync + 'static) -> Fetcher {
        self.on_download = Some(OnDownload(std::sync::Arc::new(f)));
        self
    }

    /// The same, letting `file://` sources read beneath these host
    /// directories (`Config::file_source_dirs`); others are refused.
    pub fn with_file_sources(mut self, dirs: Vec<PathBuf>) -> Fetcher {
        // Compared as real paths: a symlink must not widen a directory.
        self.file_sources = dirs.iter().filter_map(|d| fs::canonicalize(d).ok()).collect();
        self
    }

    /// The host path a `file://` source reads, resolved, when it lies
    /// beneath an allowed directory.
    fn file_source(&self, e: &SourceEntry, url: &str, path: &str) -> Result<PathBuf, FetchError> {
        let refused = || FetchError::FileSource {
            filename: e.filename.clone(),
            url: url.to_owned(),
            allowed: self.file_sources.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        };
        let real = fs::canonicalize(path).map_err(|_| refused())?;
        if self.file_sources.iter().any(|d| real.starts_with(d)) { Ok(real) } else { Err(refused()) }
    }

    /// The same, with these resource limits on every download (the build's
    /// memory and process limits).
    pub fn with_rlimits(mut self, rlimits: Vec<Rlimit>) -> Fetcher {
        self.rlimits = rlimits;
        self
    }

    /// Fetch every remote source of `entries`; local ones are skipped.
    #[tracing::instrument(skip_all)]
    pub fn fetch(&self, entries: &[SourceEntry]) -> Result<Vec<Fetched>, FetchError> {
        let mut out = Vec::new();
        for e in entries {
            // curl and git would take such a "URL" as an option.
            if let SourceKind::File { url } | SourceKind::Git { url } = &e.kind
                && url.starts_with('-')
            {
                return Err(FetchError::Download {
                    filename: e.filename.clone(),
                    url: url.clone(),
                    tail: "a URL must not start with '-'".into(),
                });
            }
            match &e.kind {
                SourceKind::Local => {}
                SourceKind::File { url } => out.push(Fetched::File { filename: e.filename.clone(), path: self.fetch_file(e, url)? }),
                SourceKind::Git { url } => out.push(Fetched::Git { filename: e.filename.clone(), path: self.fetch_git(e, url)? }),
            }
        }
        Ok(out)
    }

    /// The cache path of a file source: by its strongest real checksum, else by URL.
    #[cfg(test)]
    fn file_key(&self, e: &SourceEntry, url: &str) -> PathBuf {
        file_key(&self.home, e, url)
    }

    /// The flock of a cache entry, held, and its name (which also names
    /// the entry's temp directories).
    fn lock(&self, key: &Path) -> Result<(File, String), FetchError> {
        let (path, name) = entry_lock(&self.home, key);
        let dir = path.parent().expect("locks have a parent");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let f = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
        f.lock().map_err(io_err("lock", &path))?;
        Ok((f, name))
    }

    fn fetch_file(&self, e: &SourceEntry, url: &str) -> Result<PathBuf, FetchError> {
        let key = file_key(&self.home, e, url);
        if key.exists() {
            touch(&key);
            return Ok(key);
        }
        // Single flight: whoever holds the lock downloads; the others find
        // the file when they get the lock.
        let (_lock, name) = self.lock(&key)?;
        if key.exists() {
            touch(&key);
            return Ok(key);
        }
        tracing::info!(url, file = %e.filename, "downloading");
        let tmp_root = self.home.tmp();
        fs::create_dir_all(&tmp_root).map_err(io_err("create", &tmp_root))?;
        let prefix = format!("fetch-{name}-");
        remove_partial(&tmp_root, &prefix);
        let tmp = tempfile::Builder::new().prefix(&prefix).tempdir_in(&tmp_root).map_err(io_err("create a directory in", &tmp_root))?;
        let mut script = String::from("set -e\ncurl -gqb '' -fL --retry 3 --retry-delay 1 -o /out/file \"$1\"\n");
        for a in e.sums.keys() {
            script.push_str(&format!("printf '{} '; {} /out/file\n", a.name(), a.command()));
        }
        let mut mounts = vec![Mount::Bind { src: tmp.path().to_owned(), dst: "/out".into(), access: Access::ReadWrite }];
        if let Some(p) = url.strip_prefix("file://") {
            let real = self.file_source(e, url, p)?;
            mounts.push(Mount::Bind { src: real, dst: p.into(), access: Access::ReadOnly });
        }
        let argv = vec!["sh".into(), "-c".into(), script, "sh".into(), url.to_owned()];
        let out = self.run_watched(argv, mounts, url, &e.filename, &tmp.path().join("file"))?;
        if !out.0 {
            return Err(FetchError::Download { filename: e.filename.clone(), url: url.to_owned(), tail: tail(&out.1, 5) });
        }
        // Each printed line: "<algo> <sum> [size] /out/file".
        for line in out.1.lines() {
            let mut w = line.split_whitespace();
            let (Some(algo), Some(got)) = (w.next(), w.next()) else { continue };
            let Some((a, expected)) = e.sums.iter().find(|(a, _)| a.name() == algo) else { continue };
            if *expected != got {
                return Err(FetchError::Checksum {
                    filename: e.filename.clone(),
                    url: url.to_owned(),
                    algo: a.name(),
                    expected: expected.clone(),
                    got: got.to_owned(),
                });
            }
        }
        let dir = key.parent().expect("keys have a parent");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let file = tmp.path().join("file");
        File::open(&file).and_then(|f| f.sync_all()).map_err(io_err("fsync", &file))?;
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o444)).map_err(io_err("chmod", &file))?;
        fs::rename(&file, &key).map_err(io_err("rename into", &key))?;
        Ok(key)
    }

    /// The package file `filename` of repository `repo` in the shared
    /// package cache (`$PKGCELL_HOME/cache/pkg`), downloaded from the first
    /// of `servers` that has it with the SHA-256 `sha256` (the database's
    /// `%SHA256SUM%`) unless the cache holds it already. Single flight: a
    /// lock per file name, and the cache is checked again under it, so
    /// concurrent builds (threads or processes) download it once. A file is
    /// written to a temp file, checked and renamed into place, so the cache
    /// never holds a partial or unchecked file.
    #[tracing::instrument(skip(self, servers, sha256))]
    pub fn fetch_package(&self, repo: &str, servers: &[String], filename: &str, sha256: &str) -> Result<PathBuf, FetchError> {
        let cache = self.home.package_cache();
        let path = cache.join(filename);
        if sha256_of(&path).is_ok_and(|got| got == sha256) {
            return Ok(path);
        }
        let locks = package_locks(&self.home);
        fs::create_dir_all(&locks).map_err(io_err("create", &locks))?;
        let lock_path = locks.join(format!("{filename}.lock"));
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err("open", &lock_path))?;
        lock.lock().map_err(io_err("lock", &lock_path))?;
        if sha256_of(&path).is_ok_and(|got| got == sha256) {
            return Ok(path);
        }
        fs::create_dir_all(&cache).map_err(io_err("create", &cache))?;
        let prefix = format!(".part-{}-", &Blake3::of(filename.as_bytes()).to_string()[..32]);
        remove_partial(&cache, &prefix);
        let mut last = FetchError::NoServer { repo: repo.to_owned(), filename: filename.to_owned() };
        for server in servers {
            let url = format!("{server}/{filename}");
            tracing::info!(url, "downloading a package");
            // A temp directory in the cache's own file system, so the rename is atomic.
            let tmp = tempfile::Builder::new().prefix(&prefix).tempdir_in(&cache).map_err(io_err("create a directory in", &cache))?;
            let mut mounts = vec![Mount::Bind { src: tmp.path().to_owned(), dst: "/out".into(), access: Access::ReadWrite }];
            if let Some(p) = server.strip_prefix("file://") {
                mounts.push(Mount::Bind { src: p.into(), dst: p.into(), access: Access::ReadOnly });
            }
            let script = "curl -gqb '' -fL --retry 3 --retry-delay 1 -o /out/file \"$1\"".to_owned();
            let argv = vec!["sh".into(), "-c".into(), script, "sh".into(), url.clone()];
            let out = self.run_watched(argv, mounts, &url, filename, &tmp.path().join("file"))?;
            if !out.0 {
                last = FetchError::Download { filename: filename.to_owned(), url, tail: tail(&out.1, 5) };
                continue;
            }
            let file = tmp.path().join("file");
            let got = sha256_of(&file).map_err(io_err("read", &file))?;
            if got != sha256 {
                last = FetchError::PackageChecksum {
                    repo: repo.to_owned(),
                    filename: filename.to_owned(),
                    url,
                    expected: sha256.to_owned(),
                    got,
                };
                continue;
            }
            File::open(&file).and_then(|f| f.sync_all()).map_err(io_err("fsync", &file))?;
            fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io_err("chmod", &file))?;
            fs::rename(&file, &path).map_err(io_err("rename into", &path))?;
            return Ok(path);
        }
        Err(last)
    }

    /// The package files of repositories that a planned build installs
    /// ([`crate::plan::Install`]), into the shared package cache: a sync
    /// repository's from its servers, pkgcell's own repository's from its
    /// directory (a `file://` server). Returns, per such install, its index
    /// in `installs` and the cached file.
    pub fn fetch_packages(&self, installs: &[crate::plan::Install]) -> Result<Vec<(usize, PathBuf)>, FetchError> {
        use crate::plan::InstallFrom;
        let mut out = Vec::new();
        for (i, p) in installs.iter().enumerate() {
            let (repo, servers, filename, sha256) = match &p.from {
                InstallFrom::Base | InstallFrom::Local { .. } | InstallFrom::Pkgbuild { .. } => continue,
                InstallFrom::Sync { repo, servers, filename, sha256 } => (repo, servers.clone(), filename, sha256),
                InstallFrom::Repo { repo, dir, filename, sha256 } => {
                    (repo, vec![format!("file://{}", dir.display())], filename, sha256)
                }
            };
            out.push((i, self.fetch_package(repo, &servers, filename, sha256)?));
        }
        Ok(out)
    }

    fn fetch_git(&self, e: &SourceEntry, url: &str) -> Result<PathBuf, FetchError> {
        let mirror = git_mirror(&self.home, url);
        let vcs = mirror.parent().expect("mirrors have a parent").to_owned();
        fs::create_dir_all(&vcs).map_err(io_err("create", &vcs))?;
        let name = mirror.file_name().expect("mirrors have a name").to_string_lossy().into_owned();
        let (_lock, _) = self.lock(&mirror)?;
        // A new mirror is cloned next to its final name and renamed, so an
        // interrupted clone never looks like a mirror.
        let script = if mirror.exists() {
            format!(
                "git -C /vcs/{name} fetch --quiet --prune \"$1\" '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'"
            )
        } else {
            format!("rm -rf /vcs/{name}.part && git clone --quiet --bare -- \"$1\" /vcs/{name}.part")
        };
        let mut mounts = vec![Mount::Bind { src: vcs.clone(), dst: "/vcs".into(), access: Access::ReadWrite }];
        if let Some(p) = url.strip_prefix("file://") {
            let real = self.file_source(e, url, p)?;
            mounts.push(Mount::Bind { src: real, dst: p.into(), access: Access::ReadOnly });
        }
        let out = self.run(vec!["sh".into(), "-c".into(), script, "sh".into(), url.to_owned()], mounts, url)?;
        if !out.0 {
            return Err(FetchError::Download { filename: e.filename.clone(), url: url.to_owned(), tail: tail(&out.1, 5) });
        }
        if !mirror.exists() {
            let part = vcs.join(format!("{name}.part"));
            fs::rename(&part, &mirror).map_err(io_err("rename into", &mirror))?;
        }
        touch(&mirror);
        Ok(mirror)
    }

    /// [`Self::run`] for a download into `out` (in a temp directory of
    /// ours), telling the observer its size as it grows.
    fn run_watched(&self, argv: Vec<String>, mounts: Vec<Mount>, url: &str, file: &str, out: &Path) -> Result<(bool, String), FetchError> {
        let Some(OnDownload(on)) = &self.on_download else { return self.run(argv, mounts, url) };
        // The sandbox writes the file: its size is only shown, never trusted,
        // and the link itself is looked at (a symlink is not followed).
        let size = || fs::symlink_metadata(out).map(|m| m.len()).unwrap_or(0);
        on(Download::Started { file, url });
        let done = std::sync::atomic::AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let poller = s.spawn(|| {
                loop {
                    std::thread::park_timeout(POLL);
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    on(Download::Bytes { file, bytes: size() });
                }
            });
            let r = self.run(argv, mounts, url);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            // Not a sleep's worth later.
            poller.thread().unpark();
            r
        });
        on(Download::Finished { file, bytes: size(), ok: result.as_ref().is_ok_and(|r| r.0) });
        result
    }

    /// Run a fetch command with the host's network; (success, output).
    fn run(&self, argv: Vec<String>, mounts: Vec<Mount>, url: &str) -> Result<(bool, String), FetchError> {
        let mut spec = Spec::new(
            Root::Overlay { lowers: vec![self.base.clone()], upper: Upper::Tmpfs { size: 64 << 20 } },
            argv,
        );
        spec.mounts = mounts;
        spec.network = Network::Host;
        spec.env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
        spec.env.insert("HOME".into(), "/root".into());
        spec.env.insert("GIT_ALLOW_PROTOCOL".into(), "file:git:http:https:ssh".into());
        spec.env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
        spec.cwd = "/".into();
        spec.timeout = Some(std::time::Duration::from_secs(3600));
        spec.rlimits = self.rlimits.clone();
        let log = tempfile::tempfile().map_err(io_err("create a temporary file in", Path::new("/tmp")))?;
        let log2 = log.try_clone().map_err(io_err("duplicate", Path::new("a temporary file")))?;
        let outcome = Sandbox::new(spec)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2.try_clone().map_err(io_err("duplicate", Path::new("a temporary file")))?))
            .run()
            .map_err(|source| FetchError::Sandbox { url: url.to_owned(), source })?;
        // Only the end: the checksums are printed last, and a server may
        // send any amount of messages before.
        let text = crate::buildlog::window_of(&mut { log2 }, 0);
        Ok((outcome.status.success(), text))
    }
}

/// The cache path of a file source: by its strongest real checksum, else by URL.
fn file_key(home: &Home, e: &SourceEntry, url: &str) -> PathBuf {
    let sources = home.sources();
    match e.sums.iter().find(|(a, _)| **a != Algo::Ck).or_else(|| e.sums.iter().next()) {
        Some((a, sum)) => sources.join(a.name()).join(sum),
        None => sources.join("url").join(Blake3::of(url.as_bytes()).to_string()),
    }
}

/// The bare mirror of the git source `url`.
fn git_mirror(home: &Home, url: &str) -> PathBuf {
    home.sources().join("vcs").join(format!("{}.git", &Blake3::of(url.as_bytes()).to_string()[..32]))
}

/// The flock file of the cache entry `key`, and its name (which also names
/// the entry's temp directories, `tmp/fetch-<name>-*`).
pub(super) fn entry_lock(home: &Home, key: &Path) -> (PathBuf, String) {
    let name = Blake3::of(key.as_os_str().as_encoded_bytes()).to_string();
    (home.sources().join("locks").join(format!("{name}.lock")), name)
}

/// The cache entries (under `$PKGCELL_HOME/sources`) that fetching
/// `entries` uses: a file by checksum (or URL), a git mirror by URL.
pub fn cache_entries(home: &Home, entries: &[SourceEntry]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            SourceKind::Local => None,
            SourceKind::File { url } => Some(file_key(home, e, url)),
            SourceKind::Git { url } => Some(git_mirror(home, url)),
        })
        .collect()
}

/// Set a cache entry's modification time to now: [`gc_source_cache`] takes
/// it as the entry's last use. A failure only makes the entry look older.
fn touch(path: &Path) {
    if let Err(err) = File::open(path).and_then(|f| f.set_modified(SystemTime::now())) {
        tracing::warn!(path = %path.display(), error = %err, "cannot mark a cached source as used");
    }
}

/// Remove the temp directories in `dir` whose names start with `prefix`:
/// the caller holds the lock of the one cache entry they are named after,
/// so they were left by a download that was killed. A failure only leaves
/// them for `store gc` (package cache) or a later fetch.
fn remove_partial(dir: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            tracing::info!(path = %e.path().display(), "removing the partial download of an interrupted fetch");
            if let Err(err) = fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a partial download");
            }
        }
    }
}

/// The flock(2) files of [`Fetcher::fetch_package`], one per file name.
pub(super) fn package_locks(home: &Home) -> PathBuf {
    home.root().join("cache/pkg-locks")
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_of(path: &Path) -> io::Result<String> {
    use sha2::Digest;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The last `n` lines of `text`, joined with " | " for one-line messages.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::source::parse_source;
    use super::*;

    const SRCINFO: &str = "pkgbase = x\n\tpkgver = 1\n\tsource = a.c\n\tsource = foo.tgz::https://h.invalid/v1.tgz\n\tsource = git+file:///srv/repo.git#branch=main\n\tsource_x86_64 = https://h.invalid/bin-x86_64\n\tsha256sums = AAAA\n\tsha256sums = bbbb\n\tsha256sums = SKIP\n\tsha256sums_x86_64 = cccc\n\tb2sums = SKIP\n\tb2sums = dddd\n\tb2sums = SKIP\n\tb2sums_x86_64 = SKIP\n\npkgname = x\n\tsource = ignored\n";

    #[test]
    fn sources_are_read_with_their_checksums_and_makepkg_names() {
        let s = sources_of(SRCINFO, "x86_64");
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], SourceEntry { filename: "a.c".into(), kind: SourceKind::Local, sums: [(Algo::Sha256, "aaaa".into())].into() });
        assert_eq!(s[1].filename, "foo.tgz");
        assert_eq!(s[1].kind, SourceKind::File { url: "https://h.invalid/v1.tgz".into() });
        assert_eq!(s[1].sums, [(Algo::B2, "dddd".to_owned()), (Algo::Sha256, "bbbb".to_owned())].into());
        assert_eq!(s[2].filename, "repo");
        assert_eq!(s[2].kind, SourceKind::Git { url: "file:///srv/repo.git".into() });
        assert!(s[2].sums.is_empty());
        assert_eq!(s[3].filename, "bin-x86_64");
        assert_eq!(sources_of(SRCINFO, "aarch64").len(), 3);
    }

    #[test]
    fn urls_that_look_like_options_are_refused_before_any_download() {
        let f = Fetcher::new(Home::at("/nonexistent"), "/nonexistent".into());
        let e = parse_source("x::git+--upload-pack=touch:///tmp/pwned", BTreeMap::new());
        assert!(matches!(f.fetch(&[e]), Err(FetchError::Download { tail, .. }) if tail.contains("must not start with '-'")));
    }

    #[test]
    fn files_are_keyed_by_their_strongest_checksum_or_url() {
        let f = Fetcher::new(Home::at("/h"), "/b".into());
        let s = sources_of(SRCINFO, "x86_64");
        assert_eq!(f.file_key(&s[1], "u"), PathBuf::from("/h/sources/b2/dddd"));
        let key = f.file_key(&s[3], "https://h.invalid/bin-x86_64");
        assert_eq!(key, PathBuf::from("/h/sources/sha256/cccc"));
        let none = SourceEntry { filename: "f".into(), kind: SourceKind::File { url: "u".into() }, sums: BTreeMap::new() };
        assert!(f.file_key(&none, "u").starts_with("/h/sources/url"));
    }

    #[test]
    fn sources_of_every_arch_has_each_arch_specific_source_once_besides_the_general_ones() {
        let t = "pkgbase = x\n\tsource = a.c\n\tsource_x86_64 = https://h.invalid/x\n\tsource_aarch64 = https://h.invalid/y\n\tsha256sums_aarch64 = 00ff\n\npkgname = x\n";
        let mut names: Vec<String> = sources_of_every_arch(t).into_iter().map(|e| e.filename).collect();
        names.sort();
        assert_eq!(names, ["a.c", "x", "y"]);
        let home = Home::at("/h");
        let keys = cache_entries(&home, &sources_of_every_arch(t));
        assert!(keys.contains(&PathBuf::from("/h/sources/sha256/00ff")), "{keys:?}");
        assert_eq!(keys.len(), 2, "the local source has no cache entry: {keys:?}");
    }

}
