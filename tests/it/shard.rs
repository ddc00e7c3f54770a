//! Sharding `pkgcell build` across machines with any job scheduler
//! (issue 8, docs/rebuilderd.md), on one machine: two workers with their own
//! `$PKGCELL_HOME`, a scheduler that follows the waves of `pkgcell plan
//! --json`, and a copy of the store files standing in for the shared store
//! that joins the results (a remote store, or an rsync of `store/`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::util::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/repro");

/// `pkgcell ARGS` in the test directory, on the test base, with `home` as
/// `$PKGCELL_HOME`.
fn run(dir: &TestDir, home: &str, args: &[&str]) -> Output {
    output(
        pkgcell()
            .args(args)
            .current_dir(dir.path())
            .env("PKGCELL_HOME", dir.join(home))
            .env("PKGCELL_BASE_DIR", test_base()),
    )
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(o)))
}

/// Copy the objects and records of one store into another, skipping what
/// is there: both are content-addressed or named by pkgid, so a plain file
/// copy joins two stores (locks and temporary files stay behind).
fn join_store(from: &Path, to: &Path) {
    for sub in ["objects", "records"] {
        copy_new(&from.join(sub), &to.join(sub));
    }
}

fn copy_new(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else { return };
    std::fs::create_dir_all(to).unwrap();
    for e in entries {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_new(&e.path(), &dst);
        } else if !dst.exists() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The `(name, status)` of each package of a `pkgcell build --json` report.
fn statuses(v: &Value) -> BTreeMap<String, String> {
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pkgbase"].as_str().unwrap().to_owned(), p["status"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn two_workers_build_the_waves_of_the_plan_once_each_and_one_publish_joins_them() {
    let dir = TestDir::new();
    let mut config = String::from("[repo]\nname = \"shard\"\npublish = \"repo\"\n\n[pkgbuilds]\n");
    for n in ["replib", "repapp"] {
        let dst = dir.join("pkgs").join(n);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(Path::new(FIXTURES).join(n).join("PKGBUILD"), dst.join("PKGBUILD")).unwrap();
        config.push_str(&format!("{n} = {{ path = \"pkgs/{n}\" }}\n"));
    }
    std::fs::write(dir.join("pkgcell.toml"), config).unwrap();

    // The scheduler: one plan, grouped into waves; a wave's entries need
    // only lower waves, so they can go to any worker at once.
    let o = run(&dir, "scheduler", &["plan", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = json(&o);
    let mut waves: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for p in plan["packages"].as_array().unwrap() {
        assert_eq!(p["status"]["kind"], "to_build", "{p:#}");
        let entry = (p["name"].as_str().unwrap().to_owned(), p["pkgid"].as_str().unwrap().to_owned());
        waves.entry(p["wave"].as_u64().unwrap()).or_default().push(entry);
    }
    let names: Vec<Vec<&str>> = waves.values().map(|w| w.iter().map(|(n, _)| n.as_str()).collect()).collect();
    assert_eq!(names, [["replib"], ["repapp"]], "{plan:#}");
    let app = plan["packages"].as_array().unwrap().iter().find(|p| p["name"] == "repapp").unwrap();
    assert_eq!(app["after"], serde_json::json!(["replib"]), "{plan:#}");

    // Wave 0 on worker A, wave 1 on worker B; after each wave, the stores
    // are joined (what a shared remote store does by itself).
    let workers = ["worker-a", "worker-b"];
    for (i, wave) in waves.values().enumerate() {
        let home = workers[i % 2];
        for (name, pkgid) in wave {
            let o = run(&dir, home, &["build", "--json", name]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            let v = json(&o);
            // Only this entry is built: what it needs came from the store.
            let mut want = BTreeMap::from([(name.clone(), "built".to_owned())]);
            if name == "repapp" {
                want.insert("replib".to_owned(), "cached".to_owned());
            }
            assert_eq!(statuses(&v), want, "{v:#}");
            let built = v["packages"].as_array().unwrap().iter().find(|p| p["pkgbase"] == name.as_str()).unwrap();
            // The worker's pkgid is the scheduler's: same config, same base.
            assert_eq!(built["pkgid"], pkgid.as_str(), "{v:#}");
        }
        let other = workers[(i + 1) % 2];
        join_store(&dir.join(home).join("store"), &dir.join(other).join("store"));
    }

    // Each pkgid was built once, by one worker: A has B's record of repapp
    // and B has A's of replib, byte for byte.
    for (_, pkgid) in waves.values().flatten() {
        let rec = |home: &str| std::fs::read(dir.join(home).join(format!("store/records/{pkgid}.json"))).unwrap();
        assert_eq!(rec("worker-a"), rec("worker-b"), "{pkgid}");
    }

    // One publish at the end, from the joined store.
    let o = run(&dir, "worker-a", &["publish", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let mut added: Vec<&str> = v["added"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    added.sort();
    assert_eq!(added, ["repapp", "replib"], "{v:#}");
    assert!(dir.join("repo/x86_64/shard.db.tar.zst").is_file(), "{v:#}");
}
