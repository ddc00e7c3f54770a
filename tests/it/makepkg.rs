//! makepkg for real inside the sandbox, as the build user with no network,
//! and the package it makes installed by real pacman.

use crate::util::*;

#[test]
fn makepkg_builds_hello_as_the_build_user_without_network_and_pacman_installs_it() {
    let d = TestDir::new();
    let start = d.join("hello");
    copy_fixture("hello", &start);
    std::fs::create_dir(d.join("out")).unwrap();
    // The build user (a subordinate id outside) must be able to write there.
    std::fs::set_permissions(d.join("out"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let base = test_base();

    // Build: startdir read-only, packages out through a read-write bind.
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&base)
            .arg("--ro-bind")
            .arg(format!("{}:/startdir", start.display()))
            .arg("--bind")
            .arg(format!("{}:/pkgdest", d.join("out").display()))
            .args(["--uid", "1000", "--gid", "1000", "--cwd", "/startdir"])
            .args(["--env", "PKGDEST=/pkgdest", "--env", "BUILDDIR=/tmp/build", "--env", "SRCDEST=/tmp/src"])
            .args(["--env", "PKGEXT=.pkg.tar.zst", "--env", "HOME=/home/builder"])
            .args(["--", "makepkg", "--nodeps", "--noconfirm"]),
    );
    assert!(o.status.success(), "makepkg failed\n{}", text(&o));
    let pkg = d.join("out/hello-1.0-1-x86_64.pkg.tar.zst");
    assert!(pkg.exists(), "no package file\n{}", text(&o));
    assert!(!start.join("src").exists() && !start.join("pkg").exists(), "the build wrote into the source dir");

    // Install it with pacman -U into a scratch root, as root inside.
    let scratch = d.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&base)
            .arg("--bind")
            .arg(format!("{}:/scratch", scratch.display()))
            .arg("--ro-bind")
            .arg(format!("{}:/pkgs", d.join("out").display()))
            .args(["--", "sh", "-c"])
            .arg(
                // Debian's pacman.conf leaves LocalFileSigLevel out, and
                // pacman 7.1 then wants a signature on a local file; Arch's
                // says Optional, as pkgcell's layers do (docs/base.md).
                "mkdir -p /scratch/var/lib/pacman && \
                 sed 's/^#*LocalFileSigLevel.*/LocalFileSigLevel = Optional/' /etc/pacman.conf > /tmp/pacman.conf && \
                 pacman -U --config /tmp/pacman.conf --noconfirm --root /scratch --dbpath /scratch/var/lib/pacman -dd /pkgs/hello-1.0-1-x86_64.pkg.tar.zst && \
                 pacman -Q --root /scratch --dbpath /scratch/var/lib/pacman",
            ),
    );
    let out = ok(o);
    assert!(out.contains("hello 1.0-1"), "{out}");
    let bin = scratch.join("usr/bin/hello");
    assert!(bin.exists());

    // And the installed program runs.
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&base)
            .arg("--ro-bind")
            .arg(format!("{}:/usr/local/bin/hello", bin.display()))
            .args(["--uid", "1000", "--gid", "1000", "--", "hello"]),
    );
    assert_eq!(ok(o).trim(), "hello from pkgcell");
}
