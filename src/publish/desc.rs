//! The `desc` and `files` entries of a repository database
//! (alpm-repo-desc(5), alpm-repo-files(5)): rendering from a package's
//! facts, and reading back the few fields the publisher needs.
//!
//! Rendered by hand in repo-add's field order rather than through
//! `alpm_repo_db::desc::RepoDescFileV2`, because that type holds the same
//! typed `Packager` and `Url` that cannot carry makepkg's output verbatim
//! (see `pkginfo.rs`). The tests parse our output with alpm-repo-db to
//! check that it is valid v2.

use std::fmt::Write;

use super::pkginfo::PkgInfo;

/// Which alpm-repo-desc version to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DescVersion {
    /// alpm-repo-descv1: adds `%MD5SUM%`, byte for byte what repo-add of
    /// pacman 6 writes. For tools that still read the MD5 sum.
    V1,
    /// alpm-repo-descv2 (the default): no `%MD5SUM%`, as pacman 7 writes.
    /// pacman 6 reads it too (it verifies `%SHA256SUM%`).
    #[default]
    V2,
}

/// What the db says about a package file besides its `.PKGINFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileFacts {
    /// The file name as published, epoch `:` included.
    pub filename: String,
    /// Its size in bytes (`%CSIZE%`).
    pub csize: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Lowercase hex MD5, written only for [`DescVersion::V1`].
    pub md5: Option<String>,
    /// Base64 of the detached signature, if one was published with it.
    pub pgpsig: Option<String>,
}

/// Renders a `desc` entry exactly as repo-add lays it out: a section is
/// left out when its value (or first value) is empty.
pub(crate) fn render(info: &PkgInfo, facts: &FileFacts, version: DescVersion) -> String {
    let mut out = String::with_capacity(1024);
    let csize = facts.csize.to_string();
    let md5 = match version {
        DescVersion::V1 => facts.md5.as_deref().unwrap_or(""),
        DescVersion::V2 => "",
    };
    one(&mut out, "FILENAME", &facts.filename);
    one(&mut out, "NAME", &info.pkgname);
    one(&mut out, "BASE", &info.pkgbase);
    one(&mut out, "VERSION", &info.pkgver);
    one(&mut out, "DESC", &info.pkgdesc);
    many(&mut out, "GROUPS", &info.group);
    one(&mut out, "CSIZE", &csize);
    one(&mut out, "ISIZE", &info.size);
    one(&mut out, "MD5SUM", md5);
    one(&mut out, "SHA256SUM", &facts.sha256);
    one(&mut out, "PGPSIG", facts.pgpsig.as_deref().unwrap_or(""));
    one(&mut out, "URL", &info.url);
    many(&mut out, "LICENSE", &info.license);
    one(&mut out, "ARCH", &info.arch);
    one(&mut out, "BUILDDATE", &info.builddate);
    one(&mut out, "PACKAGER", &info.packager);
    many(&mut out, "REPLACES", &info.replaces);
    many(&mut out, "CONFLICTS", &info.conflict);
    many(&mut out, "PROVIDES", &info.provides);
    many(&mut out, "DEPENDS", &info.depend);
    many(&mut out, "OPTDEPENDS", &info.optdepend);
    many(&mut out, "MAKEDEPENDS", &info.makedepend);
    many(&mut out, "CHECKDEPENDS", &info.checkdepend);
    out
}

fn one(out: &mut String, key: &str, value: &str) {
    if !value.is_empty() {
        // Writing to a String cannot fail.
        let _ = write!(out, "%{key}%\n{value}\n\n");
    }
}

fn many(out: &mut String, key: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    let _ = writeln!(out, "%{key}%");
    for value in values {
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
}

/// Renders a `files` entry: `%FILES%` and the paths sorted bytewise without
/// duplicates (repo-add pipes `bsdtar -tf` through `LC_ALL=C sort -u`).
pub(crate) fn render_files(mut paths: Vec<Vec<u8>>) -> Vec<u8> {
    paths.sort_unstable();
    paths.dedup();
    let mut out = Vec::with_capacity(8 + paths.iter().map(|p| p.len() + 1).sum::<usize>());
    out.extend_from_slice(b"%FILES%\n");
    for path in paths {
        out.extend_from_slice(&path);
        out.push(b'\n');
    }
    out
}

/// The fields of a stored `desc` the publisher decides by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DescSummary {
    pub filename: String,
    pub name: String,
    pub version: String,
    pub csize: u64,
    pub sha256: String,
}

impl DescSummary {
    /// Reads the summary out of `desc` text (ours or repo-add's); names the
    /// first missing or malformed field.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut filename = None;
        let mut name = None;
        let mut version = None;
        let mut csize = None;
        let mut sha256 = None;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let key = match line.strip_prefix('%').and_then(|l| l.strip_suffix('%')) {
                Some(key) => key,
                None => continue,
            };
            let slot = match key {
                "FILENAME" => &mut filename,
                "NAME" => &mut name,
                "VERSION" => &mut version,
                "CSIZE" => &mut csize,
                "SHA256SUM" => &mut sha256,
                _ => continue,
            };
            *slot = lines.next().map(str::to_owned);
        }
        let need = |v: Option<String>, key: &str| v.filter(|v| !v.is_empty()).ok_or(format!("no %{key}%"));
        let csize = need(csize, "CSIZE")?;
        Ok(DescSummary {
            filename: need(filename, "FILENAME")?,
            name: need(name, "NAME")?,
            version: need(version, "VERSION")?,
            csize: csize.parse().map_err(|_| format!("%CSIZE% {csize:?} is not a number"))?,
            sha256: need(sha256, "SHA256SUM").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn info() -> PkgInfo {
        PkgInfo::parse(
            "pkgname = alpha\npkgbase = alpha\npkgver = 1:1.0-1\npkgdesc = The alpha package\n\
             url = https://example.org/alpha\nbuilddate = 1795430455\n\
             packager = Jane Doe <jane@example.org>\nsize = 31\narch = x86_64\n\
             license = MIT\nlicense = GPL\ngroup = testgrp\nreplaces = alpha-older\n\
             conflict = alpha-old\nprovides = alpha-virt\ndepend = beta>=1\n\
             optdepend = foo: for foo things\nmakedepend = bar\ncheckdepend = baz\n",
        )
        .unwrap()
    }

    fn facts() -> FileFacts {
        FileFacts {
            filename: "alpha-1:1.0-1-x86_64.pkg.tar.zst".into(),
            csize: 1476,
            sha256: "ea9755dce759e6670ab77fb6b05973ec374afa128466dbee369da0b9305ffb1b".into(),
            md5: Some("1a28e3bd4d5155595b4a909ddbaf3917".into()),
            pgpsig: None,
        }
    }

    const EXPECTED_V1: &str = "%FILENAME%\nalpha-1:1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nalpha\n\n\
        %BASE%\nalpha\n\n%VERSION%\n1:1.0-1\n\n%DESC%\nThe alpha package\n\n%GROUPS%\ntestgrp\n\n\
        %CSIZE%\n1476\n\n%ISIZE%\n31\n\n%MD5SUM%\n1a28e3bd4d5155595b4a909ddbaf3917\n\n\
        %SHA256SUM%\nea9755dce759e6670ab77fb6b05973ec374afa128466dbee369da0b9305ffb1b\n\n\
        %URL%\nhttps://example.org/alpha\n\n%LICENSE%\nMIT\nGPL\n\n%ARCH%\nx86_64\n\n\
        %BUILDDATE%\n1795430455\n\n%PACKAGER%\nJane Doe <jane@example.org>\n\n\
        %REPLACES%\nalpha-older\n\n%CONFLICTS%\nalpha-old\n\n%PROVIDES%\nalpha-virt\n\n\
        %DEPENDS%\nbeta>=1\n\n%OPTDEPENDS%\nfoo: for foo things\n\n%MAKEDEPENDS%\nbar\n\n\
        %CHECKDEPENDS%\nbaz\n\n";

    #[test]
    fn v1_is_laid_out_like_repo_add_6() {
        assert_eq!(render(&info(), &facts(), DescVersion::V1), EXPECTED_V1);
    }

    #[test]
    fn v2_drops_only_the_md5_sum() {
        let v2 = render(&info(), &facts(), DescVersion::V2);
        assert_eq!(v2, EXPECTED_V1.replace("%MD5SUM%\n1a28e3bd4d5155595b4a909ddbaf3917\n\n", ""));
    }

    #[test]
    fn v2_is_valid_for_alpm_repo_db() {
        let mut facts = facts();
        facts.pgpsig = Some("iHUEABYKAB0WIQRizHP4hOUpV7L92IObeih9mi7GCAUCaBZuVAAKCRCbeih9mi7GCIlMAP9ws/jU4f580ZRQlTQKvUiLbAZOdcB7mQQj83hD1Nc/GwD/WIHhO1/OQkpMERejUrLo3AgVmY3b4/uGhx9XufWEbgE=".into());
        let text = render(&info(), &facts, DescVersion::V2);
        let parsed = alpm_repo_db::desc::RepoDescFileV2::from_str(&text).unwrap();
        assert_eq!(parsed.name.to_string(), "alpha");
        assert_eq!(parsed.dependencies.len(), 1);
        assert!(parsed.pgp_signature.is_some());
    }

    #[test]
    fn empty_fields_are_left_out() {
        let mut info = info();
        info.pkgdesc.clear();
        info.url.clear();
        info.group.clear();
        let text = render(&info, &facts(), DescVersion::V2);
        assert!(!text.contains("%DESC%") && !text.contains("%URL%") && !text.contains("%GROUPS%"));
        assert!(text.contains("%NAME%\nalpha\n\n"));
    }

    #[test]
    fn summary_reads_back_what_was_rendered() {
        let summary = DescSummary::parse(&render(&info(), &facts(), DescVersion::V2)).unwrap();
        assert_eq!(
            summary,
            DescSummary {
                filename: "alpha-1:1.0-1-x86_64.pkg.tar.zst".into(),
                name: "alpha".into(),
                version: "1:1.0-1".into(),
                csize: 1476,
                sha256: facts().sha256,
            }
        );
    }

    #[test]
    fn summary_names_the_missing_field() {
        assert_eq!(DescSummary::parse("%NAME%\na\n\n%CSIZE%\n1\n").unwrap_err(), "no %FILENAME%");
        assert_eq!(
            DescSummary::parse("%FILENAME%\nf\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n%CSIZE%\nx\n").unwrap_err(),
            "%CSIZE% \"x\" is not a number"
        );
    }

    #[test]
    fn files_are_sorted_bytewise_without_duplicates() {
        let files = render_files(vec![b"usr/bin/".to_vec(), b"usr/".to_vec(), b"usr/bin-x".to_vec(), b"usr/".to_vec()]);
        assert_eq!(files, b"%FILES%\nusr/\nusr/bin-x\nusr/bin/\n");
        let parsed = alpm_repo_db::files::RepoFiles::from_str(std::str::from_utf8(&files).unwrap());
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
