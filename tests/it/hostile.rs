//! Hostile PKGBUILDs that leave traps in PKGDEST for the host: symlinks to
//! the host user's secrets, a FIFO, a link to /dev/zero, an oversized file,
//! a package that claims another name. Each build must fail quickly, name
//! the file and why, and nothing of the secret may reach the store, the
//! records, the logs or the output (docs/build.md, "What the host reads").

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile");
/// A build that runs into a trap must end well before this.
const HARD_TIMEOUT: Duration = Duration::from_secs(180);

/// A secret file of the host user, removed at the end.
struct Secret {
    path: PathBuf,
    content: String,
}

impl Secret {
    /// A secret file in `dir`, with a random name and content.
    fn new_in(dir: &Path) -> Secret {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let token = format!("{:x}{:x}", std::process::id(), nanos);
        let path = dir.join(format!("pkgcell-secret-{token}"));
        let content = format!("TOP-SECRET-{token}\n");
        std::fs::write(&path, &content).unwrap();
        Secret { path, content }
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The test directory with `name`'s fixture as the only entry, `@SECRET@`
/// and `@TMPSECRET@` filled in, and a 16 MiB output limit.
fn setup(name: &str, secrets: &[(&str, &Secret)]) -> TestDir {
    let dir = TestDir::new();
    let dst = dir.join("pkgs").join(name);
    std::fs::create_dir_all(&dst).unwrap();
    let mut text = std::fs::read_to_string(Path::new(FIXTURES).join(name).join("PKGBUILD")).unwrap();
    for (placeholder, s) in secrets {
        text = text.replace(placeholder, &s.path.display().to_string());
    }
    std::fs::write(dst.join("PKGBUILD"), text).unwrap();
    let config = format!("[build]\njobs = 1\nmax_output = \"16M\"\n\n[pkgbuilds]\n{name} = {{ path = \"pkgs/{name}\" }}\n");
    std::fs::write(dir.join("pkgcell.toml"), config).unwrap();
    dir
}

/// `pkgcell ARGS` in `dir`, killed (and the test failed) after HARD_TIMEOUT.
fn run_bounded(dir: &TestDir, args: &[&str]) -> (Output, Duration) {
    let mut c = pkgcell();
    c.args(args)
        .current_dir(dir.path())
        .env("PKGCELL_HOME", dir.join("home"))
        .env("PKGCELL_BASE_DIR", test_base())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = c.spawn().unwrap();
    // Drain the pipes in threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > HARD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pkgcell {args:?} hung for {HARD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    (Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }, elapsed)
}

/// Every regular file under `root` (not following symlinks) that holds
/// `needle`; unreadable files (of the sandbox's subordinate ids) are skipped.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else { return hits };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            hits.extend(files_holding(&e.path(), needle));
        } else if t.is_file()
            && let Ok(data) = std::fs::read(e.path())
            && data.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(e.path());
        }
    }
    hits
}

/// Build `name`: it must fail (exit 1, status failed) within a minute with
/// a reason holding each of `expect`; and no secret may show anywhere.
fn assert_refused(name: &str, secrets: &[(&str, &Secret)], expect: &[&str]) {
    require_unprivileged();
    let dir = setup(name, secrets);
    let (o, took) = run_bounded(&dir, &["build", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let p = v["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap();
    assert_eq!(p["status"], "failed", "{v:#}");
    let reason = p["reason"].as_str().unwrap();
    for e in expect {
        assert!(reason.contains(e), "the reason lacks {e:?}: {reason}");
    }
    assert!(took < Duration::from_secs(60), "the build took {took:?}");

    let (ls, _) = run_bounded(&dir, &["store", "ls", "--json"]);
    assert!(ls.status.success(), "{}", text(&ls));
    let ls: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 0, "a refused build has no record: {ls:#}");
    for (_, s) in secrets {
        let needle = s.content.trim().as_bytes();
        let shown = [&o.stdout, &o.stderr].iter().any(|b| b.windows(needle.len()).any(|w| w == needle));
        assert!(!shown, "the secret was printed\n{}", text(&o));
        let hits = files_holding(&dir.join("home"), needle);
        assert!(hits.is_empty(), "the secret is in {hits:?}");
    }
}

fn home_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("the runner sets HOME"))
}

#[test]
fn a_package_file_that_is_a_symlink_to_a_host_secret_fails_the_build_and_the_secret_is_not_stored() {
    let secret = Secret::new_in(&home_dir());
    assert_refused("symlink-output", &[("@SECRET@", &secret)], &["zz-1-1-any.pkg.tar.zst", "is a symlink"]);
}

#[test]
fn a_buildinfo_planted_in_pkgdest_as_a_symlink_to_a_host_secret_is_never_read() {
    // The link leads to the secret outside (/tmp is the sandbox's own);
    // the record's .BUILDINFO is the package's own, read from the archive.
    require_unprivileged();
    let secret = Secret::new_in(Path::new("/tmp"));
    let dir = setup("symlink-buildinfo", &[("@TMPSECRET@", &secret)]);
    let (o, _) = run_bounded(&dir, &["build", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let (ls, _) = run_bounded(&dir, &["store", "ls", "--json"]);
    assert!(ls.status.success(), "{}", text(&ls));
    let ls: Value = serde_json::from_slice(&ls.stdout).unwrap();
    let info = ls["records"][0]["buildinfo"].as_str().unwrap();
    assert!(info.lines().any(|l| l == "pkgname = symlink-buildinfo") && info.contains("buildtool = pkgcell"), "{info}");
    let needle = secret.content.trim().as_bytes();
    assert!(![&o.stdout, &o.stderr].iter().any(|b| b.windows(needle.len()).any(|w| w == needle)), "{}", text(&o));
    let hits = files_holding(&dir.join("home"), needle);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
}

#[test]
fn a_package_file_that_is_a_fifo_fails_the_build_at_once_instead_of_hanging() {
    assert_refused("fifo-output", &[], &["zz-1-1-any.pkg.tar.zst", "not a regular file but a fifo"]);
}

#[test]
fn a_package_file_that_links_to_dev_zero_fails_the_build_without_filling_the_store() {
    assert_refused("devzero-output", &[], &["zz-1-1-any.pkg.tar.zst", "is a symlink"]);
}

#[test]
fn a_package_file_over_max_output_fails_the_build() {
    assert_refused("big-output", &[], &["zz-1-1-any.pkg.tar.zst", "larger than the limit of 16777216 bytes"]);
}

#[test]
fn a_package_file_that_claims_another_pkgname_fails_the_build() {
    assert_refused(
        "wrong-name-output",
        &[],
        &["glibc-9-1-any.pkg.tar.zst", "\"glibc\" is not a package of this PKGBUILD", "wrong-name-output"],
    );
}


#[test]
fn a_repro_rebuild_refuses_a_package_file_that_is_a_symlink_to_a_host_secret() {
    require_unprivileged();
    let secret = Secret::new_in(&home_dir());
    let dir = setup("symlink-output", &[("@SECRET@", &secret)]);
    let (o, took) = run_bounded(&dir, &["repro", "--twice", "symlink-output"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("zz-1-1-any.pkg.tar.zst") && err.contains("is a symlink"), "{}", text(&o));
    assert!(took < Duration::from_secs(60), "the rebuild took {took:?}");
    let needle = secret.content.trim().as_bytes();
    assert!(!o.stdout.windows(needle.len()).any(|w| w == needle) && !err.contains(secret.content.trim()));
    let hits = files_holding(&dir.join("home"), needle);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
}

/// A PKGBUILD chooses its own sources: a `file://` source outside the
/// config's PKGBUILD directories and `[build] file_sources` would copy any
/// file the user can read into the source cache and the package.
#[test]
fn a_file_source_outside_the_allowed_directories_fails_the_fetch_and_the_secret_is_not_copied() {
    let secret = Secret::new_in(&home_dir());
    assert_refused("file-source", &[("@SECRET@", &secret)], &["loot", "outside the directories file:// sources may read"]);
}

/// The same for a git+file:// source: a repository of the user's, in a
/// directory the config does not allow, is not cloned.
#[test]
fn a_git_file_source_outside_the_allowed_directories_is_not_cloned() {
    require_unprivileged();
    let repo = TestDir::new();
    let secret = Secret::new_in(repo.path());
    let git = |args: &[&str]| {
        let o = output(std::process::Command::new("git").arg("-C").arg(repo.path()).args(args));
        assert!(o.status.success(), "{}", text(&o));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "secret"]);
    let dir_secret = Secret { path: repo.path().to_owned(), content: secret.content.clone() };
    assert_refused("git-file-source", &[("@SECRETDIR@", &dir_secret)], &["loot", "outside the directories file:// sources may read"]);
    std::mem::forget(dir_secret);
}
