//! Read-write binds of builds (`pkgcell build -d SRC:DST`, as
//! makechrootpkg's `-d`): the directory is lent to the build user for the
//! run, and given back to the caller afterwards.
//!
//! makepkg runs as the build user (uid 1000 inside, a subordinate id
//! outside), which cannot write to a directory of the caller (root inside).
//! So, before the run's first build, every file of the caller in the
//! directory is chowned to the build user (uid only: the groups stay), by
//! root inside a user namespace that maps both; after the run's last build,
//! failed or not, every file of the build user there goes back to the
//! caller (uid, and the build user's group to the caller's). Nothing in the
//! user's directory is left owned by a subordinate id, and its modes are
//! untouched.
//!
//! Both chowns run in a sandbox on the base that sees only the directory,
//! with `chown -R -P -h`: symlinks (a build may plant any) are changed
//! themselves, never followed, and nothing outside the directory is
//! reachable from there anyway.
//!
//! A run that was killed leaves its directories lent: a marker
//! `$PKGCELL_HOME/lent/<hash>` names each until it is given back, and the
//! next build run gives back what no running run holds ([`repair`]). Runs
//! that share a directory hold `<hash>.lock` shared while they use it; the
//! last one out gives it back.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pkgcell_sandbox::{Access, Mount, Root, Sandbox, Spec, Upper};

use crate::error::{IoPath, io_err};
use crate::home::Home;

/// The uid (and gid) of the build user inside, as [`crate::build`] runs makepkg.
const BUILD_UID: u32 = 1000;

/// A read-write bind could not be lent or given back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LentError {
    /// A marker or lock file could not be made or read.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// The sandbox of a chown could not be set up.
    #[error("cannot set up the sandbox for {what} {}", path.display())]
    Sandbox {
        /// Lending or giving back.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: pkgcell_sandbox::Error,
    },
    /// The chown failed.
    #[error("{what} {} failed (exit status {status}; chown said why above)", path.display())]
    Chown {
        /// Lending or giving back.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// chown's exit status.
        status: u8,
    },
}

/// Directories lent to the build user for a run; [`Lent::give_back`] (or,
/// failing that, dropping it) returns them.
#[derive(Debug)]
pub struct Lent {
    base: PathBuf,
    dirs: Vec<LentDir>,
}

#[derive(Debug)]
struct LentDir {
    path: PathBuf,
    marker: PathBuf,
    /// Held shared while this run uses the directory.
    lock: Option<File>,
}

/// Lend the sources of the read-write binds among `binds` to the build
/// user, running the chown in a sandbox on `base` (a root with `chown`).
pub fn lend(home: &Home, base: &Path, binds: &[Mount]) -> Result<Lent, LentError> {
    let mut lent = Lent { base: base.to_owned(), dirs: Vec::new() };
    for m in binds {
        let Mount::Bind { src, access: Access::ReadWrite, .. } = m else { continue };
        if !src.is_dir() || lent.dirs.iter().any(|d| d.path == *src) {
            continue;
        }
        let (marker, lock_path) = marker_of(home, src);
        let dir = marker.parent().expect("markers are in lent/");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err("open", &lock_path))?;
        // Waits while another run gives it back; then it is ours to lend again.
        lock.lock_shared().map_err(io_err("lock", &lock_path))?;
        fs::write(&marker, src.as_os_str().as_bytes()).map_err(io_err("write", &marker))?;
        chown(base, src, Chown::Lend)?;
        lent.dirs.push(LentDir { path: src.clone(), marker, lock: Some(lock) });
    }
    Ok(lent)
}

impl Lent {
    /// Give every directory back to the caller, unless another run still
    /// uses it (that run gives it back). Tries them all; returns the first
    /// failure.
    pub fn give_back(mut self) -> Result<(), LentError> {
        self.give_back_all()
    }

    fn give_back_all(&mut self) -> Result<(), LentError> {
        let mut first = None;
        for mut d in std::mem::take(&mut self.dirs) {
            drop(d.lock.take());
            if let Err(e) = give_back_if_unused(&self.base, &d.path, &d.marker)
                && first.is_none()
            {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Err(e) = self.give_back_all() {
            tracing::warn!(error = %chain(&e), "cannot give a -d directory back");
        }
    }
}

/// Give back the directories that killed runs left lent (their markers are
/// there, and no running run holds their lock). Failures only warn: the
/// next run tries again.
pub fn repair(home: &Home, base: &Path) {
    let dir = home.root().join("lent");
    let Ok(rd) = fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") {
            continue;
        }
        let Ok(text) = fs::read(e.path()) else { continue };
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&text));
        // Only a marker this module wrote names its directory's hash.
        if marker_of(home, &path).0 != e.path() {
            continue;
        }
        tracing::info!(path = %path.display(), "giving back a -d directory that a killed run left to the build user");
        if let Err(e) = give_back_if_unused(base, &path, &e.path()) {
            tracing::warn!(error = %chain(&e), "cannot give a -d directory back");
        }
    }
}

/// Give `path` back when no run holds its lock; then remove its marker.
fn give_back_if_unused(base: &Path, path: &Path, marker: &Path) -> Result<(), LentError> {
    let lock_path = lock_of(marker);
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err("open", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        // Another run uses it now: the last one out gives it back.
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(IoPath::new("lock", lock_path, e).into()),
    }
    if path.is_dir() {
        chown(base, path, Chown::GiveBack)?;
    }
    match fs::remove_file(marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoPath::new("remove", marker, e).into()),
    }
}

/// An error with its causes, for a warning.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// `$PKGCELL_HOME/lent/<hash of the path>` and its lock file.
fn marker_of(home: &Home, path: &Path) -> (PathBuf, PathBuf) {
    let hash = blake3::hash(path.as_os_str().as_bytes()).to_hex();
    let marker = home.root().join("lent").join(&hash[..32]);
    let lock = lock_of(&marker);
    (marker, lock)
}

fn lock_of(marker: &Path) -> PathBuf {
    let mut s = marker.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Which way a chown goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chown {
    /// The caller's files to the build user.
    Lend,
    /// The build user's files to the caller.
    GiveBack,
}

/// Run the chown of `how` over the tree at `path`, as root in a sandbox on
/// `base` where the tree is the only host path. `-P -h`: no symlink is
/// followed, on the command line or below; `--from`: only the files of
/// the one owner change hands.
fn chown(base: &Path, path: &Path, how: Chown) -> Result<(), LentError> {
    let (what, script) = match how {
        Chown::Lend => ("lending to the build user", format!("chown -R -P -h --from=0 {BUILD_UID} /lent")),
        Chown::GiveBack => (
            "giving back",
            format!("chown -R -P -h --from={BUILD_UID} 0 /lent && chown -R -P -h --from=:{BUILD_UID} :0 /lent"),
        ),
    };
    let mut spec = Spec::new(
        Root::Overlay { lowers: vec![base.to_owned()], upper: Upper::Tmpfs { size: 1 << 20 } },
        vec!["sh".into(), "-c".into(), script],
    );
    spec.mounts.push(Mount::Bind { src: path.to_owned(), dst: "/lent".into(), access: Access::ReadWrite });
    spec.env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
    spec.cwd = "/".into();
    spec.timeout = Some(Duration::from_secs(3600));
    let outcome = Sandbox::new(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .run()
        .map_err(|source| LentError::Sandbox { what, path: path.to_owned(), source })?;
    if !outcome.status.success() {
        return Err(LentError::Chown { what, path: path.to_owned(), status: outcome.status.exit_code() });
    }
    Ok(())
}
