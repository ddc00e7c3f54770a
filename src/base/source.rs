//! Step 1 of making a base: put its files in place, from the configured
//! source, in `<tmp>/root`.
//!
//! Host tools (tar, pacman, pacman-key) run in a sandbox whose root is the
//! host's own `/`, as root inside with the subordinate ids mapped: so they
//! can chown to any id the base needs, and the files of uid 0 end up as the
//! caller's, exactly as every later sandbox maps them. The sandbox's /tmp
//! is private, so every host path a step needs is bound at its own path.
//! With `[base] tools`, pacman, pacman-key and gpg are those of that root
//! file system instead: the sandbox's root is an overlay of it with a tmpfs
//! upper (so it is never changed), with the same host paths bound.
//! The `command` source runs on the host as it is: bootstrap tools such as
//! `mmdebstrap --mode=unshare` make user namespaces of their own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pkgcell_sandbox::{Access, Mount, Network, Root, Sandbox, Spec, Upper};

use super::pacman_conf::{DownloadUser, bootstrap_conf, file_servers};
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
    /// A directory of key files to add to the base's keyring and lsign.
    pub keys: Option<PathBuf>,
}

use pkgcell_sandbox::DEFAULT_PATH as PATH;

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
            Ok(Populated { pacman_conf: None, keyring: Keyring::Init, keys: None })
        }
        BaseSource::Command { command, dir } => {
            on_phase(Phase::RunningCommand);
            run_command(command, dir, tmp, root, on_phase)?;
            Ok(Populated { pacman_conf: None, keyring: Keyring::Init, keys: None })
        }
        BaseSource::Pacman { packages, pacman_conf, signatures, tools, keys } => {
            on_phase(Phase::Bootstrapping);
            let how = Pacstrap {
                packages,
                pacman_conf: pacman_conf.as_deref(),
                signatures: *signatures,
                tools: tools.as_deref(),
                keys,
            };
            let (conf, keys) = pacstrap(home, &how, tmp, root)?;
            let keyring = match signatures {
                Signatures::Check => Keyring::Init,
                Signatures::Skip => Keyring::None,
            };
            Ok(Populated { pacman_conf: Some(conf), keyring, keys })
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

/// The bootstrap, run as root in a host or tools sandbox: `$1` host|tools,
/// `$2` check|skip, `$3` the bootstrap keyring, `$4` a directory of key
/// files to trust or "", `$5` the bootstrap's pacman.conf, `$6` the new
/// root, then pacman's arguments.
///
/// The keyring: `pacman-key --init`, populated from the keyrings of the
/// root pacman runs in (Arch's archlinux-keyring), then each key of `$4`
/// added and locally signed, as a user trusts their own repository's key.
///
/// pacman 7 downloads as its `DownloadUser` in a sandbox of its own
/// (Landlock, a syscall filter), which works inside pkgcell's: the user's
/// id is mapped (the subordinate range covers every system id) and Landlock
/// and seccomp are unprivileged. The user must exist in the root pacman
/// runs in. A tools root is an overlay with a tmpfs upper, so a missing
/// user is added there for this run (Debian's pacman has none; Arch's
/// bootstrap tarball has `alpm`). The host's /etc/passwd cannot be changed:
/// there a missing user turns DownloadUser off, said in the log.
///
/// Like pacstrap, it gives the new root a /dev, /proc and /tmp while pacman
/// runs, because install scriptlets and hooks run chrooted in it. They are
/// the sandbox's own (rbind: the locked device mounts keep their flags), in
/// the payload's private mount namespace: nothing of them stays in the base.
/// Its /tmp is sized like the sandbox's own (1G, `DEFAULT_TMP_SIZE`), not
/// the kernel's half of RAM.
const PACSTRAP: &str = r#"set -e
mode=$1 sig=$2 gpgdir=$3 keys=$4 conf=$5 root=$6
shift 6
if [ "$sig" = check ]; then
    pacman-key --gpgdir "$gpgdir" --init
    if ls /usr/share/pacman/keyrings/*.gpg >/dev/null 2>&1; then
        pacman-key --gpgdir "$gpgdir" --populate
    fi
    if [ -n "$keys" ]; then
        for k in "$keys"/*; do
            pacman-key --gpgdir "$gpgdir" --add "$k"
            for fpr in $(gpg --homedir "$gpgdir" --with-colons --show-keys "$k" | awk -F: '$1 == "pub" { p = 1 } $1 == "fpr" && p { print $10; p = 0 }'); do
                pacman-key --gpgdir "$gpgdir" --lsign-key "$fpr"
            done
        done
    fi
fi
user=$(sed -n 's/^[[:space:]]*DownloadUser[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$conf" | tail -n 1)
if [ -n "$user" ] && ! grep -q "^$user:" /etc/passwd; then
    if [ "$mode" = tools ]; then
        id=999
        while grep -q "^[^:]*:[^:]*:$id:" /etc/passwd /etc/group; do id=$((id - 1)); done
        echo "$user:x:$id:$id:pacman download user (added by pkgcell for the bootstrap):/:/usr/sbin/nologin" >> /etc/passwd
        echo "$user:x:$id:" >> /etc/group
        echo "pkgcell: added the download user $user (uid $id) to the tools root for this bootstrap" >&2
    else
        echo "pkgcell: the host has no user $user: DownloadUser is off for this bootstrap (no download sandbox)" >&2
        sed -i "s/^[[:space:]]*DownloadUser/# pkgcell: off: the host has no user $user\n#&/" "$conf"
    fi
fi
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
mount --rbind /dev "$root/dev" && mount --rbind /proc "$root/proc" && mount -t tmpfs -o size=1G,mode=1777 tmpfs "$root/tmp" ||
    echo "pkgcell: warning: no /dev, /proc or /tmp for install scriptlets" >&2
pacman --version | sed -n 's/^.*\(Pacman v[^ ]*\).*$/pkgcell: bootstrapping with \1/p' >&2
exec pacman "$@"
"#;

/// What the `pacman` source asks for.
struct Pacstrap<'a> {
    packages: &'a [String],
    pacman_conf: Option<&'a Path>,
    signatures: Signatures,
    tools: Option<&'a Path>,
    keys: &'a [PathBuf],
}

/// The pacman.conf the `pacman` source uses: the configured one, else that
/// of the root file system pacman runs in (the tools root's, or the host's).
pub(super) fn pacman_conf_path(pacman_conf: Option<&Path>, tools: Option<&Path>) -> PathBuf {
    match (pacman_conf, tools) {
        (Some(p), _) => p.to_owned(),
        (None, Some(t)) => t.join("etc/pacman.conf"),
        (None, None) => PathBuf::from("/etc/pacman.conf"),
    }
}

/// Install `packages` into `root` with the host's pacman (or the tools
/// root's), like `pacstrap -N`. Returns the pacman.conf for the base and
/// the directory of the key files to trust, if any.
fn pacstrap(home: &Home, how: &Pacstrap, tmp: &Path, root: &Path) -> Result<(String, Option<PathBuf>), BaseError> {
    let tools = match how.tools {
        Some(t) => {
            let t = std::path::absolute(t).map_err(io_err("find", t))?;
            if std::fs::symlink_metadata(t.join("usr/bin/pacman")).is_err() {
                return Err(BaseError::NoPacman { path: t });
            }
            Some(t)
        }
        None => None,
    };
    let conf_path = pacman_conf_path(how.pacman_conf, tools.as_deref());
    let text = std::fs::read_to_string(&conf_path).map_err(io_err("read pacman config", &conf_path))?;
    let conf = bootstrap_conf(&text, how.signatures, DownloadUser::Keep);
    let boot_conf = tmp.join("pacman.conf");
    std::fs::write(&boot_conf, &conf).map_err(io_err("write", &boot_conf))?;
    let cache = home.package_cache();
    for d in [root.join("var/lib/pacman"), root.join("var/log"), cache.clone()] {
        std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
    }
    // The key files, copied where the sandbox sees them (tmp is bound).
    let keys = if how.keys.is_empty() {
        None
    } else {
        let dir = tmp.join("keys");
        std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        for (i, k) in how.keys.iter().enumerate() {
            let to = dir.join(format!("{i}.key"));
            std::fs::copy(k, &to).map_err(io_err("copy key file", k))?;
        }
        Some(dir)
    };
    // A keyring of our own for the bootstrap, populated from the keyring
    // packages of the root pacman runs in: the host's /etc/pacman.d/gnupg
    // belongs to the real root, and root inside the sandbox is only the
    // caller.
    let gpgdir = tmp.join("gnupg");
    let keyrings = tools.as_deref().unwrap_or(Path::new("/")).join("usr/share/pacman/keyrings");
    let check = match how.signatures {
        Signatures::Check => {
            let any = std::fs::read_dir(&keyrings)
                .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "gpg")))
                .unwrap_or(false);
            if !any && keys.is_none() {
                return Err(BaseError::NoKeyring { dir: keyrings });
            }
            "check"
        }
        Signatures::Skip => "skip",
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mode = if tools.is_some() { "tools" } else { "host" };
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), PACSTRAP.into(), "pkgcell-pacstrap".into()];
    argv.extend([mode.into(), check.into(), s(&gpgdir), keys.as_deref().map(s).unwrap_or_default(), s(&boot_conf), s(root)]);
    argv.extend(["--root".into(), s(root), "--dbpath".into(), s(&root.join("var/lib/pacman"))]);
    argv.extend(["--cachedir".into(), s(&cache), "--logfile".into(), s(&root.join("var/log/pacman.log"))]);
    argv.extend(["--gpgdir".into(), s(&gpgdir), "--config".into(), s(&boot_conf)]);
    argv.extend(["-Sy".into(), "--noconfirm".into(), "--needed".into(), "--".into()]);
    argv.extend(how.packages.iter().cloned());
    // file:// repositories must be visible, also when they are below /tmp.
    let include_root = tools.as_deref().unwrap_or(Path::new("/"));
    let ro: Vec<PathBuf> = file_servers(&conf, std::env::consts::ARCH, include_root).into_iter().filter(|d| d.is_dir()).collect();
    let mut spec = host_spec(argv, &ro, &[tmp.to_owned(), cache], Network::Host);
    if let Some(t) = &tools {
        // The tools root is never changed: what the bootstrap writes there
        // (a download user, gpg's sockets) goes to a tmpfs.
        spec.root = Root::Overlay { lowers: vec![t.clone()], upper: Upper::Tmpfs { size: 1 << 30 } };
    }
    tracing::info!(packages = ?how.packages, tools = ?tools, "installing the base with pacman");
    run_logged(spec, "pacman", &tmp.join("pacman.log"), &[])?;
    check_root(root)?;
    Ok((bootstrap_conf(&text, how.signatures, DownloadUser::Off), keys))
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
