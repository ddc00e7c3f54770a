//! What a build leaves in PKGDEST, read as hostile input: package files
//! checked against their names, their `.PKGINFO` and the PKGBUILD, and the
//! `.BUILDINFO` inside them.

use std::io::Seek;

use crate::alpm_file::{self, pkgname_of};
use crate::confined::{Confined, ConfinedError};
use crate::error::io_err;

use super::makepkg::MadeFile;
use super::{BuildError, Job, error_chain};

/// The package files makepkg left in `pkgdest` (every entry whose name has
/// `.pkg.tar`), sorted by name, each checked: a plain name, a regular file
/// opened without following anything, within `limit` (each and together),
/// and a package whose .PKGINFO agrees with its name and is one of the
/// PKGBUILD's pkgnames, of the build's architecture or `any`. With them,
/// the `.BUILDINFO` of the package whose pkgname sorts first ("" when it
/// has none), the one makepkg's `pkg/*/.BUILDINFO` glob would name first
/// (each package has its own; they differ in `pkgname` and, for a split
/// package of another architecture, `pkgarch`).
pub(super) fn take_outputs(pkgdest: &Confined, job: &Job<'_>, arch: &str, limit: u64) -> Result<(Vec<MadeFile>, String), BuildError> {
    let refused = |source| BuildError::Refused { what: "a package file of the build", source };
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut first: Option<(String, String)> = None;
    for (raw, _kind) in pkgdest.entries().map_err(|source| BuildError::Refused { what: "the build's PKGDEST", source })? {
        if !raw.windows(8).any(|w| w == b".pkg.tar") {
            continue;
        }
        let name = String::from_utf8_lossy(&raw).into_owned();
        let bad = |why: String| BuildError::BadOutput { file: name.clone(), why };
        check_output_name(&raw).map_err(|why| bad(why.to_owned()))?;
        let mut file = pkgdest.open_file(&name).map_err(refused)?;
        if file.size > limit {
            return Err(refused(ConfinedError::TooLarge { path: file.path, size: file.size, limit }));
        }
        total = total.saturating_add(file.size);
        if total > limit {
            return Err(BuildError::OutputsTooLarge { limit });
        }
        // makepkg writes the dot files first (.BUILDINFO, .MTREE,
        // .PKGINFO); the reader stops at .PKGINFO.
        let (text, buildinfo) = alpm_file::pkginfo_and_buildinfo(crate::confined::LimitedReader::new(&file.file, limit))
            .map_err(|e| bad(format!("it is not a readable package: {}", error_chain(&e))))?;
        check_pkginfo(&name, &text, job.pkgnames, job.pkgid.pkgbase().as_ref(), arch).map_err(bad)?;
        let pkgname = alpm_file::pkginfo_field(&text, "pkgname").to_owned();
        if first.as_ref().is_none_or(|(n, _)| pkgname < *n) {
            first = Some((pkgname, buildinfo.unwrap_or_default()));
        }
        file.file.rewind().map_err(io_err("read", &file.path))?;
        out.push(MadeFile { name, file });
    }
    Ok((out, first.map(|(_, b)| b).unwrap_or_default()))
}

/// Whether `name` may be the name of a package file a build made: a plain
/// file name (no `/`, no control characters, not hidden) ending in
/// `.pkg.tar.zst`, the only format pkgcell asks makepkg for (PKGEXT) and
/// publishes.
pub(super) fn check_output_name(name: &[u8]) -> Result<(), &'static str> {
    let Ok(name) = std::str::from_utf8(name) else { return Err("its name is not UTF-8") };
    if name.starts_with('.') || name.contains('/') || name.chars().any(char::is_control) {
        return Err("its name is not a plain file name");
    }
    if !name.ends_with(".pkg.tar.zst") || pkgname_of(name).is_none() {
        return Err("its name is not <pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.zst");
    }
    Ok(())
}

/// Whether the `.PKGINFO` `text` of the package file `name` agrees with
/// the name (pkgname, pkgver, arch), names one of `pkgnames` (or makepkg's
/// `<pkgbase>-debug` package), and is of `arch` or `any`; Err says why not.
pub(super) fn check_pkginfo(name: &str, text: &str, pkgnames: &[String], pkgbase: &str, arch: &str) -> Result<(), String> {
    let field = |k: &str| alpm_file::pkginfo_field(text, k).to_owned();
    let (pkgname, pkgver, pkgarch) = (field("pkgname"), field("pkgver"), field("arch"));
    let claimed = format!("{pkgname}-{pkgver}-{pkgarch}.pkg.tar.zst");
    if claimed != name {
        return Err(format!(
            "its .PKGINFO says pkgname {pkgname:?}, pkgver {pkgver:?}, arch {pkgarch:?}, so its name would be {claimed:?}"
        ));
    }
    if !pkgnames.contains(&pkgname) && pkgname != format!("{pkgbase}-debug") {
        return Err(format!("{pkgname:?} is not a package of this PKGBUILD (pkgname: {})", pkgnames.join(", ")));
    }
    if pkgarch != arch && pkgarch != "any" {
        return Err(format!("its arch {pkgarch:?} is neither the build's ({arch}) nor \"any\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_must_be_the_package_its_name_and_its_pkginfo_say_of_this_pkgbuild() {
        let names = ["a".to_owned(), "a-doc".to_owned()];
        let info = |n: &str, v: &str, arch: &str| format!("pkgname = {n}\npkgbase = a\npkgver = {v}\narch = {arch}\n");
        let check = |file: &str, text: &str| check_pkginfo(file, text, &names, "a", "x86_64");
        assert_eq!(check("a-1:2.0-3-x86_64.pkg.tar.zst", &info("a", "1:2.0-3", "x86_64")), Ok(()));
        assert_eq!(check("a-doc-2.0-3-any.pkg.tar.zst", &info("a-doc", "2.0-3", "any")), Ok(()));
        assert_eq!(check("a-debug-2.0-3-x86_64.pkg.tar.zst", &info("a-debug", "2.0-3", "x86_64")), Ok(()));
        let e = check("a-2.0-3-any.pkg.tar.zst", &info("glibc", "2.0-3", "any")).unwrap_err();
        assert!(e.contains("pkgname \"glibc\"") && e.contains("glibc-2.0-3-any.pkg.tar.zst"), "{e}");
        let e = check("a-2.0-3-any.pkg.tar.zst", &info("a", "9.9-1", "any")).unwrap_err();
        assert!(e.contains("pkgver \"9.9-1\""), "{e}");
        let e = check("glibc-9-1-any.pkg.tar.zst", &info("glibc", "9-1", "any")).unwrap_err();
        assert!(e.contains("\"glibc\" is not a package of this PKGBUILD (pkgname: a, a-doc)"), "{e}");
        let e = check("a-2.0-3-aarch64.pkg.tar.zst", &info("a", "2.0-3", "aarch64")).unwrap_err();
        assert!(e.contains("arch \"aarch64\""), "{e}");
        assert!(check("a-2.0-3-any.pkg.tar.zst", "").is_err());
    }

    #[test]
    fn output_names_are_plain_package_file_names() {
        assert_eq!(check_output_name(b"a-1.0-1-any.pkg.tar.zst"), Ok(()));
        for bad in [&b".a-1.0-1-any.pkg.tar.zst"[..], b"zz.pkg.tar.zst", b"a-1.0-1-any.pkg.tar.xz", b"a-1.0-1-any.pkg.tar.zst.sig", b"a\n-1.0-1-any.pkg.tar.zst", b"\xff-1.0-1-any.pkg.tar.zst"] {
            assert!(check_output_name(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
