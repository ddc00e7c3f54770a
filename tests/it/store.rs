//! `pkgcell store ls|fsck|gc` on the outputs of a real build (issue 6).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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
    assert!(out.contains("1 records"), "{out}");
    let ls: Value = serde_json::from_str(&ok(run(&["store", "ls", "--json"]))).unwrap();
    assert_eq!(ls["records"].as_array().unwrap().len(), 1);
    ok(run(&["store", "fsck"]));
}
