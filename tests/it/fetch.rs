//! Downloads under concurrency and kill -9: two `pkgcell build` processes on
//! one PKGCELL_HOME (two PKGBUILDs, so two pkgids) that need the same sync
//! package or the same source download it once, and a pkgcell killed in the
//! middle of a download leaves no partial file under a cache name; on a
//! terminal a running download shows its bytes so far.
//!
//! The loopback server holds a response half sent until the test lets it
//! go, so the downloads really overlap; the tests wait for what they can
//! see (the server's requests, a process blocked on a lock in /proc/locks,
//! curl's partial file), not for a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;

use crate::deps::{SyncEnv, entry};
use crate::pkgutil::TestPackage;
use crate::util::{stdout, text, wait_for_lock_waiter};

/// Far more than any step takes; only a broken build waits this long.
const WAIT: Duration = Duration::from_secs(60);

/// A spawned pkgcell, killed and reaped if the test ends before it does
/// (a held download would otherwise keep it running).
struct Spawned(Option<Child>);

impl Spawned {
    fn new(cmd: &mut Command) -> Spawned {
        Spawned(Some(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
    }

    fn finish(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// SIGKILL: no chance to clean up.
    fn kill(mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The names in `dir`, sorted (none if it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).into_iter().flatten().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// 256 KiB that no other test serves, and their SHA-256.
fn payload() -> (Vec<u8>, String) {
    payload_of(0x9e37_79b9)
}

/// 256 KiB made from `seed` (non-zero), and their SHA-256.
fn payload_of(seed: u32) -> (Vec<u8>, String) {
    let mut x: u32 = seed;
    let data: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let sum = sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
    (data, sum)
}

/// PKGBUILD `name` whose one source is `path` on the test's server, with
/// SHA-256 `sum`, and whose build needs `makedepends`.
fn source_pkgbuild(e: &SyncEnv, name: &str, path: &str, sum: &str, makedepends: &str) {
    let d = e.dir.join("pkgs").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("PKGBUILD"),
        format!(
            "pkgname={name}\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\nmakedepends=({makedepends})\n\
             source=(\"shared.bin::http://127.0.0.1:{port}/{path}\")\nsha256sums=({sum})\n\
             package() {{\n  install -Dm644 shared.bin \"$pkgdir/usr/share/{name}/shared.bin\"\n}}\n",
            port = e.port
        ),
    )
    .unwrap();
}

fn assert_built(o: &Output, name: &str) {
    assert!(o.status.success(), "{}", text(o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(o)));
    assert_eq!(entry(&v, name)["status"], "built", "{v:#}");
}

/// Wait until curl has written into a download's temp directory (a
/// directory in `dir` whose name starts with `prefix`): its `file` exists
/// once the first data arrived. Meanwhile nothing may show under the
/// cache's final names (`visible`).
#[track_caller]
fn wait_for_partial(dir: &Path, prefix: &str, visible: impl Fn() -> Vec<String>) -> PathBuf {
    let t = Instant::now();
    loop {
        let v = visible();
        assert!(v.is_empty(), "a download that is not finished shows under its cache name: {v:?}");
        let found = names(dir).into_iter().filter(|n| n.starts_with(prefix)).map(|n| dir.join(n).join("file")).find(|f| f.exists());
        if let Some(f) = found {
            return f;
        }
        assert!(t.elapsed() < WAIT, "no download started in {} in {WAIT:?}: {:?}", dir.display(), names(dir));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_build_processes_that_need_the_same_sync_package_download_it_once() {
    let e = SyncEnv::new();
    let pkg = e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    e.pkgbuild("u1", "synctool");
    e.pkgbuild("u2", "synctool");
    e.config(&["u1", "u2"], 1);
    let name = file_name(&pkg);
    e.server.hold(&name);

    let p1 = Spawned::new(&mut e.cmd(&["build", "--json", "u1"]));
    let p2 = Spawned::new(&mut e.cmd(&["build", "--json", "u2"]));
    // One download is half done and stays so until the other process has
    // come for the file too: it waits on the file's lock (single flight)
    // or, if that were broken, asks the server as well.
    e.server.wait_for_hits(&name, 1, WAIT);
    wait_for_lock_waiter(&e.dir.join("home/cache/pkg-locks"), WAIT, || e.server.hits(&name) > 1);
    e.server.release(&name);
    assert_built(&p1.finish(), "u1");
    assert_built(&p2.finish(), "u2");

    assert_eq!(e.server.hits(&name), 1, "downloaded once: {:?}", e.server.hits.lock().unwrap());
    let cache = e.dir.join("home/cache/pkg");
    assert_eq!(names(&cache), [name.as_str()], "one file and no temp directory");
    assert_eq!(std::fs::read(cache.join(&name)).unwrap(), std::fs::read(&pkg).unwrap(), "complete");
}

#[test]
fn two_build_processes_that_need_the_same_source_download_it_once() {
    let e = SyncEnv::new();
    // The same bytes under two URLs: a source is cached, and locked, by checksum.
    let (data, sum) = payload();
    let paths = ["shared.bin", "copy-of-shared.bin"];
    for p in paths {
        std::fs::write(e.dir.join("sync").join(p), &data).unwrap();
        e.server.hold(p);
    }
    source_pkgbuild(&e, "s1", paths[0], &sum, "");
    source_pkgbuild(&e, "s2", paths[1], &sum, "");
    e.config(&["s1", "s2"], 1);
    let hits = || paths.iter().map(|p| e.server.hits(p)).sum::<usize>();

    let p1 = Spawned::new(&mut e.cmd(&["build", "--json", "s1"]));
    let p2 = Spawned::new(&mut e.cmd(&["build", "--json", "s2"]));
    let t = Instant::now();
    while hits() == 0 {
        assert!(t.elapsed() < WAIT, "no download started in {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for_lock_waiter(&e.dir.join("home/sources/locks"), WAIT, || hits() > 1);
    for p in paths {
        e.server.release(p);
    }
    assert_built(&p1.finish(), "s1");
    assert_built(&p2.finish(), "s2");

    assert_eq!(hits(), 1, "downloaded once: {:?}", e.server.hits.lock().unwrap());
    let cached = e.dir.join("home/sources/sha256");
    assert_eq!(names(&cached), [sum.as_str()]);
    assert_eq!(std::fs::read(cached.join(&sum)).unwrap(), data, "complete");
    assert!(names(&e.dir.join("home/tmp")).iter().all(|n| !n.starts_with("fetch-")), "{:?}", names(&e.dir.join("home/tmp")));
}

#[test]
fn a_pkgcell_killed_in_the_middle_of_a_download_leaves_no_partial_file_in_the_caches_and_the_next_run_completes() {
    let e = SyncEnv::new();
    let pkg = e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    let (data, sum) = payload();
    std::fs::write(e.dir.join("sync/src.bin"), &data).unwrap();
    source_pkgbuild(&e, "k", "src.bin", &sum, "synctool");
    e.config(&["k"], 1);
    let name = file_name(&pkg);
    let (tmp, sources, cache) = (e.dir.join("home/tmp"), e.dir.join("home/sources/sha256"), e.dir.join("home/cache/pkg"));
    e.server.hold("src.bin");
    e.server.hold(&name);

    let visible = || names(&cache).into_iter().filter(|n| !n.starts_with('.')).chain(names(&sources)).collect::<Vec<_>>();

    // Killed while the source is half downloaded (sources come first).
    let p = Spawned::new(&mut e.cmd(&["build"]));
    let partial = wait_for_partial(&tmp, "fetch-", visible);
    p.kill();
    assert!(std::fs::metadata(&partial).map_or(0, |m| m.len()) < data.len() as u64, "the download was not cut");
    assert!(visible().is_empty(), "a cut source reached the cache: {:?}", visible());

    // The source whole this time; killed while the package is half downloaded.
    e.server.release("src.bin");
    let p = Spawned::new(&mut e.cmd(&["build"]));
    let only_source = || visible().into_iter().filter(|n| *n != sum).collect::<Vec<_>>();
    let partial = wait_for_partial(&cache, ".part-", only_source);
    p.kill();
    assert_eq!(e.server.hits("src.bin"), 2);
    assert_eq!(std::fs::read(sources.join(&sum)).unwrap(), data);
    assert!(std::fs::metadata(&partial).map_or(0, |m| m.len()) < std::fs::metadata(&pkg).unwrap().len(), "not cut");
    assert!(only_source().is_empty(), "a cut package reached the cache: {:?}", only_source());

    // The next run downloads the package again, builds, and removes what
    // the killed downloads left.
    e.server.release(&name);
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "k")["status"], "built", "{v:#}");
    assert_eq!((e.server.hits("src.bin"), e.server.hits(&name)), (2, 2));
    assert_eq!(names(&cache), [name.as_str()], "the killed download's temp directory is gone");
    assert_eq!(std::fs::read(cache.join(&name)).unwrap(), std::fs::read(&pkg).unwrap());
    assert!(names(&tmp).iter().all(|n| !n.starts_with("fetch-")), "{:?}", names(&tmp));
}

/// Set the modification time of `path` an hour back: older than `store
/// gc`'s grace period (what a fetch sets when it uses an entry).
fn age(path: &Path) {
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(path).unwrap().set_modified(hour_ago).unwrap();
}

/// `store gc` collects the source cache: a source only a dropped build
/// needed goes once it is unused for the grace period; a source a kept
/// record or the config needs stays (so the next build does not download
/// it again), and so does everything when some sources are unknown.
#[test]
fn store_gc_removes_the_sources_neither_a_kept_record_nor_the_config_needs() {
    let e = SyncEnv::new();
    let ((data1, sum1), (data2, sum2)) = (payload_of(0x1234_5679), payload_of(0x0bad_cafe));
    std::fs::write(e.dir.join("sync/v1.bin"), &data1).unwrap();
    std::fs::write(e.dir.join("sync/v2.bin"), &data2).unwrap();
    let cached = e.dir.join("home/sources/sha256");
    let (old, new) = (cached.join(&sum1), cached.join(&sum2));
    e.config(&["s"], 1);
    source_pkgbuild(&e, "s", "v1.bin", &sum1, "");
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    let pkgid1 = entry(&v, "s")["pkgid"].as_str().unwrap().to_owned();
    source_pkgbuild(&e, "s", "v2.bin", &sum2, "");
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "s")["status"], "built", "{v:#}");
    assert_eq!(names(&cached), { let mut n = [sum1.clone(), sum2.clone()]; n.sort(); n }, "both sources were downloaded");
    assert_eq!((e.server.hits("v1.bin"), e.server.hits("v2.bin")), (1, 1));

    // Both builds kept: both sources stay, however old.
    age(&old);
    age(&new);
    let (code, v, o) = e.json(&["store", "gc", "--keep", "2", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["gc"]["records"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["sources"]["files"], serde_json::json!([]), "{v:#}");
    assert!(old.is_file() && new.is_file());

    // The first build dropped, but its source was used within the grace
    // period (a build that has no record yet may need it): it stays.
    std::fs::File::open(&old).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let (code, v, o) = e.json(&["store", "gc", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["gc"]["records"], serde_json::json!([pkgid1]), "{v:#}");
    assert_eq!(v["sources"]["files"], serde_json::json!([]), "{v:#}");
    assert!(old.is_file());

    // Older than that: it goes, the kept build's source stays.
    age(&old);
    let o = e.run(&["store", "gc"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("removed cached source sha256/{sum1}\n")), "{out}");
    let summary = format!("1 cached source, 0 git mirrors and 0 partial downloads ({} bytes) removed from the source cache", data1.len());
    assert!(out.contains(&summary), "{out}");
    assert_eq!(names(&cached), [sum2.as_str()]);
    assert_eq!(std::fs::read(&new).unwrap(), data2);

    // A new tree with the same source builds from the cache.
    let pkgbuild = e.dir.join("pkgs/s/PKGBUILD");
    let text2 = std::fs::read_to_string(&pkgbuild).unwrap() + "# a new tree, the same source\n";
    std::fs::write(&pkgbuild, text2).unwrap();
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "s")["status"], "built", "{v:#}");
    let pkgid3 = entry(&v, "s")["pkgid"].as_str().unwrap().to_owned();
    assert_eq!((e.server.hits("v1.bin"), e.server.hits("v2.bin")), (1, 1), "not downloaded again");

    // A source that only the config's PKGBUILD needs (fetched, not built
    // yet) stays with that config (pkgcell.toml of the current directory),
    // and goes with another one.
    let (data3, sum3) = payload_of(0x5eed_f00d);
    std::fs::write(e.dir.join("sync/v3.bin"), &data3).unwrap();
    source_pkgbuild(&e, "s", "v3.bin", &sum3, "");
    let o = e.run(&["fetch"]);
    assert!(o.status.success(), "{}", text(&o));
    let next = cached.join(&sum3);
    age(&next);
    age(&new);
    let (code, v, o) = e.json(&["store", "gc", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["sources"]["files"], serde_json::json!([]), "{v:#}");
    assert!(next.is_file() && new.is_file());
    std::fs::write(e.dir.join("other.toml"), "[pkgbuilds]\n").unwrap();
    let (code, v, o) = e.json(&["store", "gc", "--config", "other.toml", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["sources"]["files"], serde_json::json!([format!("sha256/{sum3}")]), "{v:#}");
    assert_eq!(v["sources"]["bytes"], data3.len(), "{v:#}");
    assert_eq!(names(&cached), [sum2.as_str()], "the kept build's source stays");

    // Without the parse cache the sources of the kept build and of the
    // config's entry are unknown: every cached source stays, and the report
    // says why.
    std::fs::remove_dir_all(e.dir.join("home/cache/srcinfo")).unwrap();
    let (code, v, o) = e.json(&["store", "gc", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["sources"]["unknown"], serde_json::json!([pkgid3, "[pkgbuilds] s"]), "{v:#}");
    assert_eq!(v["sources"]["files"], serde_json::json!([]), "{v:#}");
    assert!(new.is_file());
    let o = e.run(&["store", "gc"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("kept every cached source: the sources of 2 kept builds or config entries are unknown"), "{}", text(&o));
    assert!(new.is_file());
}

/// Run `pkgcell SUBCOMMAND` under a pseudo-terminal on entry `entry`, whose
/// one source the server holds at half: a byte counter named by the entry
/// must show while the download runs; then release it. What pkgcell drew.
fn watch_a_held_download(subcommand: &str, entry: &str, seed: u32) -> String {
    let e = SyncEnv::new();
    let (data, sum) = payload_of(seed);
    std::fs::write(e.dir.join("sync/counted.bin"), &data).unwrap();
    source_pkgbuild(&e, entry, "counted.bin", &sum, "");
    e.config(&[entry], 1);
    e.server.hold("counted.bin");

    // util-linux `script` gives pkgcell a pseudo-terminal and copies what
    // it draws into `typescript` as it comes (-f).
    let typescript = e.dir.join("typescript");
    let run = e.cmd(&[subcommand]);
    let mut cmd = Command::new("script");
    cmd.arg("-qfec").arg(format!("{} {subcommand}", run.get_program().to_string_lossy())).arg(&typescript);
    cmd.current_dir(e.dir.path()).env("TERM", "xterm").env("NO_COLOR", "1");
    for (k, v) in run.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let p = Spawned::new(&mut cmd);
    // Half the file is sent, then the server holds the rest back: the
    // counter shows bytes while the download is still running (curl may
    // hold the last few KiB of the half in its buffer: not 0, at most 128).
    let shown = || String::from_utf8_lossy(&std::fs::read(&typescript).unwrap_or_default()).into_owned();
    let label = format!("{entry}: shared.bin: ");
    let counted = |s: &str| {
        s.split(label.as_str())
            .skip(1)
            .any(|rest| rest.split_once(" KiB").and_then(|(n, _)| n.trim().parse::<f64>().ok()).is_some_and(|k| k > 0.0 && k <= 128.0))
    };
    let t = Instant::now();
    while !counted(&shown()) {
        assert!(t.elapsed() < WAIT, "no byte counter at half the download: {:?}", shown());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!shown().contains("downloaded shared.bin"), "{:?}", shown());
    e.server.release("counted.bin");
    let o = p.finish();
    assert!(o.status.success(), "{}", text(&o));
    shown()
}

/// Issue 17: on a terminal, `pkgcell fetch` shows a byte counter that
/// grows while a download runs (the size of curl's temp file, looked at
/// from outside the sandbox), then a line with the whole size.
#[test]
fn on_a_terminal_fetch_counts_the_bytes_of_a_running_download() {
    let all = watch_a_held_download("fetch", "c", 0x5bd1_e995);
    assert!(all.contains("==> c: downloaded shared.bin (256.00 KiB)") && all.contains("==> c: 1 source fetched"), "{all:?}");
    assert!(!all.contains("==> c: downloading"), "no plain start line on a terminal: {all:?}");
}

/// Issue 17: the downloads of `pkgcell build` get the same byte counter on
/// a terminal, named by the entry, while the build waits for them.
#[test]
fn on_a_terminal_build_counts_the_bytes_of_its_running_downloads() {
    let all = watch_a_held_download("build", "b", 0x1b87_3593);
    assert!(all.contains("==> b: downloaded shared.bin (256.00 KiB)") && all.contains("b: built"), "{all:?}");
}
