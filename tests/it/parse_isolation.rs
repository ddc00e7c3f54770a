//! The PKGBUILDs of one parse batch are isolated from each other and from
//! the host: each runs as a uid of its own, results go where only the
//! driver (root inside) writes, and the host reads them without following
//! symlinks. Run as the real binary by an unprivileged user against the
//! test base ($PKGCELL_TEST_BASE).

use std::path::Path;
use std::process::Command;

use crate::util::{TestDir, copy_fixture, pkgcell_in, stderr, stdout, text};

/// What `makepkg --printsrcinfo` prints for the PKGBUILD in `dir`, run on
/// the host as this user (the reference). PACMAN=true: makepkg asks pacman
/// whether git is installed for VCS sources; the host has no pacman database.
fn makepkg_srcinfo(dir: &Path) -> String {
    let out = Command::new("makepkg").arg("--printsrcinfo").env("PACMAN", "true").current_dir(dir).output().unwrap();
    assert!(out.status.success(), "makepkg in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return hits };
    for e in rd.flatten() {
        let (path, ty) = (e.path(), e.file_type().unwrap());
        if ty.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if ty.is_file() {
            let data = std::fs::read(&path).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn a_pkgbuild_cannot_change_the_result_of_another_one_of_its_batch() {
    let t = TestDir::new();
    for name in ["attacker", "victim"] {
        copy_fixture(&format!("hostile/parse-neighbour/{name}"), &t.join(name));
    }
    // The victim alone, as makepkg sees it.
    let expected = makepkg_srcinfo(&t.join("victim"));
    assert!(expected.contains("pkgver = 1.2.3") && expected.contains("depends = zlib"), "{expected}");

    // The attacker is job 0, the victim job 1: with two workers they run at
    // the same time, with one the attacker's background process still runs
    // while the victim is parsed.
    let out = pkgcell_in(t.path()).args(["srcinfo", "attacker", "victim"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = stdout(&out);
    let (attacker, victim) = printed
        .strip_prefix("==> attacker\n")
        .and_then(|s| s.split_once("==> victim\n"))
        .unwrap_or_else(|| panic!("two results expected:\n{printed}"));
    assert_eq!(victim, expected, "the victim's .SRCINFO was changed by the attacker");
    assert!(
        attacker.contains("pkgdesc = attacks that worked: 0\n"),
        "some attack worked (or the attacker did not run):\n{attacker}"
    );
    assert!(!printed.contains("evil") && !printed.contains("666"), "{printed}");

    // The cache holds the victim's true result too: plan answers from it.
    std::fs::write(
        t.join("pkgcell.toml"),
        "[pkgbuilds]\nattacker = { path = \"attacker\" }\nvictim = { path = \"victim\" }\n",
    )
    .unwrap();
    let plan = pkgcell_in(t.path()).args(["plan", "--json"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(v["parsed"], 0, "both trees should come from the cache: {v:#}");
    let victim = v["packages"].as_array().unwrap().iter().find(|p| p["name"] == "victim").unwrap();
    assert_eq!(victim["pkgver"], "1.2.3-1", "{victim:#}");
    assert!(files_containing(&t.join("home"), b"evil").is_empty(), "the cache holds the attacker's forgery");
}

#[test]
fn a_pkgbuild_that_links_its_outputs_to_a_host_file_does_not_get_it_read() {
    let t = TestDir::new();
    let secret = t.join("secret");
    std::fs::write(&secret, "the host's secret 5f1e2d\n").unwrap();
    let dir = t.join("thief");
    std::fs::create_dir_all(&dir).unwrap();
    // It knows the host path (a guess would do as well): every output file
    // of the batch, its own included, is replaced by a symlink to it, or by
    // a FIFO, from its global scope and from a background process.
    std::fs::write(
        dir.join("PKGBUILD"),
        format!(
            r#"pkgname=thief
pkgver=1
pkgrel=1
arch=(x86_64)
license=(MIT)
_steal() {{
	local n=0 f
	for f in /pkgcell/out/0.srcinfo /pkgcell/out/0.log /pkgcell/out/0.status /pkgcell/out/0.pkgver /pkgcell/out/1.srcinfo; do
		ln -sf '{secret}' "$f" && ((n++))
		rm -f "$f" && mkfifo "$f" && ((n++))
	done
	ln -sf '{secret}' /pkgcell/out && ((n++))
	echo "$n"
}} 2>/dev/null
_n=$(_steal)
( sleep 0.5; _steal ) >/dev/null 2>&1 </dev/null &
pkgdesc="links made: $_n"
package() {{ :; }}
"#,
            secret = secret.display()
        ),
    )
    .unwrap();
    let out = pkgcell_in(t.path()).args(["srcinfo", "thief"]).output().unwrap();
    assert!(!text(&out).contains("5f1e2d"), "the host's secret was printed:\n{}", text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("pkgdesc = links made: 0\n"), "{}", stdout(&out));

    std::fs::write(t.join("pkgcell.toml"), "[pkgbuilds]\nthief = { path = \"thief\" }\n").unwrap();
    let plan = pkgcell_in(t.path()).args(["plan", "--json"]).output().unwrap();
    assert!(!text(&plan).contains("5f1e2d"), "{}", text(&plan));
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(files_containing(&t.join("home"), b"5f1e2d").is_empty(), "the secret is in pkgcell's state");
}

#[test]
fn without_subordinate_ids_parsing_refuses_and_says_how_to_fix_it() {
    let t = TestDir::new();
    let dir = t.join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("PKGBUILD"), "pkgname=plain\npkgver=1\npkgrel=1\narch=(x86_64)\npackage() { :; }\n").unwrap();
    // No newuidmap on PATH: the sandbox falls back to a single-id map, in
    // which the PKGBUILDs cannot get uids of their own.
    let out = pkgcell_in(t.path()).args(["srcinfo", "plain"]).env("PATH", "/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("one per PKGBUILD") && err.contains("usermod --add-subuids"), "{err}");
    assert!(files_containing(&t.join("home"), b"pkgname").is_empty(), "a result was cached");
}
