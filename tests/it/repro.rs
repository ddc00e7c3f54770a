//! `pkgcell repro` for real (issue 7): a package built by `pkgcell build`
//! over the test base is rebuilt with no network at its recorded
//! SOURCE_DATE_EPOCH and compared byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/repro");

/// A test directory with a config of the named fixtures and its own home.
struct Env {
    dir: TestDir,
}

impl Env {
    fn new(names: &[&str]) -> Env {
        let dir = TestDir::new();
        fixture_config(dir.path(), Path::new(FIXTURES), names);
        Env { dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = pkgcell_in(self.dir.path());
        c.args(args).env_remove("REBUILDERD_OUTDIR");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }

    /// Build `name`; its pkgid, its package file (in the store) and the
    /// file's name.
    fn build(&self, name: &str) -> (String, PathBuf, String) {
        let o = self.run(&["build", "--json", name]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
        assert_eq!(o.status.code(), Some(0), "{v:#}\n{}", text(&o));
        let p = &v["packages"][0];
        (
            p["pkgid"].as_str().unwrap().to_owned(),
            PathBuf::from(p["files"][0].as_str().unwrap()),
            p["outputs"][0]["name"].as_str().unwrap().to_owned(),
        )
    }

    fn records(&self) -> usize {
        std::fs::read_dir(self.dir.join("home/store/records")).unwrap().count()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn a_package_without_timestamps_is_reproducible_rebuilt_with_no_network_and_not_stored() {
    let env = Env::new(&["same"]);
    let (pkgid, file, name) = env.build("same");
    let original = std::fs::read(&file).unwrap();

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("REPRODUCIBLE      {name}")), "{out}");
    // The rebuild's log header names its network: loopback only.
    let log = out.lines().find_map(|l| l.strip_prefix("log: ")).unwrap_or_else(|| panic!("no log line in {out}"));
    let header = std::fs::read_to_string(log).unwrap();
    assert!(header.lines().next().unwrap().contains("network Loopback"), "{header}");
    // The rebuild is not the record: still one, and the file is untouched.
    assert_eq!(env.records(), 1);
    assert_eq!(std::fs::read(&file).unwrap(), original);
}

#[test]
fn a_package_file_with_output_writes_the_rebuild_under_the_original_name_and_json_says_reproducible() {
    let env = Env::new(&["same"]);
    let (pkgid, stored, name) = env.build("same");
    // The file as a user has it: a copy outside the store.
    let file = env.dir.join(&name);
    std::fs::copy(&stored, &file).unwrap();
    let outdir = env.dir.join("out");

    let o = env.run(&["repro", "--json", "--output", outdir.to_str().unwrap(), file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["version"], 1);
    assert_eq!(v["pkgid"], pkgid.as_str());
    assert_eq!(v["reproducible"], true, "{v:#}");
    assert_eq!(v["files"][0]["name"], name.as_str());
    assert_eq!(v["files"][0]["verdict"], "reproducible");
    assert_eq!(v["files"][0]["original"]["path"], file.to_str().unwrap());
    let written = outdir.join(&name);
    assert_eq!(v["output"][0], written.to_str().unwrap());
    assert_eq!(std::fs::read(&written).unwrap(), std::fs::read(&file).unwrap());
}

#[test]
fn a_package_that_embeds_the_build_time_is_not_reproducible_and_the_differing_member_is_named() {
    let env = Env::new(&["stamp"]);
    let (pkgid, file, name) = env.build("stamp");

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("NOT REPRODUCIBLE  {name}")), "{out}");
    assert!(out.contains("differs: usr/share/stamp/stamp.txt"), "{out}");
    assert!(!out.contains("differs: usr/share/stamp/same.txt"), "{out}");

    // rebuilderd's way: REBUILDERD_OUTDIR set, the mismatching rebuild is
    // still written under the original name; --json names the member.
    let outdir = env.dir.join("rebuilderd-out");
    std::fs::create_dir_all(&outdir).unwrap();
    let o = output(env.cmd(&["repro", "--json", file.to_str().unwrap()]).env("REBUILDERD_OUTDIR", &outdir));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["reproducible"], false);
    let f = &v["files"][0];
    assert_eq!(f["verdict"], "not_reproducible");
    let members: Vec<&str> = f["members"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap()).collect();
    assert!(members.contains(&"usr/share/stamp/stamp.txt"), "{f:#}");
    assert!(f["members"][0]["original"]["blake3"].is_string() && f["members"][0]["rebuilt"]["size"].is_number(), "{f:#}");
    let written = outdir.join(&name);
    assert!(written.is_file(), "no {}", written.display());
    assert_ne!(std::fs::read(&written).unwrap(), std::fs::read(&file).unwrap());
    assert_eq!(env.records(), 1);
}

#[test]
fn a_buildinfo_naming_package_versions_that_are_not_available_cannot_be_checked_and_lists_them_all() {
    let env = Env::new(&["same"]);
    let (pkgid, _, _) = env.build("same");
    // The record's .BUILDINFO now says the build root had two packages
    // that neither the base nor the store has.
    let path = env.dir.join(format!("home/store/records/{pkgid}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let info = record["buildinfo"].as_str().unwrap().to_owned();
    assert!(info.contains("\ninstalled = "), "{info}");
    record["buildinfo"] = Value::from(info + "installed = ghost-9.9-1-x86_64\ninstalled = phantom-0.1-2-any\n");
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("2 installed package versions are not available"), "{err}");
    assert!(err.contains("ghost-9.9-1-x86_64") && err.contains("phantom-0.1-2-any"), "{err}");
    // Nothing was rebuilt.
    assert!(!stdout(&o).contains("REPRODUCIBLE"));
}

#[test]
fn a_pkgid_that_is_not_in_the_store_cannot_be_checked() {
    let env = Env::new(&["same"]);
    let o = env.run(&["repro", "same-0000000000000000000000000000000000000000-00000000000000000000000000000000"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn twice_finds_a_deterministic_package_reproducible_under_every_variation() {
    let env = Env::new(&["same"]);
    let o = env.run(&["repro", "--twice", "--json", "same"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["version"], 1);
    assert_eq!(v["reproducible"], true, "{v:#}");
    assert_eq!(v["varied"], serde_json::json!(["hostname", "time_zone", "locale", "umask"]));
    assert_eq!(v["logs"].as_array().unwrap().len(), 2, "{v:#}");
    // Nothing went into the store.
    assert!(!env.dir.join("home/store/records").exists() || env.records() == 0);
}

#[test]
fn twice_names_the_hostname_as_the_variation_that_matters() {
    let env = Env::new(&["host"]);
    let o = env.run(&["repro", "--twice", "host"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("NOT REPRODUCIBLE  host-1.0-1-any.pkg.tar.zst"), "{out}");
    assert!(out.contains("differs: usr/share/host/host.txt"), "{out}");
    assert!(out.contains("the variation that matters: hostname\n"), "{out}");
}

#[test]
fn twice_says_a_package_stamped_with_the_time_is_not_deterministic_by_itself() {
    let env = Env::new(&["stamp"]);
    let o = env.run(&["repro", "--twice", "--json", "stamp"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(v["reproducible"], false);
    assert_eq!(v["nondeterministic"], true, "{v:#}");
    assert_eq!(v["matters"], serde_json::json!([]));
    // First, varied, control: no build per variation once the control differs.
    assert_eq!(v["logs"].as_array().unwrap().len(), 3, "{v:#}");
}

/// `src` with one member added at the end: another file, the same .BUILDINFO.
fn repack_with_extra_member(src: &Path, dst: &Path) {
    let mut ar = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(src).unwrap()).unwrap());
    let out = zstd::Encoder::new(std::fs::File::create(dst).unwrap(), 3).unwrap();
    let mut b = tar::Builder::new(out);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let (mut h, p) = (e.header().clone(), e.path().unwrap().into_owned());
        b.append_data(&mut h, p, &mut e).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "usr/share/same/added.txt", &b"added\n"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_repacked_copy_is_found_by_its_buildinfo_and_the_added_member_is_named() {
    let env = Env::new(&["same"]);
    let (_, stored, name) = env.build("same");
    let copy = env.dir.join(&name);
    repack_with_extra_member(&stored, &copy);
    let o = env.run(&["repro", copy.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("NOT REPRODUCIBLE  {name}")), "{out}");
    assert!(out.contains("differs: usr/share/same/added.txt") && out.contains("rebuilt:  absent"), "{out}");
}

#[test]
fn laptop_mode_checks_the_package_left_next_to_the_pkgbuild() {
    let d = TestDir::new();
    let dir = d.join("same");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("same/PKGBUILD"), dir.join("PKGBUILD")).unwrap();
    let run = |args: &[&str]| {
        output(
            pkgcell()
                .args(args)
                .current_dir(&dir)
                .env("PKGCELL_HOME", d.join("home"))
                .env("PKGCELL_BASE_DIR", test_base())
                .env_remove("REBUILDERD_OUTDIR"),
        )
    };
    ok(run(&["build"]));
    let o = run(&["repro", "same-1.0-1-any.pkg.tar.zst"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains("REPRODUCIBLE      same-1.0-1-any.pkg.tar.zst"), "{}", text(&o));
}

#[test]
fn the_rebuild_has_no_network_even_when_the_config_gives_builds_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let env = Env::new(&["netcheck"]);
    let pkgbuild = env.dir.join("pkgs/netcheck/PKGBUILD");
    let filled = std::fs::read_to_string(&pkgbuild).unwrap().replace("@PORT@", &port.to_string());
    std::fs::write(&pkgbuild, filled).unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), "[build]\nnetwork = true\n\n[pkgbuilds]\nnetcheck = { path = \"pkgs/netcheck\" }\n").unwrap();
    let (pkgid, _, _) = env.build("netcheck");

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("the rebuild failed") && err.contains("makepkg failed"), "{err}");
    assert!(err.contains("/dev/tcp/127.0.0.1"), "the log tail shows the refused connection: {err}");
}

#[test]
fn a_git_entry_that_moved_on_is_rebuilt_from_the_commit_with_the_recorded_tree() {
    let env = Env::new(&[]);
    let repo = env.dir.join("repo");
    std::fs::create_dir_all(repo.join("pkgs/same")).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("same/PKGBUILD"), repo.join("pkgs/same/PKGBUILD")).unwrap();
    let git = |args: &[&str]| {
        let o = output(Command::new("git").arg("-C").arg(&repo).args(["-c", "user.name=t", "-c", "user.email=t@t"]).args(args));
        assert!(o.status.success(), "git {args:?}\n{}", text(&o));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    let cfg = format!("[pkgbuilds]\nsame = {{ url = \"file://{}\", subtree = \"pkgs/same\" }}\n", repo.display());
    std::fs::write(env.dir.join("pkgcell.toml"), cfg).unwrap();
    let (pkgid, _, name) = env.build("same");

    // The PKGBUILD changes upstream: the plan now has another tree.
    let pb = repo.join("pkgs/same/PKGBUILD");
    std::fs::write(&pb, std::fs::read_to_string(&pb).unwrap() + "# changed\n").unwrap();
    git(&["commit", "-q", "-am", "two"]);
    let plan: Value = serde_json::from_slice(&env.run(&["plan", "--json"]).stdout).unwrap();
    assert_ne!(plan["packages"][0]["pkgid"], pkgid.as_str(), "{plan:#}");

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains(&format!("REPRODUCIBLE      {name}")), "{}", text(&o));
}

#[test]
fn a_package_built_with_a_dependency_of_the_config_is_rebuilt_on_the_same_dependency_set() {
    let env = Env::new(&["replib", "repapp"]);
    let (pkgid, _, name) = env.build("repapp");
    let record: Value = serde_json::from_slice(&std::fs::read(env.dir.join(format!("home/store/records/{pkgid}.json"))).unwrap()).unwrap();
    assert!(record["deps"][0].as_str().unwrap().starts_with("replib "), "{record:#}");
    assert!(record["buildinfo"].as_str().unwrap().contains("installed = replib-1.0-1-any"), "{record:#}");

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains(&format!("REPRODUCIBLE      {name}")), "{}", text(&o));
}

/// Build `uselocal` with `-I` of a localdep package made by the real
/// makepkg; the package file, the pkgid, the output's name and the record.
fn build_with_local(env: &Env) -> (PathBuf, String, String, Value) {
    use crate::pkgutil::{TestPackage, makepkg};
    let file = makepkg(&TestPackage::new("localdep"), &env.dir.join("work"), &env.dir.join("local"));
    let o = env.run(&["build", "--json", "-I", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    let p = &v["packages"][0];
    assert_eq!(p["status"], "built", "{v:#}");
    let pkgid = p["pkgid"].as_str().unwrap().to_owned();
    let name = p["outputs"][0]["name"].as_str().unwrap().to_owned();
    let record: Value = serde_json::from_slice(&std::fs::read(env.dir.join(format!("home/store/records/{pkgid}.json"))).unwrap()).unwrap();
    (file, pkgid, name, record)
}

/// The store object of the record's only local line, and that line's file
/// name and hash.
fn local_object(env: &Env, record: &Value) -> (PathBuf, String, String) {
    let line = record["local"][0].as_str().unwrap_or_else(|| panic!("no local line: {record:#}"));
    let (name, hash) = line.rsplit_once(' ').unwrap();
    (env.dir.join(format!("home/store/objects/{}/{}", &hash[..2], &hash[2..])), name.to_owned(), hash.to_owned())
}

#[test]
fn a_package_built_with_a_local_package_file_is_rebuilt_with_that_file_from_the_store() {
    let env = Env::new(&["uselocal"]);
    let (file, pkgid, name, record) = build_with_local(&env);
    assert!(record["buildinfo"].as_str().unwrap().contains("installed = localdep-1.0-1-x86_64"), "{record:#}");
    // The build put the -I file into the store, under its BLAKE3 hash.
    let (object, local_name, _) = local_object(&env, &record);
    assert_eq!(local_name, file.file_name().unwrap().to_str().unwrap());
    assert_eq!(std::fs::read(&object).unwrap(), std::fs::read(&file).unwrap());
    // The original file is gone: repro can only take it from the store.
    std::fs::remove_file(&file).unwrap();

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains(&format!("REPRODUCIBLE      {name}")), "{}", text(&o));
    assert!(stderr(&o).contains(&format!("==> rebuilding {pkgid}")), "{}", text(&o));

    // `store gc` keeps the object while the record is kept; fsck finds it good.
    ok(output(&mut env.cmd(&["store", "gc"])));
    assert!(object.is_file(), "gc dropped the -I file of a kept record");
    let o = env.run(&["store", "fsck", "--no-repair"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn a_local_package_file_missing_from_the_store_is_named_and_can_be_given_again_with_install() {
    let env = Env::new(&["uselocal"]);
    let (file, pkgid, name, record) = build_with_local(&env);
    let (object, local_name, hash) = local_object(&env, &record);
    // As a record made before -I files were stored: the object is not there.
    std::fs::remove_file(&object).unwrap();

    let o = env.run(&["repro", &pkgid]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains(&local_name) && err.contains(&hash), "the error names the file and its hash: {err}");
    assert!(err.contains("-I FILE"), "the error says what to do: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!stdout(&o).contains("REPRODUCIBLE"), "{}", text(&o));
    // --json: an object with the error, the same exit status.
    let o = env.run(&["repro", "--json", &pkgid]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert!(v["error"].as_str().unwrap().contains(&hash), "{v:#}");
    // fsck says so too, and cannot repair it.
    let o = env.run(&["store", "fsck"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stdout(&o).contains(&format!("missing local file {pkgid} {local_name} {hash}")), "{}", text(&o));

    // Another package file with -I is refused: it is not the one the build installed.
    use crate::pkgutil::{TestPackage, makepkg};
    let other = makepkg(&TestPackage { pkgrel: 2, ..TestPackage::new("localdep") }, &env.dir.join("work"), &env.dir.join("other"));
    let o = env.run(&["repro", "-I", other.to_str().unwrap(), &pkgid]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("is not a local package file of the build") && err.contains(&hash), "{err}");
    assert!(!object.exists());

    // The very file: repro uses it, and puts it back into the store.
    let o = env.run(&["repro", "-I", file.to_str().unwrap(), &pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains(&format!("REPRODUCIBLE      {name}")), "{}", text(&o));
    assert_eq!(std::fs::read(&object).unwrap(), std::fs::read(&file).unwrap());
    let o = env.run(&["store", "fsck", "--no-repair"]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    // Building again with the file puts it back too: the pkgid is cached.
    std::fs::remove_file(&object).unwrap();
    let o = env.run(&["build", "--json", "-I", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!((v["packages"][0]["status"].as_str(), v["packages"][0]["pkgid"].as_str()), (Some("cached"), Some(pkgid.as_str())), "{v:#}");
    assert_eq!(std::fs::read(&object).unwrap(), std::fs::read(&file).unwrap());
}

/// The member paths of a package file, listed by the test base's bsdtar.
fn members_of(file: &Path) -> Vec<String> {
    ok(run_sh(&["--ro-bind", &format!("{}:/p.pkg.tar.zst", file.display())], "bsdtar -tf /p.pkg.tar.zst")).lines().map(str::to_owned).collect()
}

#[test]
fn a_package_built_with_the_debug_option_yields_a_debug_package_that_is_stored_published_and_reproduced() {
    let env = Env::new(&["withdebug"]);
    let config = std::fs::read_to_string(env.dir.join("pkgcell.toml")).unwrap();
    std::fs::write(env.dir.join("pkgcell.toml"), format!("[repo]\nname = \"dbg\"\npublish = \"repo\"\n\n{config}")).unwrap();

    // Two outputs of one build: the program and withdebug-debug, which is
    // not a pkgname of the PKGBUILD (makepkg adds it).
    let o = env.run(&["build", "--json", "withdebug"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    assert_eq!(code(&o), 0, "{v:#}\n{}", text(&o));
    let p = &v["packages"][0];
    let names: Vec<&str> = p["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    let (main, debug) = ("withdebug-1.0-1-x86_64.pkg.tar.zst", "withdebug-debug-1.0-1-x86_64.pkg.tar.zst");
    assert_eq!(names, [main, debug], "{v:#}");
    let pkgid = p["pkgid"].as_str().unwrap();
    let files: Vec<PathBuf> = p["files"].as_array().unwrap().iter().map(|f| PathBuf::from(f.as_str().unwrap())).collect();
    let record: Value = serde_json::from_slice(&std::fs::read(env.dir.join(format!("home/store/records/{pkgid}.json"))).unwrap()).unwrap();
    assert_eq!(record["outputs"].as_array().unwrap().len(), 2, "{record:#}");
    assert!(record["buildinfo"].as_str().unwrap().lines().any(|l| l == "format = 2"), "{record:#}");

    // The symbols (by build id) and the source are in the debug package,
    // the program is stripped of them. makepkg 7 puts the source under
    // usr/src/debug/withdebug/, 6.0.2 right under usr/src/debug/.
    let in_debug = members_of(&files[1]);
    assert!(in_debug.iter().any(|m| m.starts_with("usr/lib/debug/.build-id/") && m.ends_with(".debug")), "{in_debug:?}");
    assert!(in_debug.iter().any(|m| m.starts_with("usr/src/debug/") && m.ends_with("/withdebug.c")), "{in_debug:?}");
    let in_main = members_of(&files[0]);
    assert!(in_main.iter().any(|m| m == "usr/bin/withdebug"), "{in_main:?}");
    assert!(!in_main.iter().any(|m| m.starts_with("usr/lib/debug") || m.starts_with("usr/src")), "{in_main:?}");

    // Both are published, and the base's pacman lists both.
    let o = env.run(&["publish"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let arch_dir = env.dir.join("repo/x86_64");
    for n in [main, debug] {
        assert!(arch_dir.join(n).is_file(), "{n} not published");
    }
    let listed = ok(run_sh(
        &["--ro-bind", &format!("{}:/srv/repo", arch_dir.display())],
        "mkdir -p /tmp/db && printf '[options]\\nArchitecture = x86_64\\nSigLevel = Never\\n\\n[dbg]\\nServer = file:///srv/repo\\n' > /tmp/pacman.conf && \
         pacman --config /tmp/pacman.conf --dbpath /tmp/db -Sy >&2 && pacman --config /tmp/pacman.conf --dbpath /tmp/db -Sl dbg",
    ));
    assert!(listed.lines().any(|l| l == "dbg withdebug 1.0-1") && listed.lines().any(|l| l == "dbg withdebug-debug 1.0-1"), "{listed}");

    // repro rebuilds and compares both.
    let o = env.run(&["repro", "--json", pkgid]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e})\n{}", text(&o)));
    let verdicts: Vec<(&str, &str)> =
        r["files"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["verdict"].as_str().unwrap())).collect();
    assert_eq!(verdicts, [(main, "reproducible"), (debug, "reproducible")], "{r:#}");
}
