//! The packager's own makepkg settings, read on the host as makepkg and
//! makechrootpkg read them: `/etc/makepkg.conf`, `/etc/makepkg.conf.d/*.conf`,
//! then `$XDG_CONFIG_HOME/pacman/makepkg.conf` or else `~/.makepkg.conf`,
//! then the environment (`PACKAGER=... pkgcell build` wins, as with makepkg).
//!
//! These files are bash, written by the user for their own makepkg, so they
//! are sourced by bash, as makepkg does, on the host and as the user; only
//! the few variables pkgcell honours come back. Nothing here reads a file a
//! build wrote.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variables read: the order is the order of the values printed.
const VARS: [&str; 5] = ["PACKAGER", "PKGDEST", "LOGDEST", "GPGKEY", "BUILDENV_SIGN"];

/// What pkgcell honours of the packager's makepkg settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConf {
    /// `PACKAGER`: goes into the packages' `.PKGINFO` and `.BUILDINFO`.
    pub packager: Option<String>,
    /// `PKGDEST`: where laptop mode leaves the package files.
    pub pkgdest: Option<PathBuf>,
    /// `LOGDEST`: where laptop mode leaves a copy of the build log.
    pub logdest: Option<PathBuf>,
    /// `GPGKEY`: the key packages are signed with.
    pub gpgkey: Option<String>,
    /// `BUILDENV` holds `sign` (not `!sign`): laptop mode signs the packages
    /// it leaves, with `gpg --detach-sign`, as makepkg does.
    pub sign: bool,
}

/// The settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserConfError {
    /// bash could not be run.
    #[error("cannot run bash to read the makepkg settings in {files}")]
    Bash {
        /// The files it was to source.
        files: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file failed when sourced.
    #[error("sourcing the makepkg settings in {files} failed: {stderr}")]
    Source {
        /// The files.
        files: String,
        /// bash's error output.
        stderr: String,
    },
}

/// The files makepkg reads, in its order, that exist: `etc` is `/etc`
/// (tests give another), `xdg` and `home` the user's directories.
pub fn files(etc: &Path, xdg_config_home: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut out = vec![etc.join("makepkg.conf")];
    if let Ok(rd) = std::fs::read_dir(etc.join("makepkg.conf.d")) {
        let mut extra: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect();
        extra.sort();
        out.extend(extra);
    }
    let xdg = xdg_config_home.map(Path::to_owned).or_else(|| home.map(|h| h.join(".config")));
    match xdg.map(|x| x.join("pacman/makepkg.conf")).filter(|p| p.is_file()) {
        Some(user) => out.push(user),
        None => out.extend(home.map(|h| h.join(".makepkg.conf"))),
    }
    out.retain(|p| p.is_file());
    out
}

/// The settings being read: bash runs while pkgcell goes on (a build
/// needs them only once it is planned); [`Pending::finish`] waits for it.
#[derive(Debug)]
pub struct Pending {
    /// None once [`Pending::finish`] took it.
    child: Option<std::process::Child>,
    /// The files, for errors.
    names: String,
}

impl UserConf {
    /// Read the user's settings from the usual places and the environment.
    pub fn load() -> Result<UserConf, UserConfError> {
        UserConf::start()?.finish(&|k| std::env::var_os(k))
    }

    /// Start reading the user's settings from the usual places (bash, about
    /// 2 ms); the environment is applied by [`Pending::finish`].
    pub fn start() -> Result<Pending, UserConfError> {
        let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let files = files(Path::new("/etc"), var("XDG_CONFIG_HOME").as_deref(), var("HOME").as_deref());
        UserConf::spawn(&files)
    }

    /// Source `files` in order, then let `env` override, as makepkg does.
    pub fn read(files: &[PathBuf], env: &dyn Fn(&str) -> Option<OsString>) -> Result<UserConf, UserConfError> {
        UserConf::spawn(files)?.finish(env)
    }

    /// Start bash sourcing `files` in order.
    fn spawn(files: &[PathBuf]) -> Result<Pending, UserConfError> {
        let names = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        // Each value ends with a NUL: none of them can hold one.
        let script = "for f in \"$@\"; do source \"$f\" || exit 1; done\n\
            BUILDENV_SIGN=; for o in \"${BUILDENV[@]}\"; do case $o in sign) BUILDENV_SIGN=1;; '!sign') BUILDENV_SIGN=;; esac; done\n\
            printf '%s\\0' \"$PACKAGER\" \"$PKGDEST\" \"$LOGDEST\" \"$GPGKEY\" \"$BUILDENV_SIGN\"\n";
        let mut cmd = Command::new("bash");
        cmd.arg("--noprofile").arg("--norc").arg("-c").arg(script).arg("pkgcell-userconf").args(files);
        // The files decide, then the environment, so none of it leaks into
        // the sourcing itself.
        for v in VARS {
            cmd.env_remove(v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| UserConfError::Bash { files: names.clone(), source })?;
        Ok(Pending { child: Some(child), names })
    }
}

impl Drop for Pending {
    /// A run that stops before it needs the settings (a failed plan) ends
    /// the bash and reaps it.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Pending {
    /// Wait for bash and take its values, then let `env` override them.
    pub fn finish(mut self, env: &dyn Fn(&str) -> Option<OsString>) -> Result<UserConf, UserConfError> {
        let names = std::mem::take(&mut self.names);
        let child = self.child.take().expect("only finish takes the child");
        let out = child.wait_with_output().map_err(|source| UserConfError::Bash { files: names.clone(), source })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(UserConfError::Source { files: names, stderr });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut values: Vec<Option<String>> =
            text.split('\0').take(VARS.len()).map(|v| Some(v.to_owned()).filter(|v| !v.is_empty())).collect();
        values.resize(VARS.len(), None);
        for (i, k) in VARS.iter().enumerate().take(4) {
            if let Some(v) = env(k).filter(|v| !v.is_empty()) {
                values[i] = Some(v.to_string_lossy().into_owned());
            }
        }
        Ok(UserConf {
            packager: values[0].clone(),
            pkgdest: values[1].clone().map(PathBuf::from),
            logdest: values[2].clone().map(PathBuf::from),
            gpgkey: values[3].clone(),
            sign: values[4].is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_win_and_the_environment_wins_over_files() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(etc.join("makepkg.conf.d")).unwrap();
        std::fs::write(etc.join("makepkg.conf"), "PACKAGER='Sys <sys@example.org>'\nBUILDENV=(check !sign)\nPKGDEST=/sys\n").unwrap();
        std::fs::write(etc.join("makepkg.conf.d/b.conf"), "LOGDEST=/logs\n").unwrap();
        let home = d.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".makepkg.conf"), "PACKAGER=\"Jane Doe <jane@example.org>\"\nBUILDENV+=(sign)\nGPGKEY=ABCD\n").unwrap();
        let files = files(&etc, None, Some(&home));
        assert_eq!(files, [etc.join("makepkg.conf"), etc.join("makepkg.conf.d/b.conf"), home.join(".makepkg.conf")]);
        let none = |_: &str| None;
        let c = UserConf::read(&files, &none).unwrap();
        assert_eq!(
            c,
            UserConf {
                packager: Some("Jane Doe <jane@example.org>".into()),
                pkgdest: Some("/sys".into()),
                logdest: Some("/logs".into()),
                gpgkey: Some("ABCD".into()),
                sign: true,
            }
        );
        let env = |k: &str| (k == "PKGDEST").then(|| OsString::from("/from/env"));
        assert_eq!(UserConf::read(&files, &env).unwrap().pkgdest, Some("/from/env".into()));

        // The XDG file replaces ~/.makepkg.conf, as makepkg has it.
        let xdg = d.path().join("xdg");
        std::fs::create_dir_all(xdg.join("pacman")).unwrap();
        std::fs::write(xdg.join("pacman/makepkg.conf"), "PACKAGER='X <x@example.org>'\n").unwrap();
        let files = super::files(&etc, Some(&xdg), Some(&home));
        assert_eq!(files.last().unwrap(), &xdg.join("pacman/makepkg.conf"));
        let c = UserConf::read(&files, &none).unwrap();
        assert_eq!((c.packager.as_deref(), c.sign), (Some("X <x@example.org>"), false));
    }

    #[test]
    fn a_file_that_fails_to_source_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let bad = d.path().join("makepkg.conf");
        std::fs::write(&bad, "PACKAGER=(\n").unwrap();
        let e = UserConf::read(std::slice::from_ref(&bad), &|_| None).unwrap_err().to_string();
        assert!(e.contains(&bad.display().to_string()), "{e}");
    }
}
