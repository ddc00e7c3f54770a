//! The ALPM file formats pkgcell reads by hand, in one place. Used by plan,
//! build, local, publish and repro.
//!
//! - package file names (by [`alpm_types::PackageFileName`]) and the
//!   `desc` files of a pacman database: here;
//! - package archives (`*.pkg.tar.zst`), member by member: their
//!   `.PKGINFO` (bounded: a build's output is hostile input), their member
//!   paths, their `.BUILDINFO`, every member's metadata ([`archive`]);
//! - the `key = value` lines of a `.PKGINFO` ([`pkginfo`]);
//! - the fields of a `.BUILDINFO` a rebuild needs ([`buildinfo`]).
//!
//! `desc` files are read leniently, field by field: the alpm-db crate
//! parses whole files and refuses one whose other fields (a packager
//! without an e-mail address, say) do not validate, and such a field must
//! not stop a plan or a check of what a layer installed.

pub mod archive;
pub mod buildinfo;
pub mod pkginfo;

use std::str::FromStr;

use alpm_types::PackageFileName;

pub use archive::{ArchiveError, Member, buildinfo_text, members, pkginfo_and_buildinfo, pkginfo_and_paths, pkginfo_text};
pub use buildinfo::{BuildInfo, BuildInfoError};
pub use pkginfo::{pkginfo_entries, pkginfo_field};

/// The parts of a package file name
/// `<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar[.<compression>]`, or None
/// when it is not one.
pub fn package_file_name(file: &str) -> Option<PackageFileName> {
    PackageFileName::from_str(file).ok()
}

/// The pkgname of a package file name.
pub fn pkgname_of(file: &str) -> Option<String> {
    package_file_name(file).map(|f| f.name().to_string())
}

/// The version (`[epoch:]pkgver-pkgrel`) of a package file name.
pub fn version_of(file: &str) -> Option<String> {
    package_file_name(file).map(|f| f.version().to_string())
}

/// The lines of a `desc` file as (`%SECTION%`, value) pairs, empty lines
/// left out.
pub fn desc_entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut section = "";
    text.lines().filter_map(move |line| {
        if line.starts_with('%') && line.ends_with('%') && line.len() > 2 {
            section = line;
            return None;
        }
        (!line.is_empty()).then_some((section, line))
    })
}

/// The first value of the section `key` (`%NAME%`) of a `desc` file, ""
/// when it has none.
pub fn desc_field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().skip_while(|l| *l != key).nth(1).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_file_names_split_into_pkgname_and_version() {
        assert_eq!(version_of("my-lib-2:1.0.r3-2-any.pkg.tar.gz").as_deref(), Some("2:1.0.r3-2"));
        assert_eq!(version_of("x.tar"), None);
        assert_eq!(pkgname_of("hello-1.0-1-x86_64.pkg.tar.zst").as_deref(), Some("hello"));
        assert_eq!(pkgname_of("my-lib-2:1.0.r3-2-any.pkg.tar.gz").as_deref(), Some("my-lib"));
        assert_eq!(pkgname_of("lib32-foo-bar-2:1.0.r3-1.1-x86_64.pkg.tar.zst").as_deref(), Some("lib32-foo-bar"));
        assert_eq!(pkgname_of("x.tar"), None);
        assert_eq!(pkgname_of("foo-1-x86_64.pkg.tar.zst"), None);
        assert_eq!(pkgname_of("foo.db.tar.zst"), None);
    }

    #[test]
    fn desc_files_are_read_field_by_field() {
        let text = "%NAME%\nhello\n\n%VERSION%\n1.0-1\n\n%PROVIDES%\na\nb=2\n\n%EMPTY%\n\n";
        assert_eq!(desc_field(text, "%NAME%"), "hello");
        assert_eq!(desc_field(text, "%VERSION%"), "1.0-1");
        assert_eq!(desc_field(text, "%ARCH%"), "");
        let provides: Vec<&str> = desc_entries(text).filter(|(s, _)| *s == "%PROVIDES%").map(|(_, v)| v).collect();
        assert_eq!(provides, ["a", "b=2"]);
        assert_eq!(desc_entries(text).count(), 4);
    }
}
