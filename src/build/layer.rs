//! The dependency layer: an overlay upper in which pacman installed a
//! build's dependency set over the base, made once per (base, `-I` files,
//! set) and shared by every build with that set; its check against the
//! plan, its fresh remake (`-c`) and its collection.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pkgcell_sandbox::{Access, Mount, Root, Spec, Upper};

use crate::alpm_file::desc_field;
use crate::confined::{Confined, ConfinedError, Kind};
use crate::error::{IoPath, io_err};
use crate::fetch;
use crate::home::{GcMode, Home};
use crate::ids::{BaseId, Blake3};
use crate::local::LocalPackage;
use crate::store::{DepRef, Record, Store};

use super::deps::{DepFile, store_local};
use super::logged::run_logged;
use super::{BuildError, Failure, Job};
use super::options::{BuildOptions, apply_limits};
use super::workdir::remove_dir;

/// A dependency layer ready to be a lower of a build.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    /// Its upper directory: the lower of the build.
    pub(super) upper: PathBuf,
    /// Its key (directory name under `layers/`).
    pub(super) key: String,
    /// Whether this build made it.
    pub(super) made: bool,
}

/// The dependency layer for `deps` and the -I files (None when nothing is
/// installed): made once per (base, -I files, set of package files), under
/// a lock, by pacman -U as root inside over the base, with its upper on
/// disk. With [`LayerMode::Fresh`] a ready layer is made again, next to
/// the cached one, and swapped into its place.
pub(super) fn dep_layer(
    opts: &BuildOptions,
    job: &Job<'_>,
    deps: &[DepFile],
) -> Result<Option<Layer>, Failure> {
    if deps.is_empty() && opts.local.is_empty() {
        return Ok(None);
    }
    // The layer installs the store's copies (a rebuild comes here without
    // build_one, which stores them first).
    let store = Store::at(opts.home.store());
    store_local(&store, &opts.local)?;
    let lines: Vec<DepRef> = deps.iter().map(|d| d.line.clone()).collect();
    let local: Vec<String> = opts.local.iter().map(LocalPackage::line).collect();
    let key = layer_key(&opts.base.id, &local, &lines);
    let layers = opts.home.layers();
    let dir = layers.join(&key);
    let ready = dir.join("ready");
    let reuse = |made| Ok(Some(Layer { upper: dir.join("upper"), key: key.clone(), made }));
    if opts.layers.usable(&ready) {
        return reuse(false);
    }
    fs::create_dir_all(&layers).map_err(io_err("create", &layers))?;
    let lock_path = layers.join(format!("{key}.lock"));
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    if opts.layers.usable(&ready) {
        return reuse(false);
    }
    let fresh = ready.exists();
    // A ready layer that must be made again is made beside it (builds may be
    // running on it); otherwise in place, over what a killed run left.
    let target = if fresh { layers.join(format!("{key}.fresh")) } else { dir.clone() };
    remove_dir(&target)?;
    let pkgs = target.join("pkgs");
    fs::create_dir_all(&pkgs).map_err(io_err("create", &pkgs))?;
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
    fs::write(&conf, crate::base::layer_conf(&conf_text)).map_err(io_err("write", &conf))?;
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
            fs::copy(&d.src, &dst).map_err(io_err("copy", &d.src))?;
        }
        // The copy is what pacman installs: check it, not the source.
        if let Some(expected) = &d.sha256 {
            let got = fetch::sha256_of(&dst).map_err(io_err("read", &dst))?;
            if got != *expected {
                return Err(BuildError::DepChecksum { path: d.src.clone(), expected: expected.clone(), got }.into());
            }
        }
        argv.push(format!("/pkgcell/pkgs/{}", d.filename));
    }
    let log_path = crate::buildlog::log_path(&opts.home.logs(), job.pkgid, job.srcinfo, crate::buildlog::LogKind::Deps);
    spec.argv = argv;
    spec.mounts.insert(0, Mount::Bind { src: pkgs.clone(), dst: "/pkgcell/pkgs".into(), access: Access::ReadOnly });
    spec.env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
    spec.env.insert("HOME".into(), "/root".into());
    spec.cwd = "/".into();
    spec.timeout = Some(Duration::from_secs(3600));
    let cgroup = apply_limits(opts, &mut spec)?;
    let what = if fresh { "made afresh (-c)" } else { "made" };
    let header = format!("pkgcell: dependency layer {key} for {}, {what}\n", job.pkgid);
    let ran = run_logged(spec, &log_path, "installing dependencies", &header, opts, cgroup.as_ref())
        .map_err(Failure::logged(&log_path))?;
    if !ran.ok {
        let error = BuildError::DepLayer { status: ran.status, log: log_path.clone(), tail: ran.tail };
        return Err(Failure::logged(&log_path)(error));
    }
    let _ = fs::remove_dir_all(&pkgs);
    let _ = fs::remove_file(target.join("pacman.conf"));
    let target_ready = target.join("ready");
    fs::write(&target_ready, "").map_err(io_err("write", &target_ready))?;
    if fresh {
        swap_in(&layers, &key)?;
    }
    tracing::info!(key, fresh, "dependency layer made");
    reuse(true)
}

/// Check that the dependency layer's pacman database holds exactly the
/// planned packages beyond the base (name and version), so that what the
/// dephash says is what is installed; the `<name> <version>` lines found.
pub(super) fn check_layer(upper: &Path, base: &Path, deps: &[DepFile], local_pkgs: &[LocalPackage]) -> Result<Vec<String>, BuildError> {
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
        got.push(format!("{} {}", desc_field(&text, "%NAME%"), desc_field(&text, "%VERSION%")));
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
pub(super) fn replaces_base_package(upper: &Path) -> bool {
    let Ok(local) = Confined::open(upper).and_then(|u| u.open_dir("var/lib/pacman/local")) else { return true };
    let Ok(entries) = local.entries() else { return true };
    entries.iter().any(|(name, kind)| name != b"ALPM_DB_VERSION" && *kind != Kind::Dir)
}

/// The largest pacman `desc` file read back from a dependency layer.
pub(super) const MAX_DESC: u64 = 1 << 20;

/// Put `layers/<key>.fresh` in the place of `layers/<key>` in one step
/// (renameat2 RENAME_EXCHANGE: the path always names a ready layer), then
/// move the old one aside as `<key>.old-<time>`. A build still running on
/// the old one keeps it: its overlay holds the old directories, and `store
/// gc` (run when no build is running) removes them.
pub(super) fn swap_in(layers: &Path, key: &str) -> Result<(), BuildError> {
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
/// (`<pkgname> <blake3>` lines, sorted, as in [`crate::store::Record::deps`]).
pub(super) fn layer_key(base_id: &BaseId, local: &[String], deps: &[DepRef]) -> String {
    let mut key = format!("base {base_id}\n");
    // Without -I files the key is what it was before -I existed.
    for l in local {
        key.push_str("local ");
        key.push_str(l);
        key.push('\n');
    }
    for d in deps {
        key.push_str(&d.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_keys_without_local_files_are_as_before_and_local_files_change_them() {
        let line = format!("a {}", Blake3::of(b"a"));
        let deps = [line.parse().unwrap()];
        let b: BaseId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let before = Blake3::of(format!("base {b}\n{line}\n").as_bytes()).to_string()[..32].to_owned();
        assert_eq!(layer_key(&b, &[], &deps), before);
        let one = layer_key(&b, &["x.pkg.tar.zst 11".into()], &deps);
        let two = layer_key(&b, &["x.pkg.tar.zst 22".into()], &deps);
        assert!(one != before && one != two);
    }
}
