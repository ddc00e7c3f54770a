//! `pkgcell store ls|fsck|gc` on the outputs of a real build (issue 6).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::util::*;

#[test]
fn fsck_finds_a_damaged_object_repairs_the_store_and_the_next_build_makes_it_again() {
    let d = TestDir::new();
    let dir = d.join("hello");
    copy_fixture("hello", &dir);
    std::fs::write(d.join("pkgcell.toml"), "[pkgbuilds]\nhello = { path = \"hello\" }\n").unwrap();
    let run = |args: &[&str]| {
        output(pkgcell().args(args).current_dir(d.path()).env("PKGCELL_HOME", d.join("home")).env("PKGCELL_BASE_DIR", test_base()))
    };
    ok(run(&["build"]));
    let ls: Value = serde_json::from_str(&ok(run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["version"], 1);
    let rec = &ls["records"][0];
    assert_eq!(rec["outputs"][0]["name"], "hello-1.0-1-x86_64.pkg.tar.zst");
    let hash = rec["outputs"][0]["blake3"].as_str().unwrap();
    let object: PathBuf = d.join("home/store/objects").join(&hash[..2]).join(&hash[2..]);
    assert_eq!(object.metadata().unwrap().permissions().mode() & 0o222, 0, "objects are read-only");

    // Damage the package object.
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&object, b"bit rot").unwrap();
    let o = run(&["store", "fsck", "--no-repair"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stdout(&o).contains(&format!("bad object {hash}")), "{}", text(&o));
    assert!(object.exists(), "--no-repair changes nothing");
    let o = run(&["store", "fsck"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("(removed)"));
    ok(run(&["store", "fsck"]));

    // The record went with it, so the pkgid is built again.
    let out = ok(run(&["build"]));
    assert!(out.starts_with("built"), "{out}");
    ok(run(&["store", "fsck"]));

    // A second version of the PKGBUILD: gc keeps only the newest build.
    std::fs::write(dir.join("PKGBUILD"), std::fs::read_to_string(dir.join("PKGBUILD")).unwrap() + "\n# v2\n").unwrap();
    ok(run(&["build"]));
    let ls: Value = serde_json::from_str(&ok(run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 2);
    let out = ok(run(&["store", "gc"]));
    assert!(out.contains("1 record and"), "{out}");
    let ls: Value = serde_json::from_str(&ok(run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 1);
    ok(run(&["store", "fsck"]));
}

#[test]
fn gc_waits_for_a_running_build_and_keeps_what_it_made() {
    // A build whose makepkg takes a while: gc started meanwhile must wait
    // for it (the build's download, layer and outputs have no record yet),
    // then keep its record.
    let d = TestDir::new();
    let dir = d.join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("PKGBUILD"),
        "pkgname=slow\npkgver=1\npkgrel=1\narch=(any)\nlicense=(MIT)\n\
         build() { echo started-build; sleep 3; }\npackage() { mkdir -p \"$pkgdir/usr/share/slow\"; }\n",
    )
    .unwrap();
    std::fs::write(d.join("pkgcell.toml"), "[pkgbuilds]\nslow = { path = \"slow\" }\n").unwrap();
    let mut build = pkgcell_in(d.path()).arg("build").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    // Wait until makepkg is inside build().
    let logs = d.join("home/logs/slow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let started = std::fs::read_dir(&logs).into_iter().flatten().flatten().any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("started-build"))
        });
        if started {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the build never reached build()");
        assert!(build.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let o = output(pkgcell_in(d.path()).args(["store", "gc", "--json"]));
    // gc returned only once the build had recorded its result (the build
    // writes its record before it lets go of the home).
    let records = std::fs::read_dir(d.join("home/store/records")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(records, 1, "gc finished before the build recorded its result:\n{}", text(&o));
    assert!(build.wait().unwrap().success(), "the build failed");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("waiting for running builds"), "{}", text(&o));
    let ls: Value = serde_json::from_str(&ok(output(pkgcell_in(d.path()).args(["store", "ls", "--json"])))).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 1, "{ls:#}");
    ok(output(pkgcell_in(d.path()).args(["store", "fsck"])));
}
