//! pacman.conf handling for bases, as pure text functions: the config that
//! bootstraps a base (from the user's or the host's pacman.conf) and the
//! `file://` repository directories it needs to see. No file system access
//! here beyond reading `Include` files, so everything can be unit-tested.

use std::path::{Path, PathBuf};

use crate::config::Signatures;

/// The repository pkgcell adds to every base: its own packages, bound
/// read-only at [`PKGCELL_REPO_DIR`] at build time, so that builds can
/// install what earlier builds made.
pub const PKGCELL_REPO: &str = "\n# pkgcell's own repository: the build stage binds the published repo here\n\
# (read-only, with a pkgcell.db in it). Its packages were built by pkgcell itself.\n\
[pkgcell]\nSigLevel = Optional TrustAll\nServer = file:///pkgcell-repo\n";

/// Where pkgcell's own repository is bound inside a build.
pub const PKGCELL_REPO_DIR: &str = "/pkgcell-repo";

/// The name of pkgcell's own repository in a base's pacman.conf: the
/// directory bound at [`PKGCELL_REPO_DIR`] must hold `pkgcell.db`. Fixed,
/// so that a base (and its id) does not depend on `[repo] name`.
pub const PKGCELL_REPO_NAME: &str = "pkgcell";

/// What becomes of pacman 7's `DownloadUser` in a config pkgcell writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadUser {
    /// Kept: the bootstrap's config. pacman then downloads as that user,
    /// in its own sandbox (Landlock, syscall filter), inside pkgcell's.
    Keep,
    /// Commented out, with the reason: the base's own config.
    Off,
}

/// The config pacman bootstraps a base with, and the one the base gets:
/// the user's config, with every `SigLevel` replaced by `SigLevel = Never`
/// in `[options]` for [`Signatures::Skip`], and `DownloadUser` as
/// `download_user` says.
///
/// ```
/// use pkgcell::base::{DownloadUser, bootstrap_conf};
/// use pkgcell::config::Signatures;
/// let text = "[options]\nDownloadUser = alpm\n[core]\nSigLevel = Required\n";
/// let conf = bootstrap_conf(text, Signatures::Skip, DownloadUser::Off);
/// assert!(conf.contains("#DownloadUser = alpm"));
/// assert!(conf.contains("SigLevel = Never"));
/// assert!(conf.contains("#SigLevel = Required"));
/// let conf = bootstrap_conf(text, Signatures::Check, DownloadUser::Keep);
/// assert_eq!(conf, text);
/// ```
pub fn bootstrap_conf(text: &str, signatures: Signatures, download_user: DownloadUser) -> String {
    let mut out = String::new();
    let mut saw_options = false;
    for line in text.lines() {
        let key = line.trim_start();
        // pacman 7 downloads as an unprivileged `DownloadUser` in a sandbox
        // of its own. A base need not have that user (pacman refuses a
        // DownloadUser that does not exist, whatever it is asked to do), and
        // builds never download with the base's pacman: dependency layers
        // install local files with `pacman -U`. So the base's config has it
        // off. The bootstrap keeps it (pkgcell sees to the user there).
        if key.starts_with("DownloadUser") && download_user == DownloadUser::Off {
            out.push_str(
                "# pkgcell: off in bases: builds install only local files (pacman -U), and a base need not\n\
                 # have this user, which pacman requires; see docs/base.md (pacman 7's download sandbox)\n#",
            );
            out.push_str(line);
            out.push('\n');
            continue;
        }
        match signatures {
            Signatures::Check => {}
            Signatures::Skip => {
                if key.starts_with("SigLevel") {
                    out.push('#');
                    out.push_str(line);
                    out.push('\n');
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
        if key.starts_with("[options]") {
            saw_options = true;
            if signatures == Signatures::Skip {
                out.push_str("# pkgcell: [base] signatures = \"skip\" in pkgcell.toml\nSigLevel = Never\n");
            }
        }
    }
    if !saw_options && signatures == Signatures::Skip {
        out.insert_str(0, "[options]\n# pkgcell: [base] signatures = \"skip\" in pkgcell.toml\nSigLevel = Never\n");
    }
    out
}

/// The pacman.conf the dependency layers install with: the base's own, with
/// `LocalFileSigLevel = Optional` as the last word of `[options]`, and
/// pkgcell's own `[pkgcell]` repository commented out: a layer installs
/// files by path, and that repository's db is not there (it is only bound
/// at build time), so pacman would warn "database file for 'pkgcell' does
/// not exist" in every layer's log.
///
/// Why: `pacman -U` checks package files by `LocalFileSigLevel`, and a base
/// may require signatures there (pacman 7.1 with a strict config refuses
/// pkgcell's own unsigned packages with "package missing required
/// signature"). Every file a layer installs was already checked by pkgcell
/// against a hash it pinned: a repository package by the SHA-256 of its
/// database entry (the database pacman synced into the base), a package
/// pkgcell built or an `-I` file by its BLAKE3 in the store. pacman would
/// only look for a detached `.sig` beside the file, which pkgcell's own
/// builds do not have. The base's file is left as it is.
///
/// ```
/// use pkgcell::base::layer_conf;
/// let conf = layer_conf("[options]\nLocalFileSigLevel = Required\n[core]\nInclude = /etc/m\n");
/// assert_eq!(conf, "[options]\nLocalFileSigLevel = Required\n# pkgcell: its dependency layers are checked by hash, see docs/base.md\nLocalFileSigLevel = Optional\n[core]\nInclude = /etc/m\n");
/// ```
pub fn layer_conf(text: &str) -> String {
    const LINE: &str = "# pkgcell: its dependency layers are checked by hash, see docs/base.md\nLocalFileSigLevel = Optional\n";
    let own = format!("[{PKGCELL_REPO_NAME}]");
    let mut out = String::new();
    let mut in_options = false;
    let mut saw_options = false;
    let mut in_own = false;
    for line in text.lines() {
        let key = line.trim_start();
        if key.starts_with('[') {
            // Later assignments win: the line goes last in [options].
            if in_options {
                out.push_str(LINE);
            }
            in_options = key.starts_with("[options]");
            saw_options |= in_options;
            in_own = key.starts_with(&own);
            if in_own {
                out.push_str("# pkgcell: its own repository is not used by dependency layers, see layer_conf\n");
            }
        }
        if in_own {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    if in_options {
        out.push_str(LINE);
    }
    if !saw_options {
        out.insert_str(0, &format!("[options]\n{LINE}"));
    }
    out
}

/// The local directories of the `file://` servers of a pacman.conf (and of
/// the files it `Include`s), with `$repo` and `$arch` filled in, so that a
/// sandbox can bind them. `Include` paths are read below `root`, the root
/// file system pacman runs in (`/` for the host's).
pub fn file_servers(text: &str, arch: &str, root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    scan(text, arch, root, "", &mut dirs, 0);
    dirs.sort();
    dirs.dedup();
    dirs
}

fn scan(text: &str, arch: &str, root: &Path, section: &str, dirs: &mut Vec<PathBuf>, depth: u32) {
    let mut section = section.to_owned();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        match key.trim() {
            "Server" => {
                if let Some(path) = value.strip_prefix("file://") {
                    let path = path.replace("$repo", &section).replace("$arch", arch);
                    dirs.push(PathBuf::from(path));
                }
            }
            // Mirror lists hold Server lines of the section that includes them.
            "Include" if depth < 4 => {
                if let Ok(inner) = std::fs::read_to_string(root.join(value.trim_start_matches('/'))) {
                    scan(&inner, arch, root, &section, dirs, depth + 1);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_added_repository_is_the_one_the_constants_name() {
        assert!(PKGCELL_REPO.contains(&format!("[{PKGCELL_REPO_NAME}]")));
        assert!(PKGCELL_REPO.contains(&format!("file://{PKGCELL_REPO_DIR}\n")));
    }

    #[test]
    fn download_user_is_commented_out_in_bases_and_signatures_kept_by_default() {
        let conf = bootstrap_conf(
            "[options]\n  DownloadUser = alpm\nSigLevel = Required DatabaseOptional\n",
            Signatures::Check,
            DownloadUser::Off,
        );
        assert!(conf.contains("#  DownloadUser = alpm"), "{conf}");
        assert!(conf.contains("\nSigLevel = Required DatabaseOptional\n"), "{conf}");
        assert!(!conf.contains("Never"), "{conf}");
    }

    #[test]
    fn skip_turns_every_siglevel_into_never() {
        let conf = bootstrap_conf("[core]\nSigLevel = Required\nServer = x\n", Signatures::Skip, DownloadUser::Keep);
        assert!(conf.starts_with("[options]\n"), "{conf}");
        assert!(conf.contains("SigLevel = Never"), "{conf}");
        assert!(conf.contains("#SigLevel = Required"), "{conf}");
    }

    #[test]
    fn layers_install_without_pkgcells_own_repository() {
        let conf = layer_conf(&format!("[options]\nArchitecture = auto\n[core]\nInclude = /etc/m\n{PKGCELL_REPO}[extra]\nServer = x\n"));
        assert!(conf.contains("#[pkgcell]\n#SigLevel = Optional TrustAll\n#Server = file:///pkgcell-repo\n"), "{conf}");
        assert!(conf.contains("\n[core]\nInclude = /etc/m\n") && conf.contains("\n[extra]\nServer = x\n"), "{conf}");
        assert!(!conf.lines().any(|l| l == "[pkgcell]"), "{conf}");
    }

    #[test]
    fn file_servers_are_found_with_their_variables_filled_in() {
        let conf = "[options]\n[local]\nServer = file:///srv/$repo/os/$arch\nServer = https://example.org/$repo\n\
                    [other]\nServer=file:///tmp/r\n";
        assert_eq!(file_servers(conf, "x86_64", Path::new("/")), [PathBuf::from("/srv/local/os/x86_64"), PathBuf::from("/tmp/r")]);
    }

    #[test]
    fn includes_are_read_below_the_root_pacman_runs_in() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/pacman.d")).unwrap();
        std::fs::write(d.path().join("etc/pacman.d/mirrorlist"), "Server = file:///srv/$repo\n").unwrap();
        let conf = "[core]\nInclude = /etc/pacman.d/mirrorlist\n";
        assert_eq!(file_servers(conf, "x86_64", d.path()), [PathBuf::from("/srv/core")]);
    }
}
