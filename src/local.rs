//! Local package files installed into every build of a run (`pkgcell build
//! -I FILE`, as makechrootpkg's `-I`): read once, before anything starts, so
//! that a missing file or one that is not a package is an error up front.
//!
//! A file is read for its `.PKGINFO` (name, version, provides, depends: plan
//! takes it as a provider) and hashed (BLAKE3: the dephash of every pkgid of
//! the run and the dependency layer's key include it, so another file is
//! another pkgid and another layer).

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use alpm_types::{FullVersion, Name, RelationOrSoname};

use crate::alpm_file;
use crate::ids::Blake3;

/// One package file given with `-I`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPackage {
    /// Its absolute path.
    pub path: PathBuf,
    /// Its file name (`<pkgname>-<pkgver>-<pkgrel>-<arch>.pkg.tar.zst`).
    pub file_name: String,
    /// The BLAKE3 hash of the file.
    pub blake3: Blake3,
    /// Its `pkgname`.
    pub name: Name,
    /// Its `pkgver` (`[epoch:]pkgver-pkgrel`).
    pub version: FullVersion,
    /// Its `arch` (empty if its .PKGINFO has none).
    pub arch: String,
    /// Its `provides`.
    pub provides: Vec<RelationOrSoname>,
    /// Its `depend`s.
    pub depends: Vec<RelationOrSoname>,
}

/// A `-I` file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalPackageError {
    /// The file is missing or unreadable.
    #[error("cannot read the package file {} (-I)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a zstd-compressed pacman package.
    #[error("{} (-I) is not a pacman package: {why}; give a .pkg.tar.zst file made by makepkg", path.display())]
    NotAPackage {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// The zstd frame magic number.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl LocalPackage {
    /// Read and hash `path`.
    pub fn read(path: &Path) -> Result<LocalPackage, LocalPackageError> {
        let path = std::path::absolute(path).map_err(|source| LocalPackageError::Read { path: path.to_owned(), source })?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        LocalPackage::read_named(&path, file_name)
    }

    /// Read and hash the file at `path` (absolute) as the package file
    /// `file_name`: a store object is named by its hash, and pacman and the
    /// record want the package's own name.
    pub fn read_named(path: &Path, file_name: String) -> Result<LocalPackage, LocalPackageError> {
        let path = path.to_owned();
        let not = |why: String| LocalPackageError::NotAPackage { path: path.clone(), why };
        let data = std::fs::read(&path).map_err(|source| LocalPackageError::Read { path: path.clone(), source })?;
        if !file_name.contains(".pkg.tar") || file_name.contains('/') {
            return Err(not("its name does not end in .pkg.tar.zst".into()));
        }
        if !data.starts_with(&ZSTD_MAGIC) {
            return Err(not("not zstd-compressed".into()));
        }
        let text = alpm_file::pkginfo_text(&data[..]).map_err(|e| not(e.to_string()))?;
        let mut name = None;
        let mut version = None;
        let mut arch = String::new();
        let mut provides = Vec::new();
        let mut depends = Vec::new();
        for (key, value) in alpm_file::pkginfo_entries(&text) {
            let relation = |what: &str| {
                RelationOrSoname::from_str(value).map_err(|e| not(format!(".PKGINFO has an invalid {what} {value:?}: {e}")))
            };
            match key {
                "pkgname" => name = Some(Name::new(value).map_err(|e| not(format!(".PKGINFO has an invalid pkgname {value:?}: {e}")))?),
                "pkgver" => {
                    version = Some(FullVersion::from_str(value).map_err(|e| not(format!(".PKGINFO has an invalid pkgver {value:?}: {e}")))?)
                }
                "arch" => arch = value.to_owned(),
                "provides" => provides.push(relation("provides")?),
                "depend" => depends.push(relation("depend")?),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            return Err(not(".PKGINFO has no pkgname or pkgver".into()));
        };
        Ok(LocalPackage { blake3: Blake3::of(&data), path, file_name, name, version, arch, provides, depends })
    }

    /// Its line in a record, the dephash and the layer key: `<file name> <blake3>`.
    pub fn line(&self) -> String {
        format!("{} {}", self.file_name, self.blake3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, name: &str, pkginfo: &str) -> PathBuf {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(pkginfo.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, ".PKGINFO", pkginfo.as_bytes()).unwrap();
        let data = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    #[test]
    fn a_package_is_read_and_hashed() {
        let d = tempfile::tempdir().unwrap();
        let p = package(d.path(), "foo-1.0-1-any.pkg.tar.zst", "pkgname = foo\npkgver = 1:1.0-1\nprovides = libfoo=1\ndepend = bar>=2\n");
        let l = LocalPackage::read(&p).unwrap();
        assert_eq!(l.name.to_string(), "foo");
        assert_eq!(l.version.to_string(), "1:1.0-1");
        assert_eq!(l.provides[0].to_string(), "libfoo=1");
        assert_eq!(l.depends[0].to_string(), "bar>=2");
        assert_eq!(l.blake3, Blake3::of(&std::fs::read(&p).unwrap()));
        assert_eq!(l.line(), format!("foo-1.0-1-any.pkg.tar.zst {}", l.blake3));
    }

    #[test]
    fn name_version_and_arch_come_from_pkginfo_not_the_file_name() {
        let d = tempfile::tempdir().unwrap();
        let p = package(d.path(), "renamed.pkg.tar.zst", "pkgname = foo\npkgver = 2.0-3\narch = x86_64\n");
        let l = LocalPackage::read(&p).unwrap();
        assert_eq!((l.name.to_string(), l.version.to_string(), l.arch.as_str()), ("foo".into(), "2.0-3".into(), "x86_64"));
        assert_eq!(l.file_name, "renamed.pkg.tar.zst");
    }

    #[test]
    fn missing_files_and_non_packages_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = LocalPackage::read(&d.path().join("gone.pkg.tar.zst")).unwrap_err();
        assert!(matches!(e, LocalPackageError::Read { .. }), "{e}");
        let text = d.path().join("notes.pkg.tar.zst");
        std::fs::write(&text, "hello").unwrap();
        let e = LocalPackage::read(&text).unwrap_err().to_string();
        assert!(e.contains("not a pacman package: not zstd-compressed"), "{e}");
        let p = package(d.path(), "x.tar.zst", "pkgname = x\npkgver = 1-1\n");
        assert!(LocalPackage::read(&p).unwrap_err().to_string().contains("does not end in .pkg.tar.zst"));
        let p = package(d.path(), "y-1-1-any.pkg.tar.zst", "pkgdesc = no name\n");
        assert!(LocalPackage::read(&p).unwrap_err().to_string().contains("no pkgname or pkgver"));
    }
}
