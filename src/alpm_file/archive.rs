//! Package files (`*.pkg.tar.zst`) read member by member with the tar
//! crate: the `.PKGINFO` (with or without the member paths), the
//! `.BUILDINFO`, and every member with its metadata.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;

use crate::error::{IoPath, io_err};
use crate::ids::Blake3;

/// Far more than any real `.PKGINFO` or `.BUILDINFO` (a few KiB).
const MAX_PKGINFO_SIZE: u64 = 1 << 20;
/// How much of the decompressed archive is read looking for `.PKGINFO`.
const MAX_BEFORE_PKGINFO: u64 = 64 << 20;

/// Why the `.PKGINFO` of a package archive could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Decompression or tar parsing failed part way.
    #[error("corrupt or truncated archive")]
    Corrupt(#[source] io::Error),
    /// The archive has no `.PKGINFO` member.
    #[error("no .PKGINFO in the archive: not a pacman package")]
    NoPkgInfo,
    /// `.PKGINFO` or `.BUILDINFO` is larger than any real one (a
    /// decompression bomb).
    #[error("{name} is larger than {limit} bytes")]
    TooLarge {
        /// Which member.
        name: &'static str,
        /// Its limit in bytes.
        limit: u64,
    },
    /// `.PKGINFO` or `.BUILDINFO` is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// The `.PKGINFO` text of a zstd-compressed package archive, read up to it.
pub fn pkginfo_text(compressed: impl Read) -> Result<String, ArchiveError> {
    walk(compressed, Want::PkgInfo, |_| Ok::<(), ArchiveError>(())).map(|w| w.pkginfo)
}

/// The `.PKGINFO` text of a zstd-compressed package archive and its
/// `.BUILDINFO`, when that comes before `.PKGINFO` (makepkg writes the
/// dot files first, in C collation: `.BUILDINFO`, `.MTREE`, `.PKGINFO`);
/// read up to `.PKGINFO`.
pub fn pkginfo_and_buildinfo(compressed: impl Read) -> Result<(String, Option<String>), ArchiveError> {
    walk(compressed, Want::BuildInfoToo, |_| Ok::<(), ArchiveError>(())).map(|w| (w.pkginfo, w.buildinfo))
}

/// The `.PKGINFO` text of a zstd-compressed package archive and every
/// member path except the top-level dot files (.PKGINFO, .BUILDINFO,
/// .MTREE, .INSTALL, ...), as repo-add's `bsdtar --exclude='^.*'` does.
/// Each path is given to `check` as the walk reaches it; its error stops
/// the walk.
pub fn pkginfo_and_paths<E: From<ArchiveError>>(
    compressed: impl Read,
    check: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(String, Vec<Vec<u8>>), E> {
    walk(compressed, Want::Paths, check).map(|w| (w.pkginfo, w.paths))
}

/// What [`walk`] reads besides `.PKGINFO`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Nothing: it stops at `.PKGINFO`.
    PkgInfo,
    /// A `.BUILDINFO` before `.PKGINFO`; it stops at `.PKGINFO`.
    BuildInfoToo,
    /// Every member path, to the end.
    Paths,
}

/// What [`walk`] found.
struct Walked {
    pkginfo: String,
    /// `.BUILDINFO`, if it came before `.PKGINFO`.
    buildinfo: Option<String>,
    paths: Vec<Vec<u8>>,
}

/// A dot file's text (`.PKGINFO`, `.BUILDINFO`), bounded: the archive may
/// come from a hostile build.
fn dot_file_text(entry: impl Read, name: &'static str) -> Result<String, ArchiveError> {
    let mut text = Vec::new();
    entry.take(MAX_PKGINFO_SIZE + 1).read_to_end(&mut text).map_err(ArchiveError::Corrupt)?;
    if text.len() as u64 > MAX_PKGINFO_SIZE {
        return Err(ArchiveError::TooLarge { name, limit: MAX_PKGINFO_SIZE });
    }
    String::from_utf8(text).map_err(|_| ArchiveError::NotUtf8(name))
}

/// Walks the tar stream: returns `.PKGINFO` and what `want` says (a
/// `.BUILDINFO` before it, or every member path, each checked).
fn walk<E: From<ArchiveError>>(
    compressed: impl Read,
    want: Want,
    mut check: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Walked, E> {
    let paths_too = want == Want::Paths;
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(ArchiveError::Corrupt)?;
    // Looking only for .PKGINFO (makepkg writes it first), a few members
    // at most come before it: a cap on what is decompressed keeps a
    // crafted archive (a build's output) from spinning on a bomb.
    let cap = if paths_too { u64::MAX } else { MAX_BEFORE_PKGINFO };
    let mut archive = tar::Archive::new(decoder.take(cap));
    let (mut pkginfo, mut buildinfo) = (None, None);
    let mut paths = Vec::new();
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let path = entry.path_bytes().into_owned();
        if path == b".PKGINFO" {
            pkginfo = Some(dot_file_text(&mut entry, ".PKGINFO")?);
            if !paths_too {
                break;
            }
        } else if want == Want::BuildInfoToo && path == b".BUILDINFO" && buildinfo.is_none() {
            buildinfo = Some(dot_file_text(&mut entry, ".BUILDINFO")?);
        } else if paths_too && !path.starts_with(b".") {
            check(&path)?;
            paths.push(path);
        }
    }
    let pkginfo = pkginfo.ok_or(ArchiveError::NoPkgInfo)?;
    Ok(Walked { pkginfo, buildinfo, paths })
}

/// One member of a package archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its content.
    pub blake3: Blake3,
    /// Its mode bits.
    pub mode: u32,
    /// Its mtime.
    pub mtime: u64,
    /// Its link target, for links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// The members of a .pkg.tar.zst, by path.
pub fn members(path: &Path) -> Result<BTreeMap<String, Member>, IoPath> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let zst = zstd::Decoder::new(file).map_err(io_err("decompress", path))?;
    let mut ar = tar::Archive::new(zst);
    let mut out = BTreeMap::new();
    for e in ar.entries().map_err(io_err("read the archive", path))? {
        let mut e = e.map_err(io_err("read the archive", path))?;
        let name = e.path().map_err(io_err("read the archive", path))?.to_string_lossy().into_owned();
        let link = e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned());
        let (mode, mtime) = (e.header().mode().unwrap_or(0), e.header().mtime().unwrap_or(0));
        // Hashed as it streams: a member (of a build's output) may be far
        // larger than memory.
        let mut hasher = blake3::Hasher::new();
        let size = io::copy(&mut e, &mut hasher).map_err(io_err("read the archive", path))?;
        out.insert(name, Member { size, blake3: Blake3::from_bytes(*hasher.finalize().as_bytes()), mode, mtime, link });
    }
    Ok(out)
}

/// The `.BUILDINFO` text inside a package file; None when it has none.
pub fn buildinfo_text(path: &Path) -> Result<Option<String>, IoPath> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let zst = zstd::Decoder::new(file).map_err(io_err("decompress", path))?;
    let mut ar = tar::Archive::new(zst);
    for e in ar.entries().map_err(io_err("read the archive", path))? {
        let mut e = e.map_err(io_err("read the archive", path))?;
        if e.path().is_ok_and(|p| p == Path::new(".BUILDINFO")) {
            // Bounded as .PKGINFO is: the package may come from a hostile build.
            let mut text = Vec::new();
            (&mut e).take(MAX_PKGINFO_SIZE + 1).read_to_end(&mut text).map_err(io_err("read .BUILDINFO of", path))?;
            if text.len() as u64 > MAX_PKGINFO_SIZE {
                let big = io::Error::new(io::ErrorKind::InvalidData, format!(".BUILDINFO is larger than {MAX_PKGINFO_SIZE} bytes"));
                return Err(io_err("read .BUILDINFO of", path)(big));
            }
            let text = String::from_utf8(text)
                .map_err(|_| io_err("read .BUILDINFO of", path)(io::Error::new(io::ErrorKind::InvalidData, ".BUILDINFO is not valid UTF-8")))?;
            return Ok(Some(text));
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A package archive: `.PKGINFO` (if any), a `.BUILDINFO`, then
    /// `members` (empty files, or directories when ending in `/`).
    pub(crate) fn package_bytes(pkginfo: Option<&str>, members: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(if name.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular });
            builder.append_data(&mut header, name, data).unwrap();
        };
        if let Some(pkginfo) = pkginfo {
            add(".PKGINFO", pkginfo.as_bytes());
        }
        add(".BUILDINFO", b"format = 2\n");
        for member in members {
            add(member, b"");
        }
        zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
    }

    #[test]
    fn pkginfo_and_the_paths_but_the_dot_files_are_read() {
        let bytes = package_bytes(Some("pkgname = a\n"), &["usr/", "usr/bin/a"]);
        assert_eq!(pkginfo_text(&bytes[..]).unwrap(), "pkgname = a\n");
        let mut seen = Vec::new();
        let (text, paths) = pkginfo_and_paths::<ArchiveError>(&bytes[..], |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(text, "pkgname = a\n");
        assert_eq!(paths, [b"usr/".to_vec(), b"usr/bin/a".to_vec()]);
        assert_eq!(seen, paths);
        assert!(matches!(pkginfo_text(&package_bytes(None, &["usr/"])[..]), Err(ArchiveError::NoPkgInfo)));
        assert!(matches!(pkginfo_text(&bytes[..bytes.len() / 2]), Err(ArchiveError::Corrupt(_))));
    }

    /// A package file with these (name, content) members, in `dir`.
    fn package_file(dir: &Path, members: &[(&str, &[u8])]) -> std::path::PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let path = dir.join("p-1-1-any.pkg.tar.zst");
        std::fs::write(&path, zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()).unwrap();
        path
    }

    #[test]
    fn members_are_hashed_and_sized_and_a_huge_buildinfo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'a'; MAX_PKGINFO_SIZE as usize + 1];
        let path = package_file(dir.path(), &[(".BUILDINFO", &big), ("usr/a", b"hello")]);
        let m = members(&path).unwrap();
        assert_eq!(m["usr/a"].size, 5);
        assert_eq!(m["usr/a"].blake3, Blake3::of(b"hello"));
        assert_eq!(m[".BUILDINFO"].size, MAX_PKGINFO_SIZE + 1);
        let err = buildinfo_text(&path).unwrap_err();
        assert!(crate::error::error_chain(&err).contains("larger than"), "{}", crate::error::error_chain(&err));
        let path = package_file(dir.path(), &[(".BUILDINFO", b"format = 2\n")]);
        assert_eq!(buildinfo_text(&path).unwrap().as_deref(), Some("format = 2\n"));
    }

    #[test]
    fn the_buildinfo_before_the_pkginfo_is_read_with_it_bounded_and_one_after_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let read = |members: &[(&str, &[u8])]| pkginfo_and_buildinfo(File::open(package_file(dir.path(), members)).unwrap());
        // makepkg's order.
        let (p, b) = read(&[(".BUILDINFO", b"format = 2\n"), (".MTREE", b"x"), (".PKGINFO", b"pkgname = p\n"), ("usr/a", b"")]).unwrap();
        assert_eq!((p.as_str(), b.as_deref()), ("pkgname = p\n", Some("format = 2\n")));
        // After .PKGINFO: the reader has stopped.
        let (_, b) = read(&[(".PKGINFO", b"pkgname = p\n"), (".BUILDINFO", b"format = 2\n")]).unwrap();
        assert_eq!(b, None);
        let big = vec![b'a'; MAX_PKGINFO_SIZE as usize + 1];
        let e = read(&[(".BUILDINFO", &big), (".PKGINFO", b"pkgname = p\n")]).unwrap_err();
        assert_eq!(e.to_string(), format!(".BUILDINFO is larger than {MAX_PKGINFO_SIZE} bytes"));
        let e = read(&[(".BUILDINFO", b"\xff"), (".PKGINFO", b"pkgname = p\n")]).unwrap_err();
        assert_eq!(e.to_string(), ".BUILDINFO is not valid UTF-8");
        // Reading .PKGINFO alone (an -I file, a publish) never looks at it.
        let odd = File::open(package_file(dir.path(), &[(".BUILDINFO", b"\xff"), (".PKGINFO", b"pkgname = p\n")])).unwrap();
        assert_eq!(pkginfo_text(odd).unwrap(), "pkgname = p\n");
    }

    #[test]
    fn a_failed_check_stops_the_walk() {
        let bytes = package_bytes(Some("pkgname = a\n"), &["usr/", "bad", "usr/x"]);
        let mut seen = 0;
        let r: Result<_, Box<dyn std::error::Error>> = pkginfo_and_paths(&bytes[..], |p| {
            seen += 1;
            if p == b"bad" { Err("bad member".into()) } else { Ok(()) }
        });
        assert_eq!(r.unwrap_err().to_string(), "bad member");
        assert_eq!(seen, 2);
    }

    #[test]
    fn members_and_buildinfo_of_a_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a-1-1-any.pkg.tar.zst");
        std::fs::write(&path, package_bytes(Some("pkgname = a\n"), &["usr/bin/a"])).unwrap();
        let m = members(&path).unwrap();
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), [".BUILDINFO", ".PKGINFO", "usr/bin/a"]);
        assert_eq!(m["usr/bin/a"], Member { size: 0, blake3: Blake3::of(b""), mode: 0o644, mtime: 0, link: None });
        assert_eq!(buildinfo_text(&path).unwrap().as_deref(), Some("format = 2\n"));
        let plain = d.path().join("p.pkg.tar.zst");
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        tar.append_data(&mut h, ".PKGINFO", &b""[..]).unwrap();
        std::fs::write(&plain, zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap()).unwrap();
        assert_eq!(buildinfo_text(&plain).unwrap(), None);
    }
}
