//! Bounded resources: a build's log is streamed with a cap, pkgcell's own
//! memory stays small whatever a build prints, and `store gc` removes what
//! failed and killed runs leave.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::build::{Env, pkg, status};
use crate::util::*;

/// A PKGBUILD whose build() prints a head marker, `size` (as `head -c`
/// reads it) of `yes` lines, then a tail marker.
fn chatty(env: &Env, name: &str, size: &str) {
    let dir = env.dir.join("pkgs").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        format!(
            "pkgname={name}\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
             build() {{\n  echo HEAD-MARK-{name}\n  yes 'pkgcell log line' | head -c {size}\n  echo\n  echo TAIL-MARK-{name}\n}}\n\
             package() {{\n  mkdir -p \"$pkgdir/usr/share/{name}\"\n}}\n"
        ),
    )
    .unwrap();
    let config = env.dir.join("pkgcell.toml");
    let mut c = std::fs::read_to_string(&config).unwrap_or_else(|_| "[pkgbuilds]\n".into());
    c.push_str(&format!("{name} = {{ path = \"pkgs/{name}\" }}\n"));
    std::fs::write(config, c).unwrap();
}

/// VmHWM (peak resident memory) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `pkgcell build --json ARGS` while watching pkgcell's own peak memory:
/// (exit code, JSON, stderr, peak KiB of the pkgcell process itself).
fn build_measured(env: &Env, args: &[&str]) -> (i32, Value, String, u64) {
    let mut a = vec!["build", "--json"];
    a.extend(args);
    let mut child = env.cmd(&a).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        out.read_to_end(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    // VmHWM only grows: the last reading before the exit is the peak.
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = child.wait().unwrap().code().unwrap();
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let v: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{stderr}"));
    (code, v, stderr, peak)
}

/// The stored log of a built package: its path in the store.
fn stored_log(env: &Env, name: &str) -> PathBuf {
    let ls: Value = serde_json::from_str(&ok(env.run(&["store", "ls", "--json"]))).unwrap();
    let r = ls["records"].as_array().unwrap().iter().find(|r| r["pkgid"].as_str().unwrap().starts_with(&format!("{name}-"))).unwrap();
    let h = r["log"].as_str().unwrap();
    env.dir.join("home/store/objects").join(&h[..2]).join(&h[2..])
}

/// Head, cut line and tail of a capped log, checked; returns its size.
fn check_capped(path: &Path, name: &str, limit: u64) -> u64 {
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size <= limit + 4096, "{} is {size} bytes, over its limit of {limit}", path.display());
    let mut f = std::fs::File::open(path).unwrap();
    let mut head = vec![0; 64 << 10];
    f.read_exact(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head);
    assert!(head.contains(&format!("HEAD-MARK-{name}")), "the head is kept: {}", &head[..2000.min(head.len())]);
    let all = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&all);
    let cut = text.lines().find(|l| l.contains("bytes cut here")).unwrap_or_else(|| panic!("no cut line in {}", path.display()));
    assert!(cut.starts_with("==> pkgcell: ") && cut.contains("log_limit"), "{cut}");
    let tail = &text[text.len() - 4096..];
    assert!(tail.contains(&format!("TAIL-MARK-{name}")), "the tail is kept: {tail}");
    assert!(tail.contains("==> Finished making"), "makepkg's last lines are kept: {tail}");
    size
}

#[test]
fn a_build_printing_50_mib_under_a_1_mib_log_limit_keeps_head_and_tail_and_says_what_was_cut() {
    let env = Env::new();
    chatty(&env, "chatty", "50M");
    let (code, v, err, peak) = build_measured(&env, &["--log-limit", "1M"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&v, "chatty"), "built", "{v:#}");
    let log = PathBuf::from(pkg(&v, "chatty")["log"].as_str().unwrap());
    check_capped(&log, "chatty", 1 << 20);
    assert_eq!(std::fs::read(&log).unwrap(), std::fs::read(stored_log(&env, "chatty")).unwrap(), "the store holds the same log");
    let text = std::fs::read_to_string(&log).unwrap();
    let cut: u64 = text.lines().find_map(|l| l.strip_prefix("==> pkgcell: ")?.split(' ').next()?.parse().ok()).unwrap();
    assert!(cut > 49 << 20, "about 49 MiB were cut, not {cut}");
    assert!(!log.with_extension("log.tail").exists(), "the side file of the tail is gone");
    assert!(peak < 100 * 1024, "pkgcell's peak memory was {peak} KiB");
}

#[test]
fn a_build_printing_1_gib_is_built_with_a_capped_log_and_pkgcell_stays_under_100_mb() {
    let env = Env::new();
    chatty(&env, "huge", "1G");
    let t = Instant::now();
    let (code, v, err, peak) = build_measured(&env, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&v, "huge"), "built", "{v:#}");
    // The default [build] log_limit, 256 MiB.
    let log = PathBuf::from(pkg(&v, "huge")["log"].as_str().unwrap());
    check_capped(&log, "huge", 256 << 20);
    check_capped(&stored_log(&env, "huge"), "huge", 256 << 20);
    assert!(peak < 100 * 1024, "pkgcell's peak memory was {peak} KiB");
    eprintln!("1 GiB of output: built in {:.1}s, pkgcell's peak memory {peak} KiB", t.elapsed().as_secs_f64());
}

#[test]
fn a_log_limit_below_64k_is_refused_naming_the_flag_or_the_line() {
    let env = Env::new();
    chatty(&env, "chatty", "1K");
    let o = env.run(&["build", "--log-limit", "1K"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--log-limit") && stderr(&o).contains("minimum of 64K"), "{}", text(&o));
    let c = std::fs::read_to_string(env.dir.join("pkgcell.toml")).unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), format!("[build]\nlog_limit = \"lots\"\n\n{c}")).unwrap();
    let o = env.run(&["build"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pkgcell.toml:2: log_limit \"lots\""), "{}", text(&o));
}

/// A PKGBUILD whose build() leaves a private directory of the build user
/// (a subordinate id outside) and fails; `n` changes its tree (pkgid).
fn failing(env: &Env, n: u32) {
    let dir = env.dir.join("pkgs/leaky");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        format!(
            "# attempt {n}\npkgname=leaky\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
             build() {{\n  mkdir -p private/deep\n  echo secret > private/deep/f\n  chmod 700 private private/deep\n  echo failing on purpose\n  false\n}}\n\
             package() {{\n  :\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), "[pkgbuilds]\nleaky = { path = \"pkgs/leaky\" }\n").unwrap();
}

/// `-<tree12>-<deps12>` of a pkgid: what a log's name carries of it.
fn short_tag(pkgid: &str) -> String {
    let mut parts = pkgid.rsplitn(3, '-');
    let (deps, tree) = (parts.next().unwrap(), parts.next().unwrap());
    format!("-{}-{}", &tree[..12], &deps[..12])
}

/// Issue 17: a log is named `<pkgbase>-<version>-<tree12>-<deps12>.log`,
/// not by the whole pkgid; `store gc --keep-logs N` still keeps the logs
/// of stored builds and the newest N other builds per pkgbase, old
/// (pkgid-named) logs counted with the new ones, and `pkgcell log` shows
/// the newest.
#[test]
fn log_names_are_short_and_gc_keeps_the_logs_of_stored_builds_and_the_newest_others_old_names_too() {
    let env = Env::new();
    let home = env.dir.join("home");
    let logs = home.join("logs/leaky");
    // A build that works: its record is kept, and so is its log.
    let dir = env.dir.join("pkgs/leaky");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        "pkgname=leaky\nepoch=1\npkgver=2.0\npkgrel=3\narch=(any)\nlicense=(MIT)\npackage() {\n  echo working build\n}\n",
    )
    .unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), "[pkgbuilds]\nleaky = { path = \"pkgs/leaky\" }\n").unwrap();
    let (code, v, o) = env.build(&[]);
    assert_eq!((code, status(&v, "leaky").as_str()), (0, "built"), "{}", text(&o));
    let good = pkg(&v, "leaky")["pkgid"].as_str().unwrap().to_owned();
    let good_log = PathBuf::from(pkg(&v, "leaky")["log"].as_str().unwrap());
    let name = good_log.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name, format!("leaky-1:2.0-3{}.log", short_tag(&good)));
    assert!(name.len() < good.len(), "{name}");
    assert_eq!(good_log.parent().unwrap(), logs);
    std::thread::sleep(Duration::from_millis(1100));
    // Three failed attempts (no record), a second apart.
    let mut bad = Vec::new();
    for n in 0..3 {
        failing(&env, n);
        let (code, v, o) = env.build(&[]);
        assert_eq!((code, status(&v, "leaky").as_str()), (1, "failed"), "{}", text(&o));
        let log = PathBuf::from(pkg(&v, "leaky")["log"].as_str().unwrap());
        let id = pkg(&v, "leaky")["pkgid"].as_str().unwrap().to_owned();
        assert_eq!(log.file_name().unwrap().to_str().unwrap(), format!("leaky-1.0-1{}.log", short_tag(&id)));
        bad.push((id, log));
        std::thread::sleep(Duration::from_millis(1100));
    }
    // `pkgcell log` shows the newest, and -f of a finished build ends.
    let o = env.run(&["log", "--path", "leaky"]);
    assert_eq!(PathBuf::from(ok(o).trim()), bad[2].1);
    let o = env.run(&["log", "-f", "leaky"]);
    assert!(ok(o).contains("failing on purpose"));
    // Logs an older pkgcell named by the whole pkgid: one of the stored
    // build (kept with it), one of a build without a record, older than
    // every other (it goes).
    let old_good = logs.join(format!("{good}.deps.log"));
    std::fs::write(&old_good, "old log of the stored build\n").unwrap();
    let gone_id = format!("leaky-{}-{}", "ab".repeat(20), "cd".repeat(16));
    let old_gone = logs.join(format!("{gone_id}.log"));
    std::fs::write(&old_gone, "old log of a dropped build\n").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(86400);
    std::fs::File::options().write(true).open(&old_gone).unwrap().set_modified(long_ago).unwrap();

    let out = ok(env.run(&["store", "gc", "--keep-logs", "2"]));
    let mut left = entries(&logs);
    left.sort();
    let mut want: Vec<String> = [&good_log, &bad[1].1, &bad[2].1, &old_good]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(left, want, "{out}");
    assert!(out.contains("2 logs"), "the oldest failed attempt's log and the old one of a dropped build: {out}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// A PKGBUILD whose parse (sourcing it) takes a minute.
fn slow_parse(env: &Env) {
    let dir = env.dir.join("pkgs/slowparse");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("PKGBUILD"), "sleep 60\npkgname=slowparse\npkgver=1\npkgrel=1\narch=(any)\npackage() { :; }\n").unwrap();
    let c = std::fs::read_to_string(env.dir.join("pkgcell.toml")).unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), format!("{c}slowparse = {{ path = \"pkgs/slowparse\" }}\n")).unwrap();
}

#[test]
fn store_gc_removes_failed_logs_but_the_newest_old_failed_trees_and_leftovers_of_killed_runs_and_dry_run_only_lists_them() {
    let env = Env::new();
    let home = env.dir.join("home");
    // Four failed attempts of one pkgbase, the last two kept with --keep-failed.
    for n in 0..4 {
        failing(&env, n);
        let args: &[&str] = if n >= 2 { &["--keep-failed"] } else { &[] };
        let (code, v, o) = env.build(args);
        assert_eq!((code, status(&v, "leaky").as_str()), (1, "failed"), "{}", text(&o));
        // Distinct mtimes, so "newest" is well defined.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let logs = home.join("logs/leaky");
    assert_eq!(entries(&logs).len(), 4, "{:?}", entries(&logs));
    let failed = entries(&home.join("failed"));
    assert_eq!(failed.len(), 2, "{failed:?}");
    // A kept tree is the user's: readable, and removable by hand.
    let by_hand = home.join("failed").join(&failed[0]);
    let secret = walkdir_find(&by_hand, "f");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret\n");
    std::fs::remove_dir_all(&by_hand).expect("a kept failed build can be removed by hand");

    // The tail ring of a log whose pkgcell was killed.
    let ring = logs.join(format!("{}.log.tail", failed[1]));
    std::fs::write(&ring, [b'x'; 100]).unwrap();

    // A killed run's scratch directory with a subordinate id's private files.
    let leftover = home.join("tmp/build-killed-x");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::set_permissions(&leftover, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    ok(run_sh(
        &["--uid", "1000", "--gid", "1000", "--bind", &format!("{}:/x", leftover.display())],
        "mkdir -p /x/d && head -c 5000 /dev/zero > /x/d/f && chmod 700 /x/d",
    ));
    assert!(std::fs::remove_dir_all(&leftover).is_err(), "the user alone cannot remove it");

    // A `pkgcell plan` killed while it parses: gc waits for it while it runs.
    slow_parse(&env);
    let mut plan = env.cmd(&["plan"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while !entries(&home.join("tmp")).iter().any(|n| n.starts_with("parse-")) {
        assert!(t.elapsed() < Duration::from_secs(30), "no parse started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gc = env.cmd(&["store", "gc", "--dry-run", "--keep-logs", "2", "--failed-age", "0"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_lock_waiter(&home, Duration::from_secs(30), || false);
    plan.kill().unwrap();
    plan.wait().unwrap();
    let o = gc.wait_with_output().unwrap();
    let out = ok(o.clone());
    assert!(stderr(&o).contains("waiting for running builds"), "{}", text(&o));
    let leftovers: Vec<&str> = out.lines().filter(|l| l.starts_with("would remove leftover of a killed run")).collect();
    assert_eq!(leftovers.len(), 2, "{out}");
    assert!(leftovers.iter().any(|l| l.contains("/tmp/parse-")), "{out}");
    // Its size counts what the user can read: not below the private directory.
    assert!(leftovers.iter().any(|l| l.contains("build-killed-x (")), "{out}");
    let old_logs: Vec<&str> = out.lines().filter(|l| l.starts_with("would remove log ")).collect();
    assert_eq!(old_logs.len(), 3, "the two oldest attempts' logs and the ring: {out}");
    assert!(old_logs.iter().any(|l| l.ends_with(".log.tail (100 bytes)")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("would remove failed build ") && l.contains(&failed[1])), "{out}");
    // Nothing was removed.
    assert_eq!(entries(&logs).len(), 5);
    assert!(home.join("failed").join(&failed[1]).exists() && leftover.exists());
    assert!(entries(&home.join("tmp")).iter().any(|n| n.starts_with("parse-")));

    // The default grace keeps a fresh failed tree; the rest goes.
    let out = ok(env.run(&["store", "gc", "--keep-logs", "2"]));
    assert!(out.contains("3 logs, 0 failed build trees, 2 leftovers of killed runs and 0 unused parse snapshots"), "{out}");
    assert_eq!(entries(&logs).len(), 2, "{:?}", entries(&logs));
    assert!(entries(&home.join("tmp")).is_empty(), "{:?}", entries(&home.join("tmp")));
    assert!(home.join("failed").join(&failed[1]).exists());
    // The two newest attempts are the two kept trees (named by pkgid); their
    // logs by the short form of it.
    let newest: Vec<String> = entries(&logs);
    let mut tags: Vec<String> = failed.iter().map(|id| format!("leaky-1.0-1{}.log", short_tag(id))).collect();
    tags.sort();
    assert_eq!(newest, tags);
    let out = ok(env.run(&["store", "gc", "--failed-age", "0"]));
    assert!(out.contains("0 logs, 1 failed build tree, "), "{out}");
    assert!(entries(&home.join("failed")).is_empty());
    ok(env.run(&["store", "fsck"]));
}

/// The first file named `name` below `dir`.
fn walkdir_find(dir: &Path, name: &str) -> PathBuf {
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display())).flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else if e.file_name() == name {
                return p;
            }
        }
    }
    panic!("no {name} below {}", dir.display())
}

/// Whether this host delegates a cgroup v2 with memory and pids to us, as
/// pkgcell detects it (a unit test covers the detection on fake trees).
fn cgroup_delegated() -> bool {
    pkgcell::cgroup::Delegated::detect(&Default::default()).is_ok()
}

#[test]
fn without_a_delegated_cgroup_limits_are_rlimits_and_the_record_and_json_say_so() {
    let env = Env::new();
    chatty(&env, "small", "1K");
    let (code, v, o) = env.build(&["--memory", "1G", "--pids", "256"]);
    assert_eq!(code, 0, "{}", text(&o));
    let want = if cgroup_delegated() { "cgroup" } else { "rlimit" };
    assert_eq!(pkg(&v, "small")["limits"], want, "{v:#}");
    let ls: Value = serde_json::from_str(&ok(env.run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"][0]["limits"], want, "{ls:#}");
    let log = std::fs::read_to_string(pkg(&v, "small")["log"].as_str().unwrap()).unwrap();
    let line = log.lines().find(|l| l.starts_with("limits: ")).unwrap();
    assert!(line.contains(if want == "cgroup" { "for the whole build (cgroup " } else { "per process, processes 256 (rlimits)" }), "{line}");

    // No limit: nothing to apply.
    chatty(&env, "other", "1K");
    let (code, v, o) = env.build(&["other"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(pkg(&v, "other")["limits"], "none", "{v:#}");
}

#[test]
fn a_sandbox_whose_cgroup_is_no_cgroup_does_not_start_and_says_why() {
    let d = TestDir::new();
    let not_a_cgroup = d.join("plain");
    let out = d.join("out");
    std::fs::create_dir_all(&not_a_cgroup).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let spec = serde_json::json!({
        "root": {"overlay": {"lowers": [test_base()], "upper": {"tmpfs": {"size": 1u64 << 24}}}},
        "mounts": [{"bind": {"src": out, "dst": "/out", "access": "read_write"}}],
        "argv": ["sh", "-c", "touch /out/ran"],
        "env": {"PATH": "/usr/bin:/bin"},
        "cgroup": not_a_cgroup,
    });
    std::fs::write(d.join("spec.json"), spec.to_string()).unwrap();
    let o = output(pkgcell().args(["run", "--spec"]).arg(d.join("spec.json")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("cannot move the sandbox into the cgroup"), "{}", text(&o));
    assert!(!out.join("ran").exists(), "the payload ran");
    assert!(!not_a_cgroup.join("cgroup.procs").exists(), "a file was made in a directory that is no cgroup");
}

/// Bytes used and size of the file system holding `path`.
fn fs_usage(path: &Path) -> (u64, u64) {
    let o = output(std::process::Command::new("df").args(["-B1", "--output=used,size"]).arg(path));
    let out = ok(o);
    let nums: Vec<u64> = out.lines().nth(1).unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
    (nums[0], nums[1])
}

#[test]
fn a_disk_full_run_leaves_a_store_fsck_accepts_and_gc_brings_the_home_back_under_the_limit() {
    let Some(small) = std::env::var_os("PKGCELL_TEST_SMALL_FS").filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipped: PKGCELL_TEST_SMALL_FS is not set (`make test` run as root mounts a small tmpfs for this test, see scripts/small-fs)"
        );
        return;
    };
    let env = Env::new();
    let home = PathBuf::from(small).join(format!("home-{}", std::process::id()));
    let run = |args: &[&str]| output(env.cmd(args).env("PKGCELL_HOME", &home));
    let build = |args: &[&str]| {
        let o = run(&[&["build", "--json"], args].concat());
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
        (o.status.code().unwrap(), v, o)
    };
    let (_, size) = fs_usage(home.parent().unwrap());
    chatty(&env, "small", "1K");
    chatty(&env, "flood", &format!("{}", 2 * size));
    chatty(&env, "after", "1K");

    let (code, v, o) = build(&["small"]);
    assert_eq!((code, status(&v, "small").as_str()), (0, "built"), "{}", text(&o));
    // Its log alone fills the disk: the build fails and says why.
    let (code, v, o) = build(&["flood"]);
    assert_eq!((code, status(&v, "flood").as_str()), (1, "failed"), "{}", text(&o));
    let reason = pkg(&v, "flood")["reason"].as_str().unwrap();
    assert!(reason.contains("No space left on device"), "{reason}");
    let (used, _) = fs_usage(&home);
    assert!(used > size * 9 / 10, "the disk is full: {used} of {size} bytes used");

    let o = run(&["store", "fsck"]);
    assert_eq!(o.status.code(), Some(0), "fsck accepts the store\n{}", text(&o));
    let ls: Value = serde_json::from_str(&ok(run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 1, "{ls:#}");

    let out = ok(run(&["store", "gc", "--keep-logs", "0"]));
    assert!(out.contains("flood-"), "the failed log goes: {out}");
    let (used, _) = fs_usage(&home);
    assert!(used < size / 4, "gc brought the home back: {used} of {size} bytes used\n{out}");
    let (code, v, o) = build(&["after"]);
    assert_eq!((code, status(&v, "after").as_str()), (0, "built"), "{}", text(&o));
    ok(run(&["store", "fsck"]));
    if std::fs::remove_dir_all(&home).is_err() {
        pkgcell_sandbox::remove_tree_with(&home, &pkgcell_bin(), &Default::default()).unwrap();
    }
}
