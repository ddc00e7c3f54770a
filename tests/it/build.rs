//! `pkgcell build` and `pkgcell fetch` for real: makepkg in sandboxes over
//! the test base, sources from local files, a loopback HTTP server and a
//! local git repo, outputs into the store (issue 6).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/build");

/// A test directory with a config, a state home and the test base.
pub(crate) struct Env {
    pub(crate) dir: TestDir,
    port: u16,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env { dir: TestDir::new(), port: serve_dir(FIXTURES).port }
    }

    /// Copy fixture `name` to `pkgs/<name>`, filling in @PORT@ and @REPO@.
    pub(crate) fn pkg(&self, name: &str) -> PathBuf {
        let dst = self.dir.join("pkgs").join(name);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(Path::new(FIXTURES).join(name)).unwrap() {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let text = text
                .replace("@PORT@", &self.port.to_string())
                .replace("@REPO@", &self.dir.join("repo").display().to_string());
            std::fs::write(dst.join(e.file_name()), text).unwrap();
        }
        dst
    }

    /// A local git repository with one file, for B's git source.
    pub(crate) fn git_repo(&self) {
        let repo = self.dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("content.txt"), "content from git\n").unwrap();
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "."],
            &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"],
        ] {
            let o = output(Command::new("git").arg("-C").arg(&repo).args(args));
            assert!(o.status.success(), "git {args:?}\n{}", text(&o));
        }
    }

    pub(crate) fn config(&self, names: &[&str], jobs: usize) {
        // B's git source is a file:// URL into `repo`: a directory the
        // config must allow sources to read.
        let mut c = format!("[build]\njobs = {jobs}\nfile_sources = [\"repo\"]\n\n[pkgbuilds]\n");
        for n in names {
            self.pkg(n);
            c.push_str(&format!("{n} = {{ path = \"pkgs/{n}\" }}\n"));
        }
        std::fs::write(self.dir.join("pkgcell.toml"), c).unwrap();
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = pkgcell();
        c.args(args)
            .current_dir(self.dir.path())
            .env("PKGCELL_HOME", self.dir.join("home"))
            .env("PKGCELL_BASE_DIR", test_base());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    /// `pkgcell build --json ARGS`: exit code and the parsed object.
    pub(crate) fn build(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut a = vec!["build", "--json"];
        a.extend(args);
        let o = self.run(&a);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
        assert_eq!(v["version"], 1);
        (o.status.code().unwrap(), v, o)
    }
}

pub(crate) fn pkg<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

pub(crate) fn status(v: &Value, name: &str) -> String {
    pkg(v, name)["status"].as_str().unwrap().to_owned()
}

/// The entries of a package file, listed by bsdtar in the test base.
fn package_contains(file: &Path, entry: &str) -> bool {
    let o = run_sh(&["--ro-bind", &format!("{}:/p.pkg.tar.zst", file.display())], "bsdtar -tf /p.pkg.tar.zst");
    ok(o).lines().any(|l| l == entry)
}

#[test]
fn a_then_b_with_a_installed_then_c_and_a_second_run_builds_nothing_and_touching_a_rebuilds_all() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b", "c"], 2);

    let (code, v, o) = env.build(&["-j", "2"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    for n in ["a", "b", "c"] {
        assert_eq!(status(&v, n), "built", "{v:#}");
        assert_eq!(pkg(&v, n)["files"].as_array().unwrap().len(), 1);
    }
    // The progress lines show the order: a before b before c.
    let err = stderr(&o);
    let pos = |s: &str| err.find(s).unwrap_or_else(|| panic!("no {s:?} in {err}"));
    assert!(pos("==> a: built") < pos("==> b: started") && pos("==> b: built") < pos("==> c: started"), "{err}");
    let c_file = PathBuf::from(pkg(&v, "c")["files"][0].as_str().unwrap());
    assert!(package_contains(&c_file, "usr/share/c/from-b.txt"), "c was not built with b installed");
    let a_file = PathBuf::from(pkg(&v, "a")["files"][0].as_str().unwrap());
    assert!(package_contains(&a_file, "usr/share/a/remote.txt"));
    // The HTTP source is cached by checksum, the git source mirrored once.
    let sums = std::fs::read_dir(env.dir.join("home/sources/sha256")).unwrap().count();
    assert_eq!(sums, 1);
    assert_eq!(std::fs::read_dir(env.dir.join("home/sources/vcs")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".git")).count(), 1);
    // Build records are there, the tmp dir is clean, fsck is happy.
    let ls = ok(env.run(&["store", "ls", "--json"]));
    let ls: Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 3);
    ok(env.run(&["store", "fsck"]));

    // Second run: nothing to do, and it says why.
    let o = env.run(&["build"]);
    let out = ok(o);
    assert!(out.contains("nothing to build"), "{out}");
    assert!(out.lines().filter(|l| l.starts_with("cached")).count() == 3 && out.contains("is in the store"), "{out}");

    // Touching A's PKGBUILD changes its tree, and (strict dephash) B's and C's pkgids.
    let pb = env.dir.join("pkgs/a/PKGBUILD");
    let text = std::fs::read_to_string(&pb).unwrap() + "\n# touched\n";
    std::fs::write(&pb, text).unwrap();
    let (code, v2, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text_of(&o));
    for n in ["a", "b", "c"] {
        assert_eq!(status(&v2, n), "built", "{v2:#}");
        assert_ne!(pkg(&v, n)["pkgid"], pkg(&v2, n)["pkgid"]);
    }

    // gc drops the three older builds and the two dependency layers (of b
    // and of c) that only they used.
    let out = ok(env.run(&["store", "gc"]));
    assert!(out.contains("3 records") && out.contains("2 dependency layers (") && out.contains("and 0 bases removed"), "{out}");
    assert_eq!(std::fs::read_dir(env.dir.join("home/layers")).unwrap().flatten().filter(|e| e.path().is_dir()).count(), 2);
    ok(env.run(&["store", "fsck"]));
    let out = ok(env.run(&["build"]));
    assert!(out.contains("nothing to build"), "{out}");
}

fn text_of(o: &Output) -> String {
    text(o)
}

#[test]
fn a_build_that_uses_the_network_fails_without_net_and_passes_with_it() {
    let env = Env::new();
    env.config(&["netuser"], 1);
    let (code, v, _) = env.build(&[]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "netuser"), "failed");
    let reason = pkg(&v, "netuser")["reason"].as_str().unwrap();
    assert!(reason.contains("makepkg failed") && reason.contains("curl"), "{reason}");
    let log = pkg(&v, "netuser")["log"].as_str().unwrap();
    assert!(Path::new(log).exists());

    let (code, v, o) = env.build(&["--net"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(status(&v, "netuser"), "built");
}

#[test]
fn checksum_mismatch_failing_build_and_missing_dependency_are_clear_errors_and_others_still_build() {
    let env = Env::new();
    env.git_repo();
    env.config(&["badsum", "failing", "missingdep", "a", "b"], 2);
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 1, "{}", text(&o));
    assert_eq!(status(&v, "a"), "built", "{v:#}");
    assert_eq!(status(&v, "b"), "built", "{v:#}");

    let r = pkg(&v, "badsum")["reason"].as_str().unwrap();
    assert_eq!(status(&v, "badsum"), "failed");
    assert!(r.contains("checksum mismatch for remote.txt") && r.contains("expected 0000") && r.contains("got "), "{r}");
    assert!(!env.dir.join("home/sources/sha256/0000000000000000000000000000000000000000000000000000000000000000").exists());

    let r = pkg(&v, "failing")["reason"].as_str().unwrap();
    assert_eq!(status(&v, "failing"), "failed");
    assert!(r.contains("makepkg failed") && r.contains("this build is meant to fail"), "the log tail is in the error: {r}");

    let r = pkg(&v, "missingdep")["reason"].as_str().unwrap();
    assert_eq!(status(&v, "missingdep"), "failed");
    assert!(r.contains("nothing provides no-such-package"), "{r}");
}

#[test]
fn dependents_of_a_failed_package_are_skipped() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b"], 1);
    // Break A's HTTP source: B needs A, so B is skipped.
    let pb = env.dir.join("pkgs/a/PKGBUILD");
    let text = std::fs::read_to_string(&pb).unwrap().replace("/remote.txt\"", "/gone.txt\"");
    std::fs::write(&pb, text).unwrap();
    let (code, v, _) = env.build(&[]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "a"), "failed");
    assert!(pkg(&v, "a")["reason"].as_str().unwrap().contains("cannot download remote.txt"), "{v:#}");
    assert_eq!(status(&v, "b"), "skipped");
    assert!(pkg(&v, "b")["reason"].as_str().unwrap().contains("needs a"), "{v:#}");
}

#[test]
fn two_build_processes_at_once_build_each_pkgid_once() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b", "slow"], 2);
    let spawn = || env.cmd(&["build", "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (p1, p2) = (spawn(), spawn());
    let (o1, o2) = (p1.wait_with_output().unwrap(), p2.wait_with_output().unwrap());
    assert!(o1.status.success(), "{}", text(&o1));
    assert!(o2.status.success(), "{}", text(&o2));
    let v1: Value = serde_json::from_slice(&o1.stdout).unwrap();
    let v2: Value = serde_json::from_slice(&o2.stdout).unwrap();
    for n in ["a", "b", "slow"] {
        let mut s = [status(&v1, n), status(&v2, n)];
        s.sort();
        assert_eq!(s, ["built".to_owned(), "cached".to_owned()], "{n} built twice or never\n{v1:#}\n{v2:#}");
    }
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn kill_9_during_a_build_leaves_no_process_and_the_next_run_finishes_with_a_clean_store() {
    let env = Env::new();
    env.config(&["killme"], 1);
    let mut child = env.cmd(&["build"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until makepkg runs build(): the sleep is visible.
    let t = Instant::now();
    while processes_with("sleep 3.911").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "the build never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    while !processes_with("sleep 3.911").is_empty() {
        // The sleep had over 3.5 s to go: it must die with pkgcell, not end
        // on its own (2.5 s: teardown on a loaded 2-core machine is slow).
        assert!(t.elapsed() < Duration::from_millis(2500), "left behind: {:?}", processes_with("sleep 3.911"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let home = env.dir.join("home").display().to_string();
    assert!(processes_with(&home).is_empty(), "left behind: {:?}", processes_with(&home));

    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "killme"), "built");
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.join("home/tmp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let out = ok(env.run(&["store", "fsck"]));
    assert!(out.contains("0 bad objects, 0 bad records"), "{out}");
}

#[test]
fn laptop_mode_builds_the_pkgbuild_of_the_current_directory_and_leaves_the_package_there() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let o = output(
        pkgcell()
            .arg("build")
            .current_dir(&dir)
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_BASE_DIR", test_base()),
    );
    let out = ok(o);
    assert!(out.contains("built"), "{out}");
    assert!(dir.join("hello-1.0-1-x86_64.pkg.tar.zst").exists());
    assert!(!dir.join("src").exists() && !dir.join("pkg").exists());
}

#[test]
fn fetch_downloads_into_the_checksum_cache_once() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b"], 1);
    let o = env.run(&["fetch"]);
    let err = stderr(&o);
    let out = ok(o);
    assert!(out.contains("==> a: 1 source fetched") && out.contains("==> b: 1 source fetched"), "{out}");
    let sum = std::fs::read_dir(env.dir.join("home/sources/sha256")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_to_string(sum).unwrap(), "remote file of a\n");
    // Not a terminal: one line as a download starts and one as it ends
    // (with its size), nothing in between.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("remote.txt")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("==> a: downloading remote.txt from http://127.0.0.1:"), "{err}");
    assert_eq!(lines[1], "==> a: downloaded remote.txt (17 B)", "{err}");
    // Cached: nothing to download.
    let o = env.run(&["fetch", "a"]);
    assert!(!stderr(&o).contains("downloading"), "{}", text(&o));
    ok(o);
}

#[test]
fn a_build_over_its_time_limit_fails_and_says_so() {
    let env = Env::new();
    env.pkg("overtime");
    std::fs::write(env.dir.join("pkgcell.toml"), "[build]\ntimeout = \"2s\"\n\n[pkgbuilds]\novertime = { path = \"pkgs/overtime\" }\n").unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 1, "{}", text(&o));
    let r = pkg(&v, "overtime")["reason"].as_str().unwrap();
    assert!(r.contains("makepkg failed (timed out)"), "{r}");
    assert!(processes_with("sleep 30.123").is_empty());
}

#[test]
fn a_pkgbuild_from_a_git_repository_is_built_from_its_commit() {
    let env = Env::new();
    // The PKGBUILD repository: hello in a subdirectory, committed.
    let repo = env.dir.join("pkgrepo");
    copy_fixture("hello", &repo.join("hello"));
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "hello"],
    ] {
        let o = output(Command::new("git").arg("-C").arg(&repo).args(args));
        assert!(o.status.success(), "git {args:?}\n{}", text(&o));
    }
    // Uncommitted changes must not be built.
    std::fs::write(repo.join("hello/PKGBUILD"), "this is not a PKGBUILD").unwrap();
    let cfg = format!("[pkgbuilds]\nhello = {{ url = \"file://{}\", subtree = \"hello\" }}\n", repo.display());
    std::fs::write(env.dir.join("pkgcell.toml"), cfg).unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "hello"), "built");
    let rec = ok(env.run(&["store", "ls", "--json"]));
    let rec: Value = serde_json::from_str(&rec).unwrap();
    let buildinfo = rec["records"][0]["buildinfo"].as_str().unwrap();
    assert!(buildinfo.contains("buildtool = pkgcell") && buildinfo.contains("startdir = /startdir"), "{buildinfo}");
}

#[test]
fn home_binds_keep_a_directory_of_the_build_users_home_between_builds() {
    let env = Env::new();
    env.pkg("homebind");
    let cfg = "[pkgbuilds]\nhomebind = { path = \"pkgs/homebind\", home_binds = [\".cache/counter\"] }\n";
    std::fs::write(env.dir.join("pkgcell.toml"), cfg).unwrap();
    let (code, _, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    let pb = env.dir.join("pkgs/homebind/PKGBUILD");
    std::fs::write(&pb, std::fs::read_to_string(&pb).unwrap() + "# again\n").unwrap();
    let (code, _, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    let runs = std::fs::read_to_string(env.dir.join("home/homes/homebind/.cache/counter/runs")).unwrap();
    assert_eq!(runs, "run\nrun\n");
    // Writable by the build user (a subordinate id), not by everyone: no
    // other local user can plant files in it for a later build.
    use std::os::unix::fs::MetadataExt;
    for dir in ["home/homes/homebind/.cache/counter", "home/homes/homebind/.cache", "home/homes/homebind"] {
        let meta = std::fs::metadata(env.dir.join(dir)).unwrap();
        assert_eq!(meta.mode() & 0o022, 0, "{dir} is group- or world-writable: {:o}", meta.mode());
    }
    let leaf = std::fs::metadata(env.dir.join("home/homes/homebind/.cache/counter")).unwrap();
    assert_ne!(leaf.uid(), std::fs::metadata(env.dir.join("home")).unwrap().uid(), "owned by the build user's id");
}

#[test]
fn a_home_binds_directory_left_world_writable_by_an_older_pkgcell_is_closed_and_still_written() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    env.pkg("homebind");
    let cfg = "[pkgbuilds]\nhomebind = { path = \"pkgs/homebind\", home_binds = [\".cache/counter\"] }\n";
    std::fs::write(env.dir.join("pkgcell.toml"), cfg).unwrap();
    let dir = env.dir.join("home/homes/homebind/.cache/counter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.join("runs"), "old\n").unwrap();
    std::fs::set_permissions(dir.join("runs"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755, "{:o}", meta.mode());
    assert_ne!(meta.uid(), std::fs::metadata(env.dir.join("home")).unwrap().uid());
    assert_eq!(std::fs::read_to_string(dir.join("runs")).unwrap(), "old\nrun\n");
}

#[test]
fn build_tmp_is_bounded_and_tmp_size_in_the_config_sets_it() {
    let env = Env::new();
    env.pkg("tmpfill");
    let entry = "[pkgbuilds]\ntmpfill = { path = \"pkgs/tmpfill\" }\n";
    std::fs::write(env.dir.join("pkgcell.toml"), format!("[build]\ntmp_size = \"64M\"\n\n{entry}")).unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 1, "100M went into a 64M /tmp\n{}", text(&o));
    assert_eq!(status(&v, "tmpfill"), "failed");
    let log = std::fs::read_to_string(pkg(&v, "tmpfill")["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("No space left"), "{log}");
    // The default (1G) takes it.
    std::fs::write(env.dir.join("pkgcell.toml"), entry).unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "tmpfill"), "built");
}

#[test]
fn extra_binds_reach_the_build_read_only_with_capital_d() {
    let env = Env::new();
    env.config(&["readbind"], 1);
    let extra = env.dir.join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("hello.txt"), "hi\n").unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 1, "without the bind the build fails\n{}", text(&o));
    assert_eq!(status(&v, "readbind"), "failed");
    let (code, v, o) = env.build(&["-D", &format!("{}:/extra", extra.display())]);
    assert_eq!(code, 0, "{}", text(&o));
    let file = PathBuf::from(pkg(&v, "readbind")["files"][0].as_str().unwrap());
    assert!(package_contains(&file, "usr/share/readbind/hello.txt"));
}

/// Issue 17: `-d SRC:DST` is writable by the build user, as makechrootpkg's
/// `-d` is: new files, files of the user there, deeper directories. After
/// the run, failed or not, every file in it is the user's again, the
/// directory's mode is what it was, and a symlink the build planted is
/// left a symlink of the user's: its target outside is not touched.
#[test]
fn a_read_write_bind_is_writable_by_the_build_user_and_every_file_in_it_is_the_users_afterwards() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let me = std::fs::metadata(env.dir.path()).unwrap();
    let (uid, gid) = (me.uid(), me.gid());
    let out = env.dir.join("out");
    std::fs::create_dir_all(out.join("olddir")).unwrap();
    std::fs::write(out.join("existing.txt"), "mine\n").unwrap();
    std::fs::write(out.join("olddir/old.txt"), "old\n").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o750)).unwrap();
    let secret = env.dir.join("secret.txt");
    std::fs::write(&secret, "secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pkgbuild = |attempt: u32, fail: &str| {
        let dir = env.dir.join("pkgs/writebind");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("PKGBUILD"),
            format!(
                "# attempt {attempt}\npkgname=writebind\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
                 build() {{\n  test \"$(id -u)\" = 1000\n  echo \"by $(id -u)\" > /out/new-{attempt}.txt\n  \
                 mkdir -p /out/sub-{attempt}/deep\n  echo x > /out/sub-{attempt}/deep/f\n  echo appended >> /out/existing.txt\n  \
                 echo more >> /out/olddir/old.txt\n  ln -sfn {secret} /out/link\n  {fail}\n}}\n\
                 package() {{\n  mkdir -p \"$pkgdir/usr/share/writebind\"\n}}\n",
                secret = secret.display()
            ),
        )
        .unwrap();
        std::fs::write(env.dir.join("pkgcell.toml"), "[pkgbuilds]\nwritebind = { path = \"pkgs/writebind\" }\n").unwrap();
    };
    let check = |attempt: u32| {
        let mut stack = vec![out.clone()];
        let mut seen = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                assert_eq!((m.uid(), m.gid()), (uid, gid), "{} after attempt {attempt}", e.path().display());
                seen += 1;
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        assert!(seen >= 8, "{seen} files");
        let m = std::fs::symlink_metadata(&out).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o750), "the directory itself");
        assert_eq!(std::fs::read_link(out.join("link")).unwrap(), secret);
        let s = std::fs::metadata(&secret).unwrap();
        assert_eq!((s.uid(), s.mode() & 0o7777), (uid, 0o600), "the link's target is untouched");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret\n");
        assert_eq!(std::fs::read_to_string(out.join(format!("new-{attempt}.txt"))).unwrap(), "by 1000\n");
    };
    let bind = format!("{}:/out", out.display());

    pkgbuild(1, ":");
    let (code, v, o) = env.build(&["-d", &bind]);
    assert_eq!((code, status(&v, "writebind").as_str()), (0, "built"), "{}", text(&o));
    check(1);
    assert_eq!(std::fs::read_to_string(out.join("existing.txt")).unwrap(), "mine\nappended\n");

    // A failed build gives it back too; the files the first build made
    // (the user's now) are the build user's again while it runs.
    pkgbuild(2, "echo failing on purpose; false");
    let (code, v, o) = env.build(&["-d", &bind]);
    assert_eq!((code, status(&v, "writebind").as_str()), (1, "failed"), "{}", text(&o));
    check(2);
    assert_eq!(std::fs::read_to_string(out.join("olddir/old.txt")).unwrap(), "old\nmore\nmore\n");
    // Nothing is left marked as lent.
    let lent: Vec<String> = std::fs::read_dir(env.dir.join("home/lent"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(lent.is_empty(), "{lent:?}");
}

/// A run killed while a `-d` directory is lent leaves it to the build user
/// (a subordinate id outside); the next `pkgcell build`, even one without
/// `-d`, gives it back first.
#[test]
fn a_read_write_bind_left_lent_by_a_killed_run_is_given_back_by_the_next_build() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let uid = std::fs::metadata(env.dir.path()).unwrap().uid();
    let out = env.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "mine\n").unwrap();
    let dir = env.dir.join("pkgs/sleepy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        "pkgname=sleepy\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
         build() {\n  if [ -d /out ]; then echo made > /out/made.txt; sleep 7.421; fi\n}\npackage() {\n  :\n}\n",
    )
    .unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), "[pkgbuilds]\nsleepy = { path = \"pkgs/sleepy\" }\n").unwrap();
    let mut run = env.cmd(&["build", "-d", &format!("{}:/out", out.display())]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while processes_with("sleep 7.421").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(90), "the build never reached build()");
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let owner = |name: &str| std::fs::symlink_metadata(out.join(name)).unwrap().uid();
    assert_ne!(owner("mine.txt"), uid, "lent while the build ran");
    assert_ne!(owner("made.txt"), uid);
    // The next build gives it back, also one without -d.
    let o = env.run(&["build"]);
    assert!(o.status.success(), "{}", text(&o));
    for name in [".", "mine.txt", "made.txt"] {
        assert_eq!(owner(name), uid, "{name}\n{}", text(&o));
    }
}

#[test]
fn without_a_base_dir_the_configs_base_is_made_and_a_b_c_build_on_it() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b", "c"], 2);
    let cfg = std::fs::read_to_string(env.dir.join("pkgcell.toml")).unwrap();
    let cfg = format!("[base]\nsource = \"tarball\"\ntarball = \"{}\"\n\n{cfg}", crate::base::test_base_tarball().display());
    std::fs::write(env.dir.join("pkgcell.toml"), cfg).unwrap();
    let mut c = env.cmd(&["build", "--json"]);
    c.env_remove("PKGCELL_BASE_DIR");
    let o = output(&mut c);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for n in ["a", "b", "c"] {
        assert_eq!(status(&v, n), "built", "{v:#}");
    }
    // The records name the managed base.
    let ls: Value = serde_json::from_str(&ok(env.run(&["store", "ls", "--json"]))).unwrap();
    let bases = ok(env.run(&["base", "list", "--json"]));
    let base_id = ls["records"][0]["base_id"].as_str().unwrap().to_owned();
    assert!(bases.contains(&base_id), "{base_id} not in {bases}");
}

#[test]
fn laptop_mode_takes_the_base_from_the_users_defaults() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let xdg = d.join("xdg");
    std::fs::create_dir_all(xdg.join("pkgcell")).unwrap();
    let defaults = format!("[base]\nsource = \"tarball\"\ntarball = \"{}\"\n", crate::base::test_base_tarball().display());
    std::fs::write(xdg.join("pkgcell/config.toml"), defaults).unwrap();
    let o = output(
        pkgcell()
            .arg("build")
            .current_dir(&dir)
            .env("PKGCELL_HOME", d.join("home"))
            .env("XDG_CONFIG_HOME", &xdg)
            .env_remove("PKGCELL_BASE_DIR"),
    );
    let out = ok(o);
    assert!(out.contains("1 built"), "{out}");
    assert!(dir.join("hello-1.0-1-x86_64.pkg.tar.zst").exists());

    // Issue 17: srcinfo in the same directory takes the same base (no second one).
    let run = |args: &[&str], xdg: &Path| {
        output(
            pkgcell()
                .args(args)
                .current_dir(&dir)
                .env("PKGCELL_HOME", d.join("home"))
                .env("XDG_CONFIG_HOME", xdg)
                .env_remove("PKGCELL_BASE_DIR"),
        )
    };
    assert!(ok(run(&["srcinfo"], &xdg)).contains("pkgname = hello"));
    let listed: Value = serde_json::from_str(&ok(run(&["base", "list", "--json"], &xdg))).unwrap();
    assert_eq!(listed["bases"].as_array().unwrap().len(), 1, "{listed:#}");

    // A base the defaults cannot make, or no defaults at all: the error
    // names the file to write, for build and srcinfo alike.
    let file = xdg.join("pkgcell/config.toml");
    std::fs::write(&file, "[base]\nsource = \"tarball\"\ntarball = \"/nonexistent.tar\"\n").unwrap();
    let none = d.join("none");
    for (xdg, named) in [(&xdg, file.clone()), (&none, none.join("pkgcell/config.toml"))] {
        for cmd in [&["build"][..], &["srcinfo"]] {
            let o = run(cmd, xdg);
            assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", text(&o));
            assert!(stderr(&o).contains(&named.display().to_string()), "{cmd:?}: {}", text(&o));
        }
    }
}

#[test]
fn independent_packages_build_at_the_same_time_with_j_2() {
    let env = Env::new();
    env.config(&["slow", "slow2"], 1);
    let (code, v, o) = env.build(&["-j", "2"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "slow"), "built");
    assert_eq!(status(&v, "slow2"), "built");
    let err = stderr(&o);
    let first_built = err.find(": built").unwrap();
    assert!(err.find("==> slow: started").unwrap() < first_built && err.find("==> slow2: started").unwrap() < first_built, "{err}");
}

#[test]
fn naming_packages_builds_them_and_what_they_need_only() {
    let env = Env::new();
    env.git_repo();
    env.config(&["a", "b", "netuser"], 2);
    let (code, v, o) = env.build(&["b"]);
    assert_eq!(code, 0, "{}", text(&o));
    let names: Vec<&str> = v["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    let o = env.run(&["build", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("no [pkgbuilds] entry named nosuch"), "{}", text(&o));
}

/// The whole pipeline: build A and B (B depends on A), `pkgcell publish`
/// the store's builds as the config's repository, and real pacman installs
/// B with its dependency A from it (issue 3: publish from the store).
#[test]
fn built_packages_are_published_from_the_store_and_pacman_installs_them() {
    let e = Env::new();
    e.git_repo();
    e.config(&["a", "b"], 2);
    let (code, v, o) = e.build(&[]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));

    // plan now says they are built (their pkgids are in the store).
    let o = e.run(&["plan", "--json", "--offline"]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    assert!(plan["packages"].as_array().unwrap().iter().all(|p| p["built"] == true), "{plan:#}");
    let table = stdout(&e.run(&["plan", "--offline"]));
    assert_eq!(table.matches("built (in the store)").count(), 2, "{table}");

    let o = e.run(&["publish", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let arch_dir = e.dir.join("repo/x86_64");
    for f in ["pkgcell.db", "pkgcell.db.tar.zst", "pkgcell.files", "a-1.0-1-any.pkg.tar.zst", "b-1.0-1-any.pkg.tar.zst"] {
        assert!(arch_dir.join(f).is_file(), "{f} missing; report {report:#}");
    }

    // Package files are readable by a web server running as another user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(arch_dir.join("a-1.0-1-any.pkg.tar.zst")).unwrap().permissions().mode();
    assert_eq!(mode & 0o444, 0o444, "mode {mode:o}");

    // A second publish with nothing new builds nothing and changes nothing.
    let o = e.run(&["publish", "--json"]);
    assert!(o.status.success(), "{}", text(&o));

    // pacman, rootless, as a client of the published repository.
    let client = e.dir.join("client");
    let server = format!("file://{}", arch_dir.display());
    let pacman = |args: &[&str]| ok(pacman_client(&client, "pkgcell", &server, args));
    pacman(&["-Sy"]);
    pacman(&["-S", "b"]);
    let q = pacman(&["-Q"]);
    assert!(q.contains("a 1.0-1") && q.contains("b 1.0-1"), "{q}");
    assert!(client.join("root/usr/share/b/content.txt").is_file());

    // Without a build in the store, publish says what to do.
    let other = TestDir::new();
    std::fs::write(other.join("pkgcell.toml"), "[pkgbuilds]\nnone = { path = \"x\" }\n").unwrap();
    let o = output(pkgcell().arg("publish").current_dir(other.path()).env("PKGCELL_HOME", other.join("home")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("run `pkgcell build` first"), "{}", text(&o));
}

/// `pkgcell build --json ARGS` in a laptop directory: exit code, the parsed
/// object and the output.
fn laptop_build(d: &TestDir, dir: &Path, args: &[&str]) -> (i32, Value, Output) {
    let o = output(
        pkgcell()
            .arg("build")
            .arg("--json")
            .args(args)
            .current_dir(dir)
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_BASE_DIR", test_base()),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    (o.status.code().unwrap(), v, o)
}

/// Remove the package files a laptop build left next to the PKGBUILD, so the
/// next run sees the same tree.
fn remove_packages(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains(".pkg.tar") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

/// The major version N of the test base's `debian-toolchain-N-1`, its
/// Debian release (scripts/test-base-customize).
fn base_toolchain_major() -> u32 {
    let local = test_base().join("var/lib/pacman/local");
    std::fs::read_dir(&local)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("debian-toolchain-")?.strip_suffix("-1")?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no debian-toolchain-N-1 in {}", local.display()))
}

/// (tree-id, dephash) of a pkgid `<pkgbase>-<tree-id>-<dephash>`.
fn pkgid_parts(id: &str) -> (String, String) {
    let mut it = id.rsplitn(3, '-');
    let dephash = it.next().unwrap().to_owned();
    (it.next().unwrap().to_owned(), dephash)
}

#[test]
fn a_layer_that_replaces_a_base_package_lets_makepkg_check_the_dependencies_again() {
    use crate::pkgutil::{TestPackage, makepkg};
    // The plan resolves `debian-toolchain<N+1` to the base's N-1 (N is the
    // base's Debian release); the -I file then replaces it with N+1-1 in
    // the layer. makepkg must not be told --nodeps then: the build has to
    // fail on the unmet dependency instead of building against the wrong
    // version.
    let major = base_toolchain_major();
    let next = (major + 1).to_string();
    let d = TestDir::new();
    let newer = makepkg(&TestPackage { pkgver: &next, ..TestPackage::new("debian-toolchain") }, &d.join("work"), &d.join("out"));
    let newer = newer.display().to_string();
    let dir = d.join("oldtoolchain");
    std::fs::create_dir_all(&dir).unwrap();
    let wanted = format!("debian-toolchain<{next}");
    std::fs::write(
        dir.join("PKGBUILD"),
        format!(
            "pkgname=oldtoolchain\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\ndepends=('{wanted}')\n\
             package() {{ mkdir -p \"$pkgdir/usr/share/oldtoolchain\"; }}\n"
        ),
    )
    .unwrap();

    let (code, v, o) = laptop_build(&d, &dir, &["-I", &newer]);
    assert_eq!(code, 1, "{}", text(&o));
    let p = &v["packages"][0];
    assert_eq!(p["status"], "failed", "{v:#}");
    let log = std::fs::read_to_string(p["log"].as_str().expect("a log")).unwrap();
    assert!(log.contains(&wanted), "makepkg did not name the unmet dependency:\n{log}");

    // Without the replacement the same PKGBUILD builds (with --nodeps).
    let (code, v, o) = laptop_build(&d, &dir, &[]);
    assert_eq!(code, 0, "{}", text(&o));
    let log = std::fs::read_to_string(v["packages"][0]["log"].as_str().expect("a log")).unwrap();
    assert!(log.contains("Skipping dependency checks"), "{log}");
}

#[test]
fn install_flag_puts_a_local_package_into_the_build_and_its_hash_into_the_pkgid_and_layer() {
    use crate::pkgutil::{TestPackage, makepkg};
    let d = TestDir::new();
    let dir = d.join("needslocal");
    copy_fixture("build/needslocal", &dir);
    let one = makepkg(&TestPackage::new("localdep"), &d.join("work"), &d.join("out"));
    let two = makepkg(&TestPackage { pkgrel: 2, ..TestPackage::new("localdep") }, &d.join("work"), &d.join("out"));
    let (one, two) = (one.display().to_string(), two.display().to_string());

    // Without -I nothing provides localdep.
    let (code, v, o) = laptop_build(&d, &dir, &[]);
    assert_eq!(code, 1, "{}", text(&o));
    let p = &v["packages"][0];
    assert_eq!(p["status"], "failed", "{v:#}");
    assert!(p["reason"].as_str().unwrap().contains("nothing provides localdep"), "{v:#}");

    // With -I it is installed before the build: build() reads its files.
    let (code, v, o) = laptop_build(&d, &dir, &["-I", &one]);
    assert_eq!(code, 0, "{}", text(&o));
    let first = v["packages"][0].clone();
    assert_eq!(first["status"], "built", "{v:#}");
    let log = std::fs::read_to_string(first["log"].as_str().unwrap()).unwrap();
    assert!(log.lines().any(|l| l == "1.0-1"), "build() did not see localdep 1.0-1:\n{log}");
    // The layer only adds packages: pkgcell's own check stands for makepkg's.
    assert!(log.contains("Skipping dependency checks"), "{log}");
    assert_eq!(first["layer"]["made"], true, "{v:#}");
    remove_packages(&dir);

    // Another file: the same tree, another dephash, another layer.
    let (code, v, o) = laptop_build(&d, &dir, &["--install", &two]);
    assert_eq!(code, 0, "{}", text(&o));
    let second = v["packages"][0].clone();
    assert_eq!(second["status"], "built", "{v:#}");
    let log = std::fs::read_to_string(second["log"].as_str().unwrap()).unwrap();
    assert!(log.lines().any(|l| l == "1.0-2"), "build() did not see localdep 1.0-2:\n{log}");
    let (t1, h1) = pkgid_parts(first["pkgid"].as_str().unwrap());
    let (t2, h2) = pkgid_parts(second["pkgid"].as_str().unwrap());
    assert_eq!(t1, t2, "the tree did not change");
    assert_ne!(h1, h2, "another -I file must give another dephash");
    assert_ne!(first["layer"]["key"], second["layer"]["key"]);
    remove_packages(&dir);

    // The first file again: its pkgid is in the store.
    let (code, v, o) = laptop_build(&d, &dir, &["-I", &one]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["packages"][0]["status"], "cached", "{v:#}");
    assert_eq!(v["packages"][0]["pkgid"], first["pkgid"]);

    // A missing file and a file that is not a package: usage errors, before anything starts.
    let run = |file: &str| {
        output(
            pkgcell()
                .args(["build", "-I", file])
                .current_dir(&dir)
                .env("PKGCELL_HOME", d.join("home"))
                .env("PKGCELL_BASE_DIR", test_base()),
        )
    };
    let o = run("gone-1.0-1-x86_64.pkg.tar.zst");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("cannot read the package file") && stderr(&o).contains("gone-1.0-1"), "{}", text(&o));
    assert!(!stderr(&o).contains("planning"), "it started: {}", text(&o));
    let notes = d.join("notes-1.0-1-x86_64.pkg.tar.zst");
    std::fs::write(&notes, "not a package\n").unwrap();
    let o = run(&notes.display().to_string());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("is not a pacman package"), "{}", text(&o));
}

/// The inode of a dependency layer's upper directory.
fn layer_inode(env: &Env, key: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(env.dir.join("home/layers").join(key).join("upper")).unwrap().ino()
}

/// Layers moved aside by -c, waiting for `store gc`.
fn old_layers(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.join("home/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".old-"))
        .collect()
}

/// Change a package's tree (a comment in its PKGBUILD), so its pkgid is new.
fn touch_tree(env: &Env, name: &str, n: u32) {
    let pb = env.dir.join("pkgs").join(name).join("PKGBUILD");
    let mut text = std::fs::read_to_string(&pb).unwrap();
    text.push_str(&format!("# change {n}\n"));
    std::fs::write(&pb, text).unwrap();
}

#[test]
fn clean_flag_makes_a_fresh_dependency_layer_that_later_builds_reuse_while_a_running_build_keeps_the_old_one() {
    let env = Env::new();
    env.config(&["a", "holda", "usesa"], 1);
    let (code, v, o) = env.build(&["a", "usesa"]);
    assert_eq!(code, 0, "{}", text(&o));
    let layer = pkg(&v, "usesa")["layer"].clone();
    assert_eq!(layer["made"], true, "{v:#}");
    let key = layer["key"].as_str().unwrap().to_owned();
    let first = layer_inode(&env, &key);

    // Without -c the cached layer is reused.
    touch_tree(&env, "usesa", 1);
    let (code, v, o) = env.build(&["usesa"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "usesa"), "built");
    assert_eq!(pkg(&v, "usesa")["layer"], serde_json::json!({"key": key, "made": false}));
    assert_eq!(layer_inode(&env, &key), first);

    // holda runs on the cached layer (it sleeps, then reads from it) while
    // -c makes a fresh one and swaps it in.
    let hold = env.dir.join("hold");
    std::fs::create_dir(&hold).unwrap();
    let bind = format!("{}:/hold", hold.display());
    let mut holder = env
        .cmd(&["build", "--json", "-D", &bind, "holda"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while processes_with("sleep 0.1317").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(90), "holda never reached build()");
        std::thread::sleep(Duration::from_millis(50));
    }
    touch_tree(&env, "usesa", 2);
    let (code, v, o) = env.build(&["-c", "usesa"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(pkg(&v, "usesa")["layer"], serde_json::json!({"key": key, "made": true}));
    let fresh = layer_inode(&env, &key);
    assert_ne!(fresh, first, "-c did not make a new layer");
    let pkgid = pkg(&v, "usesa")["pkgid"].as_str().unwrap().to_owned();
    let short = pkgid.rsplitn(3, '-').take(2).map(|h| &h[..12]).collect::<Vec<_>>();
    let deps_log = std::fs::read_to_string(env.dir.join("home/logs/usesa").join(format!("usesa-1.0-1-{}-{}.deps.log", short[1], short[0]))).unwrap();
    assert!(deps_log.contains("made afresh (-c)"), "{deps_log}");
    assert_eq!(old_layers(&env).len(), 1, "the old layer is kept for running builds");
    assert!(holder.try_wait().unwrap().is_none(), "holda finished before the swap: the test proves nothing");
    std::fs::write(hold.join("release"), "").unwrap();
    let o = holder.wait_with_output().unwrap();
    assert!(o.status.success(), "the build on the old layer broke\n{}", text(&o));
    let hv: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pkg(&hv, "holda")["layer"], serde_json::json!({"key": key, "made": false}));

    // Later builds reuse the fresh layer; gc removes the old one.
    touch_tree(&env, "usesa", 3);
    let (code, v, o) = env.build(&["usesa"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(pkg(&v, "usesa")["layer"]["made"], false);
    assert_eq!(layer_inode(&env, &key), fresh);
    ok(env.run(&["store", "gc"]));
    assert!(old_layers(&env).is_empty(), "{:?}", old_layers(&env));
    assert_eq!(layer_inode(&env, &key), fresh);

    // Two builds of one -c run with the same set: the layer is made once.
    touch_tree(&env, "usesa", 4);
    touch_tree(&env, "holda", 4);
    let (code, v, o) = env.build(&["-c", "-D", &bind, "usesa", "holda"]);
    assert_eq!(code, 0, "{}", text(&o));
    let made: Vec<&Value> = ["usesa", "holda"].iter().map(|n| &pkg(&v, n)["layer"]["made"]).collect();
    assert!(made.contains(&&Value::Bool(true)) && made.contains(&&Value::Bool(false)), "{v:#}");
    assert_ne!(layer_inode(&env, &key), fresh);
}

#[test]
fn a_build_over_the_memory_limit_fails_and_names_the_limit_and_peak_memory_is_recorded() {
    let env = Env::new();
    env.pkg("a");
    env.pkg("bigalloc");
    std::fs::write(
        env.dir.join("pkgcell.toml"),
        "[build]\nmemory = \"256M\"\n\n[pkgbuilds]\na = { path = \"pkgs/a\" }\nbigalloc = { path = \"pkgs/bigalloc\" }\n",
    )
    .unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 1, "{}", text(&o));
    assert_eq!(status(&v, "bigalloc"), "failed", "{v:#}");
    let r = pkg(&v, "bigalloc")["reason"].as_str().unwrap();
    assert!(r.contains("memory limit of 256M per process") && r.contains("--memory"), "{r}");
    assert!(r.contains("memory exhausted"), "the log tail shows dd's error: {r}");

    // Under the limit a build works, and its peak memory is reported and recorded.
    assert_eq!(status(&v, "a"), "built", "{v:#}");
    let peak = pkg(&v, "a")["peak_memory_kib"].as_u64().unwrap();
    assert!(peak > 100 && peak < 256 * 1024, "{peak}");
    let ls: Value = serde_json::from_str(&ok(env.run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"][0]["peak_memory_kib"].as_u64(), Some(peak));
    // makepkg's own time, timed inside the sandbox, is part of the sandbox's.
    let t = &ls["records"][0]["timings"];
    let (whole, run) = (t["makepkg"].as_f64().unwrap(), t["makepkg_run"].as_f64().unwrap());
    assert!(run > 0.0 && run <= whole, "{t}");

    // --memory overrides the config: with room enough, bigalloc gets past dd.
    let (_, v, o) = env.build(&["--memory", "2G", "bigalloc"]);
    assert_eq!(status(&v, "bigalloc"), "built", "{}", text(&o));
}

#[test]
fn a_fork_bomb_over_the_pids_limit_fails_names_the_limit_and_does_not_touch_other_sandboxes() {
    let env = Env::new();
    env.config(&["forkbomb"], 1);
    let bomb = env.cmd(&["build", "--json", "--pids", "32"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t = Instant::now();
    while processes_with("sleep 21.377").len() < 20 {
        assert!(t.elapsed() < Duration::from_secs(90), "the fork bomb never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // While it holds all it may have, another sandbox of the same build user
    // (the same ids outside) with the same limit starts 25 processes at once:
    // the kernel counts them per sandbox (user namespace), not per user.
    let o = run_sh(
        &["--uid", "1000", "--gid", "1000", "--rlimit", "nproc=32"],
        "i=0; while [ $i -lt 25 ]; do sleep 1.5 & i=$((i+1)); done; wait; echo started 25",
    );
    assert!(ok(o).contains("started 25"));
    let held = processes_with("sleep 21.377").len();
    assert!((20..32).contains(&held), "the bomb held {held} processes meanwhile");

    let o = bomb.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = pkg(&v, "forkbomb")["reason"].as_str().unwrap();
    assert!(r.contains("process limit of 32") && r.contains("--pids"), "{r}");
    assert!(processes_with("sleep 21.377").is_empty(), "left behind: {:?}", processes_with("sleep 21.377"));
}

#[test]
fn bad_limits_are_errors_naming_the_line_or_the_flag() {
    let env = Env::new();
    env.pkg("a");
    std::fs::write(env.dir.join("pkgcell.toml"), "[build]\njobs = 1\nmemory = \"lots\"\n\n[pkgbuilds]\na = { path = \"pkgs/a\" }\n").unwrap();
    let o = env.run(&["build"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pkgcell.toml:3: memory \"lots\": not a size"), "{}", text(&o));

    std::fs::write(env.dir.join("pkgcell.toml"), "[build]\npids = 2\n\n[pkgbuilds]\na = { path = \"pkgs/a\" }\n").unwrap();
    let o = env.run(&["build"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pkgcell.toml:2: pids = 2: must be at least 16"), "{}", text(&o));

    std::fs::write(env.dir.join("pkgcell.toml"), "[pkgbuilds]\na = { path = \"pkgs/a\" }\n").unwrap();
    for (flag, value, says) in [("--memory", "lots", "not a size"), ("--pids", "0", "at least 16")] {
        let o = env.run(&["build", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(stderr(&o).contains(says), "{}", text(&o));
    }
}

#[test]
fn with_a_config_install_files_go_into_every_package_of_the_run() {
    use crate::pkgutil::{TestPackage, makepkg};
    let env = Env::new();
    env.config(&["a", "needslocal"], 1);
    let file = makepkg(&TestPackage::new("localdep"), &env.dir.join("work"), &env.dir.join("out")).display().to_string();
    let (code, v, o) = env.build(&["a"]);
    assert_eq!(code, 0, "{}", text(&o));
    let without = pkg(&v, "a")["pkgid"].as_str().unwrap().to_owned();

    let (code, v, o) = env.build(&["-I", &file]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "needslocal"), "built", "{v:#}");
    // a needs nothing, yet the file is installed into its build too: another pkgid.
    assert_eq!(status(&v, "a"), "built", "{v:#}");
    assert_ne!(pkg(&v, "a")["pkgid"].as_str().unwrap(), without);
    let ls: Value = serde_json::from_str(&ok(env.run(&["store", "ls", "--json"]))).unwrap();
    let with_local = ls["records"].as_array().unwrap().iter().filter(|r| r["local"][0].as_str().is_some_and(|l| l.starts_with("localdep-1.0-1-x86_64.pkg.tar.zst "))).count();
    assert_eq!(with_local, 2, "{ls:#}");
}

/// Issue 15: `arch=(x86_64 aarch64)` with per-architecture arrays builds
/// with the x86_64 ones (the aarch64 ones name packages nobody provides
/// here); `arch=(aarch64)` alone is left out of a repository, not an error of
/// the whole run, and in laptop mode it is a clear failure.
#[test]
fn multi_architecture_pkgbuilds_build_with_their_arrays_for_the_repos_arch_and_others_are_left_out() {
    let env = Env::new();
    env.config(&["multiarch", "armonly", "a"], 1);
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v, "multiarch"), "built", "{v:#}");
    assert_eq!(status(&v, "a"), "built");
    assert_eq!(status(&v, "armonly"), "not_for_arch");
    let reason = pkg(&v, "armonly")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("not built for x86_64 (arch = aarch64)"), "{reason}");
    let file = env.dir.join("out.pkg.tar.zst");
    std::fs::copy(pkg(&v, "multiarch")["files"][0].as_str().unwrap(), &file).unwrap();
    assert!(package_contains(&file, "usr/share/multiarch/which.txt"));

    // The plan shows it, and is not a failure.
    let o = env.run(&["plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("not for x86_64 (arch = aarch64)"), "{}", text(&o));

    // Laptop mode: the one PKGBUILD asked for cannot be built here.
    let d = TestDir::new();
    let dir = d.join("armonly");
    copy_fixture("build/armonly", &dir);
    let (code, v, o) = laptop_build(&d, &dir, &[]);
    assert_eq!(code, 1, "{}", text(&o));
    assert_eq!(v["packages"][0]["status"], "not_for_arch", "{v:#}");
}

/// Issue 15: a base whose pacman.conf requires signatures on local package
/// files (as pacman 7.1 configs may) still takes pkgcell's unsigned `-I`
/// files into a dependency layer: the layer's pacman.conf trusts what
/// pkgcell checked by hash itself, and the base's own file is unchanged.
#[test]
fn a_base_that_requires_local_file_signatures_still_installs_checked_dependencies() {
    use crate::pkgutil::{TestPackage, makepkg};
    let d = TestDir::new();
    let script = d.join("make-base.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\nmkdir -p \"$PKGCELL_BASE_OUT.d\"\ntar --zstd -xf {tarball} -C \"$PKGCELL_BASE_OUT.d\" 2>/dev/null || true\n\
             sed -i 's/^\\[options\\]$/[options]\\nLocalFileSigLevel = Required/' \"$PKGCELL_BASE_OUT.d/etc/pacman.conf\"\n\
             grep -q '^LocalFileSigLevel = Required' \"$PKGCELL_BASE_OUT.d/etc/pacman.conf\"\n\
             tar --zstd -C \"$PKGCELL_BASE_OUT.d\" -cf \"$PKGCELL_BASE_OUT\" .\n",
            tarball = crate::base::test_base_tarball().display(),
        ),
    )
    .unwrap();
    let dir = d.join("pkgs/needslocal");
    copy_fixture("build/needslocal", &dir);
    std::fs::write(
        d.join("pkgcell.toml"),
        format!("[base]\nsource = \"command\"\ncommand = \"sh {}\"\n\n[pkgbuilds]\nneedslocal = {{ path = \"pkgs/needslocal\" }}\n", script.display()),
    )
    .unwrap();
    let local = makepkg(&TestPackage::new("localdep"), &d.join("work"), &d.join("out"));
    let o = output(pkgcell().args(["build", "--json", "-I"]).arg(&local).current_dir(d.path()).env("PKGCELL_HOME", d.join("home")));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["packages"][0]["status"], "built", "{}", text(&o));
    // The base still requires them: only the layer's config trusts pkgcell's checks.
    let bases = d.join("home/bases");
    let base = std::fs::read_dir(&bases).unwrap().flatten().find(|e| !e.file_name().to_string_lossy().starts_with('.')).unwrap();
    let conf = std::fs::read_to_string(base.path().join("root/etc/pacman.conf")).unwrap();
    let set: Vec<&str> = conf.lines().filter(|l| l.starts_with("LocalFileSigLevel")).collect();
    assert_eq!(set, ["LocalFileSigLevel = Required"], "{conf}");
}

/// Issue 17: makepkg flags after `--` reach makepkg (a failing check() is
/// skipped with --nocheck); flags that would leave no package are refused
/// before anything runs; `-f` builds a stored pkgid again and its record
/// replaces the stored one.
#[test]
fn makepkg_flags_after_double_dash_reach_makepkg_and_force_rebuilds_a_stored_pkgid() {
    let d = TestDir::new();
    let dir = d.join("checkfails");
    copy_fixture("build/checkfails", &dir);
    let (code, v, o) = laptop_build(&d, &dir, &[]);
    assert_eq!(code, 1, "{}", text(&o));
    assert!(v["packages"][0]["reason"].as_str().unwrap().contains("the test suite fails"), "{v:#}");

    let (code, v, o) = laptop_build(&d, &dir, &["--", "--nocheck"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["packages"][0]["status"], "built", "{v:#}");
    let log = std::fs::read_to_string(v["packages"][0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("makepkg flags: --nocheck"), "{log}");
    assert!(!log.contains("the test suite fails"), "{log}");
    let pkgid = v["packages"][0]["pkgid"].as_str().unwrap().to_owned();
    remove_packages(&dir);

    // Stored: the flags do not build it again, -f does.
    let (code, v, o) = laptop_build(&d, &dir, &["--", "--nocheck"]);
    assert_eq!((code, v["packages"][0]["status"].as_str()), (0, Some("cached")), "{}", text(&o));
    remove_packages(&dir);
    let (code, v, o) = laptop_build(&d, &dir, &["-f", "--", "--nocheck"]);
    assert_eq!((code, v["packages"][0]["status"].as_str()), (0, Some("built")), "{}", text(&o));
    assert_eq!(v["packages"][0]["pkgid"], pkgid.as_str());
    remove_packages(&dir);
    let ls = ok(output(pkgcell().args(["store", "ls", "--json"]).env("PKGCELL_HOME", d.join("home"))));
    assert_eq!(ls.matches(&pkgid).count(), 1, "one record per pkgid: {ls}");

    // Flags that would leave no package, or that are not makepkg's: exit 2, nothing runs.
    for bad in ["--nobuild", "-o", "--install", "--config=/x", "hello"] {
        let o = output(
            pkgcell().args(["build", "--", bad]).current_dir(&dir).env("PKGCELL_HOME", d.join("home")).env("PKGCELL_BASE_DIR", test_base()),
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(stderr(&o).contains(&format!("makepkg flag \"{bad}\"")) && stderr(&o).contains("--nocheck"), "{}", text(&o));
    }
}

/// Issue 17: laptop mode honours the packager's makepkg.conf as makepkg and
/// makechrootpkg do: PACKAGER goes into the package, PKGDEST and LOGDEST
/// get the package and a copy of the log, BUILDENV's `sign` with GPGKEY
/// signs it; `pkgcell repro` of that package reproduces it (the recorded
/// packager is used again).
#[test]
fn laptop_mode_honours_packager_pkgdest_logdest_and_signing_from_makepkg_conf() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let home = d.join("userhome");
    let gnupg = d.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| output(Command::new("gpg").arg("--batch").args(args).env("GNUPGHOME", &gnupg));
    let o = gpg(&["--passphrase", "", "--quick-gen-key", "Packager <p@example.org>", "ed25519", "sign", "never"]);
    assert!(o.status.success(), "{}", text(&o));
    let (pkgdest, logdest) = (d.join("pkgdest"), d.join("logdest"));
    std::fs::write(
        home.join(".makepkg.conf"),
        format!(
            "PACKAGER='Jane Doe <jane@example.org>'\nPKGDEST={}\nLOGDEST={}\nBUILDENV+=(sign)\nGPGKEY=p@example.org\n",
            pkgdest.display(),
            logdest.display()
        ),
    )
    .unwrap();
    let o = output(
        pkgcell()
            .args(["build", "--json"])
            .current_dir(&dir)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env("GNUPGHOME", &gnupg)
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_BASE_DIR", test_base()),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["packages"][0]["status"], "built", "{}", text(&o));
    let file = pkgdest.join("hello-1.0-1-x86_64.pkg.tar.zst");
    assert_eq!(v["packages"][0]["files"][0], file.display().to_string());
    assert!(!dir.join("hello-1.0-1-x86_64.pkg.tar.zst").exists(), "PKGDEST, not beside the PKGBUILD");
    let o = gpg(&["--verify", &format!("{}.sig", file.display()), file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let pkginfo = run_sh(&["--ro-bind", &format!("{}:/p.pkg.tar.zst", file.display())], "bsdtar -xOf /p.pkg.tar.zst .PKGINFO");
    assert!(ok(pkginfo).contains("packager = Jane Doe <jane@example.org>"));
    let logs: Vec<_> = std::fs::read_dir(&logdest).unwrap().flatten().collect();
    assert_eq!(logs.len(), 1, "{logs:?}");

    // repro rebuilds with the recorded packager (else .PKGINFO would differ).
    let o = output(
        pkgcell()
            .args(["repro"])
            .arg(&file)
            .current_dir(&dir)
            .env("HOME", d.join("elsewhere"))
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_BASE_DIR", test_base()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `pkgcell ARGS` in `dir` under a pseudo-terminal (util-linux `script`):
/// everything the terminal received.
fn on_a_terminal(d: &TestDir, dir: &Path, args: &str, env: &[(&str, &str)]) -> String {
    let cmd = format!("{} {args}", pkgcell_bin().display());
    let o = output(
        Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(dir)
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_BASE_DIR", test_base())
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", text(&o));
    out
}

/// Whether `s` has an SGR (colour) sequence: ESC [ digits/semicolons m.
fn has_colour(s: &str) -> bool {
    s.match_indices("\x1b[").any(|(i, m)| {
        let rest = &s[i + m.len()..];
        let params = rest.find(|c: char| !c.is_ascii_digit() && c != ';').unwrap_or(rest.len());
        rest[params..].starts_with('m')
    })
}

/// Issue 17: on a terminal a build draws a spinner per running build with
/// its step and running time (not the plain `==> NAME: step` lines), and
/// the counts; `NO_COLOR` turns every colour off.
#[test]
fn on_a_terminal_a_build_draws_its_progress_and_no_color_turns_colours_off() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let out = on_a_terminal(&d, &dir, "build -q -f", &[]);
    assert!(out.contains("hello\x1b[0m: makepkg") && out.contains("1 running"), "{out:?}");
    assert!(has_colour(&out), "colours on a terminal without NO_COLOR: {out:?}");
    assert!(out.contains("==> hello: built in ") && !out.contains("==> hello: started"), "{out:?}");
    remove_packages(&dir);

    let out = on_a_terminal(&d, &dir, "build -q -f", &[("NO_COLOR", "1")]);
    assert!(out.contains("hello: makepkg") && out.contains("\x1b[2K"), "spinners are drawn: {out:?}");
    assert!(!has_colour(&out), "NO_COLOR=1 yet colours: {out:?}");
    assert!(out.contains("==> hello: built in ") && out.contains("1 done, 0 failed, 0 running"), "{out:?}");
    remove_packages(&dir);

    // Without -q the build's output is shown as it comes: nothing is
    // redrawn over it, the steps are plain lines.
    let out = on_a_terminal(&d, &dir, "build -f", &[]);
    assert!(out.contains("Making package: hello 1.0-1") && out.contains("==> hello: makepkg"), "{out:?}");
    assert!(!out.contains("\x1b[2K") && !out.contains("running"), "{out:?}");
}

/// Issue 17: laptop mode shows makepkg's output as it comes (`-q` hides
/// it), and names the log; `pkgcell log NAME` shows the newest log of a
/// package, and `-f` follows a running build until it ends.
#[test]
fn laptop_mode_shows_the_build_and_pkgcell_log_shows_and_follows_logs() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let run = |args: &[&str]| {
        output(pkgcell().args(args).current_dir(&dir).env("PKGCELL_HOME", d.join("home")).env("PKGCELL_BASE_DIR", test_base()))
    };
    let o = run(&["build"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("Making package: hello 1.0-1"), "makepkg's output is shown: {err}");
    assert!(err.contains("==> log: ") && err.contains("(pkgcell log hello)"), "{err}");
    remove_packages(&dir);
    let o = run(&["build", "-q", "-f"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("Making package"), "{}", text(&o));

    let o = run(&["log", "hello"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("Making package: hello 1.0-1") && stdout(&o).contains("building hello-"), "{}", text(&o));
    let path = ok(run(&["log", "--path", "hello"]));
    assert!(path.trim().ends_with(".log") && path.contains("/logs/hello/"), "{path}");
    for bad in ["nosuch", "../hello"] {
        let o = run(&["log", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }

    // -f on a build that runs for a few seconds: it ends when the build
    // does, with the build's last lines.
    let env = Env::new();
    env.config(&["slow"], 1);
    let mut build = env.cmd(&["build"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let logs = env.dir.join("home/logs/slow");
    let started = Instant::now();
    while std::fs::read_dir(&logs).map_or(true, |mut d| d.next().is_none()) {
        assert!(started.elapsed() < Duration::from_secs(60), "no log appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = env.run(&["log", "-f", "slow"]);
    let build_done = build.try_wait().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("Finished making: slow"), "followed to the end: {}", text(&o));
    let status = match build_done {
        Some(s) => s,
        None => build.wait().unwrap(),
    };
    assert!(status.success());
}

/// Issue 14: the directories pkgcell makes on the host are never
/// world-writable, also while a build runs; PKGDEST, SRCDEST and /build are
/// given to the build user by a chown inside the user namespace instead.
/// (What the build itself makes inside its overlay upper is the build's.)
#[test]
fn no_directory_pkgcell_makes_is_world_writable_while_a_build_runs() {
    use std::os::unix::fs::PermissionsExt;
    fn open_dirs(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
            if !m.is_dir() {
                continue;
            }
            if m.permissions().mode() & 0o002 != 0 {
                out.push(format!("{} {:o}", e.path().display(), m.permissions().mode()));
            }
            // An overlay upper holds what the build made: not pkgcell's.
            if depth > 0 && e.file_name() != "upper" {
                open_dirs(&e.path(), depth - 1, out);
            }
        }
    }
    let env = Env::new();
    env.config(&["killme"], 1);
    let mut child = env.cmd(&["build"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while processes_with("sleep 3.911").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "the build never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut open = Vec::new();
    open_dirs(&env.dir.join("home"), 4, &mut open);
    assert!(open.is_empty(), "world-writable: {open:?}");
    assert!(child.wait().unwrap().success());
}

/// Issue 17: `[build] packager` names the packager of a repository's
/// packages; one that is not one line is a config error naming the line.
#[test]
fn the_configs_packager_goes_into_the_packages_and_a_bad_one_is_refused() {
    let env = Env::new();
    env.config(&["multiarch"], 1);
    let path = env.dir.join("pkgcell.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, cfg.replace("[build]\n", "[build]\npackager = \"Repo Bot <bot@example.org>\"\n")).unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!(code, 0, "{}", text(&o));
    let file = pkg(&v, "multiarch")["files"][0].as_str().unwrap().to_owned();
    let pkginfo = run_sh(&["--ro-bind", &format!("{file}:/p.pkg.tar.zst")], "bsdtar -xOf /p.pkg.tar.zst .PKGINFO");
    assert!(ok(pkginfo).contains("packager = Repo Bot <bot@example.org>"));

    std::fs::write(&path, cfg.replace("[build]\n", "[build]\npackager = \"two\\nlines\"\n")).unwrap();
    let o = env.run(&["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pkgcell.toml:2: packager"), "{}", text(&o));
}

/// The sandboxes of one pkgcell process share one user namespace: the
/// setuid newuidmap and newgidmap (a good part of a sandbox's start) run
/// once for a build that starts several sandboxes (the parse, makepkg).
#[test]
fn one_build_runs_newuidmap_and_newgidmap_once_for_all_its_sandboxes() {
    let d = TestDir::new();
    copy_fixture("hello", &d.join("hello"));
    std::fs::write(d.join("pkgcell.toml"), "[pkgbuilds]\nhello = { path = \"hello\" }\n").unwrap();
    // Wrappers first on PATH that log each call, then run the real tool.
    let (bin, log) = (d.join("bin"), d.join("calls"));
    std::fs::create_dir(&bin).unwrap();
    for tool in ["newuidmap", "newgidmap"] {
        let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|p| p.join(tool))
            .find(|p| p.exists())
            .expect("newuidmap/newgidmap on PATH");
        let w = bin.join(tool);
        std::fs::write(&w, format!("#!/bin/sh\necho {tool} >> {}\nexec {} \"$@\"\n", log.display(), real.display())).unwrap();
        std::fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = output(pkgcell_in(d.path()).env("PATH", path).args(["build", "--json"]));
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status(&v, "hello"), "built", "{v:#}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort();
    assert_eq!(calls, ["newgidmap", "newuidmap"], "one pair for the parse and the makepkg sandboxes");
}
