//! The command line's conventions (issue 17): entering and removing the kept
//! tree of a failed build, completions, the man page, usage errors, and
//! build --publish.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// A laptop-mode PKGBUILD directory `dir` whose build leaves a private file
/// in $srcdir, then fails.
fn failing_pkgbuild(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        "pkgname=stumble\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
         build() {\n  echo 'left by the build' > left-behind\n  chmod 600 left-behind\n  echo failing on purpose\n  false\n}\n\
         package() {\n  :\n}\n",
    )
    .unwrap();
}

fn failed_entries(home: &Path) -> Vec<String> {
    std::fs::read_dir(home.join("failed")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn shell_runs_a_command_as_the_build_user_in_a_kept_failed_build_and_clean_removes_the_tree() {
    let d = TestDir::new();
    let dir = d.join("stumble");
    failing_pkgbuild(&dir);
    let home = d.join("home");
    let pkgcell_here = || {
        let mut c = pkgcell();
        c.current_dir(&dir).env("PKGCELL_HOME", &home).env("PKGCELL_BASE_DIR", test_base());
        c
    };
    // --inspect is --keep-failed, as makechrootpkg users call it.
    let o = output(pkgcell_here().args(["build", "-q", "--inspect"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let kept = failed_entries(&home);
    assert_eq!(kept.len(), 1, "{kept:?}");

    // The file the build left (mode 600, the build user's) is read as the
    // build user, in makepkg's $srcdir's parent.
    let o = output(pkgcell_here().args(["shell", "stumble", "--", "sh", "-c", "id -u; pwd; cat src/left-behind"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stdout(&o), "1000\n/build/stumble\nleft by the build\n", "{}", text(&o));

    // By pkgid prefix too; the build user can write where makepkg wrote,
    // what it writes stays in the tree, and the command's exit status is
    // shell's.
    let prefix = &kept[0][..kept[0].len() - 10];
    let o = output(pkgcell_here().args(["shell", prefix, "--", "sh", "-c", "echo more > src/added && exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let o = output(pkgcell_here().args(["shell", "stumble", "--", "cat", "src/added"]));
    assert_eq!(stdout(&o), "more\n", "{}", text(&o));

    // After a shell the tree is the user's again: readable by hand.
    let by_hand = home.join("failed").join(&kept[0]).join("upper/build/stumble/src/left-behind");
    assert_eq!(std::fs::read_to_string(&by_hand).unwrap(), "left by the build\n");

    // A name with no kept build is an error that lists what is kept.
    let o = output(pkgcell_here().args(["shell", "nosuch", "--", "true"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("no kept failed build matches \"nosuch\"") && stderr(&o).contains(&kept[0]), "{}", text(&o));

    // clean --dry-run lists, clean removes; the failed dir is left empty
    // and listable by the user.
    let out = ok(output(pkgcell_here().args(["clean", "--dry-run"])));
    assert!(out.contains("would remove") && out.ends_with("1 kept failed build would remove\n"), "{out}");
    assert_eq!(failed_entries(&home).len(), 1);
    let out = ok(output(pkgcell_here().args(["clean"])));
    assert!(out.contains(&format!("removed {}", home.join("failed").join(&kept[0]).display())), "{out}");
    assert_eq!(failed_entries(&home), Vec::<String>::new());
    let o = output(pkgcell_here().args(["shell", "stumble"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn completions_are_made_for_bash_zsh_and_fish_and_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(output(pkgcell().args(["completions", shell])));
        for word in ["build", "publish", "shell", "clean", "--keep-failed"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let o = output(pkgcell().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn the_man_page_renders_and_one_per_subcommand_is_written_with_out() {
    let page = ok(output(pkgcell().arg("man")));
    assert!(page.starts_with(".ie") && page.contains(".TH pkgcell 1") && page.contains("rootless sandboxes"), "{page}");
    let d = TestDir::new();
    ok(output(pkgcell().args(["man", "--out"]).arg(d.join("man1"))));
    for f in ["pkgcell.1", "pkgcell-build.1", "pkgcell-shell.1", "pkgcell-repo-add.1"] {
        assert!(d.join("man1").join(f).is_file(), "no {f}");
    }
    // man(1) formats it, when the host has man.
    if Path::new("/usr/bin/man").exists() {
        let o = output(Command::new("man").arg("-l").arg(d.join("man1/pkgcell-build.1")).env("MANPAGER", "cat").env("MANWIDTH", "80"));
        assert!(o.status.success() && stdout(&o).contains("--keep-failed"), "{}", text(&o));
    }
}

/// `make install` (its install-files half, with this test's binary) puts
/// the binary, the three completions and the man pages under DESTDIR and
/// PREFIX, and `make uninstall` takes them away again.
#[test]
fn make_install_files_and_uninstall_honour_destdir_and_prefix() {
    let d = TestDir::new();
    let dest = d.join("dest");
    let make = |target: &str| {
        let mut c = Command::new("make");
        c.arg("-s").arg("-C").arg(env!("CARGO_MANIFEST_DIR")).arg(target);
        c.arg(format!("BIN={}", pkgcell().get_program().to_string_lossy()));
        c.arg(format!("DESTDIR={}", dest.display())).arg("PREFIX=/opt/pc");
        ok(output(&mut c))
    };
    make("install-files");
    let files = [
        "bin/pkgcell",
        "share/bash-completion/completions/pkgcell",
        "share/zsh/site-functions/_pkgcell",
        "share/fish/vendor_completions.d/pkgcell.fish",
        "share/man/man1/pkgcell.1",
        "share/man/man1/pkgcell-build.1",
    ];
    for f in files {
        let p = dest.join("opt/pc").join(f);
        assert!(std::fs::metadata(&p).is_ok_and(|m| m.len() > 0), "{} missing or empty", p.display());
    }
    let v = ok(output(Command::new(dest.join("opt/pc/bin/pkgcell")).arg("--version")));
    assert!(v.starts_with("pkgcell "), "{v}");
    make("uninstall");
    for f in files {
        assert!(!dest.join("opt/pc").join(f).exists(), "{f} left after uninstall");
    }
}

#[test]
fn a_ro_bind_that_does_not_exist_is_a_usage_error_before_any_build() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    let o = output(pkgcell_in(d.path()).current_dir(&dir).args(["build", "-D", "/nonexistent/x:/x"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("/nonexistent/x does not exist"), "{}", text(&o));
    assert!(!d.join("home/logs").exists(), "a build started: {}", text(&o));
    let o = output(pkgcell_in(d.path()).current_dir(&dir).args(["build", "-d", "/nonexistent/y"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("/nonexistent/y does not exist"), "{}", text(&o));
}

/// The `start-end` ranges of every line of a subid file.
fn subid_ranges(file: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            let (s, n) = (f.get(1)?.parse::<u64>().ok()?, f.get(2)?.parse::<u64>().ok()?);
            Some((s, s + n))
        })
        .collect()
}

#[test]
fn without_a_subordinate_range_base_create_stops_before_the_command_and_proposes_a_free_range() {
    let d = TestDir::new();
    std::fs::write(d.join("empty"), "").unwrap();
    std::fs::write(
        d.join("pkgcell.toml"),
        "[base]\nsource = \"command\"\ncommand = 'touch ran && mkdir -p \"$PKGCELL_BASE_OUT/usr\"'\n",
    )
    .unwrap();
    let o = output(
        pkgcell()
            .args(["base", "create"])
            .current_dir(d.path())
            .env("PKGCELL_HOME", d.join("home"))
            .env("PKGCELL_SUBUID_FILE", d.join("empty"))
            .env("PKGCELL_SUBGID_FILE", d.join("empty")),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!d.join("ran").exists(), "the command ran before pkgcell's check: {}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("uid 1000 inside the sandbox is not mapped") && err.contains("builder"), "{err}");
    // The proposed range is one no line of /etc/subuid or /etc/subgid uses.
    let range = err.split("--add-subuids ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("{err}"));
    let (a, b) = range.split_once('-').unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse::<u64>().unwrap() + 1);
    assert_eq!(b - a, 65536, "{err}");
    for (s, e) in subid_ranges("/etc/subuid").into_iter().chain(subid_ranges("/etc/subgid")) {
        assert!(e <= a || s >= b, "{range} overlaps {s}-{e}: {err}");
    }
}

#[test]
fn repo_add_v_verifies_the_db_signature_as_repo_add_does() {
    let d = TestDir::new();
    let out = d.join("out");
    let a = crate::pkgutil::makepkg(&crate::pkgutil::TestPackage::new("alpha"), &d.join("work"), &out);
    let b = crate::pkgutil::makepkg(&crate::pkgutil::TestPackage::new("beta"), &d.join("work"), &out);
    let db = d.join("repo/test.db.tar.zst");
    let repo_add = |args: &[&str], file: &Path| {
        output(pkgcell().args(["repo", "add"]).args(args).arg(&db).arg(file).env("GNUPGHOME", d.join("gnupg")))
    };
    // No signature yet: a warning, and the update goes on.
    let o = repo_add(&["-v"], &a);
    assert!(o.status.success() && stderr(&o).contains("no existing signature found"), "{}", text(&o));
    // A bad signature stops it: exit 1, the db as it was.
    std::fs::create_dir_all(d.join("gnupg")).unwrap();
    std::fs::set_permissions(d.join("gnupg"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(d.join("repo/test.db.tar.zst.sig"), "not a signature").unwrap();
    let before = std::fs::read(&db).unwrap();
    let o = repo_add(&["-v"], &b);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("signature of") && stderr(&o).contains("is invalid"), "{}", text(&o));
    assert_eq!(std::fs::read(&db).unwrap(), before, "the db changed");
    // Without -v it is not checked (and -v was not --verbose).
    let o = repo_add(&[], &b);
    assert!(o.status.success() && !stderr(&o).contains("signature"), "{}", text(&o));
}

/// The entries of a repository db (`NAME-VER-REL/` directories).
fn db_entries(db: &Path) -> String {
    let o = output(Command::new("bsdtar").arg("-tf").arg(db));
    assert!(o.status.success(), "{}", text(&o));
    stdout(&o)
}

#[test]
fn build_publish_builds_then_publishes_the_repository_and_its_exit_status_says_what_failed() {
    let d = TestDir::new();
    let pkg = |name: &str, body: &str| {
        let dir = d.join("pkgs").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("PKGBUILD"),
            format!("pkgname={name}\npkgver=1.0\npkgrel=1\narch=(any)\nlicense=(MIT)\npackage() {{\n  {body}\n}}\n"),
        )
        .unwrap();
    };
    pkg("good", "install -Dm644 /dev/null \"$pkgdir/usr/share/good/x\"");
    pkg("bad", "false");
    std::fs::write(
        d.join("pkgcell.toml"),
        "[repo]\nname = \"mine\"\narch = \"x86_64\"\npublish = \"repo\"\n\n[pkgbuilds]\ngood = { path = \"pkgs/good\" }\n",
    )
    .unwrap();
    let o = output(pkgcell_in(d.path()).args(["build", "--publish"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let db = d.join("repo/x86_64/mine.db.tar.zst");
    assert!(db_entries(&db).contains("good-1.0-1/desc"), "{}", text(&o));
    assert!(d.join("repo/x86_64/good-1.0-1-any.pkg.tar.zst").is_file());

    // A failed package: the rest is published, the status is 1.
    std::fs::write(
        d.join("pkgcell.toml"),
        "[repo]\nname = \"mine\"\narch = \"x86_64\"\npublish = \"repo\"\n\n[pkgbuilds]\ngood = { path = \"pkgs/good\" }\nbad = { path = \"pkgs/bad\" }\n",
    )
    .unwrap();
    let o = output(pkgcell_in(d.path()).args(["build", "--publish"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("==> publishing the repository of pkgcell.toml"), "{}", text(&o));
    let entries = db_entries(&db);
    assert!(entries.contains("good-1.0-1/desc") && !entries.contains("bad-"), "{entries}");

    // A publish that cannot be done: 2, after the build.
    std::fs::write(d.join("blocker"), "").unwrap();
    std::fs::write(
        d.join("pkgcell.toml"),
        "[repo]\nname = \"mine\"\narch = \"x86_64\"\npublish = \"blocker\"\n\n[pkgbuilds]\ngood = { path = \"pkgs/good\" }\n",
    )
    .unwrap();
    let o = output(pkgcell_in(d.path()).args(["build", "--publish"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stdout(&o).contains("cached") && stderr(&o).contains("publishing to"), "{}", text(&o));

    // Laptop mode has no repository to publish: a usage error, nothing built.
    let o = output(pkgcell_in(d.path()).current_dir(d.join("pkgs/good")).args(["build", "--publish"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--publish publishes the [repo] of a pkgcell.toml"), "{}", text(&o));
    assert!(!d.join("pkgs/good/good-1.0-1-any.pkg.tar.zst").exists());
}

#[test]
fn waiting_for_lock_is_said_only_while_another_process_holds_the_pkgid() {
    let d = TestDir::new();
    let dir = d.join("pkgs/quick");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("PKGBUILD"), "pkgname=quick\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\npackage() {\n  :\n}\n").unwrap();
    std::fs::write(d.join("pkgcell.toml"), "[pkgbuilds]\nquick = { path = \"pkgs/quick\" }\n").unwrap();
    let o = output(pkgcell_in(d.path()).args(["build"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("waiting for lock"), "nothing held the lock: {}", text(&o));

    let plan: serde_json::Value = serde_json::from_str(&ok(output(pkgcell_in(d.path()).args(["plan", "--json", "--offline"])))).unwrap();
    let pkgid = plan["packages"][0]["pkgid"].as_str().unwrap().to_owned();
    let lock = d.join(format!("home/store/locks/{pkgid}.lock"));
    assert!(lock.is_file(), "{} (the build's lock file) is missing", lock.display());
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "3"]).spawn().unwrap();
    let t = std::time::Instant::now();
    while output(Command::new("flock").arg("-n").arg(&lock).arg("true")).status.success() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "flock did not take the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = output(pkgcell_in(d.path()).args(["build", "-f"]));
    holder.wait().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("==> quick: waiting for lock"), "{}", text(&o));
}
