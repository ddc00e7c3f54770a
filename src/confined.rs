//! Reading what a sandbox wrote, without letting it redirect the reads.
//!
//! A build's PKGDEST, a layer's upper, a parse output dir: the untrusted
//! code inside could have put a symlink to a host file there, a FIFO that
//! blocks a reader forever, a link to `/dev/zero`, or a huge file. The
//! host never looks such a tree up by path. [`Confined`] holds a directory
//! fd and opens everything beneath it with `openat2(2)`:
//!
//! - `RESOLVE_BENEATH`: no absolute path, no `..` out of the directory;
//! - `RESOLVE_NO_SYMLINKS` and `O_NOFOLLOW`: no symlink anywhere on the way,
//!   the last component included;
//! - `RESOLVE_NO_MAGICLINKS`: no `/proc/<pid>/fd/<n>`-style jumps;
//! - `RESOLVE_NO_XDEV`: no crossing into another mount;
//! - `O_NONBLOCK`: opening a FIFO does not wait for a writer (it is then
//!   refused by `fstat`, as is anything but a regular file);
//! - every read stops at a size limit, checked against `fstat` first and
//!   again while reading.
//!
//! Kernels without `openat2` (before Linux 5.6) get a clear error instead
//! of a weaker fallback: pkgcell's rootless overlay mounts need Linux 5.11
//! anyway, so the fallback would only ever run where builds cannot.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::IoPath;

/// What kind of file a directory entry is (never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character device (an overlay whiteout is one).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Something else.
    Unknown,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Unknown => Kind::Unknown,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Unknown => "file of unknown type",
        })
    }
}

/// Why a file beneath a [`Confined`] directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// The name is absolute, has `..` or is empty.
    #[error("{} is not a plain relative path beneath {}", name.display(), dir.display())]
    BadPath {
        /// The directory.
        dir: PathBuf,
        /// The name asked for.
        name: PathBuf,
    },
    /// The file, or a directory on the way to it, is a symlink.
    #[error("{} is a symlink (or its path goes through one); refused", path.display())]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// The path leads out of the directory or into another mount.
    #[error("{} leads out of its directory or onto another mount; refused", path.display())]
    Escape {
        /// The file.
        path: PathBuf,
    },
    /// The file is not what was asked for (a FIFO where a file should be).
    #[error("{} is not a {expected} but a {found}; refused", path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What was asked for.
        expected: Kind,
        /// What it is.
        found: Kind,
    },
    /// The file is larger than it may be.
    #[error("{} is larger than the limit of {limit} bytes ({size} bytes); refused", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, as far as known (at least `limit + 1`).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The kernel has no `openat2` (Linux < 5.6).
    #[error("cannot open {} safely: this kernel has no openat2(2) (Linux 5.6 or newer is needed)", path.display())]
    NoOpenat2 {
        /// The file.
        path: PathBuf,
    },
    /// Any other failure.
    #[error(transparent)]
    Io(#[from] IoPath),
}

/// A directory that untrusted code could have written, opened once; the
/// files beneath it are only reached through its fd (see the module doc).
#[derive(Debug)]
pub struct Confined {
    fd: OwnedFd,
    path: PathBuf,
}

/// A regular file opened beneath a [`Confined`] directory.
#[derive(Debug)]
pub struct ConfinedFile {
    /// The open file (blocking again).
    pub file: File,
    /// Its size when opened.
    pub size: u64,
    /// Its path, for messages.
    pub path: PathBuf,
}

impl Confined {
    /// Open the directory `path` (itself chosen by the host, so looked up
    /// normally, except that it must not be a symlink).
    pub fn open(path: &Path) -> Result<Confined, ConfinedError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
            // With O_DIRECTORY, a symlink to a directory gives ENOTDIR.
            Errno::LOOP | Errno::NOTDIR if path.is_symlink() => ConfinedError::Symlink { path: path.to_owned() },
            e => IoPath::new("open the directory", path, e.into()).into(),
        })?;
        Ok(Confined { fd, path: path.to_owned() })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, name: &Path) -> Result<PathBuf, ConfinedError> {
        let plain = name.components().next().is_some() && name.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(ConfinedError::BadPath { dir: self.path.clone(), name: name.to_owned() });
        }
        Ok(self.path.join(name))
    }

    fn openat2(&self, name: &Path, oflags: OFlags) -> Result<(OwnedFd, PathBuf), ConfinedError> {
        let path = self.check(name)?;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        // O_NOCTTY: a device node must not become our terminal before fstat refuses it.
        // (openat2 refuses them next to O_PATH, which opens nothing anyway.)
        let oflags = match oflags.contains(OFlags::PATH) {
            true => oflags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            false => oflags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        };
        match rustix::fs::openat2(&self.fd, name, oflags, Mode::empty(), resolve) {
            Ok(fd) => Ok((fd, path)),
            Err(Errno::LOOP) => Err(ConfinedError::Symlink { path }),
            Err(Errno::XDEV) => Err(ConfinedError::Escape { path }),
            Err(Errno::NOSYS) => Err(ConfinedError::NoOpenat2 { path }),
            Err(e) => Err(IoPath::new("open", path, e.into()).into()),
        }
    }

    fn kind_of(fd: &OwnedFd, path: &Path) -> Result<(Kind, u64), ConfinedError> {
        let st = rustix::fs::fstat(fd).map_err(|e| IoPath::new("stat", path, e.into()))?;
        Ok((Kind::of(FileType::from_raw_mode(st.st_mode)), u64::try_from(st.st_size).unwrap_or(0)))
    }

    /// The directory `name` beneath this one, as a [`Confined`] of its own.
    pub fn open_dir(&self, name: impl AsRef<Path>) -> Result<Confined, ConfinedError> {
        let name = name.as_ref();
        match self.openat2(name, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok((fd, path)) => Ok(Confined { fd, path }),
            Err(ConfinedError::Io(e)) if e.source.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                // Say what it is instead: an O_PATH fd of the thing itself tells.
                let (fd, path) = self.openat2(name, OFlags::PATH)?;
                match Self::kind_of(&fd, &path)?.0 {
                    Kind::Symlink => Err(ConfinedError::Symlink { path }),
                    found => Err(ConfinedError::WrongKind { path, expected: Kind::Dir, found }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Open the regular file `name` (a name or a relative path) for reading.
    pub fn open_file(&self, name: impl AsRef<Path>) -> Result<ConfinedFile, ConfinedError> {
        let (fd, path) = self.openat2(name.as_ref(), OFlags::RDONLY)?;
        let (found, size) = Self::kind_of(&fd, &path)?;
        if found != Kind::File {
            return Err(ConfinedError::WrongKind { path, expected: Kind::File, found });
        }
        // Blocking reads again: it is a regular file, O_NONBLOCK only guarded the open.
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| IoPath::new("read the flags of", &path, e.into()))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(|e| IoPath::new("set the flags of", &path, e.into()))?;
        Ok(ConfinedFile { file: File::from(fd), size, path })
    }

    /// The whole file `name`, at most `limit` bytes.
    pub fn read(&self, name: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, ConfinedError> {
        let f = self.open_file(name)?;
        let mut out = Vec::with_capacity(f.size.min(limit) as usize);
        f.copy_to(&mut out, limit)?;
        Ok(out)
    }

    /// The file `name` as text (invalid UTF-8 replaced), at most `limit` bytes.
    pub fn read_to_string(&self, name: impl AsRef<Path>, limit: u64) -> Result<String, ConfinedError> {
        let data = self.read(name, limit)?;
        Ok(String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Copy the file `name` into `dst`, at most `limit` bytes; the bytes copied.
    pub fn copy_to(&self, name: impl AsRef<Path>, dst: &mut dyn Write, limit: u64) -> Result<u64, ConfinedError> {
        self.open_file(name)?.copy_to(dst, limit)
    }

    /// The entries of the directory, sorted by name, with their kinds (not
    /// followed). Names are raw bytes: whoever uses one as a file name
    /// checks it first.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Kind)>, ConfinedError> {
        let io = |e: Errno| IoPath::new("list", &self.path, e.into());
        let mut out = Vec::new();
        for e in Dir::read_from(&self.fd).map_err(io)? {
            let e = e.map_err(io)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let mut kind = Kind::of(e.file_type());
            if kind == Kind::Unknown {
                // Some file systems leave d_type empty: ask, without following.
                let st = rustix::fs::statat(&self.fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| IoPath::new("stat", self.path.join(OsStr::from_bytes(name)), err.into()))?;
                kind = Kind::of(FileType::from_raw_mode(st.st_mode));
            }
            out.push((name.to_vec(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl ConfinedFile {
    /// Copy the rest of the file into `dst`, failing (after at most
    /// `limit + 1` bytes read) when it is larger than `limit`.
    pub fn copy_to(self, dst: &mut dyn Write, limit: u64) -> Result<u64, ConfinedError> {
        if self.size > limit {
            return Err(ConfinedError::TooLarge { path: self.path, size: self.size, limit });
        }
        let path = self.path;
        let mut r = LimitedReader::new(self.file, limit);
        let n = io::copy(&mut r, dst).map_err(|e| IoPath::new("copy", &path, e))?;
        if r.over {
            return Err(ConfinedError::TooLarge { path, size: limit + 1, limit });
        }
        Ok(n)
    }

    /// A reader of the file that ends with an error past `limit` bytes
    /// (for streaming into a store); [`LimitedReader::over`] tells afterwards.
    pub fn limited(self, limit: u64) -> Result<LimitedReader<File>, ConfinedError> {
        if self.size > limit {
            return Err(ConfinedError::TooLarge { path: self.path, size: self.size, limit });
        }
        Ok(LimitedReader::new(self.file, limit))
    }
}

/// A reader that yields at most `limit` bytes of its inner reader and fails
/// (with [`io::ErrorKind::FileTooLarge`]) when there is more: it never reads
/// more than `limit + 1` bytes.
#[derive(Debug)]
pub struct LimitedReader<R> {
    inner: io::Take<R>,
    limit: u64,
    /// Whether the inner reader had more than `limit` bytes.
    pub over: bool,
}

impl<R: Read> LimitedReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, limit: u64) -> Self {
        LimitedReader { inner: inner.take(limit.saturating_add(1)), limit, over: false }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // Take counts down from limit + 1: at 0 the extra byte was read.
        if self.inner.limit() == 0 && n > 0 {
            self.over = true;
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("larger than {} bytes", self.limit)));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, data) in files {
            let p = d.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        d
    }

    #[test]
    fn a_regular_file_beneath_is_read_whole() {
        let d = dir_with(&[("a.pkg.tar.zst", b"data"), ("sub/desc", b"%NAME%\nx\n")]);
        let c = Confined::open(d.path()).unwrap();
        assert_eq!(c.read("a.pkg.tar.zst", 4).unwrap(), b"data");
        assert_eq!(c.read("sub/desc", 100).unwrap(), b"%NAME%\nx\n");
        assert_eq!(c.open_dir("sub").unwrap().read_to_string("desc", 100).unwrap(), "%NAME%\nx\n");
    }

    #[test]
    fn a_symlink_to_a_host_file_is_refused_and_named() {
        let secret = dir_with(&[("secret", b"SECRET")]);
        let d = dir_with(&[]);
        symlink(secret.path().join("secret"), d.path().join("zz.pkg.tar.zst")).unwrap();
        let c = Confined::open(d.path()).unwrap();
        let e = c.read("zz.pkg.tar.zst", 1 << 20).unwrap_err();
        assert!(matches!(e, ConfinedError::Symlink { .. }), "{e:?}");
        assert!(e.to_string().contains("zz.pkg.tar.zst is a symlink"), "{e}");
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let secret = dir_with(&[("desc", b"SECRET")]);
        let d = dir_with(&[]);
        symlink(secret.path(), d.path().join("sub")).unwrap();
        let c = Confined::open(d.path()).unwrap();
        assert!(matches!(c.read("sub/desc", 100), Err(ConfinedError::Symlink { .. })));
        let e = c.open_dir("sub").unwrap_err();
        assert!(matches!(e, ConfinedError::Symlink { .. }), "{e:?}");
        assert!(matches!(Confined::open(&d.path().join("sub")), Err(ConfinedError::Symlink { .. })));
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused_without_reading() {
        let d = dir_with(&[]);
        symlink("/dev/zero", d.path().join("zz.pkg.tar.zst")).unwrap();
        let c = Confined::open(d.path()).unwrap();
        assert!(matches!(c.read("zz.pkg.tar.zst", 1 << 20), Err(ConfinedError::Symlink { .. })));
    }

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_blocking() {
        let d = dir_with(&[]);
        let fifo = d.path().join("zz.pkg.tar.zst");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        let c = Confined::open(d.path()).unwrap();
        let e = c.read("zz.pkg.tar.zst", 100).unwrap_err();
        assert!(matches!(e, ConfinedError::WrongKind { found: Kind::Fifo, .. }), "{e:?}");
        assert!(e.to_string().contains("is not a regular file but a fifo"), "{e}");
        assert_eq!(c.entries().unwrap(), vec![(b"zz.pkg.tar.zst".to_vec(), Kind::Fifo)]);
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        let d = dir_with(&[("sub/x", b"x"), ("y", b"y")]);
        let c = Confined::open(&d.path().join("sub")).unwrap();
        assert!(matches!(c.read("../y", 100), Err(ConfinedError::BadPath { .. })));
        assert!(matches!(c.read(d.path().join("y"), 100), Err(ConfinedError::BadPath { .. })));
        assert!(matches!(c.read("", 100), Err(ConfinedError::BadPath { .. })));
        assert!(matches!(c.read(".", 100), Err(ConfinedError::BadPath { .. })));
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_the_limit_is_exact() {
        let d = dir_with(&[("big", &[7u8; 1000])]);
        let c = Confined::open(d.path()).unwrap();
        assert_eq!(c.read("big", 1000).unwrap().len(), 1000);
        let e = c.read("big", 999).unwrap_err();
        assert!(matches!(e, ConfinedError::TooLarge { size: 1000, limit: 999, .. }), "{e:?}");
        assert!(e.to_string().contains("larger than the limit of 999 bytes"), "{e}");
    }

    #[test]
    fn the_limited_reader_stops_one_byte_past_the_limit() {
        let mut r = LimitedReader::new(io::repeat(0), 10);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(r.over);
        assert!(out.len() <= 11);
        let mut ok = LimitedReader::new(&[1u8; 10][..], 10);
        let mut out = Vec::new();
        assert_eq!(ok.read_to_end(&mut out).unwrap(), 10);
        assert!(!ok.over);
    }

    #[test]
    fn entries_list_names_and_kinds_without_following() {
        let d = dir_with(&[("a", b""), ("d/x", b"")]);
        symlink("/etc/passwd", d.path().join("l")).unwrap();
        let c = Confined::open(d.path()).unwrap();
        assert_eq!(
            c.entries().unwrap(),
            vec![(b"a".to_vec(), Kind::File), (b"d".to_vec(), Kind::Dir), (b"l".to_vec(), Kind::Symlink)]
        );
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let d = dir_with(&[("d/x", b"")]);
        let c = Confined::open(d.path()).unwrap();
        assert!(matches!(c.read("d", 100), Err(ConfinedError::WrongKind { found: Kind::Dir, .. })));
    }
}
