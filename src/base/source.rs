//! Step 1 of making a base: put its files in place, from the configured
//! source, in `<tmp>/root`.
//!
//! Host tools (tar, pacman, pacman-key) run in a sandbox whose root is the
//! host's own `/`, as root inside with the subordinate ids mapped: so they
//! can chown to any id the base needs, and the files of uid 0 end up as the
//! caller's, exactly as every later sandbox maps them. The sandbox's /tmp
//! is private, so every host path a step needs is bound at its own path.
//! The `command` source runs on the host as it is: bootstrap tools such as
//! `mmdebstrap --mode=unshare` make user namespaces of their own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pkgcell_sandbox::{Access, Mount, Network, Root, Sandbox, Spec};

use super::pacman_conf::{bootstrap_conf, file_servers};
use super::prepare::Keyring;
use super::{BaseError, Phase, TAIL_LINES};
use crate::error::io_err;
use crate::config::{BaseConfig, BaseSource, Signatures};
use crate::home::Home;

/// What the source step tells the preparation.
pub(super) struct Populated {
    /// The pacman.conf to install in the base (the pacman source's).
    pub pacman_conf: Option<String>,
    /// Whether the base gets a keyring.
    pub keyring: Keyring,
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// tar's complaints about device nodes, which cannot be made in a user
/// namespace. They are skipped on purpose: the sandbox brings its own /dev.
const TAR_DEVICE_NOISE: &[&str] = &["Cannot mknod", "Exiting with failure status due to previous errors"];

/// Fill `root` (not yet existing, inside `tmp`) from the configured source.
pub(super) fn populate(
    home: &Home,
    config: &BaseConfig,
    tmp: &Path,
    root: &Path,
    on_phase: &dyn Fn(Phase),
) -> Result<Populated, BaseError> {
    match &config.source {
        BaseSource::Tarball { path } => {
            on_phase(Phase::Unpacking);
            unpack(path, tmp, root)?;
            Ok(Populated { pacman_conf: None, keyring: Keyring::Init })
        }
        BaseSource::Command { command, dir } => {
            on_phase(Phase::RunningCommand);
            run_command(command, dir, tmp, root, on_phase)?;
            Ok(Populated { pacman_conf: None, keyring: Keyring::Init })
        }
        BaseSource::Pacman { packages, pacman_conf, signatures } => {
            on_phase(Phase::Bootstrapping);
            let conf = pacstrap(home, packages, pacman_conf.as_deref(), *signatures, tmp, root)?;
            let keyring = match signatures {
                Signatures::Check => Keyring::Init,
                Signatures::Skip => Keyring::None,
            };
            Ok(Populated { pacman_conf: Some(conf), keyring })
        }
    }
}

/// A sandbox that sees the host's file system, with `rw` and `ro` host
/// paths bound at their own paths (read-only ones first, so that a
/// read-write directory inside a read-only one stays writable).
fn host_spec(argv: Vec<String>, ro: &[PathBuf], rw: &[PathBuf], network: Network) -> Spec {
    let mut spec = Spec::new(Root::Dir { path: "/".into() }, argv);
    let bind = |p: &PathBuf, access| Mount::Bind { src: p.clone(), dst: p.clone(), access };
    spec.mounts.extend(ro.iter().map(|p| bind(p, Access::ReadOnly)));
    spec.mounts.extend(rw.iter().map(|p| bind(p, Access::ReadWrite)));
    spec.network = network;
    spec.env = [("PATH", PATH), ("LC_ALL", "C"), ("HOME", "/root")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    spec
}

/// Run a sandbox with its output in `log`. A failure whose every output
/// line contains one of `noise` counts as success.
pub(super) fn run_logged(spec: Spec, step: &'static str, log: &Path, noise: &[&str]) -> Result<(), BaseError> {
    let out = File::create(log).map_err(io_err("create", log))?;
    let err = out.try_clone().map_err(io_err("open", log))?;
    let outcome = Sandbox::new(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .run()
        .map_err(|source| BaseError::Sandbox { step, source })?;
    if outcome.status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let only_noise = !noise.is_empty()
        && text.lines().any(|l| !l.trim().is_empty())
        && text.lines().filter(|l| !l.trim().is_empty()).all(|l| noise.iter().any(|n| l.contains(n)));
    if only_noise {
        return Ok(());
    }
    Err(failed(step, format!("exit status {}", outcome.status.exit_code()), log))
}

fn failed(step: &'static str, status: String, log: &Path) -> BaseError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    BaseError::StepFailed { step, status, tail, log: log.to_owned() }
}

/// Unpack a root file system archive (.tar, .tar.gz, .tar.zst, ...; GNU tar
/// recognises the compression) with owners and modes kept, device nodes
/// skipped, and a single top-level directory (`root.x86_64/` of Arch's
/// bootstrap tarball) taken as the root.
fn unpack(tarball: &Path, tmp: &Path, root: &Path) -> Result<(), BaseError> {
    let tarball = std::path::absolute(tarball).map_err(io_err("find", tarball))?;
    let dir = tarball.parent().map(Path::to_owned).unwrap_or_else(|| "/".into());
    let extract = tmp.join("extract");
    std::fs::create_dir(&extract).map_err(io_err("create", &extract))?;
    let argv = ["tar", "--numeric-owner", "--same-owner", "--same-permissions", "-C"]
        .iter()
        .map(|s| s.to_string())
        .chain([extract.to_string_lossy().into_owned(), "-xf".into(), tarball.to_string_lossy().into_owned()])
        .collect();
    let spec = host_spec(argv, &[dir], &[tmp.to_owned()], Network::Loopback);
    tracing::info!(tarball = %tarball.display(), "unpacking the base tarball");
    run_logged(spec, "unpacking the base tarball", &tmp.join("unpack.log"), TAR_DEVICE_NOISE)?;
    let top = single_top_dir(&extract).unwrap_or(extract.clone());
    std::fs::rename(&top, root).map_err(io_err("move the unpacked tree to", root))?;
    check_root(root)
}

/// The one directory an archive holds, when it holds nothing else and looks
/// like a wrapped root file system.
fn single_top_dir(extract: &Path) -> Option<PathBuf> {
    let mut entries = std::fs::read_dir(extract).ok()?.flatten();
    let first = entries.next()?;
    if entries.next().is_some() {
        return None;
    }
    let ft = first.file_type().ok()?;
    let name = first.file_name();
    let fhs = ["usr", "etc", "bin", "var", "lib", "opt", "srv", "home", "root"];
    if !ft.is_dir() || fhs.iter().any(|n| name == *n) {
        return None;
    }
    let p = first.path();
    (p.join("usr").is_dir() || p.join("etc").is_dir()).then_some(p)
}

fn check_root(root: &Path) -> Result<(), BaseError> {
    // symlink_metadata: /bin is a symlink to usr/bin on merged-usr systems,
    // and must not be followed out of the base on the host.
    let has = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
    if has("bin/sh") || has("usr/bin/sh") {
        Ok(())
    } else {
        Err(BaseError::NotARoot { path: root.to_owned() })
    }
}

/// Run the `command` source: it writes a tarball or a directory to
/// `$PKGCELL_BASE_OUT` (`<tmp>/out.tar`).
fn run_command(command: &str, dir: &Path, tmp: &Path, root: &Path, on_phase: &dyn Fn(Phase)) -> Result<(), BaseError> {
    let out = tmp.join("out.tar");
    let log = tmp.join("command.log");
    let stdout = File::create(&log).map_err(io_err("create", &log))?;
    let stderr = stdout.try_clone().map_err(io_err("open", &log))?;
    tracing::info!(command, "running the base command");
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PKGCELL_BASE_OUT", &out)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(io_err("run /bin/sh for the base command in", dir))?;
    if !status.success() {
        return Err(failed("the base command", status.to_string(), &log));
    }
    let meta = std::fs::symlink_metadata(&out)
        .map_err(|_| BaseError::NoOutput { command: command.to_owned(), out: out.clone() })?;
    if meta.is_dir() {
        std::fs::rename(&out, root).map_err(io_err("move the command's tree to", root))?;
        check_root(root)
    } else {
        on_phase(Phase::Unpacking);
        unpack(&out, tmp, root)?;
        // The tarball is in the base's directory; it is not part of the base.
        Ok(std::fs::remove_file(&out).map_err(io_err("remove", &out))?)
    }
}

/// The bootstrap, run as root in a host sandbox: `$1` check|skip, `$2` the
/// bootstrap keyring, `$3` the new root, then pacman's arguments.
///
/// Like pacstrap, it gives the new root a /dev, /proc and /tmp while pacman
/// runs, because install scriptlets and hooks run chrooted in it. They are
/// the sandbox's own (rbind: the locked device mounts keep their flags), in
/// the payload's private mount namespace: nothing of them stays in the base.
/// Its /tmp is sized like the sandbox's own (1G, `DEFAULT_TMP_SIZE`), not
/// the kernel's half of RAM.
const PACSTRAP: &str = r#"set -e
if [ "$1" = check ]; then
    pacman-key --gpgdir "$2" --init
    pacman-key --gpgdir "$2" --populate
fi
root=$3
shift 3
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
mount --rbind /dev "$root/dev" && mount --rbind /proc "$root/proc" && mount -t tmpfs -o size=1G,mode=1777 tmpfs "$root/tmp" ||
    echo "pkgcell: warning: no /dev, /proc or /tmp for install scriptlets" >&2
exec pacman "$@"
"#;

/// Install `packages` into `root` with the host's pacman, like
/// `pacstrap -N`. Returns the pacman.conf it used, for the base.
fn pacstrap(
    home: &Home,
    packages: &[String],
    pacman_conf: Option<&Path>,
    signatures: Signatures,
    tmp: &Path,
    root: &Path,
) -> Result<String, BaseError> {
    let conf_path = pacman_conf.unwrap_or(Path::new("/etc/pacman.conf"));
    let text = std::fs::read_to_string(conf_path).map_err(io_err("read pacman config", conf_path))?;
    let conf = bootstrap_conf(&text, signatures);
    let boot_conf = tmp.join("pacman.conf");
    std::fs::write(&boot_conf, &conf).map_err(io_err("write", &boot_conf))?;
    let cache = home.package_cache();
    for d in [root.join("var/lib/pacman"), root.join("var/log"), cache.clone()] {
        std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
    }
    // A keyring of our own for the bootstrap, populated from the host's
    // keyring packages: the host's /etc/pacman.d/gnupg belongs to the real
    // root, and root inside the sandbox is only the caller.
    let gpgdir = tmp.join("gnupg");
    let keyrings = Path::new("/usr/share/pacman/keyrings");
    let check = match signatures {
        Signatures::Check => {
            let any = std::fs::read_dir(keyrings)
                .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "gpg")))
                .unwrap_or(false);
            if !any {
                return Err(BaseError::NoKeyring { dir: keyrings.to_owned() });
            }
            "check"
        }
        Signatures::Skip => "skip",
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), PACSTRAP.into(), "pkgcell-pacstrap".into()];
    argv.extend([check.into(), s(&gpgdir), s(root)]);
    argv.extend(["--root".into(), s(root), "--dbpath".into(), s(&root.join("var/lib/pacman"))]);
    argv.extend(["--cachedir".into(), s(&cache), "--logfile".into(), s(&root.join("var/log/pacman.log"))]);
    argv.extend(["--gpgdir".into(), s(&gpgdir), "--config".into(), s(&boot_conf)]);
    argv.extend(["-Sy".into(), "--noconfirm".into(), "--needed".into(), "--".into()]);
    argv.extend(packages.iter().cloned());
    // file:// repositories must be visible, also when they are below /tmp.
    let ro: Vec<PathBuf> = file_servers(&conf, std::env::consts::ARCH).into_iter().filter(|d| d.is_dir()).collect();
    let spec = host_spec(argv, &ro, &[tmp.to_owned(), cache], Network::Host);
    tracing::info!(?packages, "installing the base with pacman");
    run_logged(spec, "pacman", &tmp.join("pacman.log"), &[])?;
    check_root(root)?;
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sandboxes_bind_read_write_paths_last() {
        let s = host_spec(vec!["true".into()], &["/usr".into()], &["/usr/bin".into()], Network::Loopback);
        assert_eq!(s.validate(), Ok(()));
        assert!(matches!(&s.mounts[1], Mount::Bind { dst, access: Access::ReadWrite, .. } if dst == Path::new("/usr/bin")));
    }

    #[test]
    fn a_wrapped_root_is_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("root.x86_64/usr")).unwrap();
        assert_eq!(single_top_dir(d.path()), Some(d.path().join("root.x86_64")));
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        assert_eq!(single_top_dir(d.path()), None);
    }

    #[test]
    fn a_tree_without_a_shell_is_no_root() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(check_root(d.path()), Err(BaseError::NotARoot { .. })));
        std::fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("dash", d.path().join("usr/bin/sh")).unwrap();
        check_root(d.path()).unwrap();
    }
}
