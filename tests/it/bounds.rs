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
