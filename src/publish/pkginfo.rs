//! A lossless reader for a package's `.PKGINFO` (PKGINFO(5)).
//!
//! Why not `alpm-pkginfo`: its typed fields reject what makepkg itself
//! writes and normalise what repo-add copies verbatim, so the db would not
//! match repo-add's (see `alpm_pkginfo_does_not_fit` in the tests below):
//! - `packager = Unknown Packager` (makepkg's default without PACKAGER set)
//!   fails, since `alpm_types::Packager` requires `Name <email>`;
//! - `url` goes through the `url` crate, which rewrites it (a trailing `/`
//!   is added to `https://example.org`), so `%URL%` would differ.
//!
//! So values are kept as the strings repo-add would write (whitespace runs
//! collapsed, as repo-add's `${val//+([[:space:]])/ }` does), and only the
//! fields that name files or decide ordering are validated with
//! `alpm-types`: the name (no `/`, no leading `-` or `.`), the version and
//! the numbers.

use std::str::FromStr;

use crate::alpm_file::pkginfo_entries;

use super::error::PackageError;

/// The `.PKGINFO` fields that go into a repository database entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PkgInfo {
    pub pkgname: String,
    pub pkgbase: String,
    pub pkgver: String,
    pub pkgdesc: String,
    pub url: String,
    pub builddate: String,
    pub packager: String,
    pub size: String,
    pub arch: String,
    pub license: Vec<String>,
    pub replaces: Vec<String>,
    pub group: Vec<String>,
    pub conflict: Vec<String>,
    pub provides: Vec<String>,
    pub depend: Vec<String>,
    pub optdepend: Vec<String>,
    pub makedepend: Vec<String>,
    pub checkdepend: Vec<String>,
}

impl PkgInfo {
    /// Parses `.PKGINFO` text and validates what the repository relies on.
    pub(crate) fn parse(text: &str) -> Result<Self, PackageError> {
        let mut info = PkgInfo::default();
        for (key, value) in pkginfo_entries(text) {
            let value = collapse_whitespace(value);
            let single = |slot: &mut String| *slot = value.clone();
            let multi = |list: &mut Vec<String>| {
                if !value.is_empty() {
                    list.push(value.clone());
                }
            };
            match key {
                "pkgname" => single(&mut info.pkgname),
                "pkgbase" => single(&mut info.pkgbase),
                "pkgver" => single(&mut info.pkgver),
                "pkgdesc" => single(&mut info.pkgdesc),
                "url" => single(&mut info.url),
                "builddate" => single(&mut info.builddate),
                "packager" => single(&mut info.packager),
                "size" => single(&mut info.size),
                "arch" => single(&mut info.arch),
                "license" => multi(&mut info.license),
                "replaces" => multi(&mut info.replaces),
                "group" => multi(&mut info.group),
                "conflict" => multi(&mut info.conflict),
                "provides" => multi(&mut info.provides),
                "depend" => multi(&mut info.depend),
                "optdepend" => multi(&mut info.optdepend),
                "makedepend" => multi(&mut info.makedepend),
                "checkdepend" => multi(&mut info.checkdepend),
                // backup, xdata, pkgtype and unknown keys do not go into the db.
                _ => {}
            }
        }
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), PackageError> {
        let required = [("pkgname", &self.pkgname), ("pkgver", &self.pkgver), ("arch", &self.arch)];
        for (field, value) in required {
            if value.is_empty() {
                return Err(PackageError::MissingField(field));
            }
        }
        let invalid = |field, value: &str, reason: String| PackageError::InvalidField {
            field,
            value: value.to_owned(),
            reason,
        };
        // The name becomes a directory in the db and part of file names: a
        // `/` or a leading `.` would escape or hide it.
        alpm_types::Name::from_str(&self.pkgname)
            .map_err(|e| invalid("pkgname", &self.pkgname, e.to_string()))?;
        if !self.pkgbase.is_empty() {
            alpm_types::Name::from_str(&self.pkgbase)
                .map_err(|e| invalid("pkgbase", &self.pkgbase, e.to_string()))?;
        }
        alpm_types::FullVersion::from_str(&self.pkgver)
            .map_err(|e| invalid("pkgver", &self.pkgver, e.to_string()))?;
        if !self.arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid("arch", &self.arch, "only letters, digits and '_'".into()));
        }
        for (field, value) in [("size", &self.size), ("builddate", &self.builddate)] {
            if !value.is_empty() && value.parse::<u64>().is_err() {
                return Err(invalid(field, value, "not a non-negative integer".into()));
            }
        }
        Ok(())
    }

    /// The db entry directory name: `NAME-VERSION`, as pacman expects.
    pub(crate) fn entry_dir(&self) -> String {
        format!("{}-{}", self.pkgname, self.pkgver)
    }
}

/// Trims and collapses every run of whitespace into one space, like
/// repo-add's `read` plus `${val//+([[:space:]])/ }`.
fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAKEPKG: &str = "# Generated by makepkg 6.0.2\n\
        # using fakeroot version 1.31\n\
        pkgname = alpha\n\
        pkgbase = alpha\n\
        pkgver = 2:1.0-1\n\
        pkgdesc = The  alpha\ttest package\n\
        url = https://example.org\n\
        builddate = 1795430442\n\
        packager = Unknown Packager\n\
        size = 31\n\
        arch = x86_64\n\
        license = MIT\n\
        license = GPL\n\
        depend = beta>=1\n\
        optdepend = foo: for foo things\n\
        backup = etc/alpha.conf\n";

    #[test]
    fn makepkg_output_is_read_verbatim() {
        let info = PkgInfo::parse(MAKEPKG).unwrap();
        assert_eq!(info.pkgname, "alpha");
        assert_eq!(info.pkgver, "2:1.0-1");
        assert_eq!(info.pkgdesc, "The alpha test package");
        assert_eq!(info.url, "https://example.org");
        assert_eq!(info.packager, "Unknown Packager");
        assert_eq!(info.license, ["MIT", "GPL"]);
        assert_eq!(info.depend, ["beta>=1"]);
        assert_eq!(info.optdepend, ["foo: for foo things"]);
        assert_eq!(info.entry_dir(), "alpha-2:1.0-1");
    }

    #[test]
    fn missing_name_is_named() {
        let err = PkgInfo::parse("pkgver = 1-1\narch = any\n").unwrap_err();
        assert!(matches!(err, PackageError::MissingField("pkgname")), "{err}");
    }

    #[test]
    fn name_with_slash_is_refused() {
        let err = PkgInfo::parse("pkgname = a/b\npkgver = 1-1\narch = any\n").unwrap_err();
        assert!(matches!(err, PackageError::InvalidField { field: "pkgname", .. }), "{err}");
    }

    #[test]
    fn version_without_pkgrel_is_refused() {
        let err = PkgInfo::parse("pkgname = a\npkgver = 1\narch = any\n").unwrap_err();
        assert!(matches!(err, PackageError::InvalidField { field: "pkgver", .. }), "{err}");
    }

    #[test]
    fn non_numeric_size_is_refused() {
        let err = PkgInfo::parse("pkgname = a\npkgver = 1-1\narch = any\nsize = big\n").unwrap_err();
        assert!(matches!(err, PackageError::InvalidField { field: "size", .. }), "{err}");
    }

    /// Keeps the reason in the module docs honest: if a later alpm-pkginfo
    /// accepts makepkg's defaults verbatim, switch to it.
    #[test]
    fn alpm_pkginfo_does_not_fit() {
        let parsed = alpm_pkginfo::PackageInfo::from_str(MAKEPKG);
        assert!(parsed.is_err(), "alpm-pkginfo now accepts `packager = Unknown Packager`");
        let url = alpm_types::Url::from_str("https://example.org").unwrap();
        assert_eq!(url.to_string(), "https://example.org/", "alpm-types no longer rewrites URLs");
    }
}
