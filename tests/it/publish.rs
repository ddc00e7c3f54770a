//! The publish stage end to end (issue 3): packages built by the real
//! makepkg, published by `pkgcell publish` / `pkgcell repo add`, read by the
//! real pacman of the test base (6.0.2 or 7.1, as root of a `pkgcell run`
//! sandbox) and compared with the real repo-add.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Read,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use crate::pkgutil::{TestPackage, makepkg, ok, pkgcell, run, show, temp_dir};

/// Test packages, built once per test binary (makepkg takes a second each).
struct Fixture {
    libgreet: PathBuf,
    /// `hello` 1:1.0-1, depends on libgreet; an epoch to keep `:` in names.
    hello: PathBuf,
    /// `hello` 1:1.1-1.
    hello_new: PathBuf,
    /// `extra` 0.1-1, arch any.
    extra: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Kept for the whole test run; it is small.
        let dir = temp_dir().keep();
        let out = dir.join("pkgs");
        let work = dir.join("work");
        let libgreet = TestPackage { desc: "Greeting  data\tlibrary", ..TestPackage::new("libgreet") };
        let hello = TestPackage { epoch: Some(1), depends: &["libgreet>=1.0"], ..TestPackage::new("hello") };
        let hello_new = TestPackage { pkgver: "1.1", ..hello.clone() };
        let extra = TestPackage { pkgver: "0.1", arch: "any", ..TestPackage::new("extra") };
        Fixture {
            libgreet: makepkg(&libgreet, &work, &out),
            hello: makepkg(&hello, &work, &out.join("old")),
            hello_new: makepkg(&hello_new, &work, &out),
            extra: makepkg(&extra, &work, &out),
        }
    })
}

/// `pkgcell publish --to DIR --repo test --arch x86_64 ...`.
fn publish(to: &Path, args: &[&str], inputs: &[&Path]) -> Command {
    let mut cmd = pkgcell();
    cmd.args(["publish", "--repo", "test", "--arch", "x86_64", "--json", "--to"]).arg(to).args(args).args(inputs);
    cmd
}

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("--json output is not JSON: {e}\n{}", show(out)))
}

/// Every member of a db archive: path → bytes.
fn read_db(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(file).unwrap());
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// A desc as sections: `%KEY%` → values.
fn sections(desc: &[u8]) -> BTreeMap<String, Vec<String>> {
    let text = String::from_utf8(desc.to_vec()).unwrap();
    let mut out = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let key = lines.next().unwrap().to_owned();
        out.insert(key, lines.map(str::to_owned).collect());
    }
    out
}

/// The package files a db names (`%FILENAME%` of every desc).
fn named_files(db: &Path) -> Vec<String> {
    read_db(db)
        .iter()
        .filter(|(k, _)| k.ends_with("/desc"))
        .map(|(_, v)| sections(v)["%FILENAME%"][0].clone())
        .collect()
}

/// Asserts that both dbs pacman downloads name only files that exist.
fn assert_names_only_existing_files(arch_dir: &Path) {
    for db in ["test.db", "test.files"] {
        let path = arch_dir.join(db);
        if !path.exists() {
            continue;
        }
        for file in named_files(&path) {
            assert!(arch_dir.join(&file).is_file(), "{db} names {file}, which is missing");
        }
    }
}

/// A pacman client with its own root, db path and config: the test base's
/// pacman, run as root of a sandbox on the base with `dir` at /client, the
/// repository at /server and the keyring at /gnupg.
struct Pacman {
    /// The root pacman installs into (outside: `dir/root`).
    root: PathBuf,
    dir: PathBuf,
    server: PathBuf,
    gpgdir: PathBuf,
}

impl Pacman {
    fn new(dir: &Path, server: &Path, siglevel: &str, gpgdir: Option<&Path>) -> Pacman {
        let root = dir.join("root");
        for d in [&root, &dir.join("db"), &dir.join("cache")] {
            fs::create_dir_all(d).unwrap();
        }
        let gpgdir = gpgdir.map_or_else(|| dir.join("gnupg"), Path::to_owned);
        fs::create_dir_all(&gpgdir).unwrap();
        fs::write(
            dir.join("pacman.conf"),
            format!(
                "[options]\nArchitecture = x86_64\nSigLevel = {siglevel}\nDBPath = /client/db\nCacheDir = /client/cache\n\
                 LogFile = /client/pacman.log\nGPGDir = /gnupg\n\n[test]\nServer = file:///server\n"
            ),
        )
        .unwrap();
        Pacman { root, dir: dir.to_owned(), server: server.to_owned(), gpgdir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = pkgcell();
        cmd.arg("run")
            .arg("--lower")
            .arg(crate::util::test_base())
            .arg("--bind")
            .arg(format!("{}:/client", self.dir.display()))
            .arg("--ro-bind")
            .arg(format!("{}:/server", self.server.display()))
            .arg("--bind")
            .arg(format!("{}:/gnupg", self.gpgdir.display()))
            .args(["--", "pacman", "--noconfirm", "--root", "/client/root", "--dbpath", "/client/db", "--config", "/client/pacman.conf"])
            .args(args);
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(ok(&mut self.cmd(args)).stdout).unwrap()
    }
}

#[test]
fn pacman_syncs_searches_and_installs_from_a_published_repo() {
    let fx = fixture();
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    let out = ok(&mut publish(&repo, &[], &[&fx.libgreet, &fx.hello]));
    assert_eq!(report(&out)["added"].as_array().unwrap().len(), 2, "{}", show(&out));
    let arch_dir = repo.join("x86_64");

    // The layout: real files, the epoch `:` kept, both views.
    for name in ["test.db", "test.files", "test.db.tar.zst", "test.files.tar.zst"] {
        let meta = fs::symlink_metadata(arch_dir.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
    }
    let hello = "hello-1:1.0-1-x86_64.pkg.tar.zst";
    assert!(arch_dir.join(hello).is_file());
    assert!(arch_dir.join("latest").join(hello).is_file());
    assert!(arch_dir.join("updated").join(hello).is_file());

    let pacman = Pacman::new(&tmp.path().join("client"), &arch_dir, "Never", None);
    pacman.ok(&["-Sy"]);
    let found = pacman.ok(&["-Ss", "greet"]);
    assert!(found.contains("test/libgreet 1.0-1"), "{found}");
    let found = pacman.ok(&["-Ss", "hello"]);
    assert!(found.contains("test/hello 1:1.0-1"), "{found}");
    pacman.ok(&["-S", "hello"]);
    assert!(pacman.root.join("usr/bin/hello").is_file());
    assert!(pacman.root.join("usr/share/libgreet/version").is_file(), "the dependency was not installed");
    let info = pacman.ok(&["-Qi", "hello"]);
    for line in ["1:1.0-1", "libgreet>=1.0", "https://example.org/hello", "pkgcell-test", "hello-virtual"] {
        assert!(info.contains(line), "-Qi lacks {line}:\n{info}");
    }
    assert!(pacman.ok(&["-Qi", "libgreet"]).contains("Greeting data library"));
}

/// Copies the fixture packages into a fresh directory (repo-add wants them
/// next to the db).
fn copy_packages(dir: &Path) -> Vec<PathBuf> {
    let fx = fixture();
    fs::create_dir_all(dir).unwrap();
    [&fx.libgreet, &fx.hello, &fx.extra]
        .iter()
        .map(|p| {
            let to = dir.join(p.file_name().unwrap());
            fs::copy(p, &to).unwrap();
            to
        })
        .collect()
}

/// Compares two files dbs: the same entries, each desc with the same
/// sections (except `%MD5SUM%` when `ignore_md5`), the same file lists.
fn assert_same_db(theirs: &Path, ours: &Path, ignore_md5: bool) {
    let theirs = read_db(theirs);
    let ours = read_db(ours);
    let names = |db: &BTreeMap<String, Vec<u8>>| db.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&theirs), names(&ours), "different entries");
    for (path, data) in &theirs {
        if path.ends_with("/desc") {
            let mut expected = sections(data);
            if ignore_md5 {
                expected.remove("%MD5SUM%");
            }
            assert_eq!(expected, sections(&ours[path]), "{path} differs");
        } else if path.ends_with("/files") {
            let lines = |d: &[u8]| String::from_utf8(d.to_vec()).unwrap().lines().map(str::to_owned).collect::<BTreeSet<_>>();
            assert_eq!(lines(data), lines(&ours[path]), "{path} differs");
        }
    }
}

#[test]
fn repo_add_writes_what_real_repo_add_writes() {
    let tmp = temp_dir();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let pa = copy_packages(&a);
    let pb = copy_packages(&b);
    let pc = copy_packages(&c);
    ok(Command::new("repo-add").arg(a.join("test.db.tar.zst")).args(&pa));
    ok(pkgcell().args(["repo", "add", "--files"]).arg(b.join("test.db.tar.zst")).args(&pb));
    ok(pkgcell().args(["repo", "add", "--desc-version", "v1"]).arg(c.join("test.db.tar.zst")).args(&pc));

    // v2 (the default): every field equal but %MD5SUM%, which v2 dropped.
    assert_same_db(&a.join("test.files.tar.zst"), &b.join("test.files.tar.zst"), true);
    assert_same_db(&a.join("test.db.tar.zst"), &b.join("test.db.tar.zst"), true);
    // v1: byte for byte what repo-add 6 writes.
    let (theirs, ours) = (read_db(&a.join("test.files.tar.zst")), read_db(&c.join("test.files.tar.zst")));
    assert_eq!(theirs, ours);
    assert!(String::from_utf8_lossy(&ours["hello-1:1.0-1/desc"]).contains("%MD5SUM%"));

    // repo-add makes symlinks; we make real files.
    assert!(fs::symlink_metadata(a.join("test.db")).unwrap().file_type().is_symlink());
    assert!(fs::symlink_metadata(b.join("test.db")).unwrap().file_type().is_file());
    assert_eq!(fs::read(b.join("test.db")).unwrap(), fs::read(b.join("test.db.tar.zst")).unwrap());

    // repo remove vs repo-remove.
    ok(Command::new("repo-remove").arg(a.join("test.db.tar.zst")).arg("hello"));
    ok(pkgcell().args(["repo", "remove"]).arg(b.join("test.db.tar.zst")).arg("hello"));
    assert_same_db(&a.join("test.files.tar.zst"), &b.join("test.files.tar.zst"), true);
    assert_same_db(&a.join("test.db.tar.zst"), &b.join("test.db.tar.zst"), true);
    assert!(!read_db(&b.join("test.db")).keys().any(|k| k.starts_with("hello")));
}

#[test]
fn repo_add_extends_a_db_made_by_repo_add() {
    let tmp = temp_dir();
    let dir = tmp.path().join("r");
    let pkgs = copy_packages(&dir);
    ok(Command::new("repo-add").arg(dir.join("test.db.tar.zst")).args(&pkgs[..2]));
    let out = ok(pkgcell().args(["repo", "add", "--json"]).arg(dir.join("test.db.tar.zst")).arg(&pkgs[2]));
    assert_eq!(report(&out)["packages_read"], 1);
    let entries: BTreeSet<String> = read_db(&dir.join("test.db")).into_keys().filter(|k| k.ends_with("/desc")).collect();
    assert_eq!(entries, ["extra-0.1-1/desc", "hello-1:1.0-1/desc", "libgreet-1.0-1/desc"].map(String::from).into());
}

#[test]
fn second_publish_reads_only_the_new_package() {
    let fx = fixture();
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    let first = report(&ok(&mut publish(&repo, &[], &[&fx.libgreet, &fx.hello])));
    assert_eq!(first["packages_read"], 2);
    let second = report(&ok(&mut publish(&repo, &[], &[&fx.libgreet, &fx.hello, &fx.extra])));
    assert_eq!(second["packages_read"], 1, "{second}");
    assert_eq!(second["unchanged"].as_array().unwrap().len(), 2);
    assert_eq!(second["added"][0]["name"], "extra");
    // updated/ holds only what this publish changed.
    let updated: Vec<_> = fs::read_dir(repo.join("x86_64/updated")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(updated, ["extra-0.1-1-any.pkg.tar.zst"]);
    assert_eq!(named_files(&repo.join("x86_64/test.db")).len(), 3);

    // The same for repo add.
    let dir = tmp.path().join("plain");
    let pkgs = copy_packages(&dir);
    let db = dir.join("test.db.tar.zst");
    assert_eq!(report(&ok(pkgcell().args(["repo", "add", "--json"]).arg(&db).args(&pkgs[..2])))["packages_read"], 2);
    assert_eq!(report(&ok(pkgcell().args(["repo", "add", "--json"]).arg(&db).args(&pkgs)))["packages_read"], 1);
}

#[test]
fn newer_version_replaces_and_old_files_are_pruned_beyond_keep() {
    let fx = fixture();
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    let arch_dir = repo.join("x86_64");
    ok(&mut publish(&repo, &["--keep", "1"], &[&fx.libgreet, &fx.hello]));
    let out = report(&ok(&mut publish(&repo, &["--keep", "1"], &[&fx.libgreet, &fx.hello_new])));
    assert_eq!(out["added"][0]["version"], "1:1.1-1", "{out}");
    assert!(!arch_dir.join("hello-1:1.0-1-x86_64.pkg.tar.zst").exists(), "old version not pruned");
    assert!(arch_dir.join("hello-1:1.1-1-x86_64.pkg.tar.zst").is_file());
    let latest: BTreeSet<_> = fs::read_dir(arch_dir.join("latest")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(latest.contains(std::ffi::OsStr::new("hello-1:1.1-1-x86_64.pkg.tar.zst")));
    assert_eq!(latest.len(), 2);

    // With --keep 2 (the default) the previous version stays as a file,
    // outside the db, for downgrades.
    let kept = tmp.path().join("kept");
    ok(&mut publish(&kept, &[], &[&fx.libgreet, &fx.hello]));
    ok(&mut publish(&kept, &[], &[&fx.libgreet, &fx.hello_new]));
    assert!(kept.join("x86_64/hello-1:1.0-1-x86_64.pkg.tar.zst").is_file());
    assert!(named_files(&kept.join("x86_64/test.db")).contains(&"hello-1:1.1-1-x86_64.pkg.tar.zst".to_owned()));

    // --remove takes the package out of the db, then its files.
    let out = report(&ok(&mut publish(&repo, &["--remove", "hello"], &[])));
    assert_eq!(out["removed"][0], "hello");
    assert_eq!(named_files(&arch_dir.join("test.db")), ["libgreet-1.0-1-x86_64.pkg.tar.zst"]);
    assert!(!arch_dir.join("hello-1:1.1-1-x86_64.pkg.tar.zst").exists());
}

/// The steps `PKGCELL_TEST_KILL_AT` can abort at, in the order they run.
const KILL_POINTS: &[&str] = &[
    "locked",
    "read",
    "package-in-place",
    "packages-in-place",
    "db-temp-written",
    "files-db-renamed",
    "db-renamed",
    "state-saved",
    "pruned",
    "views",
];

#[test]
fn a_publish_killed_at_any_step_leaves_a_repo_pacman_reads() {
    let fx = fixture();
    for step in KILL_POINTS {
        let tmp = temp_dir();
        let repo = tmp.path().join("repo");
        let arch_dir = repo.join("x86_64");
        ok(&mut publish(&repo, &["--keep", "1"], &[&fx.libgreet, &fx.hello]));

        let killed = run(publish(&repo, &["--keep", "1"], &[&fx.libgreet, &fx.hello_new, &fx.extra]).env("PKGCELL_TEST_KILL_AT", step));
        assert_eq!(killed.status.signal(), Some(6), "not aborted at {step}: {}", show(&killed));

        // Whatever the step: complete dbs naming only present files, and a
        // client that can sync and install from them.
        assert_names_only_existing_files(&arch_dir);
        let pacman = Pacman::new(&tmp.path().join("client"), &arch_dir, "Never", None);
        pacman.ok(&["-Sy"]);
        pacman.ok(&["-S", "hello"]);

        // The next publish repairs everything.
        ok(&mut publish(&repo, &["--keep", "1"], &[&fx.libgreet, &fx.hello_new, &fx.extra]));
        assert_names_only_existing_files(&arch_dir);
        let mut names = named_files(&arch_dir.join("test.db"));
        names.sort();
        assert_eq!(
            names,
            ["extra-0.1-1-any.pkg.tar.zst", "hello-1:1.1-1-x86_64.pkg.tar.zst", "libgreet-1.0-1-x86_64.pkg.tar.zst"],
            "after a kill at {step}"
        );
        let leftovers: Vec<_> = fs::read_dir(&arch_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("pkgcell-tmp") || n.starts_with("hello-1:1.0"))
            .collect();
        assert!(leftovers.is_empty(), "after a kill at {step}: {leftovers:?}");
        // -Syy: the new db may carry the same mtime second as the old one,
        // which pacman's if-modified-since check would take as unchanged.
        pacman.ok(&["-Syyu"]);
        assert!(pacman.ok(&["-Q", "hello"]).contains("1:1.1-1"), "after a kill at {step}");
    }
}

/// Every regular file under `dir` with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A tar.zst with the given members (name, content).
fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
}

#[test]
fn bad_package_files_fail_with_exit_2_naming_the_file_and_write_nothing() {
    let fx = fixture();
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    ok(&mut publish(&repo, &[], &[&fx.libgreet]));
    let before = snapshot(&repo);
    let snapshot_before_x86 = snapshot(&repo.join("x86_64"));
    let plain = tmp.path().join("plain");
    let plain_pkgs = copy_packages(&plain);
    ok(pkgcell().args(["repo", "add"]).arg(plain.join("test.db.tar.zst")).arg(&plain_pkgs[0]));
    let plain_before = snapshot(&plain);

    let good = fs::read(&fx.hello).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text-1-1-x86_64.pkg.tar.zst", b"just some text\n".to_vec(), "not a zstd-compressed package"),
        ("truncated-1-1-x86_64.pkg.tar.zst", good[..good.len() / 2].to_vec(), "corrupt or truncated"),
        ("nopkginfo-1-1-x86_64.pkg.tar.zst", archive(&[("usr/bin/x", b"x")]), "no .PKGINFO"),
        (
            "slash-1-1-x86_64.pkg.tar.zst",
            archive(&[(".PKGINFO", b"pkgname = evil/name\npkgver = 1-1\narch = x86_64\n")]),
            "pkgname",
        ),
        ("noversion-1-1-x86_64.pkg.tar.zst", archive(&[(".PKGINFO", b"pkgname = nover\narch = x86_64\n")]), "pkgver"),
    ];
    for (name, bytes, why) in cases {
        let bad = tmp.path().join(name);
        fs::write(&bad, bytes).unwrap();
        for mut cmd in [
            publish(&repo, &[], &[&fx.hello, &bad]),
            {
                let mut c = pkgcell();
                c.args(["repo", "add"]).arg(plain.join("test.db.tar.zst")).arg(&plain_pkgs[1]).arg(&bad);
                c
            },
        ] {
            let out = run(&mut cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name}: {}", show(&out));
            assert!(stderr.contains(&bad.display().to_string()), "{name}: error does not name the file: {stderr}");
            assert!(stderr.contains(why), "{name}: error does not say {why:?}: {stderr}");
        }
        assert_eq!(snapshot(&repo), before, "{name}: the published repo changed");
        assert_eq!(snapshot(&plain), plain_before, "{name}: the repo-add style db changed");
    }

    // Neither a missing input nor a wrong architecture gets further.
    let out = run(&mut publish(&repo, &[], &[&tmp.path().join("missing.pkg.tar.zst")]));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pkg.tar.zst"));
    let out = run(pkgcell().args(["publish", "--repo", "test", "--arch", "aarch64", "--to"]).arg(&repo).arg(&fx.hello));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not aarch64"));
    assert!(!repo.join("aarch64/test.db").exists());
    // One repository per directory: pruning for another would delete ours.
    let out = run(pkgcell().args(["publish", "--repo", "other", "--to"]).arg(&repo).arg(&fx.hello));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds repository \"test\""), "{}", show(&out));
    assert_eq!(snapshot(&repo.join("x86_64")), snapshot_before_x86);
}

#[test]
fn names_with_a_newline_are_refused_by_repo_add_and_publish_and_the_db_stays_byte_identical() {
    let fx = fixture();
    let tmp = temp_dir();
    let plain = tmp.path().join("plain");
    let plain_pkgs = copy_packages(&plain);
    ok(pkgcell().args(["repo", "add"]).arg(plain.join("test.db.tar.zst")).arg(&plain_pkgs[0]));
    let plain_before = snapshot(&plain);
    let repo = tmp.path().join("repo");
    ok(&mut publish(&repo, &[], &[&fx.libgreet]));
    let repo_before = snapshot(&repo);

    // A file name that would write "%NAME%\ninjected" into desc.
    let evil_dir = tmp.path().join("evil");
    fs::create_dir(&evil_dir).unwrap();
    let evil_name = evil_dir.join("x\n%NAME%\ninjected\n%FILENAME%\nhello-1-1-x86_64.pkg.tar.zst");
    fs::copy(&fx.hello, &evil_name).unwrap();
    // A member name that would write lines into the files entry.
    let evil_member = tmp.path().join("member-1-1-x86_64.pkg.tar.zst");
    fs::write(
        &evil_member,
        archive(&[
            (".PKGINFO", b"pkgname = member\npkgver = 1-1\narch = x86_64\n"),
            ("usr/bin/x\n%DEPENDS%\ninjected", b"x"),
        ]),
    )
    .unwrap();
    for (bad, what, shown) in [
        (&evil_name, "file name", r#""x\n%NAME%\ninjected\n%FILENAME%\nhello-1-1-x86_64.pkg.tar.zst""#),
        (&evil_member, "archive member", r#""usr/bin/x\n%DEPENDS%\ninjected""#),
    ] {
        for mut cmd in [
            {
                let mut c = pkgcell();
                c.args(["repo", "add"]).arg(plain.join("test.db.tar.zst")).arg(&plain_pkgs[1]).arg(bad);
                c
            },
            publish(&repo, &[], &[&fx.hello, bad]),
        ] {
            let out = run(&mut cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
            assert!(
                stderr.contains(&format!("{what} {shown} cannot go into a pacman database: it contains a control character")),
                "{what}: the error does not name the value, escaped: {stderr}"
            );
        }
        assert_eq!(snapshot(&plain), plain_before, "{what}: the repo-add style db changed");
        assert_eq!(snapshot(&repo), repo_before, "{what}: the published repo changed");
    }
}

/// gpg homes made by a test; their agents are stopped when it ends.
struct GpgHomes(Vec<PathBuf>);

impl Drop for GpgHomes {
    fn drop(&mut self) {
        for home in &self.0 {
            let _ = Command::new("gpgconf").args(["--kill", "all"]).env("GNUPGHOME", home).output();
        }
    }
}

#[test]
fn signed_repo_is_accepted_by_pacman_and_a_tampered_package_is_refused() {
    let fx = fixture();
    let tmp = temp_dir();
    let gnupg = tmp.path().join("signer");
    let keyring = tmp.path().join("keyring");
    let _homes = GpgHomes(vec![gnupg.clone(), keyring.clone()]);
    fs::create_dir_all(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", &gnupg).arg("--batch").args(args);
        ok(&mut cmd)
    };
    gpg(&["--passphrase", "", "--quick-gen-key", "pkgcell test <test@example.invalid>", "default", "default", "never"]);
    let listing = String::from_utf8(gpg(&["--with-colons", "--list-secret-keys"]).stdout).unwrap();
    let fpr = listing.lines().find_map(|l| l.strip_prefix("fpr:")).unwrap().trim_matches(':').to_owned();
    let public = tmp.path().join("public.asc");
    fs::write(&public, gpg(&["--armor", "--export", &fpr]).stdout).unwrap();

    // pacman's own keyring, made rootless, trusting only this key.
    let pacman_key = |args: &[&str]| {
        ok(Command::new("unshare").args(["--map-root-user", "pacman-key", "--gpgdir"]).arg(&keyring).args(args))
    };
    pacman_key(&["--init"]);
    pacman_key(&["--add", public.to_str().unwrap()]);
    pacman_key(&["--lsign-key", &fpr]);

    let repo = tmp.path().join("repo");
    let arch_dir = repo.join("x86_64");
    let out = report(&ok(publish(&repo, &["--sign", &fpr], &[&fx.libgreet, &fx.hello]).env("GNUPGHOME", &gnupg)));
    assert!(out["added"].as_array().unwrap().iter().all(|p| p["signed"] == true), "{out}");
    for file in ["test.db.sig", "test.files.sig", "test.db.tar.zst.sig", "hello-1:1.0-1-x86_64.pkg.tar.zst.sig"] {
        assert!(arch_dir.join(file).is_file(), "{file} missing");
    }
    let db = read_db(&arch_dir.join("test.db"));
    assert!(sections(&db["hello-1:1.0-1/desc"]).contains_key("%PGPSIG%"));

    let pacman = Pacman::new(&tmp.path().join("client"), &arch_dir, "Required", Some(&keyring));
    pacman.ok(&["-Sy"]);
    pacman.ok(&["-S", "hello"]);
    assert!(pacman.root.join("usr/bin/hello").is_file());

    // Tamper with the published file (a new file: the original is a hard
    // link of the fixture) and install from a fresh client.
    let published = arch_dir.join("hello-1:1.0-1-x86_64.pkg.tar.zst");
    let mut bytes = fs::read(&published).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::remove_file(&published).unwrap();
    fs::write(&published, bytes).unwrap();
    let fresh = Pacman::new(&tmp.path().join("client2"), &arch_dir, "Required", Some(&keyring));
    fresh.ok(&["-Sy"]);
    let out = run(&mut fresh.cmd(&["-S", "hello"]));
    assert!(!out.status.success(), "pacman installed a tampered package: {}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("signature") || stderr.contains("corrupted"), "{stderr}");
    assert!(!fresh.root.join("usr/bin/hello").exists());
}

#[test]
fn a_second_publisher_waits_for_the_lock() {
    let fx = fixture();
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    ok(&mut publish(&repo, &[], &[&fx.libgreet]));
    let lock = fs::File::open(repo.join("x86_64/.test.pkgcell-lock")).unwrap();
    lock.lock().unwrap();
    let mut child = publish(&repo, &[], &[&fx.extra])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "the second publisher did not wait");
    assert_eq!(named_files(&repo.join("x86_64/test.db")).len(), 1);
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting"), "{}", show(&out));
    assert_eq!(named_files(&repo.join("x86_64/test.db")).len(), 2);
}
