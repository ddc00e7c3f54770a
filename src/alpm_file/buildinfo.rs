//! The fields of a `.BUILDINFO` (BUILDINFO(5)) that a rebuild needs.
//!
//! Parsed here rather than with the `alpm-buildinfo` crate, for the reason
//! docs/publish.md gives for `alpm-pkginfo`: its typed `packager` field
//! rejects makepkg's default `Unknown Packager` (see the test
//! `alpm_buildinfo_does_not_fit`). Only a few fields are needed.

/// A `.BUILDINFO` lacks a field or has a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad .BUILDINFO of {what}: {problem}")]
pub struct BuildInfoError {
    /// Whose.
    pub what: String,
    /// What is wrong.
    pub problem: String,
}

/// The fields of a .BUILDINFO (BUILDINFO(5)) that a rebuild needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `pkgbase`.
    pub pkgbase: String,
    /// `pkgver`: the full version, `[epoch:]pkgver-pkgrel`.
    pub pkgver: String,
    /// `pkgbuild_sha256sum`.
    pub pkgbuild_sha256sum: String,
    /// `builddate`: the SOURCE_DATE_EPOCH of the build.
    pub builddate: u64,
    /// `builddir`.
    pub builddir: String,
    /// `startdir`.
    pub startdir: String,
    /// `installed`: `<pkgname>-<pkgver>-<pkgrel>-<arch>` of each package of
    /// the build root.
    pub installed: Vec<String>,
    /// `packager`: makepkg's PACKAGER, which the packages' metadata carries.
    pub packager: String,
}

impl BuildInfo {
    /// Parse the `key = value` lines of a .BUILDINFO; `what` names it in errors.
    ///
    /// ```
    /// let b = pkgcell::alpm_file::BuildInfo::parse("format = 2\npkgbase = a\npkgver = 1-1\nbuilddate = 7\ninstalled = z-1-1-any\n", "a").unwrap();
    /// assert_eq!((b.builddate, b.installed.len()), (7, 1));
    /// ```
    pub fn parse(text: &str, what: &str) -> Result<BuildInfo, BuildInfoError> {
        let bad = |problem: String| BuildInfoError { what: what.to_owned(), problem };
        let mut b = BuildInfo::default();
        let mut date = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(" = ") else { continue };
            let v = v.trim().to_owned();
            match k.trim() {
                "pkgbase" => b.pkgbase = v,
                "pkgver" => b.pkgver = v,
                "pkgbuild_sha256sum" => b.pkgbuild_sha256sum = v,
                "builddate" => date = Some(v.parse().map_err(|_| bad(format!("builddate {v:?} is not a number")))?),
                "builddir" => b.builddir = v,
                "startdir" => b.startdir = v,
                "installed" => b.installed.push(v),
                "packager" => b.packager = v,
                _ => {}
            }
        }
        b.builddate = date.ok_or_else(|| bad("no builddate".into()))?;
        if b.pkgbase.is_empty() || b.pkgver.is_empty() {
            return Err(bad("no pkgbase or pkgver".into()));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .BUILDINFO as makepkg wrote it in a pkgcell build on the test base.
    const MAKEPKG: &str = "format = 2\n\
        pkgname = same\n\
        pkgbase = same\n\
        pkgver = 1.0-1\n\
        pkgarch = any\n\
        pkgbuild_sha256sum = ffb2996192ac3c364c5822d099267dfeb971f9f964c27f2d701d3892681badcf\n\
        packager = Unknown Packager\n\
        builddate = 1795435496\n\
        builddir = /build\n\
        startdir = /startdir\n\
        buildtool = pkgcell\n\
        buildtoolver = 0.1.0\n\
        buildenv = !distcc\n\
        buildenv = color\n\
        buildenv = !ccache\n\
        buildenv = check\n\
        buildenv = !sign\n\
        options = strip\n\
        options = docs\n\
        options = libtool\n\
        options = staticlibs\n\
        options = emptydirs\n\
        options = zipman\n\
        options = purge\n\
        options = !debug\n\
        options = !lto\n\
        installed = debian-toolchain-12-1-x86_64\n";

    #[test]
    fn the_fields_a_rebuild_needs_are_read() {
        let b = BuildInfo::parse(MAKEPKG, "t").unwrap();
        assert_eq!(b.pkgbase, "same");
        assert_eq!(b.pkgver, "1.0-1");
        assert_eq!(b.builddate, 1_795_435_496);
        assert_eq!((b.builddir.as_str(), b.startdir.as_str()), ("/build", "/startdir"));
        assert_eq!(b.pkgbuild_sha256sum.len(), 64);
        assert_eq!(b.installed, ["debian-toolchain-12-1-x86_64"]);
        assert_eq!(b.packager, "Unknown Packager");
        let e = BuildInfo::parse("pkgbase = a\n", "t").unwrap_err();
        assert_eq!(e.to_string(), "bad .BUILDINFO of t: no builddate");
        let e = BuildInfo::parse("pkgbase = a\npkgver = 1-1\nbuilddate = x\n", "t").unwrap_err();
        assert_eq!(e.to_string(), "bad .BUILDINFO of t: builddate \"x\" is not a number");
    }

    /// Why the .BUILDINFO is parsed here (see the module docs): when this
    /// fails, alpm-buildinfo reads makepkg's output and can replace
    /// [`BuildInfo::parse`].
    #[test]
    fn alpm_buildinfo_does_not_fit() {
        use std::str::FromStr;
        let err = alpm_buildinfo::BuildInfo::from_str(MAKEPKG).expect_err("alpm-buildinfo now reads makepkg's .BUILDINFO");
        let fixed = MAKEPKG.replace("packager = Unknown Packager", "packager = Some One <one@example.org>");
        assert!(alpm_buildinfo::BuildInfo::from_str(&fixed).is_ok(), "not (only) the packager: {err}");
    }
}
