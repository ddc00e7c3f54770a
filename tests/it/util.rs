//! Shared helpers for integration tests: a fresh directory per test, the
//! built `pkgcell` binary, and the test base.
//!
//! Tests run as an unprivileged user (see scripts/as-test-user); a test that
//! needs something the host lacks says so and fails, never passes silently.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// `pkgcell` run in `dir`, with its state in `dir/home` and the test base
/// as the base directory.
pub fn pkgcell_in(dir: &Path) -> Command {
    let mut c = pkgcell();
    c.current_dir(dir).env("PKGCELL_HOME", dir.join("home")).env("PKGCELL_BASE_DIR", test_base());
    c
}

/// Write `pkgs/<name>/PKGBUILD` from `fixtures/<name>/PKGBUILD` for each of
/// `names`, and a `pkgcell.toml` under `dir` with one entry per name.
pub fn fixture_config(dir: &Path, fixtures: &Path, names: &[&str]) {
    let mut config = String::from("[pkgbuilds]\n");
    for n in names {
        let dst = dir.join("pkgs").join(n);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(fixtures.join(n).join("PKGBUILD"), dst.join("PKGBUILD")).unwrap();
        config.push_str(&format!("{n} = {{ path = \"pkgs/{n}\" }}\n"));
    }
    std::fs::write(dir.join("pkgcell.toml"), config).unwrap();
}

/// Requests per path, as a [`serve_dir`] server saw them.
pub type Hits = Arc<Mutex<BTreeMap<String, usize>>>;

/// The paths whose responses a [`serve_dir`] server holds back, and whether
/// it has stopped holding anything (the test is over).
#[derive(Default)]
struct Holds {
    state: Mutex<(BTreeSet<String>, bool)>,
    released: Condvar,
}

impl Holds {
    /// Wait while `path` is held.
    fn wait(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        while st.0.contains(path) && !st.1 {
            st = self.released.wait(st).unwrap();
        }
    }

    fn is_held(&self, path: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.0.contains(path) && !st.1
    }
}

/// A loopback HTTP server started by [`serve_dir`]. When it is dropped it
/// lets every held response go, so no download hangs after a test.
pub struct Served {
    pub port: u16,
    pub hits: Hits,
    holds: Arc<Holds>,
}

impl Served {
    /// How many times `name` (a path under the served directory) was asked for.
    pub fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// From now on, a response for `name` sends its headers and the first
    /// half of its body, then waits until [`Served::release`]: a download
    /// that is visibly running, half written, for as long as the test needs.
    pub fn hold(&self, name: &str) {
        self.holds.state.lock().unwrap().0.insert(name.to_owned());
    }

    /// Let the held responses for `name` finish, and serve it whole again.
    pub fn release(&self, name: &str) {
        self.holds.state.lock().unwrap().0.remove(name);
        self.holds.released.notify_all();
    }

    /// Wait until `name` was asked for at least `n` times; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_hits(&self, name: &str, n: usize, timeout: Duration) {
        let t = Instant::now();
        while self.hits(name) < n {
            assert!(t.elapsed() < timeout, "{name} was asked for {} times, not {n}, in {timeout:?}", self.hits(name));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.holds.state.lock().unwrap().1 = true;
        self.holds.released.notify_all();
    }
}

/// A tiny HTTP/1.0 server on 127.0.0.1 serving the files under `root`,
/// counting requests per path, until the test process ends; each
/// connection has its own thread, so a held response (see [`Served::hold`])
/// does not hold the others. It reads the whole request head before
/// answering (closing a socket with unread input would reset the connection
/// under the client), percent-decodes the path (pacman escapes the `:` of
/// an epoch) and serves nothing outside `root`.
pub fn serve_dir(root: impl Into<PathBuf>) -> Served {
    let root: Arc<PathBuf> = Arc::new(root.into());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits: Hits = Arc::default();
    let holds: Arc<Holds> = Arc::default();
    let (h, held) = (hits.clone(), holds.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(s) = conn else { continue };
            let (root, h, held) = (root.clone(), h.clone(), held.clone());
            std::thread::spawn(move || serve_one(s, &root, &h, &held));
        }
    });
    Served { port, hits, holds }
}

fn serve_one(mut s: TcpStream, root: &Path, hits: &Hits, holds: &Holds) {
    let Ok(read) = s.try_clone() else { return };
    let mut r = BufReader::new(read);
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    let mut line = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line.trim_end() != "" {
        line.clear();
    }
    let path = percent_decode(first.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/'));
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let inside = !path.split('/').any(|c| c == "..");
    let body = inside.then(|| std::fs::read(root.join(&path)).ok()).flatten();
    let _ = match body {
        Some(b) => {
            let half = if holds.is_held(&path) { b.len() / 2 } else { b.len() };
            s.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes())
                .and_then(|_| s.write_all(&b[..half]))
                .and_then(|_| s.flush())
                .map(|_| holds.wait(&path))
                .and_then(|_| s.write_all(&b[half..]))
        }
        None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    };
}

/// How many processes wait for the flock(2) of `path` now, as
/// /proc/locks shows them (a blocked request is marked `->`): a process
/// that reached a single-flight lock another one holds.
pub fn lock_waiters(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else { return 0 };
    let dev = m.dev();
    let (major, minor) = (((dev >> 32) & !0xfff) | ((dev >> 8) & 0xfff), ((dev >> 12) & !0xff) | (dev & 0xff));
    let id = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks.lines().filter(|l| l.split_whitespace().nth(1) == Some("->") && l.split_whitespace().any(|w| w == id)).count()
}

/// Wait until a process waits for the flock of some file in `dir` (see
/// [`lock_waiters`]), or `give_up` says so; panics after `timeout`.
#[track_caller]
pub fn wait_for_lock_waiter(dir: &Path, timeout: Duration, give_up: impl Fn() -> bool) {
    let t = Instant::now();
    loop {
        let waiting = std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| lock_waiters(&e.path()) > 0);
        if waiting || give_up() {
            return;
        }
        assert!(t.elapsed() < timeout, "nobody waited for a lock in {} in {timeout:?}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// pacman, rootless (`unshare --map-root-user`), with its root, database
/// and cache under `client` and one repository `repo` at `server`.
pub fn pacman_client(client: &Path, repo: &str, server: &str, args: &[&str]) -> Output {
    for d in ["root", "db", "cache"] {
        std::fs::create_dir_all(client.join(d)).unwrap();
    }
    let conf = client.join("pacman.conf");
    std::fs::write(
        &conf,
        format!(
            "[options]\nArchitecture = x86_64\nSigLevel = Never\nCacheDir = {}\nLogFile = {}\n\n[{repo}]\nServer = {server}\n",
            client.join("cache").display(),
            client.join("pacman.log").display(),
        ),
    )
    .unwrap();
    let mut c = Command::new("unshare");
    c.args(["--map-root-user", "pacman", "--noconfirm", "--root"])
        .arg(client.join("root"))
        .arg("--dbpath")
        .arg(client.join("db"))
        .arg("--config")
        .arg(&conf)
        .args(args);
    output(&mut c)
}
