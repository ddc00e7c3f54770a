//! Helpers of the publish tests: plain command running with output shown on
//! failure, and test packages built by the real makepkg (as the calling,
//! unprivileged user).

#![allow(dead_code)]

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A fresh temporary directory, under `$PKGCELL_TEST_DIR` when set.
pub fn temp_dir() -> tempfile::TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("pkgcell-it-");
    match std::env::var_os("PKGCELL_TEST_DIR") {
        Some(base) => {
            fs::create_dir_all(&base).expect("creating PKGCELL_TEST_DIR");
            builder.tempdir_in(base)
        }
        None => builder.tempdir(),
    }
    .expect("creating a temp dir")
}

pub use crate::util::pkgcell;

/// Runs `cmd`; panics with its stdout and stderr unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, show(&out));
    out
}

/// Runs `cmd` and returns its output, whatever the status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A package for [`makepkg`] to build: a PKGBUILD with no sources whose
/// `package()` installs a script and a data file.
#[derive(Clone, Debug)]
pub struct TestPackage<'a> {
    pub name: &'static str,
    pub epoch: Option<u32>,
    pub pkgver: &'a str,
    pub pkgrel: u32,
    pub arch: &'static str,
    pub depends: &'static [&'static str],
    pub desc: &'static str,
}

impl TestPackage<'_> {
    /// A package with defaults: `1.0-1`, x86_64, no dependencies.
    pub const fn new(name: &'static str) -> Self {
        TestPackage { name, epoch: None, pkgver: "1.0", pkgrel: 1, arch: "x86_64", depends: &[], desc: "A test package" }
    }

    fn pkgbuild(&self) -> String {
        let quote = |list: &[&str]| list.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(" ");
        let mut s = String::new();
        let _ = writeln!(s, "pkgname={}", self.name);
        let _ = writeln!(s, "pkgver={}\npkgrel={}", self.pkgver, self.pkgrel);
        if let Some(epoch) = self.epoch {
            let _ = writeln!(s, "epoch={epoch}");
        }
        let _ = writeln!(s, "pkgdesc='{}'\narch=({})\nurl='https://example.org/{}'", self.desc, self.arch, self.name);
        let _ = writeln!(s, "license=(MIT)\ngroups=(pkgcell-test)\ndepends=({})", quote(self.depends));
        let _ = writeln!(s, "optdepends=('bash: for scripts')\nprovides=('{}-virtual')\noptions=(!strip !debug)", self.name);
        let _ = writeln!(
            s,
            "package() {{\n  install -d \"$pkgdir/usr/bin\" \"$pkgdir/usr/share/$pkgname\"\n  \
             printf '#!/bin/sh\\necho %s %s\\n' \"$pkgname\" \"$pkgver\" > \"$pkgdir/usr/bin/$pkgname\"\n  \
             chmod 755 \"$pkgdir/usr/bin/$pkgname\"\n  echo \"$pkgver-$pkgrel\" > \"$pkgdir/usr/share/$pkgname/version\"\n}}"
        );
        s
    }
}

/// Builds `pkg` with the real makepkg (as the calling, unprivileged user)
/// into `out` and returns the package file.
pub fn makepkg(pkg: &TestPackage, work: &Path, out: &Path) -> PathBuf {
    let dir = work.join(format!("{}-{}-{}", pkg.name, pkg.pkgver, pkg.pkgrel));
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(out).unwrap();
    fs::write(dir.join("PKGBUILD"), pkg.pkgbuild()).unwrap();
    let before: Vec<PathBuf> = list(out);
    ok(Command::new("makepkg")
        .args(["--nodeps", "--force", "--noconfirm", "--noprogressbar"])
        .current_dir(&dir)
        .env("PKGEXT", ".pkg.tar.zst")
        .env("PKGDEST", out)
        .env("BUILDDIR", work.join("build"))
        .env("SRCDEST", work.join("src"))
        .env("LOGDEST", work.join("log")));
    let mut new: Vec<PathBuf> = list(out).into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "makepkg of {} made {new:?}", pkg.name);
    new.remove(0)
}

fn list(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}
