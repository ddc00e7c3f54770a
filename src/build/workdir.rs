//! The scratch directory of one build, and how it ends: removed, or kept
//! and handed over to the user.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use pkgcell_sandbox::{Access, Mount, Root, Sandbox, Spec, Upper};

use crate::error::io_err;
use crate::home::Home;
use crate::ids::PkgId;

use super::{BuildError, error_chain};
use super::options::{BuildOptions, KeepFailed};

/// Whose scratch directory it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirKind {
    /// A build, which holds the pkgid's lock: other directories of the
    /// pkgid are leftovers of killed builds and are removed.
    Build,
    /// A repro rebuild, which takes no lock (it may run next to a build of
    /// the same pkgid) and so leaves other directories alone.
    Repro,
}

/// The scratch directory of one build: overlay upper and work, pkgdest,
/// srcdest, and the exported tree of a git source.
pub(super) struct BuildDir {
    pub(super) root: PathBuf,
}

impl BuildDir {
    pub(super) fn new(home: &Home, kind: DirKind, pkgid: &PkgId) -> Result<BuildDir, BuildError> {
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

    pub(super) fn pkgdest(&self) -> PathBuf {
        self.root.join("pkgdest")
    }

    /// The build's git config, bound read-only (GIT_CONFIG_GLOBAL).
    pub(super) fn gitconfig(&self) -> PathBuf {
        self.root.join("gitconfig")
    }

    pub(super) fn finish(&self, keep: KeepFailed, opts: &BuildOptions, pkgid: &PkgId) {
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
    spec.env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
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
