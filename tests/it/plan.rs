//! `pkgcell init`, `plan` and `srcinfo`, run as the real binary by an
//! unprivileged user against the test base ($PKGCELL_TEST_BASE).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan");

/// A fresh directory and state home for one test.
struct Env {
    dir: tempfile::TempDir,
    base: PathBuf,
}

impl Env {
    /// Fails (never skips) without the test base: these tests need the
    /// sandbox and a base with makepkg.
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap(), base: crate::util::test_base() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn pkgcell(&self, args: &[&str]) -> Output {
        crate::util::pkgcell()
            .args(args)
            .current_dir(self.path())
            .env("PKGCELL_HOME", self.path().join("home"))
            .env("PKGCELL_BASE_DIR", &self.base)
            .output()
            .unwrap()
    }

    /// `pkgcell plan --json`, its exit code and the parsed object.
    fn plan(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["plan", "--json"];
        args.extend(extra);
        let out = self.pkgcell(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan --json printed no JSON ({e}); stderr: {stderr}"));
        assert_eq!(v["version"], 1);
        (out.status.code().unwrap(), v)
    }

    /// A PKGBUILD directory `name` with this PKGBUILD text.
    fn pkgbuild(&self, name: &str, text: &str) -> PathBuf {
        let d = self.path().join("pkgs").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("PKGBUILD"), text).unwrap();
        d
    }

    fn config(&self, text: &str) {
        std::fs::write(self.path().join("pkgcell.toml"), text).unwrap();
    }
}

fn simple(name: &str, version: &str, extra: &str) -> String {
    format!("pkgname={name}\npkgver={version}\npkgrel=1\narch=(x86_64)\nlicense=(MIT)\n{extra}\npackage() {{ :; }}\n")
}

fn package<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} not in {plan:#}"))
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn srcinfo_is_byte_for_byte_what_makepkg_prints() {
    let env = Env::new();
    let cases = ["split", "arch-specific", "overrides", "epoch", "vcs-fragments", "quoting", "pkgver-func"];
    let mut expected = Vec::new();
    let mut args = vec!["srcinfo".to_owned()];
    for case in cases {
        let dir = env.path().join(case);
        copy_dir(&Path::new(FIXTURES).join("srcinfo").join(case), &dir);
        // The reference: makepkg itself, as this plain user, on the host.
        // PACMAN=true: makepkg asks pacman whether git is installed for VCS
        // sources; the answer changes nothing in the output, and the host has
        // no pacman database.
        let out = Command::new("makepkg").arg("--printsrcinfo").env("PACMAN", "true").current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "makepkg on {case}: {}", String::from_utf8_lossy(&out.stderr));
        expected.extend(format!("==> {case}\n").into_bytes());
        expected.extend(out.stdout);
        args.push(case.to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.pkgcell(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&expected));

    // One directory, the default: the current one, without a header line.
    let out = Command::new(env!("CARGO_BIN_EXE_pkgcell"))
        .arg("srcinfo")
        .current_dir(env.path().join("epoch"))
        .env("PKGCELL_HOME", env.path().join("home"))
        .env("PKGCELL_BASE_DIR", &env.base)
        .output()
        .unwrap();
    let makepkg = Command::new("makepkg").arg("--printsrcinfo").current_dir(env.path().join("epoch")).output().unwrap();
    assert_eq!(out.stdout, makepkg.stdout);
}

/// `makepkg --printsrcinfo` of the base itself (7.1 on the sid base, 6.0.2
/// on bookworm's) in each of `root`'s directories `cases`, run in one
/// sandbox on the base as the build user: whether it succeeded, its stdout
/// and its `==> ERROR:` lines.
fn base_makepkg_srcinfo(base: &Path, root: &Path, cases: &[String]) -> Vec<(bool, String, Vec<String>)> {
    let out = root.join("makepkg-out");
    std::fs::create_dir_all(&out).unwrap();
    // The build user inside is a subordinate id: it may write only here.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = r#"for d in "$@"; do (cd "/work/$d" && makepkg --printsrcinfo >"/work/makepkg-out/$d.out" 2>"/work/makepkg-out/$d.err"; echo $? >"/work/makepkg-out/$d.rc"); done"#;
    let run = crate::util::pkgcell()
        .args(["run", "--lower"])
        .arg(base)
        .arg("--bind")
        .arg(format!("{}:/work", root.display()))
        .args(["--uid", "1000", "--gid", "1000", "--env", "PACMAN=true", "--env", "HOME=/tmp"])
        .args(["--env", "BUILDDIR=/tmp/build", "--env", "PKGDEST=/tmp", "--env", "SRCDEST=/tmp", "--env", "SRCPKGDEST=/tmp", "--env", "LOGDEST=/tmp"])
        .args(["--", "bash", "-c", script, "makepkg-all"])
        .args(cases)
        .output()
        .unwrap();
    assert!(run.status.success(), "pkgcell run: {}", String::from_utf8_lossy(&run.stderr));
    cases
        .iter()
        .map(|case| {
            let read = |ext: &str| std::fs::read_to_string(out.join(format!("{case}.{ext}"))).unwrap();
            let errors = read("err").lines().filter(|l| l.starts_with("==> ERROR:")).map(str::to_owned).collect();
            (read("rc").trim() == "0", read("out"), errors)
        })
        .collect()
}

/// The parse driver rewrites makepkg's lint and .SRCINFO functions for
/// speed; on PKGBUILDs that lint accepts and on ones it refuses for each
/// reason the rewrites touch (package-function variables, arch-specific
/// names, array or string shapes, a PKGBUILD's own IFS, globals the lint
/// loops reuse), it must answer as the base's own makepkg: the same
/// .SRCINFO, or the same errors. Both as the driver loads makepkg and
/// writes its snapshot (a fresh home), and as it sources that snapshot,
/// and when the snapshot in the cache is damaged or does not load.
#[test]
fn lint_and_srcinfo_answer_as_the_bases_own_makepkg() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let src = Path::new(FIXTURES).join("lint");
    let mut cases: Vec<String> =
        std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    cases.sort();
    let mut args = vec!["srcinfo".to_owned()];
    for case in &cases {
        copy_dir(&src.join(case), &env.path().join(case));
        args.push(case.clone());
    }
    let expected = base_makepkg_srcinfo(&env.base, env.path(), &cases);
    let refused = expected.iter().filter(|(ok, ..)| !ok).count();
    assert!(refused >= 10 && refused < cases.len() - 3, "the fixtures should cover both outcomes: {refused} of {} refused", cases.len());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let snapshots = env.path().join("home/cache/srcinfo-snapshot");
    let snapshot = || {
        let files: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sh"))
            .collect();
        assert_eq!(files.len(), 1, "one snapshot per base: {files:?}");
        files[0].clone()
    };
    // Each round parses every fixture again (the parse cache removed).
    let round = |what: &str| -> Output {
        let _ = std::fs::remove_dir_all(env.path().join("home/cache/srcinfo"));
        let out = env.pkgcell(&args);
        check_as_makepkg(what, &cases, &expected, &out);
        out
    };

    let first = round("loading makepkg, writing the snapshot");
    let path = snapshot();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let same = |what: &str, out: &Output| {
        assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&first.stdout), "{what}: stdout differs");
        assert_eq!(String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&first.stderr), "{what}: stderr differs");
    };
    // Functions no job is likely to call are stubs that load them on first
    // use (the fixture cold-library-calls calls three).
    let text = std::fs::read_to_string(&path).unwrap();
    for f in ["msg", "get_full_version", "canonicalize_path"] {
        assert!(text.contains(&format!("{f} () \n{{ \n    _pkgcell_cold {f} ")), "{f} is no stub in the snapshot");
    }
    let out = round("sourcing the snapshot");
    same("sourcing the snapshot", &out);
    // Used as it was, not made again (pkgcell replaces the file to store one).
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "the snapshot was made again instead of used");

    // Damaged bytes: pkgcell finds it, and loads and writes one anew.
    std::fs::write(&path, b"\x00\xffgarbage\nrm -rf /\n").unwrap();
    let out = round("with a damaged snapshot");
    same("with a damaged snapshot", &out);
    assert_ne!(std::fs::read(snapshot()).unwrap(), b"\x00\xffgarbage\nrm -rf /\n", "the damaged snapshot stayed");

    // Whole as pkgcell checks it, but it does not load in the driver: the
    // batch runs again without it.
    let body = b"false || return 1\n_pkgcell_snapshot_loaded=1\nreturn 0\n# end of the pkgcell srcinfo snapshot\n";
    let mut file = format!("# pkgcell srcinfo snapshot {}\n", blake3::hash(body).to_hex()).into_bytes();
    file.extend(body);
    std::fs::write(&path, &file).unwrap();
    let out = round("with a snapshot that does not load");
    same("with a snapshot that does not load", &out);
    assert_ne!(std::fs::read(snapshot()).unwrap(), file, "the snapshot that does not load stayed");
    let out = round("sourcing the snapshot made again");
    same("sourcing the snapshot made again", &out);
}

/// `pkgcell srcinfo` of the lint fixtures `cases` answered as the base's
/// makepkg did (`expected`, from [`base_makepkg_srcinfo`]).
fn check_as_makepkg(what: &str, cases: &[String], expected: &[(bool, String, Vec<String>)], out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (case, (ok, text, errors)) in cases.iter().zip(expected) {
        let header = format!("==> {case}");
        assert!(stdout.lines().any(|l| l == header), "{what}: {case}: no section in {stdout}");
        let section: String =
            stdout.lines().skip_while(|l| *l != header).skip(1).take_while(|l| !l.starts_with("==> ")).map(|l| format!("{l}\n")).collect();
        let message = stderr.lines().skip_while(|l| !l.starts_with(&format!("pkgcell: {case}/PKGBUILD:"))).collect::<Vec<_>>();
        if *ok {
            assert_eq!(section.trim_end_matches('\n'), text.trim_end_matches('\n'), "{what}: {case}: .SRCINFO differs; stderr: {stderr}");
            assert!(message.is_empty(), "{what}: {case}: makepkg accepts it, pkgcell did not: {stderr}");
        } else {
            assert!(section.trim().is_empty(), "{what}: {case}: makepkg refuses it, pkgcell printed {section}");
            assert!(!message.is_empty(), "{what}: {case}: makepkg refuses it ({errors:?}), pkgcell did not: {stderr}");
            let got: Vec<&str> = message
                .iter()
                .enumerate()
                .map(|(i, l)| if i == 0 { l.split_once("the PKGBUILD is not valid: ").map_or(*l, |(_, e)| e) } else { *l })
                .take_while(|l| !l.starts_with("pkgcell: "))
                .filter(|l| l.starts_with("==> ERROR:"))
                .collect();
            assert_eq!(got, *errors, "{what}: {case}: errors differ; stderr: {stderr}");
        }
    }
    assert_eq!(out.status.code(), Some(1), "{what}: some fixtures are refused: exit 1; stderr: {stderr}");
}

#[test]
fn a_pkgbuild_cannot_write_outside_or_reach_the_network_while_parsed() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside = env.path().join("outside-marker");
    let pkg = env.pkgbuild(
        "evil",
        &simple(
            "evil",
            "1",
            &format!(
                r#"
w1=$( (echo x > "{outside}") 2>/dev/null && echo yes || echo no)
w2=$( (echo x > "$startdir/written") 2>/dev/null && echo yes || echo no)
net=$( (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo yes || echo no)
pkgdesc="outside=$w1 own-dir=$w2 host-loopback=$net"
"#,
                outside = outside.display()
            ),
        ),
    );
    let out = env.pkgcell(&["srcinfo", pkg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pkgdesc = outside=no own-dir=no host-loopback=no"), "{stdout}");
    assert!(!outside.exists(), "the PKGBUILD wrote to a host path");
    assert!(!pkg.join("written").exists(), "the PKGBUILD wrote into its own directory");
    assert!(listener.accept().is_err(), "the PKGBUILD reached the host's loopback");
}

#[test]
fn broken_pkgbuilds_fail_alone_and_the_others_are_planned() {
    let env = Env::new();
    env.pkgbuild("good", &simple("good", "1.0", "depends=(glibc)"));
    env.pkgbuild("syntax", "pkgname=(\n");
    env.pkgbuild("loop", "while :; do :; done\n");
    env.pkgbuild("sleeper", "sleep 1000\n");
    env.pkgbuild("huge", "yes 'a line of output'\n");
    env.pkgbuild("dotdot", &simple("../x", "1", ""));
    env.pkgbuild("slash", &simple("a/b", "1", ""));
    env.pkgbuild("exits", "exit 0\n");
    std::fs::create_dir_all(env.path().join("pkgs/empty")).unwrap();
    let names = ["good", "syntax", "loop", "sleeper", "huge", "dotdot", "slash", "exits", "empty"];
    env.config(&format!(
        "[pkgbuilds]\n{}",
        names.iter().map(|n| format!("{n} = {{ path = \"pkgs/{n}\" }}\n")).collect::<String>()
    ));
    let (code, plan) = env.plan(&["--parse-timeout", "6"]);
    assert_eq!(code, 1, "{plan:#}");
    assert_eq!(package(&plan, "good")["status"]["kind"], "to_build", "{plan:#}");
    let expect = [
        ("syntax", "sourcing the PKGBUILD failed"),
        ("loop", "longer than 6 s"),
        ("sleeper", "longer than 6 s"),
        ("huge", "printed more than"),
        ("dotdot", "pkgname is not allowed to start with a dot"),
        ("slash", "pkgname contains invalid characters: '/'"),
        ("exits", "exited while being sourced"),
        ("empty", "no PKGBUILD"),
    ];
    for (name, text) in expect {
        let p = package(&plan, name);
        assert_eq!(p["status"]["kind"], "error", "{name}: {p:#}");
        assert_eq!(p["status"]["stage"], "parse", "{name}: {p:#}");
        let msg = p["status"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{name}: {msg:?} should contain {text:?}");
    }
}

#[test]
fn tree_id_is_the_git_tree_of_the_pkgbuild_directory() {
    let env = Env::new();
    let repo = env.path().join("repo");
    std::fs::create_dir_all(repo.join("sub/hello")).unwrap();
    std::fs::write(repo.join("sub/hello/PKGBUILD"), simple("hello", "1.0", "")).unwrap();
    std::fs::write(repo.join("sub/hello/run.sh"), "#!/bin/sh\n").unwrap();
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(repo.join("sub/hello/run.sh"), exec).unwrap();
    std::os::unix::fs::symlink("PKGBUILD", repo.join("sub/hello/link")).unwrap();
    std::fs::write(repo.join("top.txt"), "elsewhere").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let expected = git(&repo, &["rev-parse", "HEAD:sub/hello"]);
    // The same files as a plain directory.
    copy_dir(&repo.join("sub/hello"), &env.path().join("plain"));
    std::fs::remove_file(env.path().join("plain/link")).unwrap();
    std::os::unix::fs::symlink("PKGBUILD", env.path().join("plain/link")).unwrap();
    env.config(&format!(
        "[pkgbuilds]\nfromgit = {{ url = \"{}\", branch = \"main\", subtree = \"sub/hello/\" }}\nplain = {{ path = \"plain\" }}\n",
        repo.display()
    ));
    let (code, plan) = env.plan(&[]);
    let g = package(&plan, "fromgit");
    // Both are the same pkgbase: the second is refused, but both have tree-ids.
    assert_eq!(g["tree_id"], expected, "{plan:#}");
    assert_eq!(package(&plan, "plain")["tree_id"], expected, "{plan:#}");
    assert_eq!(g["source"]["commit"], git(&repo, &["rev-parse", "HEAD"]));
    assert_eq!(g["status"]["kind"], "to_build", "{plan:#}");
    assert_eq!(code, 1, "the duplicate pkgbase is an error");
    assert!(g["pkgid"].as_str().unwrap().starts_with(&format!("hello-{expected}-")));

    // Offline uses what was fetched; a new commit is not seen.
    std::fs::write(repo.join("sub/hello/PKGBUILD"), simple("hello", "2.0", "")).unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let (_, plan) = env.plan(&["--offline"]);
    assert_eq!(package(&plan, "fromgit")["tree_id"], expected);
    let (_, plan) = env.plan(&[]);
    assert_eq!(package(&plan, "fromgit")["tree_id"], git(&repo, &["rev-parse", "HEAD:sub/hello"]));
    assert_eq!(package(&plan, "fromgit")["pkgver"], "2.0-1");
}

#[test]
fn dependencies_order_chains_diamonds_provides_and_versions_and_cycles_are_errors() {
    let env = Env::new();
    let pkgs: &[(&str, &str)] = &[
        // chain: a → b → c
        ("a", "depends=(b)"),
        ("b", "makedepends=(c)"),
        ("c", "depends=('glibc>=2.17' make)"),
        // diamond: top → left, right → bottom
        ("top", "depends=(left right)"),
        ("left", "depends=(bottom)"),
        ("right", "checkdepends=('bottom>=1.0')"),
        ("bottom", ""),
        // provides with a version, and a version constraint nobody meets
        ("user", "makedepends=('virt>=2')"),
        ("impl", "provides=('virt=2.1')"),
        ("picky", "depends=('c>5')"),
        // a cycle, and one that needs it
        ("x", "depends=(y)"),
        ("y", "makedepends=(x)"),
        ("z", "depends=(x)"),
    ];
    let mut config = String::from("[pkgbuilds]\n");
    for (name, extra) in pkgs {
        env.pkgbuild(name, &simple(name, "1.0", extra));
        config.push_str(&format!("{name} = {{ path = \"pkgs/{name}\" }}\n"));
    }
    env.config(&config);
    let (code, plan) = env.plan(&[]);
    assert_eq!(code, 1);
    let wave = |n: &str| package(&plan, n)["wave"].as_u64();
    assert_eq!((wave("c"), wave("b"), wave("a")), (Some(0), Some(1), Some(2)), "{plan:#}");
    assert_eq!((wave("bottom"), wave("left"), wave("right"), wave("top")), (Some(0), Some(1), Some(1), Some(2)));
    assert_eq!((wave("impl"), wave("user")), (Some(0), Some(1)));
    assert_eq!(package(&plan, "user")["after"], serde_json::json!(["impl"]));
    let picky = &package(&plan, "picky")["status"];
    assert_eq!(picky["stage"], "deps");
    assert!(picky["message"].as_str().unwrap().contains("nothing provides c>5"), "{picky}");
    for n in ["x", "y"] {
        let s = &package(&plan, n)["status"];
        assert_eq!(s["stage"], "cycle", "{s}");
        assert!(s["message"].as_str().unwrap().contains("x → y → x") || s["message"].as_str().unwrap().contains("y → x → y"), "{s}");
    }
    assert_eq!(package(&plan, "z")["status"], serde_json::json!({"kind": "blocked", "by": ["x", "y"]}), "z installs x, which needs y");

    // The dephash follows what gets installed: a new version of c changes
    // the pkgids of b (makedepends) but, in strict mode, not of unrelated packages.
    let before = plan;
    env.pkgbuild("c", &simple("c", "1.1", "depends=('glibc>=2.17' make)"));
    let (_, after) = env.plan(&[]);
    let id = |p: &Value, n: &str| package(p, n)["pkgid"].as_str().unwrap().to_owned();
    assert_ne!(id(&before, "c"), id(&after, "c"), "its tree changed");
    assert_ne!(id(&before, "b"), id(&after, "b"), "it installs c");
    assert_ne!(id(&before, "a"), id(&after, "a"), "it installs b, whose pkgid changed");
    assert_eq!(id(&before, "top"), id(&after, "top"));
}

#[test]
fn unchanged_tree_is_not_parsed_twice() {
    let env = Env::new();
    env.pkgbuild("one", &simple("one", "1", ""));
    env.pkgbuild("two", &simple("two", "1", "depends=(one)"));
    env.pkgbuild("dyn", &simple("dyn", "1", "pkgver() { echo 2; }"));
    env.config("[pkgbuilds]\none = { path = \"pkgs/one\" }\ntwo = { path = \"pkgs/two\" }\ndyn = { path = \"pkgs/dyn\" }\n");
    let (code, first) = env.plan(&[]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!((first["parsed"].as_u64(), first["cached"].as_u64()), (Some(3), Some(0)));
    assert_eq!(package(&first, "dyn")["pkgver_func"], true);
    assert_eq!(package(&first, "one")["pkgver_func"], false);
    let (_, second) = env.plan(&[]);
    assert_eq!((second["parsed"].as_u64(), second["cached"].as_u64()), (Some(0), Some(3)));
    assert_eq!(first["packages"], second["packages"]);
    env.pkgbuild("one", &simple("one", "1", "pkgdesc=changed"));
    let (_, third) = env.plan(&[]);
    assert_eq!((third["parsed"].as_u64(), third["cached"].as_u64()), (Some(1), Some(2)));

    // The table says the same for people.
    let out = env.pkgcell(&["plan"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("to build"), "{table}");
    assert!(table.contains("(pkgver())"), "{table}");
    assert!(table.contains("3 packages; 0 parsed, 3 from cache"), "{table}");
}

#[test]
fn a_path_source_edited_to_the_same_size_and_mtime_after_a_plan_is_planned_anew() {
    let env = Env::new();
    let d = env.pkgbuild("one", &simple("one", "1", ""));
    env.config("[pkgbuilds]\none = { path = \"pkgs/one\" }\n");
    // Files changed within a second of a plan are not put in the stat index
    // (racy): wait, so that this plan records the PKGBUILD.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, first) = env.plan(&[]);
    assert_eq!(code, 0, "{first:#}");
    assert!(env.path().join("home/cache/treeid-index").is_file(), "the plan keeps a stat index");
    let (_, again) = env.plan(&[]);
    assert_eq!(package(&again, "one")["tree_id"], package(&first, "one")["tree_id"]);

    let mtime = std::fs::metadata(d.join("PKGBUILD")).unwrap().modified().unwrap();
    std::fs::write(d.join("PKGBUILD"), simple("one", "2", "")).unwrap();
    std::fs::File::options().write(true).open(d.join("PKGBUILD")).unwrap().set_modified(mtime).unwrap();
    let (code, second) = env.plan(&[]);
    assert_eq!(code, 0, "{second:#}");
    assert_ne!(package(&second, "one")["tree_id"], package(&first, "one")["tree_id"]);
    assert_eq!(package(&second, "one")["pkgver"], "2-1");
    assert_eq!(second["parsed"], 1);
}

#[test]
fn config_errors_name_the_line_and_the_valid_keys() {
    let env = Env::new();
    env.config("[repo]\nname = \"r\"\n\n[build]\njobs = 2\ndephsah = \"loose\"\n");
    let out = env.pkgcell(&["plan"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pkgcell.toml:6: unknown field `dephsah`"), "{err}");
    assert!(err.contains("`jobs`, `network`, `dephash`, `timeout`"), "{err}");
}

#[test]
fn names_that_would_leave_their_directory_are_config_errors_naming_the_line() {
    let env = Env::new();
    env.pkgbuild("good", &simple("good", "1.0", ""));
    let cases = [
        ("[repo]\narch = \"x86_64\"\nname = \"../../evil\"\n", 3, "repository name \"../../evil\" is invalid"),
        ("[pkgbuilds]\n\ngood = { path = \"pkgs/good\", home_binds = [\"../x\"] }\n", 3, "home_binds entry \"../x\""),
        ("[pkgbuilds]\ngood = { path = \"pkgs/good\", home_binds = [\"/abs\"] }\n", 2, "home_binds entry \"/abs\""),
    ];
    for (config, line, why) in cases {
        env.config(config);
        let out = env.pkgcell(&["plan"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}{err}");
        assert!(err.contains(&format!("pkgcell.toml:{line}: ")) && err.contains(why), "{config}{err}");
    }
}

#[test]
fn absurd_limits_in_the_config_or_flags_exit_2_naming_the_key() {
    let env = Env::new();
    for (config, line, why) in [
        ("[build]\ntimeout = \"1e300\"\n", 2, "timeout \"1e300\": longer than the longest time limit taken, 365 days"),
        ("[build]\n\ntimeout = \"-1\"\n", 3, "timeout \"-1\": not a positive number of seconds"),
        ("[build]\ntmp_size = \"0\"\n", 2, "tmp_size \"0\": a size of 0 is not taken"),
        ("[build]\nmemory = \"18446744073709551615\"\n", 2, "memory \"18446744073709551615\": larger than the largest size taken, 1P"),
    ] {
        env.config(config);
        let out = env.pkgcell(&["plan"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}{err}");
        assert!(err.contains(&format!("pkgcell.toml:{line}: {why}")), "{config}{err}");
    }
    env.config("");
    for value in ["1e300", "0", "NaN", "-5"] {
        let out = env.pkgcell(&["plan", &format!("--parse-timeout={value}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains("--parse-timeout") && !err.contains("panicked"), "{value}: {err}");
    }
}

#[test]
fn init_writes_a_starter_config_and_refuses_to_overwrite_it() {
    let env = Env::new();
    let out = env.pkgcell(&["init"]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(env.path().join("pkgcell.toml")).unwrap();
    assert!(text.contains("[pkgbuilds]"));
    let out = env.pkgcell(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // An empty plan of the starter config works.
    let (code, plan) = env.plan(&[]);
    assert_eq!((code, plan["packages"].as_array().unwrap().len()), (0, 0));
}

#[test]
fn plan_without_a_base_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pkgcell.toml"), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pkgcell"))
        .arg("plan")
        .current_dir(dir.path())
        .env_remove("PKGCELL_BASE_DIR")
        .env("PKGCELL_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--base-dir"));
}

/// `pkgcell plan | head`: a reader that closed its end is no error; pkgcell
/// ends quietly with 0 (as ripgrep does), with no panic on stderr.
#[test]
fn a_closed_stdout_ends_plan_quietly_and_successfully() {
    let env = Env::new();
    env.pkgbuild("a", &simple("a", "1.0", ""));
    env.config("[pkgbuilds]\na = { path = \"pkgs/a\" }\n");
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = crate::util::pkgcell();
        cmd.arg("plan")
            .current_dir(env.path())
            .env("PKGCELL_HOME", env.path().join("home"))
            .env("PKGCELL_BASE_DIR", &env.base)
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{stderr}");
    }
}
