//! Sync: bring each PKGBUILD source up to date and record where it stands.
//!
//! A git source is kept as a bare repository under
//! `$PKGCELL_HOME/sources/git/<blake3 of the URL>.git`. Only the one branch
//! needed is fetched (the remote's HEAD when no branch is given), into a
//! ref of pkgcell's own, never all refs and no tags. A path source is read
//! in place. With [`SyncMode::Offline`] nothing is fetched: what is already
//! there is used, and a source never fetched is an error for that entry.
//!
//! Git is driven through its command line: fetching needs git's transports,
//! credential helpers and proxy settings, which the git CLI has and which a
//! library would only re-implement (gix with its HTTP transport takes
//! minutes to compile; git2 needs libgit2 and OpenSSL). The git tree
//! hashing of plain directories is done in Rust ([`crate::plan`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use alpm_types::Name;

use crate::config::{Config, Location};
use crate::home::Home;

/// Whether sync may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Fetch each git source's branch.
    Fetch,
    /// Use what was fetched before.
    Offline,
}

/// A source that could not be synced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A git command failed.
    #[error("git {args} failed ({status}): {stderr}")]
    Git {
        /// The arguments, joined.
        args: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// The tail of git's stderr.
        stderr: String,
    },
    /// git could not be started.
    #[error("cannot run git")]
    Spawn(#[source] std::io::Error),
    /// A directory could not be made.
    #[error("cannot create {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--offline` and nothing fetched yet.
    #[error("{url} was never fetched; run once without --offline")]
    NotFetched {
        /// The source URL.
        url: String,
    },
    /// A path source that is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
}

/// Where a PKGBUILD's tree is, after sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// A commit in a local bare repository.
    Git {
        /// The bare repository.
        repo: PathBuf,
        /// The URL it mirrors.
        url: String,
        /// The synced commit (hex object id).
        commit: String,
        /// The PKGBUILD's directory inside the commit.
        subtree: Option<PathBuf>,
    },
    /// A plain directory.
    Dir {
        /// The directory.
        dir: PathBuf,
    },
}

/// The sync result of one `[pkgbuilds]` entry.
#[derive(Debug)]
pub struct Synced {
    /// The entry's name.
    pub name: Name,
    /// Where its tree is, or why it could not be synced.
    pub checkout: Result<Checkout, SyncError>,
}

/// Sync every entry of the config. A failure is recorded for its entry and
/// the others go on.
#[tracing::instrument(skip_all, fields(entries = config.pkgbuilds.len(), ?mode))]
pub fn sync(config: &Config, home: &Home, mode: SyncMode) -> Vec<Synced> {
    config
        .pkgbuilds
        .iter()
        .map(|e| Synced {
            name: e.name.clone(),
            checkout: match &e.location {
                Location::Path { dir } => {
                    if dir.is_dir() {
                        Ok(Checkout::Dir { dir: dir.clone() })
                    } else {
                        Err(SyncError::NotADirectory(dir.clone()))
                    }
                }
                Location::Git { url, branch, subtree } => {
                    sync_git(home, url, branch.as_deref(), mode).map(|(repo, commit)| Checkout::Git {
                        repo,
                        url: url.clone(),
                        commit,
                        subtree: subtree.clone(),
                    })
                }
            },
        })
        .collect()
}

/// The bare repository that mirrors `url`.
pub fn mirror_path(home: &Home, url: &str) -> PathBuf {
    let h = blake3::hash(url.as_bytes()).to_hex();
    home.git_sources().join(format!("{}.git", &h[..32]))
}

fn sync_git(home: &Home, url: &str, branch: Option<&str>, mode: SyncMode) -> Result<(PathBuf, String), SyncError> {
    let repo = mirror_path(home, url);
    // Our own ref per branch, so that two entries of one URL with other
    // branches do not overwrite each other.
    let local_ref = match branch {
        Some(b) => format!("refs/pkgcell/branches/{b}"),
        None => "refs/pkgcell/HEAD".to_owned(),
    };
    if mode == SyncMode::Fetch {
        if !repo.join("HEAD").exists() {
            let parent = repo.parent().expect("mirror paths have a parent");
            std::fs::create_dir_all(parent).map_err(|source| SyncError::Io { path: parent.to_owned(), source })?;
            // Into a temporary name first, so that an interrupted init never
            // leaves a half-made repository under the final name.
            let tmp = repo.with_extension(format!("tmp{}", std::process::id()));
            git(None, ["init", "--quiet", "--bare"].iter().map(OsStr::new).chain([tmp.as_os_str()]))?;
            std::fs::rename(&tmp, &repo).map_err(|source| SyncError::Io { path: repo.clone(), source })?;
        }
        let remote = match branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_owned(),
        };
        let refspec = format!("+{remote}:{local_ref}");
        tracing::info!(url, refspec, "fetching");
        git(Some(&repo), ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url, &refspec])?;
    } else if !repo.join("HEAD").exists() {
        return Err(SyncError::NotFetched { url: url.to_owned() });
    }
    let commit = git(Some(&repo), ["rev-parse", "--verify", "--quiet", &format!("{local_ref}^{{commit}}")])
        .map_err(|e| match mode {
            SyncMode::Offline => SyncError::NotFetched { url: url.to_owned() },
            SyncMode::Fetch => e,
        })?;
    Ok((repo, commit))
}

/// Run git (in `repo` as its git dir when given) and return its trimmed stdout.
pub(crate) fn git<I, S>(repo: Option<&Path>, args: I) -> Result<String, SyncError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new("git");
    if let Some(r) = repo {
        cmd.arg("--git-dir").arg(r);
    }
    // Never ask for a password on a terminal: a missing credential is an error.
    cmd.args(&args).env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    let out = cmd.output().map_err(SyncError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr.trim().chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(SyncError::Git {
            args: args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            status: out.status,
            stderr: tail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first commit of `repo`'s history (every ref) whose tree at
/// `subtree` (the root when `None`) is `tree`.
pub fn commit_with_tree(repo: &Path, tree: &str, subtree: Option<&Path>) -> Result<Option<String>, SyncError> {
    use std::io::Write;
    let commits = git(Some(repo), ["rev-list", "--all"])?;
    let path = subtree.map(|p| p.to_string_lossy().trim_end_matches('/').to_owned());
    // One git process for every commit: `<commit>:<subtree>` names the tree
    // there, and --batch-check prints its id (or "missing").
    let queries: String = commits
        .lines()
        .map(|c| match &path {
            Some(p) if !p.is_empty() => format!("{c}:{p}\n"),
            Some(_) | None => format!("{c}^{{tree}}\n"),
        })
        .collect();
    let args = ["cat-file", "--batch-check=%(objectname)"];
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SyncError::Spawn)?;
    // Written from a thread: git answers while it reads, and a full pipe
    // each way would stall both.
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(queries.as_bytes()));
    let out = child.wait_with_output().map_err(SyncError::Spawn)?;
    writer.join().expect("the writer does not panic").map_err(SyncError::Spawn)?;
    if !out.status.success() {
        return Err(SyncError::Git {
            args: args.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let answers = String::from_utf8_lossy(&out.stdout);
    Ok(commits.lines().zip(answers.lines()).find(|(_, t)| *t == tree).map(|(c, _)| c.to_owned()))
}

/// Write the files of tree `tree` of `repo` into the empty directory `dst`.
pub(crate) fn export_tree(repo: &Path, tree: &str, dst: &Path) -> Result<(), SyncError> {
    // git archive | tar -x keeps modes and symlinks, like a checkout.
    let mut archive = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["archive", "--format=tar", tree])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SyncError::Spawn)?;
    let stdout = archive.stdout.take().expect("piped");
    let tar = Command::new("tar")
        .args(["-x", "--no-same-owner", "-C"])
        .arg(dst)
        .stdin(stdout)
        .output()
        .map_err(SyncError::Spawn)?;
    let git_out = archive.wait_with_output().map_err(SyncError::Spawn)?;
    for (what, status, stderr) in [("archive", git_out.status, git_out.stderr), ("| tar -x", tar.status, tar.stderr)] {
        if !status.success() {
            return Err(SyncError::Git {
                args: format!("{what} {tree}"),
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
    }
    Ok(())
}
