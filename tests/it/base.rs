//! `pkgcell base`: bases made for real from each source (a tarball, a
//! bootstrap command, pacman with a local repository built here), by an
//! unprivileged user, then used as the lower layer of sandboxes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A fresh directory with its own `$PKGCELL_HOME`.
struct Env {
    dir: TestDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: TestDir::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = pkgcell();
        c.args(args).current_dir(self.path()).env("PKGCELL_HOME", self.home()).env_remove("PKGCELL_BASE_DIR");
        c
    }

    fn pkgcell(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    fn config(&self, text: &str) {
        std::fs::write(self.dir.join("pkgcell.toml"), text).unwrap();
    }

    /// `base create` succeeds; the new base's id.
    fn create(&self) -> String {
        let o = self.pkgcell(&["base", "create"]);
        ok(o).trim().to_owned()
    }

    /// `base show ID --json`.
    fn show(&self, id: &str) -> Value {
        let v: Value = serde_json::from_str(&ok(self.pkgcell(&["base", "show", id, "--json"]))).unwrap();
        assert_eq!(v["version"], 1, "{v:#}");
        v
    }

    /// The ids `base list --json` shows.
    fn listed(&self) -> Vec<String> {
        let v: Value = serde_json::from_str(&ok(self.pkgcell(&["base", "list", "--json"]))).unwrap();
        assert_eq!(v["version"], 1, "{v:#}");
        v["bases"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect()
    }

    /// `listed`, sorted.
    fn listed_sorted(&self) -> Vec<String> {
        let mut l = self.listed();
        l.sort();
        l
    }

    /// Leftovers of bases being made or removed.
    fn leftovers(&self) -> Vec<String> {
        let Ok(d) = std::fs::read_dir(self.home().join("bases")) else { return Vec::new() };
        d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect()
    }
}

/// `pkgcell run --lower ROOT [extra] -- sh -c SCRIPT`.
fn run_on(root: &Path, extra: &[&str], script: &str) -> Output {
    output(pkgcell().arg("run").arg("--lower").arg(root).args(extra).args(["--", "sh", "-c", script]))
}

/// The first subordinate uid of the caller: uid N inside is this + N - 1 outside.
/// `pkgcell build` in laptop mode of a one-file PKGBUILD (`options` as
/// given) on the base `id` succeeds and leaves its package there.
fn builds_greeting_on(e: &Env, id: &str, options: &str) {
    let pkgdir = e.dir.join("greeting");
    std::fs::create_dir(&pkgdir).unwrap();
    std::fs::write(
        pkgdir.join("PKGBUILD"),
        format!(
            "pkgname=greeting\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\noptions=({options})\n\
             package() {{ mkdir -p \"$pkgdir/usr/share/greeting\"; echo hi > \"$pkgdir/usr/share/greeting/hi\"; }}\n"
        ),
    )
    .unwrap();
    let o = output(
        pkgcell()
            .args(["build", "--base", id])
            .current_dir(&pkgdir)
            .env("PKGCELL_HOME", e.home())
            .env("XDG_CONFIG_HOME", e.dir.join("xdg")),
    );
    assert!(o.status.success(), "build on the pacman base failed\n{}", text(&o));
    assert!(pkgdir.join("greeting-1-1-any.pkg.tar.zst").is_file(), "{}", text(&o));
}

/// The ids, sorted.
fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn subuid_start() -> u32 {
    let user = std::env::var("USER").unwrap_or_default();
    let text = std::fs::read_to_string("/etc/subuid").unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(u, _)| *u == user)
        .and_then(|(_, r)| r.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no /etc/subuid range for {user}: run through scripts/as-test-user"))
}

/// A `.tar.zst` of the test base, made once and kept beside it (it is as
/// stale as the base, which ensure-test-base rotates).
pub(crate) fn test_base_tarball() -> &'static Path {
    static TARBALL: OnceLock<PathBuf> = OnceLock::new();
    TARBALL.get_or_init(|| {
        let base = test_base();
        let tarball = PathBuf::from(format!("{}.tar.zst", base.display()));
        if tarball.exists() {
            return tarball;
        }
        let tmp = PathBuf::from(format!("{}.{}", tarball.display(), std::process::id()));
        // tar as root of a user namespace with the subordinate ids mapped, so
        // that the owners inside the base (root, builder) go into the archive.
        let o = output(
            Command::new("unshare")
                .args(["--map-auto", "--map-root-user", "tar", "--numeric-owner", "--zstd", "-C"])
                .arg(&base)
                .arg("-cf")
                .arg(&tmp)
                .arg("."),
        );
        assert!(o.status.success(), "cannot make a tarball of the test base\n{}", text(&o));
        std::fs::rename(&tmp, &tarball).unwrap();
        tarball
    })
}

#[test]
fn a_tarball_base_keeps_owners_is_prepared_and_can_be_listed_shown_and_removed() {
    let e = Env::new();
    e.config(&format!("[base]\nsource = \"tarball\"\ntarball = \"{}\"\n", test_base_tarball().display()));
    let o = e.pkgcell(&["base", "create"]);
    let err = stderr(&o);
    let id = ok(o).trim().to_owned();
    // stderr is not a terminal: each phase is one plain line as it starts,
    // with no cursor movement or colour.
    let phases: Vec<&str> = err.lines().filter(|l| l.starts_with("==> base: ")).collect();
    assert_eq!(
        phases,
        [
            "==> base: unpacking the tarball",
            "==> base: preparing the base",
            "==> base: hashing the base",
            "==> base: moving the base into place"
        ],
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    assert_eq!(e.listed(), std::slice::from_ref(&id));
    let shown = e.show(&id[..8]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["source"]["kind"], "tarball");
    assert_eq!(shown["packages"][0]["name"], "debian-toolchain", "{shown:#}");
    let root = PathBuf::from(shown["root"].as_str().unwrap());
    assert_eq!(root, e.home().join("bases").join(&id).join("root"));

    // Owners: uid 0 in the archive is the caller outside; builder (uid 1000)
    // is the caller's subordinate id 1000.
    let me = std::fs::metadata(e.path()).unwrap().uid();
    assert_eq!(std::fs::symlink_metadata(root.join("etc/passwd")).unwrap().uid(), me);
    assert_eq!(std::fs::metadata(root.join("home/builder")).unwrap().uid(), subuid_start() + 999);
    // Device nodes were skipped, not made.
    assert_eq!(std::fs::read_dir(root.join("dev")).unwrap().count(), 0);

    // Prepared: pkgcell's makepkg settings and repo, the build user, hosts.
    let out = ok(run_on(
        &root,
        &[],
        "bash -c '. /etc/makepkg.conf && echo \"$PKGEXT $BUILDDIR\"' && id -u builder && grep -c '^\\[pkgcell\\]' /etc/pacman.conf \
         && grep -c pkgcell /etc/hosts && stat -c %u /build",
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), [".pkg.tar.zst", "/build", "1000", "1", "1", "1000"], "{out}");

    // A second create finds the base; plan's parser can use it by id.
    let o = e.pkgcell(&["base", "create"]);
    assert_eq!(ok(o.clone()).trim(), id);
    assert!(stderr(&o).contains("exists already"), "{}", text(&o));
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello");
    let o = e.pkgcell(&["srcinfo", "--base", &id[..6], hello.to_str().unwrap()]);
    assert!(ok(o).contains("pkgname = hello"));
    // and `pkgcell run --base` runs on it.
    let o = e.pkgcell(&["run", "--base", &id[..6], "--uid", "1000", "--", "bash", "-c", "id -un; . /etc/makepkg.conf; echo $BUILDDIR"]);
    assert_eq!(ok(o).split_whitespace().collect::<Vec<_>>(), ["builder", "/build"]);

    // plan takes the base of the config: the same one, not made again.
    let hello = hello.to_str().unwrap();
    let mut config = std::fs::read_to_string(e.dir.join("pkgcell.toml")).unwrap();
    config.push_str(&format!("[pkgbuilds]\nhello = {{ path = \"{hello}\" }}\n"));
    e.config(&config);
    let plan: Value = serde_json::from_str(&ok(e.pkgcell(&["plan", "--json", "--offline"]))).unwrap();
    assert_eq!(plan["packages"][0]["status"]["kind"], "to_build", "{plan:#}");
    assert_eq!(e.listed(), std::slice::from_ref(&id));

    // update makes it again; nothing changed, so the copy is dropped.
    let o = e.pkgcell(&["base", "update", "--json"]);
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!((v["version"].as_u64(), v["status"].as_str(), v["base"]["id"].as_str()), (Some(1), Some("unchanged"), Some(id.as_str())));
    assert_eq!(e.listed(), std::slice::from_ref(&id));

    // rm: gone from the list and from the disk.
    ok(e.pkgcell(&["base", "rm", &id]));
    assert!(e.listed().is_empty());
    assert!(!e.home().join("bases").join(&id).exists());
    assert!(e.leftovers().is_empty(), "{:?}", e.leftovers());
    let o = e.pkgcell(&["base", "show", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("no base"), "{}", text(&o));
}

#[test]
fn a_command_base_from_make_test_base_builds_hello_with_makepkg() {
    let e = Env::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-base");
    e.config(&format!("[base]\nsource = \"command\"\ncommand = '\"{}\" \"$PKGCELL_BASE_OUT\"'\n", script.display()));
    let id = e.create();
    let root = e.home().join("bases").join(&id).join("root");
    assert_eq!(e.show(&id)["source"]["kind"], "command");

    // makepkg with the base's own settings: /build, .pkg.tar.zst.
    let start = e.dir.join("hello");
    copy_fixture("hello", &start);
    let out = e.dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&root)
            .arg("--ro-bind")
            .arg(format!("{}:/startdir", start.display()))
            .arg("--bind")
            .arg(format!("{}:/pkgdest", out.display()))
            .args(["--uid", "1000", "--gid", "1000", "--cwd", "/startdir"])
            .args(["--env", "PKGDEST=/pkgdest", "--env", "SRCDEST=/tmp/src", "--env", "HOME=/home/builder"])
            .args(["--", "makepkg", "--nodeps", "--noconfirm"]),
    );
    assert!(o.status.success(), "makepkg failed\n{}", text(&o));
    assert!(out.join("hello-1.0-1-x86_64.pkg.tar.zst").exists(), "{}", text(&o));
}

/// Build the PKGBUILD made of `files` in `dir` with makepkg on the test
/// base, as the build user, into `repo` (made when missing).
fn makepkg_into(dir: &Path, repo: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    if !repo.exists() {
        std::fs::create_dir(repo).unwrap();
        std::fs::set_permissions(repo, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(test_base())
            .arg("--ro-bind")
            .arg(format!("{}:/startdir", dir.display()))
            .arg("--bind")
            .arg(format!("{}:/pkgdest", repo.display()))
            .args(["--uid", "1000", "--gid", "1000", "--cwd", "/startdir"])
            .args(["--env", "PKGDEST=/pkgdest", "--env", "BUILDDIR=/tmp/build", "--env", "SRCDEST=/tmp/src"])
            .args(["--env", "PKGEXT=.pkg.tar.zst", "--env", "HOME=/home/builder"])
            .args(["--", "makepkg", "--nodeps", "--noconfirm"]),
    );
    assert!(o.status.success(), "makepkg in {} failed\n{}", dir.display(), text(&o));
}

#[test]
fn a_pacman_base_is_bootstrapped_from_a_local_repository_built_here() {
    let e = Env::new();
    // A package repackaging the test base's userland that makepkg needs
    // (shells, coreutils, makepkg, pacman, fakeroot, bsdtar, ...) and the
    // libraries they load.
    let repo = e.dir.join("repo");
    makepkg_into(&e.dir.join("testroot"), &repo, &[("PKGBUILD", TESTROOT_PKGBUILD), ("testroot.install", TESTROOT_INSTALL)]);
    let o = output(
        Command::new("repo-add")
            .arg(repo.join("testrepo.db.tar.gz"))
            .arg(repo.join("testroot-1-1-x86_64.pkg.tar.zst")),
    );
    assert!(o.status.success(), "repo-add failed\n{}", text(&o));
    std::fs::write(
        e.dir.join("pacman.conf"),
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Required\nDownloadUser = pkgcell-nobody\n\n[testrepo]\nServer = file://{}\n",
            repo.display()
        ),
    )
    .unwrap();
    e.config(
        "[base]\nsource = \"pacman\"\npackages = [\"testroot\"]\npacman_conf = \"pacman.conf\"\nsignatures = \"skip\"\n",
    );

    let id = e.create();
    let shown = e.show(&id);
    assert_eq!(shown["source"]["kind"], "pacman");
    assert_eq!(shown["packages"], serde_json::json!([{"name": "testroot", "version": "1-1"}]), "{shown:#}");
    let root = PathBuf::from(shown["root"].as_str().unwrap());
    // Installed files belong to root inside (the caller outside).
    let me = std::fs::metadata(e.path()).unwrap().uid();
    assert_eq!(std::fs::metadata(root.join("usr/bin/dash")).unwrap().uid(), me);
    assert_eq!(std::fs::read_to_string(root.join("var/lib/testroot-scriptlet")).unwrap(), "ran\n");
    assert_eq!(std::fs::read_dir(root.join("dev")).unwrap().count(), 0, "/dev of the bootstrap stayed in the base");
    // The package cache is pkgcell's shared one.
    assert!(e.home().join("cache/pkg/testroot-1-1-x86_64.pkg.tar.zst").exists());
    // The host has no such download user and its /etc/passwd is not ours
    // to change: DownloadUser is off for the bootstrap, and the log says so.
    let dir = e.home().join("bases").join(&id);
    let log = std::fs::read_to_string(dir.join("pacman.log")).unwrap();
    assert!(log.contains("the host has no user pkgcell-nobody: DownloadUser is off"), "{log}");
    let boot_conf = std::fs::read_to_string(dir.join("pacman.conf")).unwrap();
    assert!(boot_conf.contains("# pkgcell: off: the host has no user pkgcell-nobody\n#DownloadUser = pkgcell-nobody\n"), "{boot_conf}");

    // It works as the lower layer of a sandbox, prepared: the build user
    // exists, pacman's config has the repos it was made with plus pkgcell's.
    let out = ok(run_on(&root, &[], "grep -c '^builder:x:1000:' /etc/passwd; grep -c -e '^\\[testrepo\\]' -e '^\\[pkgcell\\]' /etc/pacman.conf; cat /etc/pkgcell-base"));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "2", "pkgcell base preparation 1"], "{out}");
    let o = run_on(&root, &["--uid", "1000", "--gid", "1000"], "id -u");
    assert_eq!(ok(o).trim(), "1000");

    // And a PKGBUILD builds on it: `pkgcell build` in laptop mode, on this base.
    builds_greeting_on(&e, &id, "!strip");
}

/// Issue 15: `[base] tools` bootstraps with the pacman of another root file
/// system (the test base: pacman 7.1 on sid, 6.0.2 on bookworm), with
/// signatures checked against a throwaway key given in `[base] keys`, from
/// a repository served over loopback HTTP, with pacman 7's download
/// sandbox (DownloadUser = alpm) on.
#[test]
fn a_pacman_base_is_bootstrapped_with_the_pacman_of_a_tools_root_and_a_trusted_key() {
    let e = Env::new();
    let tools = test_base();
    let want = if tools.join("etc/debian_version").exists()
        && std::fs::read_to_string(tools.join("etc/debian_version")).unwrap().trim_end().ends_with("/sid")
    {
        "7.1."
    } else {
        "6.0.2"
    };
    // The base package: the userland of the first pacman test, with gpg
    // and gettext for pacman-key; and a tiny package to tamper with.
    let repo = e.dir.join("repo");
    let testroot = TESTROOT_PKGBUILD.replace("xz-utils gzip tar diffutils;", "xz-utils gzip tar diffutils gpg gpg-agent gpgconf gettext-base;");
    assert_ne!(testroot, TESTROOT_PKGBUILD);
    makepkg_into(&e.dir.join("testroot"), &repo, &[("PKGBUILD", &testroot), ("testroot.install", TESTROOT_INSTALL)]);
    makepkg_into(
        &e.dir.join("greet"),
        &repo,
        &[("PKGBUILD", "pkgname=greet\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\npackage() { install -Dm644 /dev/null \"$pkgdir/usr/share/greet/hi\"; }\n")],
    );

    // A throwaway signing key, without a passphrase, in the test's own GNUPGHOME.
    let gnupg = e.dir.join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let o = output(Command::new("gpg").arg("--homedir").arg(&gnupg).args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]).args(args));
        assert!(o.status.success(), "gpg {args:?} failed\n{}", text(&o));
        o
    };
    gpg(&["--quick-gen-key", "pkgcell test repository <repo@pkgcell.invalid>", "ed25519", "sign", "never"]);
    let listed = stdout(&gpg(&["--with-colons", "--list-secret-keys"]));
    let fpr = listed.lines().find(|l| l.starts_with("fpr:")).and_then(|l| l.split(':').nth(9)).unwrap().to_owned();
    let key = e.dir.join("repo-key.asc");
    std::fs::write(&key, gpg(&["--armor", "--export", &fpr]).stdout).unwrap();
    let sign = |file: &Path| {
        gpg(&["--local-user", &fpr, "--detach-sign", "--no-armor", "--output", &format!("{}.sig", file.display()), file.to_str().unwrap()]);
    };
    let testroot_pkg = repo.join("testroot-1-1-x86_64.pkg.tar.zst");
    let greet_pkg = repo.join("greet-1-1-any.pkg.tar.zst");
    sign(&testroot_pkg);
    sign(&greet_pkg);
    let repo_add = |repo: &Path| {
        let o = output(
            Command::new("repo-add")
                .env("GNUPGHOME", &gnupg)
                .args(["--sign", "--key", &fpr])
                .arg(repo.join("testrepo.db.tar.gz"))
                .arg(repo.join("testroot-1-1-x86_64.pkg.tar.zst"))
                .arg(repo.join("greet-1-1-any.pkg.tar.zst")),
        );
        assert!(o.status.success(), "repo-add failed\n{}", text(&o));
    };
    repo_add(&repo);
    assert!(repo.join("testrepo.db.sig").exists());
    let served = serve_dir(&repo);
    std::fs::write(
        e.dir.join("pacman.conf"),
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Required DatabaseRequired\nDownloadUser = alpm\n\n\
             [testrepo]\nServer = http://127.0.0.1:{}\n",
            served.port
        ),
    )
    .unwrap();
    let config = format!(
        "[base]\nsource = \"pacman\"\npackages = [\"testroot\", \"greet\"]\npacman_conf = \"pacman.conf\"\n\
         tools = \"{}\"\nkeys = [\"repo-key.asc\"]\n",
        tools.display()
    );
    e.config(&config);

    let id = e.create();
    let shown = e.show(&id);
    assert_eq!(shown["source"]["tools"], tools.to_str().unwrap(), "{shown:#}");
    let names: Vec<&str> = shown["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["greet", "testroot"], "{shown:#}");
    // Downloaded over HTTP (database, signatures and packages), by the
    // tools root's pacman, whose download user pkgcell added to the tools
    // root's overlay (the test base, being Debian's, has none), not to the
    // tools root itself.
    for f in ["testrepo.db", "testrepo.db.sig", "testroot-1-1-x86_64.pkg.tar.zst", "greet-1-1-any.pkg.tar.zst"] {
        assert!(served.hits(f) > 0, "{f} was not downloaded");
    }
    let dir = e.home().join("bases").join(&id);
    let log = std::fs::read_to_string(dir.join("pacman.log")).unwrap();
    assert!(log.contains(&format!("pkgcell: bootstrapping with Pacman v{want}")), "not pacman {want}:\n{log}");
    assert!(log.contains("added the download user alpm"), "{log}");
    assert!(!log.to_lowercase().contains("sandbox") && !log.contains("Landlock"), "the download sandbox complained:\n{log}");
    assert!(!std::fs::read_to_string(tools.join("etc/passwd")).unwrap().contains("alpm:"), "the tools root was changed");
    // The bootstrap ran with DownloadUser on; the base's config has it off, saying why.
    let boot_conf = std::fs::read_to_string(dir.join("pacman.conf")).unwrap();
    assert!(boot_conf.lines().any(|l| l == "DownloadUser = alpm"), "{boot_conf}");
    let root = dir.join("root");
    let base_conf = std::fs::read_to_string(root.join("etc/pacman.conf")).unwrap();
    assert!(base_conf.contains("# pkgcell: off in bases") && base_conf.contains("\n#DownloadUser = alpm\n"), "{base_conf}");
    assert!(base_conf.contains("SigLevel = Required DatabaseRequired"), "{base_conf}");

    // The key is in the base's own keyring, locally signed: fully valid.
    let out = ok(run_on(
        &root,
        &[],
        &format!("gpg --homedir /etc/pacman.d/gnupg --with-colons --list-keys {fpr} | grep ^pub; ls -A /tmp"),
    ));
    assert!(out.lines().next().unwrap_or("").starts_with("pub:f:"), "the key is not fully valid in the base's keyring:\n{out}");
    assert!(std::fs::read_dir(root.join("tmp")).unwrap().next().is_none(), "the preparation left files in /tmp of the base");

    // A PKGBUILD builds on it.
    builds_greeting_on(&e, &id, "!strip !debug");

    // A package whose signature does not match it (greet's is testroot's):
    // signatures are checked, so making the base fails with pacman's error.
    let bad = e.dir.join("bad-repo");
    std::fs::create_dir(&bad).unwrap();
    for f in ["testroot-1-1-x86_64.pkg.tar.zst", "testroot-1-1-x86_64.pkg.tar.zst.sig", "greet-1-1-any.pkg.tar.zst"] {
        std::fs::copy(repo.join(f), bad.join(f)).unwrap();
    }
    std::fs::copy(repo.join("testroot-1-1-x86_64.pkg.tar.zst.sig"), bad.join("greet-1-1-any.pkg.tar.zst.sig")).unwrap();
    repo_add(&bad);
    let bad_served = serve_dir(&bad);
    let e2 = Env::new();
    std::fs::copy(&key, e2.dir.join("repo-key.asc")).unwrap();
    std::fs::write(
        e2.dir.join("pacman.conf"),
        std::fs::read_to_string(e.dir.join("pacman.conf")).unwrap().replace(&served.port.to_string(), &bad_served.port.to_string()),
    )
    .unwrap();
    e2.config(&config);
    let o = e2.pkgcell(&["base", "create"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("pacman failed") && err.contains("invalid or corrupted package (PGP signature)"), "{err}");
    assert!(e2.listed().is_empty());
    let _ = Command::new("gpgconf").arg("--homedir").arg(&gnupg).args(["--kill", "all"]).status();
}

const TESTROOT_PKGBUILD: &str = r#"pkgname=testroot
pkgver=1
pkgrel=1
pkgdesc='A minimal userland copied from the pkgcell test base'
arch=(x86_64)
license=(custom)
options=(!strip !debug)
install=testroot.install

package() {
    cd "$pkgdir"
    mkdir -p usr/bin usr/lib/x86_64-linux-gnu usr/lib64 etc proc dev sys tmp run root var/tmp
    ln -s usr/bin bin
    ln -s usr/bin sbin
    ln -s usr/lib lib
    ln -s usr/lib64 lib64
    # The files of the Debian packages makepkg needs (but their docs), then
    # every library their programs load.
    for p in bash dash coreutils sed grep gawk findutils libarchive-tools fakeroot libfakeroot zstd makepkg pacman-package-manager util-linux \
             xz-utils gzip tar diffutils; do
        dpkg -L "$p"
    done | grep -v -e '^/usr/share/doc' -e '^/usr/share/man' -e '^/usr/share/locale' -e '^/usr/share/info' |
    while read -r f; do
        [ -f "$f" ] || [ -L "$f" ] || continue
        [ -e "./$f" ] && continue
        mkdir -p "./$(dirname "$f")"
        cp -P "$f" "./$f"
    done
    for f in usr/bin/* usr/lib/x86_64-linux-gnu/libfakeroot/*; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        ldd "/$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' >> "$srcdir/libs"
    done
    ln -sf dash usr/bin/sh
    # Debian's alternatives, which dpkg -L does not list.
    ln -sf fakeroot-sysv usr/bin/fakeroot
    ln -sf faked-sysv usr/bin/faked
    ln -sf gawk usr/bin/awk
    sort -u "$srcdir/libs" | while read -r l; do [ -e "./$l" ] || cp -L "$l" usr/lib/x86_64-linux-gnu/; done
    cp -L /lib64/ld-linux-x86-64.so.2 usr/lib64/
    printf 'root:x:0:0:root:/root:/bin/sh\n' > etc/passwd
    printf 'root:x:0:\n' > etc/group
    cp /etc/pacman.conf etc/pacman.conf
}
"#;

/// Install scriptlets run chrooted in the new base, with a /dev and /proc.
const TESTROOT_INSTALL: &str = r#"post_install() {
    echo scriptlet > /dev/null
    test -r /proc/self/status && echo ran > /var/lib/testroot-scriptlet
}
"#;

#[test]
fn a_killed_create_leaves_no_listed_base_and_the_next_create_succeeds() {
    let e = Env::new();
    e.config(
        "[base]\nsource = \"command\"\n\
         command = 'mkdir -p \"$PKGCELL_BASE_OUT/usr\" && touch \"$PKGCELL_BASE_OUT/started\" && exec sleep 30'\n",
    );
    let mut child = {
        use std::os::unix::process::CommandExt;
        e.cmd(&["base", "create"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let started = loop {
        let found = e.leftovers().into_iter().find(|n| e.home().join("bases").join(n).join("out.tar/started").exists());
        if let Some(n) = found {
            break n;
        }
        assert!(Instant::now() < deadline, "the base command never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    // kill -9 of pkgcell halfway; then its orphaned command too.
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = Command::new("kill").args(["-9", "--", &format!("-{}", child.id())]).status();

    assert!(e.listed().is_empty(), "a half-made base is listed");
    assert!(e.leftovers().contains(&started));

    e.config(&format!("[base]\nsource = \"tarball\"\ntarball = \"{}\"\n", test_base_tarball().display()));
    let id = e.create();
    assert_eq!(e.listed(), [id]);
    assert!(e.leftovers().is_empty(), "the half-made base was not cleaned up: {:?}", e.leftovers());
}

#[test]
fn bad_tarballs_failing_commands_and_missing_configs_are_clear_errors() {
    let e = Env::new();
    let o = e.pkgcell(&["base", "create"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("cannot read config file pkgcell.toml"), "{}", text(&o));

    std::fs::write(e.dir.join("junk.tar"), "this is not a tarball\n").unwrap();
    e.config("[base]\nsource = \"tarball\"\ntarball = \"junk.tar\"\n");
    let o = e.pkgcell(&["base", "create"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("unpacking the base tarball failed"), "{err}");
    assert!(err.contains("tar:"), "tar's own message is missing: {err}");

    e.config("[base]\nsource = \"command\"\ncommand = 'echo \"no mirror reachable\" >&2; exit 3'\n");
    let o = e.pkgcell(&["base", "create"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("the base command failed") && err.contains("no mirror reachable"), "{err}");

    e.config("[base]\nsource = \"command\"\ncommand = 'true'\n");
    let o = e.pkgcell(&["base", "create"]);
    assert!(stderr(&o).contains("wrote nothing to $PKGCELL_BASE_OUT"), "{}", text(&o));

    std::fs::write(e.dir.join("pacman.conf"), "[options]\n[nowhere]\nServer = file:///nonexistent/repo\n").unwrap();
    e.config("[base]\nsource = \"pacman\"\npackages = [\"nothing\"]\npacman_conf = \"pacman.conf\"\nsignatures = \"skip\"\n");
    let o = e.pkgcell(&["base", "create"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("pacman failed"), "{}", text(&o));

    // Signatures are checked unless the config opts out; without keyrings
    // to check them with, that is an error, not a silent SigLevel = Never.
    if !Path::new("/usr/share/pacman/keyrings").exists() {
        e.config("[base]\nsource = \"pacman\"\npackages = [\"nothing\"]\npacman_conf = \"pacman.conf\"\n");
        let o = e.pkgcell(&["base", "create"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(stderr(&o).contains("cannot check package signatures"), "{}", text(&o));
    }

    assert!(e.listed().is_empty());
    assert!(e.leftovers().is_empty(), "failed creates left {:?}", e.leftovers());
}

/// `base update` makes a new base when the package set changed; the old one
/// stays while it is the newest or a build record needs it, and `store gc`
/// removes it once neither holds (issue 4).
#[test]
fn store_gc_removes_a_base_replaced_by_update_that_no_build_needs() {
    let e = Env::new();
    // A command source whose package set changes with a counter file: the
    // test base, plus one fake installed package `gen` at version N.
    let counter = e.path().join("counter");
    std::fs::write(&counter, "1").unwrap();
    let script = e.path().join("make-base.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\nmkdir -p \"$PKGCELL_BASE_OUT.d\"\ntar --zstd -xf {tarball} -C \"$PKGCELL_BASE_OUT.d\" 2>/dev/null || true\n\
             n=$(cat {counter})\nd=\"$PKGCELL_BASE_OUT.d/var/lib/pacman/local/gen-$n-1\"\nmkdir -p \"$d\"\n\
             printf '%%NAME%%\\ngen\\n\\n%%VERSION%%\\n%s-1\\n\\n' \"$n\" > \"$d/desc\"\n: > \"$d/files\"\n\
             tar --zstd -C \"$PKGCELL_BASE_OUT.d\" -cf \"$PKGCELL_BASE_OUT\" .\n",
            tarball = test_base_tarball().display(),
            counter = counter.display()
        ),
    )
    .unwrap();
    e.config(&format!("[base]\nsource = \"command\"\ncommand = \"sh {}\"\n", script.display()));
    let first = e.create();
    assert!(e.show(&first)["packages"].to_string().contains("\"gen\""), "{}", e.show(&first));

    // Nothing needs the first base but it is the newest: gc keeps it.
    let o = e.pkgcell(&["store", "gc", "--json"]);
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(v["bases"], serde_json::json!([]), "{v:#}");

    // The package set changes: update makes a second base; the first stays.
    std::fs::write(&counter, "2").unwrap();
    let o = e.pkgcell(&["base", "update", "--json"]);
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    let second = v["base"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(e.listed_sorted(), sorted(&[&first, &second]));

    // Now the first is neither the newest nor named by a build record.
    let o = e.pkgcell(&["store", "gc", "--json"]);
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(v["bases"], serde_json::json!([first]), "{v:#}");
    assert_eq!(e.listed(), vec![second]);
}

/// Issue 17: a `command` base is keyed by what the command runs (its
/// program's bytes and the command line), not by the config's directory:
/// the same command in a second directory finds the first base (`plan`
/// there makes none), and a changed script makes a new one, which
/// `base list` tells apart by the script's hash.
#[test]
fn the_same_command_in_two_directories_is_one_base_and_a_changed_script_is_another() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let script = |dir: &Path, extra: &str| {
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        let path = dir.join("scripts/mk-base");
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{extra}cp {} \"$1\"\n", test_base_tarball().display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("pkgcell.toml"), "[base]\nsource = \"command\"\ncommand = 'scripts/mk-base \"$PKGCELL_BASE_OUT\"'\n").unwrap();
    };
    let (a, b) = (e.path().to_owned(), e.path().join("elsewhere"));
    script(&a, "");
    script(&b, "");
    let first = e.create();
    let shown = e.show(&first);
    assert_eq!(shown["source"]["dir"], a.display().to_string(), "{shown:#}");
    assert_eq!(shown["source"]["program"]["path"], a.join("scripts/mk-base").display().to_string(), "{shown:#}");

    // `plan` in the other directory resolves the base: the existing one.
    std::fs::write(b.join("pkgcell.toml"), format!("{}\n[pkgbuilds]\n", std::fs::read_to_string(b.join("pkgcell.toml")).unwrap())).unwrap();
    let o = output(e.cmd(&["plan", "--json"]).current_dir(&b));
    ok(o);
    assert_eq!(e.listed(), vec![first.clone()], "plan in another directory made a second base");
    let o = output(e.cmd(&["base", "create", "--json"]).current_dir(&b));
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!((v["status"].as_str(), v["base"]["id"].as_str()), (Some("existing"), Some(first.as_str())), "{v:#}");

    // A changed script is another command.
    script(&b, "echo changed\n");
    let o = output(e.cmd(&["base", "create", "--json"]).current_dir(&b));
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(v["status"], "new", "{v:#}");
    let second = v["base"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(e.listed_sorted(), sorted(&[&first, &second]));
    // The table shows what differs: the script's hash.
    let table = ok(e.pkgcell(&["base", "list"]));
    let hash = |id: &str| e.show(id)["source"]["program"]["blake3"].as_str().unwrap()[..12].to_owned();
    let (h1, h2) = (hash(&first), hash(&second));
    assert_ne!(h1, h2);
    for (id, h) in [(&first, &h1), (&second, &h2)] {
        let line = table.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id} not in\n{table}"));
        assert!(line.contains(h.as_str()), "{line}");
    }
    let shown = ok(e.pkgcell(&["base", "show", &second]));
    assert!(shown.contains(&h2) && shown.contains(&b.join("scripts/mk-base").display().to_string()), "{shown}");
}

/// Issue 15: a plain root file system tarball with no pacman database (as
/// mmdebstrap writes one) is a base with no packages: it is given an empty
/// database, and a PKGBUILD with no dependencies plans and builds on it.
#[test]
fn a_tarball_without_a_pacman_database_is_a_base_with_no_packages() {
    let e = Env::new();
    // The cached tarball of the test base, unpacked without its pacman
    // database and packed again (not the live base: other tests use it).
    let tarball = e.dir.join("nodb.tar.zst");
    let tree = e.dir.join("nodb");
    let script = format!(
        "set -e; mkdir {tree}; tar --numeric-owner --zstd -xf {from} -C {tree} --exclude=./var/lib/pacman 2>/dev/null || true; \
         tar --numeric-owner --zstd -C {tree} -cf {tarball} .; rm -rf {tree}",
        tree = tree.display(),
        from = test_base_tarball().display(),
        tarball = tarball.display()
    );
    let o = output(Command::new("unshare").args(["--map-auto", "--map-root-user", "sh", "-c", &script]));
    assert!(o.status.success(), "{}", text(&o));
    let pkg = e.dir.join("pkgs/plain");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("PKGBUILD"),
        "pkgname=plain\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\npackage() { install -Dm644 /dev/null \"$pkgdir/usr/share/plain/x\"; }\n",
    )
    .unwrap();
    e.config(&format!(
        "[base]\nsource = \"tarball\"\ntarball = \"{}\"\n\n[pkgbuilds]\nplain = {{ path = \"pkgs/plain\" }}\n",
        tarball.display()
    ));
    let id = e.create();
    assert_eq!(e.show(&id)["packages"], serde_json::json!([]));
    let o = e.pkgcell(&["build", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|err| panic!("no JSON ({err})\n{}", text(&o)));
    assert_eq!(v["packages"][0]["status"], "built", "{}", text(&o));
}

#[test]
fn the_test_base_runs_the_pacman_and_makepkg_of_its_debian_suite() {
    // sid: 7.1 (the demo's and the full test run's base); bookworm: 6.0.2.
    let debian = std::fs::read_to_string(test_base().join("etc/debian_version")).unwrap();
    let (suite, want) = match debian.trim_end() {
        v if v.ends_with("/sid") => ("sid", "7.1."),
        v if v.starts_with("12.") => ("bookworm", "6.0.2"),
        v => panic!("the test base is Debian {v:?}: neither sid nor bookworm (scripts/make-test-base)"),
    };
    if let Ok(asked) = std::env::var("PKGCELL_TEST_SUITE") {
        assert_eq!(asked, suite, "PKGCELL_TEST_SUITE does not name the suite of PKGCELL_TEST_BASE");
    }
    let out = ok(run_sh(&[], "pacman --version; makepkg --version"));
    assert!(out.contains(&format!("Pacman v{want}")), "not pacman {want}:\n{out}");
    assert!(out.contains(&format!("makepkg (pacman) {want}")), "not makepkg {want}:\n{out}");
}
