//! Shared helpers for integration tests: a fresh directory per test, the
//! built `pkgcell` binary, and the test base.
//!
//! Tests run as an unprivileged user (see scripts/as-test-user); a test that
//! needs something the host lacks says so and fails, never passes silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built binary under test.
pub fn pkgcell_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pkgcell"))
}

/// A `pkgcell` command with a clean, predictable environment.
pub fn pkgcell() -> Command {
    let mut c = Command::new(pkgcell_bin());
    c.env_remove("PKGCELL_LOG").env("NO_COLOR", "1");
    c
}

/// The Debian test base (made by scripts/make-test-base), from
/// $PKGCELL_TEST_BASE, which `make test` sets.
pub fn test_base() -> PathBuf {
    let p = std::env::var_os("PKGCELL_TEST_BASE").map(PathBuf::from).unwrap_or_else(|| {
        panic!("PKGCELL_TEST_BASE is not set: run the integration tests with `make test`, which makes the test base")
    });
    assert!(p.join("usr/bin/makepkg").exists(), "{} is not a test base (no usr/bin/makepkg)", p.display());
    p
}

/// Refuse to run as root: a rootless test that passes as root proves nothing.
pub fn require_unprivileged() {
    assert_ne!(
        nix_uid(),
        0,
        "integration tests must run as an unprivileged user: use `make test` (scripts/as-test-user)"
    );
}

fn nix_uid() -> u32 {
    // Read our uid from /proc, without unsafe code.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A fresh temporary directory, removed at the end (with the help of the
/// sandbox when it holds files of subordinate ids).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn new() -> Self {
        require_unprivileged();
        TestDir { dir: Some(tempfile::Builder::new().prefix("pkgcell-test-").tempdir().unwrap()) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path().join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let path = d.keep();
            if std::fs::remove_dir_all(&path).is_err() {
                let _ = pkgcell_sandbox::remove_tree_with(&path, &pkgcell_bin(), &Default::default());
            }
        }
    }
}

/// Run a command, capturing its output, with stdin closed.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Both output streams as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `pkgcell run --lower <test base> [extra...] -- sh -c SCRIPT`, captured.
pub fn run_sh(extra: &[&str], script: &str) -> Output {
    let base = test_base();
    let mut c = pkgcell();
    c.arg("run").arg("--lower").arg(&base).args(extra).args(["--", "sh", "-c", script]);
    output(&mut c)
}

/// Assert success and return stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "expected success\n{}", text(&o));
    stdout(&o)
}

/// Copy a fixture directory (tests/fixtures/NAME) into `dst`.
pub fn copy_fixture(name: &str, dst: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}
