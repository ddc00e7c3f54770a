//! Dependencies from the base's sync repositories and from pkgcell's own
//! published repository (issues 5 and 6): real makepkg builds the
//! repository packages, real repo-add makes the database, a loopback HTTP
//! server serves it, and the base (a hard-linked copy of the test base with
//! its own pacman.conf and synced database) sees it as pacman would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::pkgutil::{TestPackage, makepkg};
use crate::util::{Served, TestDir, output, pkgcell, pkgcell_in, serve_dir, stdout, test_base, text};

/// A test with a sync repository `testsync` served over loopback HTTP and
/// a base that has synced it.
pub(crate) struct SyncEnv {
    pub(crate) dir: TestDir,
    pub(crate) port: u16,
    pub(crate) server: Served,
    base: PathBuf,
}

impl SyncEnv {
    pub(crate) fn new() -> SyncEnv {
        let dir = TestDir::new();
        std::fs::create_dir_all(dir.join("sync")).unwrap();
        let server = serve_dir(dir.join("sync"));
        let port = server.port;
        // A copy of the test base whose files are hard links (cheap); only
        // new files are written into it (etc/pacman.conf is replaced, not
        // edited), so the shared test base is never changed.
        let base = dir.join("base");
        let o = output(Command::new("unshare").args(["--map-auto", "--map-root-user", "cp", "-al"]).arg(test_base()).arg(&base));
        assert!(o.status.success(), "cannot copy the test base\n{}", text(&o));
        let conf = base.join("etc/pacman.conf");
        std::fs::remove_file(&conf).unwrap();
        std::fs::write(
            &conf,
            format!("[options]\nArchitecture = auto\nSigLevel = Never\n\n[testsync]\nServer = http://127.0.0.1:{port}\n"),
        )
        .unwrap();
        SyncEnv { dir, port, server, base }
    }

    /// Build `pkg` with makepkg and repo-add it to the served repository.
    pub(crate) fn publish(&self, pkg: &TestPackage, tag: &str) -> PathBuf {
        let out = self.dir.join(format!("made-{tag}"));
        let file = makepkg(pkg, &self.dir.join(format!("work-{tag}")), &out);
        let dst = self.dir.join("sync").join(file.file_name().unwrap());
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(&file, &dst).unwrap();
        let o = output(Command::new("repo-add").arg(self.dir.join("sync/testsync.db.tar.gz")).arg(&dst));
        assert!(o.status.success(), "repo-add\n{}", text(&o));
        dst
    }

    /// What `pacman -Sy` does to the base: its synced copy of the database.
    pub(crate) fn sync(&self) {
        let dir = self.base.join("var/lib/pacman/sync");
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("testsync.db"));
        std::fs::copy(self.dir.join("sync/testsync.db.tar.gz"), dir.join("testsync.db")).unwrap();
    }

    /// A PKGBUILD `name` in pkgs/ whose build needs `synctool` from the sync repo.
    pub(crate) fn pkgbuild(&self, name: &str, makedepends: &str) {
        let d = self.dir.join("pkgs").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("PKGBUILD"),
            format!(
                "pkgname={name}\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\nmakedepends=({makedepends})\n\
                 build() {{\n  for d in {makedepends}; do test -x /usr/bin/$d || {{ echo \"$d is not installed\"; exit 1; }}; done\n  \
                 if curl -s -o /dev/null http://127.0.0.1:{port}/; then echo 'the build has the network'; exit 1; fi\n}}\n\
                 package() {{\n  install -d \"$pkgdir/usr/share/{name}\"\n  \
                 for d in {makedepends}; do cp /usr/share/$d/version \"$pkgdir/usr/share/{name}/$d\"; done\n}}\n",
                port = self.port
            ),
        )
        .unwrap();
    }

    pub(crate) fn config(&self, names: &[&str], jobs: usize) {
        let mut c = format!("[build]\njobs = {jobs}\n\n[pkgbuilds]\n");
        for n in names {
            c.push_str(&format!("{n} = {{ path = \"pkgs/{n}\" }}\n"));
        }
        std::fs::write(self.dir.join("pkgcell.toml"), c).unwrap();
    }

    /// `pkgcell ARGS` in the test directory, with its home and base.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = pkgcell();
        c.args(args).current_dir(self.dir.path()).env("PKGCELL_HOME", self.dir.join("home")).env("PKGCELL_BASE_DIR", &self.base);
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    pub(crate) fn json(&self, args: &[&str]) -> (i32, Value, Output) {
        let o = self.run(args);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
        (o.status.code().unwrap(), v, o)
    }

    fn hits(&self, file: &Path) -> usize {
        self.server.hits(&file.file_name().unwrap().to_string_lossy())
    }

    fn record(&self, pkgid: &str) -> Value {
        let path = self.dir.join("home/store/records").join(format!("{pkgid}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
    }
}

pub(crate) fn entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

fn install<'a>(plan: &'a Value, entry_name: &str, dep: &str) -> &'a Value {
    let e = entry(plan, entry_name);
    e["installs"].as_array().unwrap().iter().find(|i| i["name"] == dep).unwrap_or_else(|| panic!("{dep} not installed for {entry_name}: {e:#}"))
}

#[test]
fn a_makedepends_from_a_sync_repo_is_planned_downloaded_once_installed_offline_and_a_new_version_changes_the_pkgid() {
    let e = SyncEnv::new();
    let v1 = e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    e.pkgbuild("u1", "synctool");
    e.pkgbuild("u2", "synctool");
    e.config(&["u1", "u2"], 2);

    // plan says where synctool comes from, with its version.
    let (code, plan, o) = e.json(&["plan", "--json", "--offline"]);
    assert_eq!(code, 0, "{}", text(&o));
    let i = install(&plan, "u1", "synctool");
    assert_eq!(i["version"], "1.0-1", "{i:#}");
    assert_eq!(i["from"]["kind"], "sync", "{i:#}");
    assert_eq!(i["from"]["repo"], "testsync", "{i:#}");
    assert_eq!(i["from"]["filename"], v1.file_name().unwrap().to_str().unwrap());
    let table = stdout(&e.run(&["plan", "--offline"]));
    assert!(table.contains("installs synctool 1.0-1 (sync testsync)"), "{table}");
    let pkgid1 = entry(&plan, "u1")["pkgid"].as_str().unwrap().to_owned();

    // Two builds at once need it: it is downloaded once, then installed
    // from the cache into a build that has no network.
    let (code, v, o) = e.json(&["build", "--json", "-j", "2"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    for n in ["u1", "u2"] {
        assert_eq!(entry(&v, n)["status"], "built", "{v:#}");
    }
    assert_eq!(e.hits(&v1), 1, "downloaded once: {:?}", e.server.hits.lock().unwrap());
    let cached = e.dir.join("home/cache/pkg").join(v1.file_name().unwrap());
    assert_eq!(std::fs::read(&cached).unwrap(), std::fs::read(&v1).unwrap());
    let rec = e.record(&pkgid1);
    assert_eq!(rec["installed"], serde_json::json!(["synctool 1.0-1"]), "{rec:#}");
    assert!(rec["deps"][0].as_str().unwrap().starts_with("synctool sha256:"), "{rec:#}");
    // Nothing left half-downloaded in the cache.
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.join("home/cache/pkg"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second run builds nothing and downloads nothing.
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "u1")["status"], "cached", "{v:#}");
    assert_eq!(e.hits(&v1), 1);

    // A new version in the repository, synced into the base: under strict
    // dephash the dependents get new pkgids and build with it.
    let v2 = e.publish(&TestPackage { arch: "any", pkgver: "1.1", ..TestPackage::new("synctool") }, "2");
    e.sync();
    let (code, plan, o) = e.json(&["plan", "--json", "--offline"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(install(&plan, "u1", "synctool")["version"], "1.1-1");
    let pkgid2 = entry(&plan, "u1")["pkgid"].as_str().unwrap().to_owned();
    assert_ne!(pkgid1, pkgid2, "the dephash follows the sync package's version");
    assert_eq!(pkgid1.rsplit_once('-').unwrap().0, pkgid2.rsplit_once('-').unwrap().0, "same pkgbase and tree");
    let (code, v, o) = e.json(&["build", "--json", "u1"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "u1")["status"], "built", "{v:#}");
    assert_eq!(e.hits(&v2), 1);
    assert_eq!(e.record(&pkgid2)["installed"], serde_json::json!(["synctool 1.1-1"]));
}

#[test]
fn a_sync_package_that_does_not_match_its_db_sha256_fails_its_dependents_only() {
    let e = SyncEnv::new();
    let file = e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    // Another build of the same version: other bytes than the db says.
    let other = makepkg(
        &TestPackage { arch: "any", desc: "other bytes", ..TestPackage::new("synctool") },
        &e.dir.join("work-other"),
        &e.dir.join("made-other"),
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::copy(&other, &file).unwrap();
    e.pkgbuild("u1", "synctool");
    e.pkgbuild("plain", "");
    e.config(&["u1", "plain"], 1);

    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 1, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "plain")["status"], "built", "{v:#}");
    assert_eq!(entry(&v, "u1")["status"], "failed", "{v:#}");
    let reason = entry(&v, "u1")["reason"].as_str().unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(reason.contains(name) && reason.contains("expected") && reason.contains("got"), "{reason}");
    assert!(!e.dir.join("home/cache/pkg").join(name).exists(), "a bad file is not kept in the cache");
}

/// Publish A with one config; a second config with the same [repo] that
/// has only B (depends on A) installs A from the published repository.
#[test]
fn a_dependency_found_only_in_the_published_repo_is_installed_from_it() {
    let d = TestDir::new();
    let pkg = |name: &str, body: &str| {
        let p = d.join("pkgs").join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("PKGBUILD"), format!("pkgname={name}\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n{body}")).unwrap();
    };
    pkg("ownlib", "package() {\n  install -d \"$pkgdir/usr/share/ownlib\"\n  echo from-the-repo > \"$pkgdir/usr/share/ownlib/file\"\n}\n");
    pkg(
        "user",
        "depends=(ownlib)\nbuild() {\n  grep -q from-the-repo /usr/share/ownlib/file\n}\n\
         package() {\n  install -d \"$pkgdir/usr/share/user\"\n}\n",
    );
    let repo = "[repo]\nname = \"own\"\npublish = \"repo\"\n\n";
    let run = |args: &[&str]| output(pkgcell_in(d.path()).args(args));
    std::fs::write(d.join("pkgcell.toml"), format!("{repo}[pkgbuilds]\nownlib = {{ path = \"pkgs/ownlib\" }}\n")).unwrap();
    let o = run(&["build"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["publish"]);
    assert!(o.status.success(), "{}", text(&o));

    std::fs::write(d.join("pkgcell.toml"), format!("{repo}[pkgbuilds]\nuser = {{ path = \"pkgs/user\" }}\n")).unwrap();
    let o = run(&["plan", "--json", "--offline"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let i = install(&plan, "user", "ownlib");
    assert_eq!(i["from"]["kind"], "repo", "{i:#}");
    assert_eq!(i["from"]["repo"], "own", "{i:#}");
    assert_eq!(i["version"], "1.0-1");
    // `pkgcell fetch` puts it into the shared package cache, checked.
    let o = run(&["fetch"]);
    assert!(stdout(&o).contains("==> user: 0 sources and 1 repository package fetched"), "{}", text(&o));
    let filename = i["from"]["filename"].as_str().unwrap();
    assert!(d.join("home/cache/pkg").join(filename).is_file());
    let o = run(&["build", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    assert_eq!(entry(&v, "user")["status"], "built", "{v:#}\n{}", text(&o));
    let pkgid = entry(&v, "user")["pkgid"].as_str().unwrap();
    let rec: Value =
        serde_json::from_slice(&std::fs::read(d.join("home/store/records").join(format!("{pkgid}.json"))).unwrap()).unwrap();
    assert_eq!(rec["installed"], serde_json::json!(["ownlib 1.0-1"]), "{rec:#}");

    // With the PKGBUILD back in the config, it wins over the published copy.
    std::fs::write(
        d.join("pkgcell.toml"),
        format!("{repo}[pkgbuilds]\nuser = {{ path = \"pkgs/user\" }}\nownlib = {{ path = \"pkgs/ownlib\" }}\n"),
    )
    .unwrap();
    let o = run(&["plan", "--json", "--offline"]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    assert_eq!(install(&plan, "user", "ownlib")["from"], serde_json::json!({"kind": "pkgbuild", "entry": "ownlib"}));
}

/// The recorded dependency set is what pacman installed: a database whose
/// version does not match the package file (same bytes, so the sha256
/// check passes) is caught when the layer's pacman database is read.
#[test]
fn a_layer_that_holds_another_version_than_planned_is_a_clear_error() {
    let e = SyncEnv::new();
    e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    let db = e.base.join("var/lib/pacman/sync/testsync.db");
    let x = e.dir.join("db-edit");
    std::fs::create_dir_all(&x).unwrap();
    let o = output(Command::new("tar").arg("-xzf").arg(&db).arg("-C").arg(&x));
    assert!(o.status.success(), "{}", text(&o));
    let desc = x.join("synctool-1.0-1/desc");
    let t = std::fs::read_to_string(&desc).unwrap().replace("%VERSION%\n1.0-1\n", "%VERSION%\n1.5-1\n");
    std::fs::write(&desc, t).unwrap();
    std::fs::remove_file(&db).unwrap();
    let o = output(Command::new("tar").arg("-czf").arg(&db).arg("-C").arg(&x).arg("synctool-1.0-1"));
    assert!(o.status.success(), "{}", text(&o));
    e.pkgbuild("u1", "synctool");
    e.config(&["u1"], 1);

    let (_, plan, _) = e.json(&["plan", "--json", "--offline"]);
    assert_eq!(install(&plan, "u1", "synctool")["version"], "1.5-1");
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 1, "{v:#}\n{}", text(&o));
    let reason = entry(&v, "u1")["reason"].as_str().unwrap();
    assert!(reason.contains("planned synctool 1.5-1, installed synctool 1.0-1"), "{reason}");
    assert!(std::fs::read_dir(e.dir.join("home/store/records")).map_or(true, |mut d| d.next().is_none()), "nothing recorded");
}

/// `store gc` collects the shared package cache: the package only a
/// dropped record installed, a stray file and a `.part-*` directory left by
/// a killed download go; the package the kept record installed and a fresh
/// `.part-*` directory (a download that may be running) stay.
#[test]
fn store_gc_removes_cached_packages_no_kept_record_needs_and_stale_partial_downloads() {
    let e = SyncEnv::new();
    let v1 = e.publish(&TestPackage { arch: "any", ..TestPackage::new("synctool") }, "1");
    e.sync();
    e.pkgbuild("u1", "synctool");
    e.config(&["u1"], 1);
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    let pkgid1 = entry(&v, "u1")["pkgid"].as_str().unwrap().to_owned();
    let v2 = e.publish(&TestPackage { arch: "any", pkgver: "1.1", ..TestPackage::new("synctool") }, "2");
    e.sync();
    let (code, v, o) = e.json(&["build", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(entry(&v, "u1")["status"], "built", "{v:#}");
    let pkgid2 = entry(&v, "u1")["pkgid"].as_str().unwrap().to_owned();
    assert_ne!(pkgid1, pkgid2);

    let cache = e.dir.join("home/cache/pkg");
    let (name1, name2) = (v1.file_name().unwrap().to_str().unwrap(), v2.file_name().unwrap().to_str().unwrap());
    assert!(cache.join(name1).is_file() && cache.join(name2).is_file(), "both versions were downloaded");
    std::fs::write(cache.join("stray-1-1-any.pkg.tar.zst"), "stray").unwrap();
    let (stale, fresh) = (cache.join(".part-killed"), cache.join(".part-running"));
    for d in [&stale, &fresh] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("file"), "partial").unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&stale).unwrap().set_modified(hour_ago).unwrap();

    let (code, v, o) = e.json(&["store", "gc", "--json"]);
    assert_eq!(code, 0, "{v:#}\n{}", text(&o));
    assert_eq!(v["gc"]["records"], serde_json::json!([pkgid1]), "{v:#}");
    let mut removed: Vec<&str> = v["packages"]["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    removed.sort();
    assert_eq!(removed, ["stray-1-1-any.pkg.tar.zst", name1], "{v:#}");
    assert_eq!(v["packages"]["partial"], 1, "{v:#}");
    let freed = std::fs::metadata(&v1).unwrap().len() + "stray".len() as u64 + "partial".len() as u64;
    assert_eq!(v["packages"]["bytes"], freed, "{v:#}");
    assert!(!cache.join(name1).exists() && !cache.join("stray-1-1-any.pkg.tar.zst").exists() && !stale.exists());
    assert_eq!(std::fs::read(cache.join(name2)).unwrap(), std::fs::read(&v2).unwrap(), "the kept record's package stays");
    assert!(fresh.join("file").is_file(), "a fresh partial download stays");

    // Nothing more to collect; the text report says so.
    let o = e.run(&["store", "gc"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("0 cached packages and 0 partial downloads (0 bytes) removed"), "{}", text(&o));
    assert!(cache.join(name2).is_file() && fresh.exists());
}
