//! The makepkg sandbox: what a build sees (PKGBUILD, sources, layers,
//! binds, environment) and what it leaves (package files, `.BUILDINFO`).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::UNIX_EPOCH;

use pkgcell_sandbox::{Access, Mount, Rlimit, RlimitResource, Root, Sandbox, Spec, Upper};

use crate::confined::{Confined, ConfinedFile};
use crate::error::io_err;
use crate::fetch::Fetched;
use crate::sync::Checkout;

use super::layer::{Layer, replaces_base_package};
use super::logged::run_logged;
use super::{BUILD_UID, BuildError, Job};
use super::options::{BuildOptions, MakepkgEnv, apply_limits};
use super::outputs::take_outputs;
use super::workdir::BuildDir;

/// makepkg in the sandbox; the package files it wrote and its peak memory (KiB).
pub(super) fn run_makepkg(
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
    // makepkg alone: no shell, no copy of the .BUILDINFO beside the
    // packages (the host reads it from the first package file, where
    // makepkg writes it before .PKGINFO), two execs fewer per build.
    // --nodeps when makepkg's own check (two `pacman -T` runs, ~40 ms here)
    // would only repeat pkgcell's: the plan resolved every dependency
    // against the base's packages and the layer's, and check_layer saw the
    // layer add exactly those. Not when the layer replaced or removed a
    // package of the base (an -I file or a repository package of the same
    // name): the plan's answer for that name was the base's version, so
    // makepkg must check again. It changes nothing in the package.
    let nodeps = layer.is_none_or(|l| !replaces_base_package(&l.upper));
    let mut argv: Vec<String> = vec!["makepkg".into()];
    if nodeps {
        argv.push("--nodeps".into());
    }
    argv.extend(opts.makepkg_flags.as_slice().iter().cloned());
    argv.extend(["--noconfirm", "--noprogressbar", "--holdver"].map(String::from));
    if let Some(mask) = menv.umask {
        // Checked against MakepkgFlags::ALLOWED: plain words, nothing to quote.
        argv = vec!["sh".into(), "-c".into(), format!("umask {mask:03o} && exec {}", argv.join(" "))];
    }
    let mut spec = Spec::new(
        Root::Overlay { lowers, upper: Upper::Dir { upper: dir.root.join("upper"), work: dir.root.join("work") } },
        argv,
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
    if opts.keep_failed == super::KeepFailed::No {
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
        ("PATH", pkgcell_sandbox::DEFAULT_PATH),
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
    if opts.keep_failed == super::KeepFailed::Yes {
        crate::kept::save_spec(&dir.root, &spec);
    }
    let ran = run_logged(spec, log, "makepkg", &header, opts, cgroup.as_ref())?;
    if !ran.ok {
        return Err(BuildError::Makepkg { status: ran.status, log: log.to_owned(), tail: ran.tail });
    }
    let pkgdest = Confined::open(&dir.pkgdest()).map_err(|source| BuildError::Refused { what: "the build's PKGDEST", source })?;
    let (files, buildinfo) = take_outputs(&pkgdest, job, &opts.arch, opts.limits.max_output())?;
    if files.is_empty() {
        return Err(BuildError::NoOutputs(log.to_owned()));
    }
    Ok(Made { files, buildinfo, peak_memory_kib: ran.peak_memory_kib, run_secs: ran.payload_secs })
}

/// What [`run_makepkg`] made.
#[derive(Debug)]
pub(super) struct Made {
    /// The package files, open and checked.
    pub(super) files: Vec<MadeFile>,
    /// The `.BUILDINFO` ("" if there was none).
    pub(super) buildinfo: String,
    /// The peak memory of its largest process, in KiB.
    pub(super) peak_memory_kib: u64,
    /// Wall time of makepkg itself, inside the sandbox.
    pub(super) run_secs: f64,
}

/// A package file that a build left in PKGDEST, opened beneath it and checked.
#[derive(Debug)]
pub(super) struct MadeFile {
    /// Its name: `<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.zst`, as its .PKGINFO says.
    pub(super) name: String,
    /// The open file, at its start.
    pub(super) file: ConfinedFile,
}

/// The host directory of one `home_binds` entry, made on first use and
/// given to the build user: 0755 and owned by the build user's id outside
/// (a subordinate id), so the build can write to it and no other local
/// user can plant files in it for a later build. The config refuses
/// entries that leave the home; this checks again, as it builds a path.
pub(super) fn home_bind_dir(opts: &BuildOptions, entry: &str, rel: &Path) -> Result<PathBuf, BuildError> {
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
    spec.env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
    let outcome = Sandbox::new(spec)
        .stdout(Stdio::null())
        .run()
        .map_err(|source| BuildError::Sandbox { what: "giving a home_binds directory to the build user", source })?;
    if !outcome.status.success() {
        return Err(BuildError::HomeBind { path: src, reason: format!("chown to the build user failed ({:?})", outcome.status) });
    }
    Ok(src)
}

/// Export the tree of a git source into `dst`; (dst, commit time).
pub(super) fn export_git(repo: &Path, commit: &str, subtree: Option<&Path>, dst: &Path) -> Result<(PathBuf, u64), BuildError> {
    let fail = |message: String| BuildError::Checkout { repo: repo.to_owned(), commit: commit.to_owned(), message };
    let run = |tool| move |source| BuildError::CheckoutRun { repo: repo.to_owned(), commit: commit.to_owned(), tool, source };
    fs::create_dir_all(dst).map_err(io_err("create", dst))?;
    let treeish = match subtree {
        Some(s) => format!("{commit}:{}", s.display()),
        None => commit.to_owned(),
    };
    // The one git archive | tar of the crate (sync's), streamed.
    crate::sync::export_tree(repo, &treeish, dst).map_err(|e| match e {
        crate::sync::SyncError::Spawn(source) => run("git archive | tar")(source),
        crate::sync::SyncError::Git { stderr, .. } if !stderr.is_empty() => fail(stderr),
        other => fail(other.to_string()),
    })?;
    let time = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["log", "-1", "--format=%ct", commit])
        .output()
        .map_err(run("git"))?;
    let epoch = String::from_utf8_lossy(&time.stdout).trim().parse().unwrap_or(0);
    Ok((dst.to_owned(), epoch))
}
