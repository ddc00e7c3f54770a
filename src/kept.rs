//! Kept trees of failed builds (`pkgcell build --keep-failed`, alias
//! `--inspect`) under `$PKGCELL_HOME/failed/<pkgid>`: find one by pkgid or
//! package name, run a shell as the build user in its sandbox again (as
//! `arch-nspawn` into a chroot makechrootpkg kept), and remove them.
//!
//! A kept tree is the build's scratch directory: the overlay `upper/` and
//! `work/` over the base (and the dependency layer), `pkgdest/`,
//! `srcdest/`, and the build's sandbox spec in `sandbox.json`, written
//! there by the build stage before makepkg ran. The build could not write
//! to the tree's top directory (only below `upper/`, `pkgdest/` and
//! `srcdest/`), so the spec is pkgcell's own.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use pkgcell_sandbox::{Mount, Root, Sandbox, Spec, Upper};
use serde::{Deserialize, Serialize};

use crate::build::BuildError;
use crate::build::workdir::{hand_over, remove_dir};
use crate::error::IoPath;
use crate::home::Home;
use crate::ids::PkgId;

/// The file of a kept tree that holds its build's sandbox spec.
const SPEC_FILE: &str = "sandbox.json";

/// Bytes of `sandbox.json` read at most (a spec is a few KiB).
const SPEC_MAX: u64 = 1 << 20;

/// What `sandbox.json` holds: the spec, and the directory its paths were
/// under then (the tree moved to `failed/` afterwards).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    version: u32,
    root: PathBuf,
    spec: Spec,
}

/// A failure to find, enter or remove a kept tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeptError {
    /// No kept tree matches.
    #[error("no kept failed build matches {what:?} (kept: {}); build with --keep-failed to keep one", if kept.is_empty() { "none".to_owned() } else { kept.join(", ") })]
    NotFound {
        /// What was asked for.
        what: String,
        /// The pkgids that are kept.
        kept: Vec<String>,
    },
    /// Several pkgids start with what was given.
    #[error("{what:?} names several kept failed builds: {}; give more of the pkgid", matches.join(", "))]
    Ambiguous {
        /// What was asked for.
        what: String,
        /// The pkgids it names.
        matches: Vec<String>,
    },
    /// The tree has no spec: it failed before makepkg ran, or an older
    /// pkgcell kept it.
    #[error("the kept build {} has no {SPEC_FILE}: it failed before makepkg ran, or an older pkgcell kept it; look at its files instead", path.display())]
    NoSpec {
        /// The kept tree.
        path: PathBuf,
    },
    /// The spec could not be read back.
    #[error("cannot read the sandbox spec {}", path.display())]
    BadSpec {
        /// The spec file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A lower layer of the build is gone.
    #[error("the build's {what} {} is gone (removed by `pkgcell store gc` or replaced by `build -c`); the kept files are still in {}", lower.display(), path.display())]
    LowerGone {
        /// "base" or "dependency layer".
        what: &'static str,
        /// The missing directory.
        lower: PathBuf,
        /// The kept tree.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// The sandbox could not be set up.
    #[error("cannot run the sandbox for {what}")]
    Sandbox {
        /// What it was for.
        what: &'static str,
        /// Why.
        #[source]
        source: pkgcell_sandbox::Error,
    },
    /// Making the build user the owner of the build directory failed.
    #[error("cannot give /build of {} back to the build user: chown ended with exit status {status}", path.display())]
    ReOwn {
        /// The kept tree.
        path: PathBuf,
        /// chown's exit status.
        status: i32,
    },
    /// Handing the tree over or removing it failed.
    #[error(transparent)]
    Build(#[from] Box<BuildError>),
}

impl From<BuildError> for KeptError {
    fn from(e: BuildError) -> Self {
        KeptError::Build(Box::new(e))
    }
}

/// Write `spec` (of a build whose directory is `root`) into `root`, for
/// [`Kept::shell`]. Best effort: a kept tree without it can still be read.
pub(crate) fn save_spec(root: &Path, spec: &Spec) {
    let saved = Saved { version: 1, root: root.to_owned(), spec: spec.clone() };
    let path = root.join(SPEC_FILE);
    let written = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other).and_then(|b| fs::write(&path, b));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the build's sandbox spec: `pkgcell shell` will not enter this build");
    }
}

/// A kept tree of a failed build.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The pkgid of the build.
    pub pkgid: PkgId,
    /// `$PKGCELL_HOME/failed/<pkgid>`.
    pub path: PathBuf,
    /// When it was kept.
    pub kept: SystemTime,
}

/// The kept trees, oldest first. Entries whose name is not a pkgid are
/// not pkgcell's and are left out.
pub fn list(home: &Home) -> Result<Vec<Kept>, KeptError> {
    let dir = home.failed();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoPath::new("read", dir, e).into()),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| IoPath::new("read", &dir, err))?;
        let Some(pkgid) = e.file_name().to_str().and_then(|n| n.parse::<PkgId>().ok()) else { continue };
        let meta = e.metadata().map_err(|err| IoPath::new("stat", e.path(), err))?;
        if meta.is_dir() {
            out.push(Kept { pkgid, path: e.path(), kept: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) });
        }
    }
    out.sort_by(|a, b| a.kept.cmp(&b.kept).then_with(|| a.pkgid.to_string().cmp(&b.pkgid.to_string())));
    Ok(out)
}

/// The kept trees `what` names: a pkgid, its short form or a prefix of
/// it; or a pkgbase, which names its newest kept tree.
pub fn find(home: &Home, what: &str) -> Result<Kept, KeptError> {
    let all = list(home)?;
    // A package name: its newest kept build.
    if let Some(k) = all.iter().rev().find(|k| k.pkgid.pkgbase().to_string() == what) {
        return Ok(k.clone());
    }
    let matches: Vec<&Kept> =
        all.iter().filter(|k| k.pkgid.to_string().starts_with(what) || k.pkgid.short() == what).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(KeptError::NotFound { what: what.to_owned(), kept: all.iter().map(|k| k.pkgid.to_string()).collect() }),
        many => Err(KeptError::Ambiguous { what: what.to_owned(), matches: many.iter().map(|k| k.pkgid.to_string()).collect() }),
    }
}

impl Kept {
    /// The build's spec, moved to where the tree is now, running `argv`
    /// (default: an interactive bash) as the build user with no time limit,
    /// in the build's directory when it got that far.
    pub fn shell_spec(&self, argv: Vec<String>) -> Result<Spec, KeptError> {
        let file = self.path.join(SPEC_FILE);
        let mut text = Vec::new();
        match fs::File::open(&file) {
            Ok(f) => f.take(SPEC_MAX).read_to_end(&mut text).map_err(|e| IoPath::new("read", &file, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeptError::NoSpec { path: self.path.clone() }),
            Err(e) => return Err(IoPath::new("open", file, e).into()),
        };
        let saved: Saved = serde_json::from_slice(&text).map_err(|source| KeptError::BadSpec { path: file.clone(), source })?;
        let moved = |p: &mut PathBuf| {
            if let Ok(rel) = p.strip_prefix(&saved.root) {
                *p = self.path.join(rel);
            }
        };
        let mut spec = saved.spec;
        match &mut spec.root {
            Root::Overlay { lowers, upper } => {
                for (i, lower) in lowers.iter().enumerate() {
                    if !lower.is_dir() {
                        let what = if i + 1 == lowers.len() { "base" } else { "dependency layer" };
                        return Err(KeptError::LowerGone { what, lower: lower.clone(), path: self.path.clone() });
                    }
                }
                match upper {
                    Upper::Dir { upper, work } => {
                        moved(upper);
                        moved(work);
                    }
                    Upper::Tmpfs { .. } => {}
                }
            }
            Root::Dir { path } => moved(path),
        }
        for m in &mut spec.mounts {
            match m {
                Mount::Bind { src, .. } => moved(src),
                Mount::Tmpfs { .. } => {}
            }
        }
        // A bind whose source is gone (a -d directory removed since) would
        // stop the sandbox: leave it out, and say so.
        spec.mounts.retain(|m| match m {
            Mount::Bind { src, dst, .. } if !src.exists() => {
                tracing::warn!(src = %src.display(), dst = %dst.display(), "left out a bind of the build: its source is gone");
                false
            }
            Mount::Bind { .. } | Mount::Tmpfs { .. } => true,
        });
        spec.argv = if argv.is_empty() { vec!["bash".into()] } else { argv };
        spec.timeout = None;
        // The build's cgroup went with it.
        spec.cgroup = None;
        // makepkg's $startdir/$pkgbase/src and pkg/, when it got there.
        let builddir = Path::new("/build").join(self.pkgid.pkgbase().to_string());
        if let Root::Overlay { upper: Upper::Dir { upper, .. }, .. } = &spec.root
            && upper.join(builddir.strip_prefix("/").expect("absolute")).is_dir()
        {
            spec.cwd = builddir;
        }
        Ok(spec)
    }

    /// Run `argv` (default: bash) as the build user in the kept sandbox,
    /// with this terminal; returns its exit code. The build user gets
    /// `/build` back for the time of the shell (the tree was handed to the
    /// caller when it was kept), and the caller gets the tree again after.
    pub fn shell(&self, argv: Vec<String>) -> Result<u8, KeptError> {
        let spec = self.shell_spec(argv)?;
        let base = match &spec.root {
            Root::Overlay { lowers, .. } => lowers.last().cloned(),
            Root::Dir { .. } => None,
        };
        // As root inside: /build (in the kept upper) becomes the build
        // user's again, so that it can write where makepkg wrote.
        let mut own = spec.clone();
        own.uid = 0;
        own.gid = 0;
        own.cwd = "/".into();
        own.argv = vec!["chown".into(), "-R".into(), format!("{}:{}", spec.uid, spec.gid), "/build".into()];
        let outcome = Sandbox::new(own)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .run()
            .map_err(|source| KeptError::Sandbox { what: "giving /build back to the build user", source })?;
        if !outcome.status.success() {
            return Err(KeptError::ReOwn { path: self.path.clone(), status: outcome.status.exit_code().into() });
        }
        let ran = Sandbox::new(spec).run().map_err(|source| KeptError::Sandbox { what: "the shell", source });
        // Whatever the shell did, the tree is the caller's again.
        if let Some(base) = base {
            hand_over(&self.path, &base)?;
        }
        Ok(ran?.status.exit_code())
    }

    /// Remove the tree (it may hold files of subordinate ids).
    pub fn remove(&self) -> Result<(), KeptError> {
        Ok(remove_dir(&self.path)?)
    }
}
