//! pkgcell under rebuilderd for real (issue 8, part 2): the real
//! `rebuilderd-worker` (scripts/install-rebuilderd-worker) downloads a
//! package that `pkgcell build` made from a loopback HTTP server, runs
//! scripts/rebuilderd-backend on it, and compares what the backend left in
//! `$REBUILDERD_OUTDIR` with the download (docs/rebuilderd.md).
//!
//! `rebuilderd-worker build` exits 0 whatever the verdict; the verdict is
//! in its log lines (env_logger, on stderr), which these tests read. The
//! last test runs a `rebuilderd` daemon on loopback with one worker
//! (scripts/install-rebuilderd) and reads the verdicts with `rebuildctl`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

/// Where scripts/install-rebuilderd-worker puts the worker (it prints this path).
const WORKER: &str = "/var/tmp/pkgcell-tools/rebuilderd-worker-0.28.0/bin/rebuilderd-worker";
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rebuilderd-backend");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/repro");

/// The worker binary; a missing one fails the test (it is part of the test
/// bed, like the test base), it does not skip it.
fn worker() -> PathBuf {
    let p = PathBuf::from(WORKER);
    assert!(p.is_file(), "{WORKER} is missing: run scripts/install-deps (it runs scripts/install-rebuilderd-worker)");
    p
}

/// A config of repro fixtures, a state home, and a directory served over HTTP.
struct Env {
    dir: TestDir,
    port: u16,
}

impl Env {
    fn new(names: &[&str]) -> Env {
        let dir = TestDir::new();
        fixture_config(dir.path(), Path::new(FIXTURES), names);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let port = serve_dir(dir.join("www")).port;
        Env { dir, port }
    }

    /// `pkgcell build NAME`, its package file copied to the served
    /// directory; the file's name.
    fn build_and_serve(&self, name: &str) -> String {
        let o = output(pkgcell_in(self.dir.path()).args(["build", "--json", name]));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
        assert_eq!(o.status.code(), Some(0), "{v:#}\n{}", text(&o));
        let p = &v["packages"][0];
        let file = p["files"][0].as_str().unwrap();
        let name = p["outputs"][0]["name"].as_str().unwrap().to_owned();
        std::fs::copy(file, self.dir.join("www").join(&name)).unwrap();
        name
    }

    /// `rebuilderd-worker build archlinux http://127.0.0.1:PORT/FILE
    /// --script-location scripts/rebuilderd-backend`, with the pkgcell
    /// state in `home`, run in the test directory (the worker keeps its
    /// signing key in its working directory).
    fn worker_build(&self, file: &str, home: &Path) -> Output {
        // An empty config: the worker would otherwise read /etc/rebuilderd-worker.conf.
        let conf = self.dir.join("rebuilderd-worker.conf");
        std::fs::write(&conf, "").unwrap();
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let url = format!("http://127.0.0.1:{}/{file}", self.port);
        output(
            Command::new(worker())
                .arg("--config")
                .arg(&conf)
                .args(["build", "archlinux", &url, "--script-location", BACKEND])
                .current_dir(self.dir.path())
                .env_remove("RUST_LOG")
                .env_remove("REBUILDERD_WORKER_BACKEND")
                .env_remove("REBUILDERD_OUTDIR")
                .env("NO_COLOR", "1")
                // Its download and REBUILDERD_OUTDIR go here, removed with the test.
                .env("TMPDIR", &tmp)
                .env("PKGCELL", pkgcell_bin())
                .env("PKGCELL_CONFIG", self.dir.join("pkgcell.toml"))
                .env("PKGCELL_HOME", home)
                .env("PKGCELL_BASE_DIR", test_base()),
        )
    }
}

#[test]
fn the_rebuilderd_worker_reports_good_for_a_package_pkgcell_built_reproducibly() {
    let env = Env::new(&["same"]);
    let name = env.build_and_serve("same");

    let o = env.worker_build(&name, &env.dir.join("home"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let all = text(&o);
    // The backend ran and found its record: pkgcell's own verdict, passed through.
    assert!(all.contains(&format!("REPRODUCIBLE      {name}")), "{all}");
    // The worker's: its rebuild (in $REBUILDERD_OUTDIR) has the download's bytes.
    let err = stderr(&o);
    assert!(err.contains("Output artifacts is identical, marking as GOOD"), "{all}");
    assert!(err.contains("Package verified successfully"), "{all}");
    assert!(!err.contains("Package failed to verify"), "{all}");
}

#[test]
fn the_rebuilderd_worker_reports_bad_for_a_package_stamped_with_the_build_time() {
    let env = Env::new(&["stamp"]);
    let name = env.build_and_serve("stamp");

    let o = env.worker_build(&name, &env.dir.join("home"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains(&format!("NOT REPRODUCIBLE  {name}")) && all.contains("differs: usr/share/stamp/stamp.txt"), "{all}");
    // pkgcell left its (different) rebuild for the worker, which compared it.
    let err = stderr(&o);
    assert!(err.contains("Output artifact differs, marking as BAD"), "{all}");
    assert!(err.contains("Package failed to verify"), "{all}");
    assert!(!err.contains("Package verified successfully"), "{all}");
}

#[test]
fn the_rebuilderd_worker_reports_bad_when_the_store_has_no_record_of_the_package() {
    let env = Env::new(&["same"]);
    let name = env.build_and_serve("same");

    // Another pkgcell home: its store never saw that package, so pkgcell
    // cannot check it (exit 2, ignored by the worker) and writes nothing.
    let o = env.worker_build(&name, &env.dir.join("other-home"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("no build record in the store made"), "{all}");
    let err = stderr(&o);
    assert!(err.contains("No output artifact found, marking as BAD"), "{all}");
    assert!(err.contains("Package failed to verify"), "{all}");
}

/// Where scripts/install-rebuilderd puts the daemon and its CLI.
const DAEMON: &str = "/var/tmp/pkgcell-tools/rebuilderd-0.28.0/bin/rebuilderd";
const REBUILDCTL: &str = "/var/tmp/pkgcell-tools/rebuildctl-0.28.0/bin/rebuildctl";

/// A process of the test, killed and reaped when the test ends, however
/// it ends.
struct Running {
    child: std::process::Child,
    log: PathBuf,
}

impl Running {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Running {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tool(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(p.is_file(), "{path} is missing: run scripts/install-deps (it runs scripts/install-rebuilderd)");
    p
}

/// `rebuildctl -H ENDPOINT ARGS`, with the daemon's auth cookie.
fn rebuildctl(dir: &TestDir, endpoint: &str, args: &[&str]) -> Output {
    output(
        Command::new(tool(REBUILDCTL))
            .args(["-H", endpoint])
            .args(args)
            .current_dir(dir.path())
            .env("REBUILDERD_COOKIE_PATH", dir.join("auth-cookie"))
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG"),
    )
}

#[test]
fn a_rebuilderd_daemon_with_one_pkgcell_worker_marks_the_published_packages_good_and_bad() {
    let daemon_bin = tool(DAEMON);
    let worker_bin = worker();
    let env = Env::new(&["same", "stamp"]);
    let dir = &env.dir;
    let config = std::fs::read_to_string(dir.join("pkgcell.toml")).unwrap();
    std::fs::write(dir.join("pkgcell.toml"), format!("[repo]\nname = \"pkgcell\"\npublish = \"repo\"\n\n{config}")).unwrap();
    ok(output(pkgcell_in(dir.path()).arg("build")));
    ok(output(pkgcell_in(dir.path()).arg("publish")));
    assert!(dir.join("repo/x86_64/pkgcell.db").is_file());
    let repo_port = serve_dir(dir.join("repo")).port;

    // The daemon, on loopback, with a signup secret for workers; its
    // database and keys in its own directory, its cookie where rebuildctl
    // finds it.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let secret = "pkgcell-test-signup-secret";
    std::fs::create_dir_all(dir.join("daemon")).unwrap();
    std::fs::create_dir_all(dir.join("xdg")).unwrap();
    std::fs::write(
        dir.join("rebuilderd.conf"),
        format!("[http]\nbind_addr = \"127.0.0.1:{port}\"\n\n[worker]\nsignup_secret = \"{secret}\"\n"),
    )
    .unwrap();
    let daemon = Running::spawn(
        Command::new(daemon_bin)
            .arg("--config")
            .arg(dir.join("rebuilderd.conf"))
            .current_dir(dir.join("daemon"))
            .env("REBUILDERD_COOKIE_PATH", dir.join("auth-cookie"))
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .env_remove("RUST_LOG")
            .env_remove("HTTP_ADDR"),
        dir.join("daemon.log"),
    );
    let up = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(up.elapsed().as_secs() < 30, "the daemon does not listen on {endpoint}\n{}", daemon.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The daemon learns the packages from the repository pkgcell published,
    // as from any Arch mirror: `$arch/<component>.db`.
    let source = format!("http://127.0.0.1:{repo_port}/$arch");
    let sync = ["pkgs", "sync", "archlinux", "--component", "pkgcell", "--architecture", "x86_64", &source];
    let o = rebuildctl(dir, &endpoint, &sync);
    assert!(o.status.success(), "{}\n--- daemon\n{}", text(&o), daemon.log());

    // One worker with pkgcell as its archlinux backend.
    std::fs::create_dir_all(dir.join("worker")).unwrap();
    std::fs::write(
        dir.join("rebuilderd-worker.conf"),
        format!("signup_secret = \"{secret}\"\nidle_delay = 1\n\n[backend.\"archlinux\"]\npath = \"{BACKEND}\"\n"),
    )
    .unwrap();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let worker = Running::spawn(
        Command::new(worker_bin)
            .arg("--config")
            .arg(dir.join("rebuilderd-worker.conf"))
            .args(["connect", &endpoint])
            .current_dir(dir.join("worker"))
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .env("TMPDIR", &tmp)
            .env_remove("RUST_LOG")
            .env_remove("REBUILDERD_WORKER_BACKEND")
            .env("PKGCELL", pkgcell_bin())
            .env("PKGCELL_CONFIG", dir.join("pkgcell.toml"))
            .env("PKGCELL_HOME", dir.join("home"))
            .env("PKGCELL_BASE_DIR", test_base()),
        dir.join("worker.log"),
    );

    // Wait for both verdicts, as rebuildctl shows them.
    let start = std::time::Instant::now();
    let statuses = loop {
        let o = rebuildctl(dir, &endpoint, &["pkgs", "ls", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: Value = serde_json::Deserializer::from_slice(&o.stdout)
            .into_iter()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no JSON from rebuildctl pkgs ls\n{}", text(&o)));
        let statuses: BTreeMap<String, Value> =
            v.as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap().to_owned(), p["status"].clone())).collect();
        if statuses.len() == 2 && statuses.values().all(|s| !s.is_null()) {
            break statuses;
        }
        assert!(
            start.elapsed().as_secs() < 180,
            "no verdicts after 3 minutes: {v:#}\n--- worker\n{}\n--- daemon\n{}",
            worker.log(),
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    let log = worker.log();
    assert_eq!(statuses["same"], "GOOD", "{statuses:?}\n--- worker\n{log}");
    assert_eq!(statuses["stamp"], "BAD", "{statuses:?}\n--- worker\n{log}");
    // Both verdicts came from pkgcell's rebuilds, which the worker ran.
    assert!(log.contains("REPRODUCIBLE      same-1.0-1-any.pkg.tar.zst"), "{log}");
    assert!(log.contains("NOT REPRODUCIBLE  stamp-1.0-1-any.pkg.tar.zst"), "{log}");
}
