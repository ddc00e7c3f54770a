//! Reading one package file (`*.pkg.tar.zst`) into a database entry: its
//! `.PKGINFO`, its file list, its size and checksums, in one streaming pass
//! over the file (the bytes are hashed as the decompressor pulls them).

use std::{
    fs::File,
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::alpm_file::{self, ArchiveError};

use super::{
    desc::{self, DescVersion, FileFacts},
    error::{PackageError, PublishError, Result},
    pkginfo::PkgInfo,
};

/// The zstd frame magic number (RFC 8878, 3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// repo-add refuses bigger signatures; pacman does too.
const MAX_SIG_SIZE: u64 = 16384;

/// A package read from disk, ready to become a db entry.
#[derive(Clone, Debug)]
pub(crate) struct ReadPackage {
    pub info: PkgInfo,
    pub facts: FileFacts,
    /// The rendered `files` entry.
    pub files: Vec<u8>,
}

impl ReadPackage {
    /// The rendered `desc` entry.
    pub(crate) fn desc(&self, version: DescVersion) -> String {
        desc::render(&self.info, &self.facts, version)
    }
}

/// Reads `path` (and `sig`, its detached signature, if any). `filename` is
/// the name the file is published under.
pub(crate) fn read(path: &Path, sig: Option<&Path>, filename: &str, version: DescVersion) -> Result<ReadPackage> {
    let bad = |source| PublishError::Package { path: path.to_owned(), source };
    let file = File::open(path).map_err(PublishError::io("opening package", path))?;
    let mut hashing = HashingReader {
        inner: BufReader::with_capacity(128 * 1024, file),
        sha256: Sha256::new(),
        md5: (version == DescVersion::V1).then(Md5::new),
        len: 0,
    };
    let mut magic = [0u8; 4];
    hashing.read_exact(&mut magic).map_err(|_| bad(PackageError::NotZstd))?;
    if magic != ZSTD_MAGIC {
        return Err(bad(PackageError::NotZstd));
    }
    // Every member path but the top-level dot files goes into the `files`
    // entry, as repo-add's `bsdtar --exclude='^.*'` lists them.
    let (pkginfo, paths) = alpm_file::pkginfo_and_paths(magic.chain(&mut hashing), check_member).map_err(bad)?;
    // The tar reader stops at the end-of-archive blocks; the checksums cover
    // the whole file, trailing bytes included.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(PackageError::Archive(ArchiveError::Corrupt(e))))?;
    let info = PkgInfo::parse(&pkginfo).map_err(bad)?;
    let pgpsig = match sig {
        Some(sig) => Some(read_sig(sig).map_err(bad)?),
        None => None,
    };
    let facts = FileFacts {
        filename: filename.to_owned(),
        csize: hashing.len,
        sha256: hex(&hashing.sha256.finalize()),
        md5: hashing.md5.map(|m| hex(&m.finalize())),
        pgpsig,
    };
    Ok(ReadPackage { info, facts, files: desc::render_files(paths) })
}

/// A package's file name, which becomes `%FILENAME%` (see
/// [`PackageError::UnsafeName`]): no `/`, and as [`check_member`].
pub(crate) fn check_file_name(name: &str) -> Result<(), PackageError> {
    if name.contains('/') {
        return Err(unsafe_name("file name", name.as_bytes(), "it contains a `/`"));
    }
    check_line("file name", name.as_bytes())
}

/// An archive member's path, which becomes a line of the `files` entry:
/// no control character (newline, tab, escape, ...), no `..` component.
fn check_member(path: &[u8]) -> Result<(), PackageError> {
    check_line("archive member", path)
}

fn check_line(what: &'static str, name: &[u8]) -> Result<(), PackageError> {
    if name.iter().any(|b| b.is_ascii_control()) || String::from_utf8_lossy(name).chars().any(char::is_control) {
        return Err(unsafe_name(what, name, "it contains a control character"));
    }
    if name.split(|b| *b == b'/').any(|part| part == b"..") {
        return Err(unsafe_name(what, name, "it contains a `..` component"));
    }
    Ok(())
}

fn unsafe_name(what: &'static str, name: &[u8], reason: &'static str) -> PackageError {
    PackageError::UnsafeName { what, name: String::from_utf8_lossy(name).into_owned(), reason }
}

pub(crate) fn read_sig(sig: &Path) -> Result<String, PackageError> {
    let bad = |reason| PackageError::BadSignature { path: sig.to_owned(), reason };
    let meta = std::fs::metadata(sig).map_err(|_| bad("unreadable"))?;
    if meta.len() > MAX_SIG_SIZE {
        return Err(bad("larger than 16 KiB"));
    }
    let bytes = std::fs::read(sig).map_err(|_| bad("unreadable"))?;
    // pacman only takes binary signatures in %PGPSIG%.
    if bytes.starts_with(b"-----BEGIN PGP") {
        return Err(bad("ASCII-armored; sign with --no-armor"));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Hashes and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    sha256: Sha256,
    md5: Option<Md5>,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        if let Some(md5) = &mut self.md5 {
            md5.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// Where a package's detached signature would be: `FILE.sig`, if present.
pub(crate) fn sig_next_to(path: &Path) -> Option<PathBuf> {
    let mut sig = path.as_os_str().to_owned();
    sig.push(".sig");
    let sig = PathBuf::from(sig);
    sig.is_file().then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpm_file::archive::tests::package_bytes;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    const PKGINFO: &str = "pkgname = a\npkgbase = a\npkgver = 1-1\narch = any\nsize = 0\n";

    #[test]
    fn reads_pkginfo_files_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = package_bytes(Some(PKGINFO), &["usr/", "usr/bin/", "usr/bin/a"]);
        let path = write(dir.path(), "a-1-1-any.pkg.tar.zst", &bytes);
        let pkg = read(&path, None, "a-1-1-any.pkg.tar.zst", DescVersion::V1).unwrap();
        assert_eq!(pkg.info.pkgname, "a");
        assert_eq!(pkg.files, b"%FILES%\nusr/\nusr/bin/\nusr/bin/a\n");
        assert_eq!(pkg.facts.csize, bytes.len() as u64);
        assert_eq!(pkg.facts.sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(pkg.facts.md5.as_deref(), Some(hex(&Md5::digest(&bytes)).as_str()));
    }

    #[test]
    fn a_plain_file_is_not_a_package() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "x.pkg.tar.zst", b"hello world");
        let err = read(&path, None, "x", DescVersion::V2).unwrap_err();
        assert!(matches!(err, PublishError::Package { source: PackageError::NotZstd, .. }), "{err}");
        assert!(err.to_string().contains("x.pkg.tar.zst"));
    }

    #[test]
    fn a_truncated_package_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = package_bytes(Some(PKGINFO), &["usr/"]);
        let path = write(dir.path(), "t.pkg.tar.zst", &bytes[..bytes.len() / 2]);
        let err = read(&path, None, "t", DescVersion::V2).unwrap_err();
        assert!(matches!(err, PublishError::Package { source: PackageError::Archive(ArchiveError::Corrupt(_)), .. }), "{err}");
    }

    #[test]
    fn an_archive_without_pkginfo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "n.pkg.tar.zst", &package_bytes(None, &["usr/"]));
        let err = read(&path, None, "n", DescVersion::V2).unwrap_err();
        assert!(matches!(err, PublishError::Package { source: PackageError::Archive(ArchiveError::NoPkgInfo), .. }), "{err}");
    }

    #[test]
    fn an_armored_signature_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.pkg.tar.zst", &package_bytes(Some(PKGINFO), &[]));
        let sig = write(dir.path(), "a.pkg.tar.zst.sig", b"-----BEGIN PGP SIGNATURE-----\n");
        let err = read(&path, Some(&sig), "a", DescVersion::V2).unwrap_err();
        assert!(matches!(err, PublishError::Package { source: PackageError::BadSignature { .. }, .. }), "{err}");
    }

    #[test]
    fn names_that_would_break_a_db_line_are_refused() {
        for ok in ["foo-1:2.0-1-x86_64.pkg.tar.zst", "a b.pkg.tar.zst", "ünïcode-1-1-any.pkg.tar.zst", "..x"] {
            assert!(check_file_name(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a\nb", "a\rb", "a\tb", "a\u{1b}b", "a\u{85}b", "a/b", ".."] {
            assert!(matches!(check_file_name(bad), Err(PackageError::UnsafeName { what: "file name", .. })), "{bad:?}");
        }
        assert!(check_member(b"usr/share/a b/..x").is_ok());
        for bad in [&b"usr/../etc/x"[..], b"../x", b"usr/bin/x\n%NAME%", b"usr/\x7f", b"usr/x/.."] {
            assert!(matches!(check_member(bad), Err(PackageError::UnsafeName { what: "archive member", .. })), "{bad:?}");
        }
        let err = check_file_name("x\n%NAME%\ny").unwrap_err().to_string();
        assert_eq!(err, r#"file name "x\n%NAME%\ny" cannot go into a pacman database: it contains a control character"#);
    }
}
