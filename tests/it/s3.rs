//! S3 for real (issue 8): `pkgcell publish --to s3://` and the remote store
//! `[store] remote`, against s3s-fs (a directory-backed S3 server) started
//! on loopback by each test. pacman reads the published bucket over HTTP,
//! from a loopback server over s3s-fs's directory (it keeps each object as
//! the file ROOT/BUCKET/KEY).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::build::{Env, pkg, status};
use crate::pkgutil::{TestPackage, makepkg};
use crate::util::*;

const KEY: &str = "pkgcell-test-key";
const SECRET: &str = "pkgcell-test-secret";
const BUCKET: &str = "bucket";

/// The s3s-fs binary: $PKGCELL_TEST_S3S_FS (set by `make test`), else where
/// scripts/install-s3s-fs puts it. Missing is a failure, not a skip.
fn s3s_fs() -> PathBuf {
    let p = std::env::var_os("PKGCELL_TEST_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/pkgcell-tools/s3s-fs-0.14.1/bin/s3s-fs"));
    assert!(p.is_file(), "s3s-fs not found at {}: run scripts/install-deps (it runs scripts/install-s3s-fs)", p.display());
    p
}

/// One s3s-fs on a free loopback port, over a directory with one bucket;
/// killed on drop.
struct S3Server {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3Server { child, port, root: root.to_owned() };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "s3s-fs did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file holding object `key`.
    fn object(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// The credentials and endpoint, as pkgcell reads them.
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", KEY).env("AWS_SECRET_ACCESS_KEY", SECRET).env("AWS_ENDPOINT_URL", self.endpoint())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pkgcell publish --to s3://bucket/repo --repo test --arch x86_64 --json --keep 1 FILES`.
fn publish(s3: &S3Server, home: &Path, files: &[PathBuf], kill_at: Option<&str>) -> Output {
    let mut c = pkgcell();
    s3.env(&mut c)
        .env("PKGCELL_HOME", home)
        .args(["publish", "--to", &format!("s3://{BUCKET}/repo"), "--repo", "test", "--arch", "x86_64", "--json", "--keep", "1"])
        .args(files);
    if let Some(step) = kill_at {
        c.env("PKGCELL_TEST_KILL_AT", step);
    }
    output(&mut c)
}

fn upload_report(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(o)));
    v["s3"].clone()
}

fn operations(s3: &Value) -> Vec<String> {
    s3["operations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect()
}

fn is_db(op: &str) -> bool {
    let name = op.rsplit('/').next().unwrap();
    name.starts_with("test.db") || name.starts_with("test.files")
}

/// A rootless pacman whose `[test]` repository is `server`.
fn pacman(client: &Path, server: &str, args: &[&str]) -> Output {
    pacman_client(client, "test", server, args)
}

#[test]
fn publishing_to_s3_sends_only_what_changed_packages_before_dbs_and_deletes_old_files_last() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let home = t.join("home");
    let (work, out) = (t.join("work"), t.join("out"));
    let libfoo = makepkg(&TestPackage::new("libfoo"), &work, &out);
    let bar1 = makepkg(&TestPackage { depends: &["libfoo"], ..TestPackage::new("bar") }, &work, &out);

    // First publish: everything, packages before any db.
    let r = upload_report(&publish(&s3, &home, &[libfoo.clone(), bar1.clone()], None));
    let ops = operations(&r);
    assert_eq!(r["puts"], 6, "2 packages and 4 dbs: {r:#}");
    let first_db = ops.iter().position(|o| is_db(o)).unwrap();
    assert!(ops[..first_db].iter().all(|o| o.ends_with(".pkg.tar.zst")) && ops[first_db..].iter().all(|o| is_db(o)), "{ops:#?}");
    assert_eq!(ops.last().unwrap(), "PUT repo/x86_64/test.db", "the package db goes last: {ops:#?}");
    for f in ["test.db", "test.db.tar.zst", "test.files", "test.files.tar.zst", "libfoo-1.0-1-x86_64.pkg.tar.zst", "bar-1.0-1-x86_64.pkg.tar.zst"] {
        let obj = s3.object(&format!("repo/x86_64/{f}"));
        assert!(obj.is_file(), "{f} is not in the bucket");
    }
    // S3 has no symlinks: NAME.db is an object with the content of NAME.db.tar.zst.
    assert_eq!(std::fs::read(s3.object("repo/x86_64/test.db")).unwrap(), std::fs::read(s3.object("repo/x86_64/test.db.tar.zst")).unwrap());

    // Nothing changed: nothing sent, nothing downloaded to find out.
    let r = upload_report(&publish(&s3, &home, &[libfoo.clone(), bar1.clone()], None));
    assert_eq!((r["puts"].as_u64(), r["deletes"].as_u64(), r["unchanged"].as_u64()), (Some(0), Some(0), Some(6)), "{r:#}");

    // bar 1.1: that package, then the dbs, then the old file goes.
    let bar2 = makepkg(&TestPackage { pkgver: "1.1", depends: &["libfoo"], ..TestPackage::new("bar") }, &work, &out);
    let r = upload_report(&publish(&s3, &home, &[libfoo.clone(), bar2.clone()], None));
    let ops = operations(&r);
    assert_eq!(ops[0], "PUT repo/x86_64/bar-1.1-1-x86_64.pkg.tar.zst", "{ops:#?}");
    assert!(ops[1..5].iter().all(|o| o.starts_with("PUT") && is_db(o)), "{ops:#?}");
    assert_eq!(ops[5..], ["DELETE repo/x86_64/bar-1.0-1-x86_64.pkg.tar.zst".to_owned()], "{ops:#?}");
    assert_eq!((r["puts"].as_u64(), r["deletes"].as_u64()), (Some(5), Some(1)), "{r:#}");
    assert!(!s3.object("repo/x86_64/bar-1.0-1-x86_64.pkg.tar.zst").exists());
    assert!(s3.object("repo/x86_64/bar-1.1-1-x86_64.pkg.tar.zst").is_file());
    assert!(s3.object("repo/x86_64/libfoo-1.0-1-x86_64.pkg.tar.zst").is_file());

    // Killed between the packages and the dbs: the bucket's db is the old
    // one and the file it names is still there; pacman over HTTP installs it.
    let bar3 = makepkg(&TestPackage { pkgver: "1.2", depends: &["libfoo"], ..TestPackage::new("bar") }, &work, &out);
    let o = publish(&s3, &home, &[libfoo.clone(), bar3.clone()], Some("s3-packages-uploaded"));
    assert_eq!(o.status.signal(), Some(6), "expected an abort at the kill point\n{}", text(&o));
    assert!(s3.object("repo/x86_64/bar-1.2-1-x86_64.pkg.tar.zst").is_file());
    assert!(s3.object("repo/x86_64/bar-1.1-1-x86_64.pkg.tar.zst").is_file(), "the old file went before the db");
    let port = serve_dir(s3.root.join(BUCKET)).port;
    let server = format!("http://127.0.0.1:{port}/repo/$arch");
    let client = t.join("client");
    ok(pacman(&client, &server, &["-Sy"]));
    ok(pacman(&client, &server, &["-S", "bar"]));
    assert!(ok(pacman(&client, &server, &["-Q", "bar"])).contains("bar 1.1-1"));

    // The next run finishes the job; pacman upgrades to 1.2.
    let r = upload_report(&publish(&s3, &home, &[libfoo, bar3], None));
    assert_eq!(r["deletes"], 1, "{r:#}");
    assert!(!operations(&r).contains(&"PUT repo/x86_64/bar-1.2-1-x86_64.pkg.tar.zst".to_owned()), "sent twice: {r:#}");
    ok(pacman(&client, &server, &["-Syu"]));
    assert!(ok(pacman(&client, &server, &["-Q", "bar"])).contains("bar 1.2-1"));
}

#[test]
fn pacman_syncs_and_installs_from_a_bucket_published_with_pkgcell_over_http() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let (work, out) = (t.join("work"), t.join("out"));
    let files = vec![
        makepkg(&TestPackage { epoch: Some(1), depends: &["libgreet>=1.0"], ..TestPackage::new("hello") }, &work, &out),
        makepkg(&TestPackage::new("libgreet"), &work, &out),
    ];
    upload_report(&publish(&s3, &t.join("home"), &files, None));
    // The bucket's own listing agrees with the files: every object the
    // published db names exists (pacman -S downloads them all below).
    let port = serve_dir(s3.root.join(BUCKET)).port;
    let server = format!("http://127.0.0.1:{port}/repo/$arch");
    let client = t.join("client");
    ok(pacman(&client, &server, &["-Sy"]));
    let found = ok(pacman(&client, &server, &["-Ss", "hello"]));
    assert!(found.contains("test/hello 1:1.0-1"), "{found}");
    ok(pacman(&client, &server, &["-S", "hello"]));
    assert!(client.join("root/usr/bin/hello").is_file());
    assert!(client.join("root/usr/share/libgreet/version").is_file(), "the dependency was not installed");
}

/// A build env whose config has `[store] remote` on `s3`.
fn remote_env(s3: &S3Server, names: &[&str], prefix: &str) -> Env {
    let env = Env::new();
    env.git_repo();
    env.config(names, 1);
    let path = env.dir.join("pkgcell.toml");
    let cfg = std::fs::read_to_string(&path).unwrap()
        + &format!("\n[store]\nremote = \"s3://{BUCKET}/{prefix}\"\n\n[s3]\nendpoint = \"{}\"\n", s3.endpoint());
    std::fs::write(path, cfg).unwrap();
    env
}

/// `pkgcell build --json ARGS` as the machine whose state is `home`.
fn build_as(env: &Env, home: &str, args: &[&str]) -> (i32, Value, Output) {
    let mut c = env.cmd(&["build", "--json"]);
    c.args(args).env("PKGCELL_HOME", env.dir.join(home)).env("AWS_ACCESS_KEY_ID", KEY).env("AWS_SECRET_ACCESS_KEY", SECRET);
    let o = output(&mut c);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    (o.status.code().unwrap(), v, o)
}

fn record_of(s3: &S3Server, prefix: &str, v: &Value, name: &str) -> Value {
    let id = pkg(v, name)["pkgid"].as_str().unwrap().to_owned();
    let path = s3.object(&format!("{prefix}/records/{id}.json"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("no record of {id} in the bucket ({e})"));
    serde_json::from_slice(&data).unwrap()
}

/// Every object a record in the bucket names is there with its hash.
fn assert_whole(s3: &S3Server, prefix: &str, record: &Value) {
    let mut hashes: Vec<&str> = record["outputs"].as_array().unwrap().iter().map(|o| o["blake3"].as_str().unwrap()).collect();
    hashes.push(record["log"].as_str().unwrap());
    for h in hashes {
        let data = std::fs::read(s3.object(&format!("{prefix}/objects/{}/{}", &h[..2], &h[2..])))
            .unwrap_or_else(|e| panic!("object {h} of {} is missing: {e}", record["pkgid"]));
        assert_eq!(blake3::hash(&data).to_hex().as_str(), h, "object {h} is damaged");
    }
}

#[test]
fn two_machines_sharing_a_remote_store_build_each_pkgid_once() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let env = remote_env(&s3, &["a", "b"], "store");

    // Machine 1 builds A and uploads it.
    let (code, v1, o) = build_as(&env, "home1", &["a"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v1, "a"), "built", "{v1:#}");
    assert_whole(&s3, "store", &record_of(&s3, "store", &v1, "a"));

    // Machine 2 builds B: A comes from the remote store, B is built and uploaded.
    let (code, v2, o) = build_as(&env, "home2", &["b"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v2, "a"), "downloaded", "{v2:#}");
    assert!(pkg(&v2, "a")["reason"].as_str().unwrap().contains("remote store"), "{v2:#}");
    let hashes = |v: &Value| pkg(v, "a")["outputs"].as_array().unwrap().iter().map(|o| o["blake3"].clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&v2), hashes(&v1), "machine 2 has other bytes for A");
    assert_eq!(status(&v2, "b"), "built", "{v2:#}");
    assert!(env.dir.join("home2/store/records").join(format!("{}.json", pkg(&v2, "a")["pkgid"].as_str().unwrap())).is_file());
    assert_whole(&s3, "store", &record_of(&s3, "store", &v2, "b"));

    // Machine 1 builds B: downloaded, not built; its store checks out.
    let (code, v3, o) = build_as(&env, "home1", &["b"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!((status(&v3, "a"), status(&v3, "b")), ("cached".to_owned(), "downloaded".to_owned()), "{v3:#}");
    let mut fsck = env.cmd(&["store", "fsck"]);
    fsck.env("PKGCELL_HOME", env.dir.join("home1"));
    ok(output(&mut fsck));
}

#[test]
fn a_damaged_object_in_the_remote_store_is_detected_and_the_package_built_locally() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let env = remote_env(&s3, &["a"], "store");
    let (code, v1, o) = build_as(&env, "home1", &["a"]);
    assert_eq!(code, 0, "{}", text(&o));
    let h = pkg(&v1, "a")["outputs"][0]["blake3"].as_str().unwrap().to_owned();
    let obj = s3.object(&format!("store/objects/{}/{}", &h[..2], &h[2..]));
    let mut data = std::fs::read(&obj).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&obj, &data).unwrap();

    let (code, v2, o) = build_as(&env, "home2", &["a"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v2, "a"), "built", "{v2:#}");
    let reason = pkg(&v2, "a")["reason"].as_str().unwrap_or("");
    assert!(reason.contains("damaged") && reason.contains(&h[2..]), "{v2:#}");
    // Nothing damaged entered machine 2's store, and the bucket is whole again.
    let mut fsck = env.cmd(&["store", "fsck"]);
    fsck.env("PKGCELL_HOME", env.dir.join("home2"));
    ok(output(&mut fsck));
    assert_whole(&s3, "store", &record_of(&s3, "store", &v2, "a"));
    let (code, v3, o) = build_as(&env, "home3", &["a"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v3, "a"), "downloaded", "{v3:#}");
}

#[test]
fn two_machines_racing_on_one_pkgid_both_finish_and_leave_a_whole_record() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let env = remote_env(&s3, &["a", "slow"], "race");
    let spawn = |home: &str| {
        let mut c = env.cmd(&["build", "--json", "a", "slow"]);
        c.env("PKGCELL_HOME", env.dir.join(home)).env("AWS_ACCESS_KEY_ID", KEY).env("AWS_SECRET_ACCESS_KEY", SECRET);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (p1, p2) = (spawn("home1"), spawn("home2"));
    let (o1, o2) = (p1.wait_with_output().unwrap(), p2.wait_with_output().unwrap());
    for o in [&o1, &o2] {
        assert!(o.status.success(), "{}", text(o));
    }
    let v1: Value = serde_json::from_slice(&o1.stdout).unwrap();
    let v2: Value = serde_json::from_slice(&o2.stdout).unwrap();
    for n in ["a", "slow"] {
        for v in [&v1, &v2] {
            assert!(["built", "downloaded"].contains(&status(v, n).as_str()), "{v:#}");
        }
        assert_whole(&s3, "race", &record_of(&s3, "race", &v1, n));
    }
    // A third machine gets both from the remote store.
    let (code, v3, o) = build_as(&env, "home3", &["a", "slow"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!((status(&v3, "a"), status(&v3, "slow")), ("downloaded".to_owned(), "downloaded".to_owned()), "{v3:#}");
}

#[test]
fn bad_s3_settings_are_clear_errors_naming_the_endpoint_and_what_to_check() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let env = remote_env(&s3, &["a"], "store");
    let build = |aws: &[(&str, &str)]| {
        let mut c = env.cmd(&["build", "a"]);
        c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
        for (k, v) in aws {
            c.env(k, v);
        }
        output(&mut c)
    };
    // Wrong credentials.
    let o = build(&[("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains(&s3.endpoint()) && err.contains("AWS_SECRET_ACCESS_KEY") && err.contains("403"), "{err}");
    // No credentials at all.
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{}", text(&o));

    // An endpoint nothing listens on.
    let path = env.dir.join("pkgcell.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&path, cfg.replace(&s3.endpoint(), &format!("http://127.0.0.1:{dead}"))).unwrap();
    let o = build(&[("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("cannot reach the S3 endpoint http://127.0.0.1:{dead}")) && err.contains("endpoint"), "{err}");

    // A bucket that does not exist, and a remote that is not s3://.
    std::fs::write(&path, cfg.replace(&format!("s3://{BUCKET}/store"), "s3://nobucket/store")).unwrap();
    let o = build(&[("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET)]);
    assert!(stderr(&o).contains("has no bucket \"nobucket\""), "{}", text(&o));
    std::fs::write(&path, cfg.replace(&format!("s3://{BUCKET}/store"), "/srv/store")).unwrap();
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pkgcell.toml:") && stderr(&o).contains("expected s3://BUCKET"), "{}", text(&o));

    // publish --to s3:// with wrong credentials says the same.
    let mut c = pkgcell();
    c.env("PKGCELL_HOME", t.join("home"))
        .env("AWS_ACCESS_KEY_ID", "nobody")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", s3.endpoint())
        .args(["publish", "--to", &format!("s3://{BUCKET}/repo"), "--repo", "test"])
        .arg(t.path());
    let o = output(&mut c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("refused") && stderr(&o).contains("AWS_ACCESS_KEY_ID"), "{}", text(&o));
}

#[test]
fn the_local_package_files_of_a_build_go_to_the_remote_store_with_its_record() {
    let t = TestDir::new();
    let s3 = S3Server::start(&t.join("s3"));
    let env = remote_env(&s3, &["needslocal"], "store");
    let file = makepkg(&TestPackage::new("localdep"), &env.dir.join("work"), &env.dir.join("out")).display().to_string();

    let (code, v1, o) = build_as(&env, "home1", &["-I", &file]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v1, "needslocal"), "built", "{v1:#}");
    let record = record_of(&s3, "store", &v1, "needslocal");
    assert_whole(&s3, "store", &record);
    let line = record["local"][0].as_str().unwrap_or_else(|| panic!("no local line: {record:#}"));
    let h = line.rsplit_once(' ').unwrap().1;
    let obj = s3.object(&format!("store/objects/{}/{}", &h[..2], &h[2..]));
    assert_eq!(std::fs::read(&obj).unwrap_or_else(|e| panic!("the -I file is not in the bucket: {e}")), std::fs::read(&file).unwrap());

    // Machine 2, given the same file: downloaded, and its store holds the file too.
    let (code, v2, o) = build_as(&env, "home2", &["-I", &file]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(status(&v2, "needslocal"), "downloaded", "{v2:#}");
    assert!(env.dir.join(format!("home2/store/objects/{}/{}", &h[..2], &h[2..])).is_file());
    let mut fsck = env.cmd(&["store", "fsck", "--no-repair"]);
    fsck.env("PKGCELL_HOME", env.dir.join("home2"));
    ok(output(&mut fsck));
}
