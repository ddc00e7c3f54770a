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
