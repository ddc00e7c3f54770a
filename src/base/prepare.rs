//! The preparation every base gets once, right after its files are in
//! place: the build user, pkgcell's makepkg.conf settings, a pacman.conf
//! that sees pkgcell's own repo, /etc/hosts, the locale and, where the base
//! ships keyrings, pacman's keyring. The work happens in `prepare.sh`, run
//! as root in a sandbox whose root is the new base (so that the base's own
//! symlinks cannot send a write to the host); this file only builds its
//! inputs. Changing what is prepared means bumping [`PREPARE_VERSION`],
//! which is part of every base id.

use std::collections::BTreeMap;
use std::path::Path;

use pkgcell_sandbox::{Access, Mount, Network, Root, Spec};

use super::pacman_conf::PKGCELL_REPO;

/// The version of the preparation; part of every base id.
pub const PREPARE_VERSION: u32 = 1;

const SCRIPT: &str = include_str!("prepare.sh");

/// What pkgcell appends to the base's makepkg.conf.
///
/// MAKEFLAGS is read at build time from `PKGCELL_MAKE_JOBS` (set by the
/// build stage from `[build] jobs` and the CPU count), so that the base, and
/// its id, do not depend on the machine it was made on.
pub const MAKEPKG_CONF: &str = r#"
# ---- pkgcell: base preparation (see docs/base.md) ----
PKGEXT='.pkg.tar.zst'
SRCEXT='.src.tar.gz'
BUILDDIR=/build
MAKEFLAGS="-j${PKGCELL_MAKE_JOBS:-$(nproc 2>/dev/null || echo 1)}"
# Reproducible builds: the same time zone and locale on every machine
# (makepkg sets SOURCE_DATE_EPOCH itself).
export TZ=UTC
export LANG=C.UTF-8
"#;

/// /etc/hosts of every base: the sandbox's host name is always `pkgcell`.
pub const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 pkgcell\n";

/// Whether the base gets a pacman keyring of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyring {
    /// `pacman-key --init --populate` where the base ships keyrings.
    Init,
    /// None: signatures are not checked for this base.
    None,
}

/// Where the key files of `[base] keys` are bound while preparing: below
/// the sandbox's own /tmp, so that the mount point is not made in the base.
const KEYS_DIR: &str = "/tmp/pkgcell-keys";

/// The sandbox that prepares the base at `root`. `pacman_conf`, when given,
/// replaces the base's /etc/pacman.conf (the pacman source installs the
/// config it bootstrapped with); otherwise the base's own is edited. The
/// key files in the host directory `keys` are added to the base's keyring
/// and locally signed.
pub fn spec(root: &Path, pacman_conf: Option<&str>, keyring: Keyring, keys: Option<&Path>) -> Spec {
    let mut spec = Spec::new(
        Root::Dir { path: root.to_owned() },
        vec!["/bin/sh".into(), "-c".into(), SCRIPT.into(), "pkgcell-prepare".into()],
    );
    if let Some(k) = keys {
        spec.mounts.push(Mount::Bind { src: k.to_owned(), dst: KEYS_DIR.into(), access: Access::ReadOnly });
    }
    spec.network = Network::Loopback;
    let keyring = match keyring {
        Keyring::Init => "init",
        Keyring::None => "none",
    };
    spec.env = BTreeMap::from([
        ("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into()),
        ("LC_ALL".into(), "C".into()),
        ("HOME".into(), "/root".into()),
        ("PKGCELL_MAKEPKG_CONF".into(), MAKEPKG_CONF.into()),
        ("PKGCELL_PACMAN_CONF".into(), pacman_conf.unwrap_or_default().into()),
        ("PKGCELL_PACMAN_REPO".into(), PKGCELL_REPO.into()),
        ("PKGCELL_HOSTS".into(), HOSTS.into()),
        ("PKGCELL_KEYRING".into(), keyring.into()),
        ("PKGCELL_KEYS_DIR".into(), keys.map(|_| KEYS_DIR).unwrap_or_default().into()),
        ("PKGCELL_MARKER".into(), format!("pkgcell base preparation {PREPARE_VERSION}")),
    ]);
    spec.timeout = Some(std::time::Duration::from_secs(600));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_valid_and_runs_the_script_as_root_without_network() {
        let s = spec(Path::new("/"), None, Keyring::None, None);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!((s.uid, s.gid, s.network), (0, 0, Network::Loopback));
        assert!(s.argv[2].contains("builder:x:1000:1000"));
        assert_eq!(s.env["PKGCELL_PACMAN_CONF"], "");
        assert_eq!(s.env["PKGCELL_KEYS_DIR"], "");
        assert!(s.mounts.is_empty());
        let s = spec(Path::new("/"), None, Keyring::Init, Some(Path::new("/usr")));
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.env["PKGCELL_KEYS_DIR"], KEYS_DIR);
    }

    #[test]
    fn makepkg_settings_are_the_ones_pkgcell_relies_on() {
        for want in ["PKGEXT='.pkg.tar.zst'", "BUILDDIR=/build", "PKGCELL_MAKE_JOBS"] {
            assert!(MAKEPKG_CONF.contains(want), "{want}");
        }
    }
}
