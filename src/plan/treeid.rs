//! Tree-ids: the git tree object id of the directory holding a PKGBUILD.
//!
//! For a git source it is git's own answer (`git rev-parse <commit>:<subtree>`).
//! For a plain directory it is the id git would give the same files, computed
//! here with gix-object's tree encoding and object hashing (SHA-1), so that a
//! checkout and its commit agree. The rules are git's: regular files are
//! blobs with mode 100644, or 100755 when the owner may execute them;
//! symlinks are blobs of their target (120000); directories are trees, and
//! directories with no files in them anywhere are left out, as git cannot
//! track them. Entries named `.git` are skipped at every level. Nothing else
//! is ignored: `.gitignore` is not read, so build leftovers in a path source
//! (`src/`, `pkg/`, package files) change its tree-id. Other file types
//! (sockets, fifos, devices) are an error.
//!
//! Hashing every file of every directory on every plan is what `git status`
//! avoids with its index; [`StatIndex`] is the same idea: a file whose stat
//! data is unchanged since it was hashed is not read again.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gix_object::bstr::BString;
use gix_object::tree::{Entry, EntryKind};
use gix_object::WriteTo;

use crate::ids::TreeId;

/// A tree-id that could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeIdError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file git cannot store.
    #[error("{} is neither a file, a symlink nor a directory; git cannot store it", .0.display())]
    FileType(PathBuf),
    /// git could not name the tree (for example: no such subtree).
    #[error("cannot find the tree {rev}")]
    Git {
        /// The revision asked for.
        rev: String,
        /// Why.
        #[source]
        source: crate::sync::SyncError,
    },
    /// The subtree names a file, not a directory.
    #[error("{rev} is not a directory")]
    NotATree {
        /// The revision asked for.
        rev: String,
    },
    /// Hashing failed (gix refuses, for example, a SHA-1 collision attack).
    #[error("cannot hash {}", path.display())]
    Hash {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: gix_error::Error,
    },
}

/// The tree-id of a plain directory, as `git add -A && git write-tree`
/// would compute it in a copy of it.
pub fn of_dir(dir: &Path) -> Result<TreeId, TreeIdError> {
    to_tree_id(tree_of(dir, None)?)
}

fn to_tree_id(oid: Option<gix_hash::ObjectId>) -> Result<TreeId, TreeIdError> {
    let oid = oid.unwrap_or_else(|| gix_hash::ObjectId::empty_tree(gix_hash::Kind::Sha1));
    Ok(TreeId::from_bytes(oid.as_bytes()).expect("a SHA-1 object id has 20 bytes"))
}

/// A stat index: for each regular file hashed by [`StatIndex::of_dir`], its
/// stat data and blob id, so that the next run reads only what changed.
///
/// An entry is trusted only when every field of the file's stat data (dev,
/// inode, size, mtime and ctime in ns, mode) is equal to the recorded one.
/// A file is recorded only when its mtime and ctime are more than a second
/// older than the start of the run that hashed it ([`RACY_NS`]): a file
/// changed again within the same timestamp tick after it was read would
/// otherwise keep its stat data with other contents (git's "racily clean"
/// entries). A later change always moves the ctime past the recorded one
/// (no user can set a ctime), so a recorded entry cannot go stale unseen.
///
/// The index is one file, read once ([`StatIndex::load`]) and written
/// whole (temp + rename, [`StatIndex::save`]) with only the entries seen in
/// the run. It is a cache: a missing, unreadable or corrupt file is an
/// empty index, and concurrent plans may overwrite each other's.
#[derive(Debug, Default)]
pub struct StatIndex {
    path: Option<PathBuf>,
    /// The start of this run, in ns since the epoch.
    now_ns: i64,
    /// Read from the file.
    old: Entries,
    /// Seen in this run, to be written.
    new: Entries,
    /// Files whose blob id came from the index.
    pub hits: usize,
    /// Files read and hashed.
    pub hashed: usize,
    /// Whether `new` differs from `old` (something to write).
    dirty: bool,
    /// Keep the entries of files not seen in this run too.
    keep_unseen: bool,
}

/// A file's stat data, all of which must match for an entry to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
}

impl FileStat {
    fn of(m: &std::fs::Metadata) -> FileStat {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        }
    }
}

/// Directory → file name → entry.
type Entries = HashMap<Vec<u8>, HashMap<Vec<u8>, IndexEntry>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    stat: FileStat,
    oid: [u8; 20],
}

/// How close to the start of a run a file's mtime or ctime may be for its
/// entry to be recorded: a second, as git treats racy entries.
pub const RACY_NS: i64 = 1_000_000_000;

const MAGIC: &[u8] = b"pkgcell stat index 1\n";
/// dev, ino, size, mtime, ctime (8 bytes each), mode (4), blob id (20).
const ENTRY_LEN: usize = 5 * 8 + 4 + 20;

impl StatIndex {
    /// The index kept at `path`; empty when there is none or it cannot be
    /// read or checked.
    pub fn load(path: &Path) -> StatIndex {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let old = match std::fs::read(path) {
            Ok(data) => decode(&data).unwrap_or_else(|| {
                tracing::debug!(path = %path.display(), "the stat index is corrupt; starting afresh");
                HashMap::new()
            }),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read the stat index; starting afresh");
                }
                HashMap::new()
            }
        };
        StatIndex { path: Some(path.to_owned()), now_ns, old, ..StatIndex::default() }
    }

    /// The tree-id of `dir`, as [`of_dir`] computes it, reading only the
    /// files the index cannot answer for.
    pub fn of_dir(&mut self, dir: &Path) -> Result<TreeId, TreeIdError> {
        // Keys are absolute, so that runs from other directories agree.
        let dir = std::path::absolute(dir).map_err(|source| TreeIdError::Io { path: dir.to_owned(), source })?;
        to_tree_id(tree_of(&dir, Some(self))?)
    }

    /// Keep what the index holds of files this run does not look at
    /// (`pkgcell srcinfo DIR` must not drop a plan's entries).
    pub fn keep_unseen(mut self) -> StatIndex {
        self.keep_unseen = true;
        self
    }

    /// Write the entries seen in this run (and, with
    /// [`StatIndex::keep_unseen`], the others read), if they differ from
    /// what was read; atomically (temp + rename), so that a reader never
    /// sees half an index.
    pub fn save(mut self) -> std::io::Result<()> {
        let Some(path) = self.path.take() else { return Ok(()) };
        if self.keep_unseen {
            // Directories looked at are in `new` already, as they are now.
            for (dir, files) in std::mem::take(&mut self.old) {
                self.new.entry(dir).or_insert(files);
            }
        }
        let count = |m: &Entries| m.values().map(HashMap::len).sum::<usize>();
        let dropped = !self.keep_unseen && count(&self.old) != count(&self.new);
        if !self.dirty && !dropped {
            return Ok(());
        }
        let path = &path;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new().prefix(".treeid-index.").tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, &encode(&self.new))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The blob id of the regular file `dir/name`, from the index when its
    /// stat data `stat` is the recorded one.
    fn lookup(&mut self, dir: &[u8], name: &[u8], stat: FileStat) -> Option<gix_hash::ObjectId> {
        let e = *self.old.get(dir)?.get(name)?;
        if e.stat != stat {
            return None;
        }
        self.hits += 1;
        self.new.entry(dir.to_owned()).or_default().insert(name.to_owned(), e);
        Some(gix_hash::ObjectId::from_bytes_or_panic(&e.oid))
    }

    /// Note that `dir/name` with `stat` was hashed to `oid`; recorded only
    /// when it is not racy.
    fn record(&mut self, dir: &[u8], name: &[u8], stat: FileStat, oid: gix_hash::ObjectId) {
        self.hashed += 1;
        let limit = self.now_ns.saturating_sub(RACY_NS);
        if stat.mtime_ns >= limit || stat.ctime_ns >= limit {
            return;
        }
        let mut bytes = [0; 20];
        bytes.copy_from_slice(oid.as_bytes());
        self.new.entry(dir.to_owned()).or_default().insert(name.to_owned(), IndexEntry { stat, oid: bytes });
        self.dirty = true;
    }

    /// Pretend the run started at `now_ns` (tests: files made now look old).
    #[cfg(test)]
    fn started_at(mut self, now_ns: i64) -> StatIndex {
        self.now_ns = now_ns;
        self
    }
}

/// The file: [`MAGIC`], then per directory its path (u32 length, bytes)
/// and entry count (u32), per entry its name (u32 length, bytes) and
/// [`ENTRY_LEN`] bytes of stat data and blob id, all little-endian; then a
/// BLAKE3 hash of everything before it, so a damaged file is never used.
fn encode(map: &Entries) -> Vec<u8> {
    let mut out = Vec::from(MAGIC);
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    for (dir, files) in map.iter().filter(|(_, f)| !f.is_empty()) {
        len(&mut out, dir.len());
        out.extend_from_slice(dir);
        len(&mut out, files.len());
        for (name, e) in files {
            len(&mut out, name.len());
            out.extend_from_slice(name);
            let s = e.stat;
            for v in [s.dev, s.ino, s.size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [s.mtime_ns, s.ctime_ns] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&s.mode.to_le_bytes());
            out.extend_from_slice(&e.oid);
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The inverse of [`encode`]; `None` for anything but a whole, intact file.
fn decode(data: &[u8]) -> Option<Entries> {
    let body_len = data.len().checked_sub(32)?;
    let (body, sum) = data.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = body.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let mut map = HashMap::new();
    while let Some(n) = take(4) {
        let dir = take(u32::from_le_bytes(n.try_into().ok()?) as usize)?.to_vec();
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut files = HashMap::new();
        for _ in 0..count {
            let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let name = take(n)?.to_vec();
            let e = take(ENTRY_LEN)?;
            let u = |i: usize| u64::from_le_bytes(e[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let stat = FileStat {
                dev: u(0),
                ino: u(1),
                size: u(2),
                mtime_ns: u(3) as i64,
                ctime_ns: u(4) as i64,
                mode: u32::from_le_bytes(e[40..44].try_into().expect("4 bytes")),
            };
            let oid = e[44..64].try_into().expect("20 bytes");
            files.insert(name, IndexEntry { stat, oid });
        }
        map.insert(dir, files);
    }
    Some(map)
}

/// The tree-id of `subtree` (the root when `None`) in `commit` of the bare
/// repository `repo`: git's own answer.
pub fn of_git(repo: &Path, commit: &str, subtree: Option<&Path>) -> Result<TreeId, TreeIdError> {
    // `<commit>:<path>` takes everything after the colon as the path, so
    // that the object is checked to be a tree in a second step.
    let rev = match subtree {
        Some(s) => format!("{commit}:{}", s.display()),
        None => commit.to_owned(),
    };
    let rev_parse = |r: &str| {
        crate::sync::git(Some(repo), ["rev-parse", "--verify", "--quiet", r])
            .map_err(|source| TreeIdError::Git { rev: rev.clone(), source })
    };
    let oid = rev_parse(&rev)?;
    let tree = rev_parse(&format!("{oid}^{{tree}}"))?;
    if subtree.is_some() && tree != oid {
        return Err(TreeIdError::NotATree { rev });
    }
    tree.parse().map_err(|_| TreeIdError::NotATree { rev })
}

/// The tree object id of `dir`, or `None` when it holds no file at all.
/// With an index, regular files are looked up in it first.
fn tree_of(dir: &Path, mut index: Option<&mut StatIndex>) -> Result<Option<gix_hash::ObjectId>, TreeIdError> {
    let io = |source| TreeIdError::Io { path: dir.to_owned(), source };
    if let Some(i) = index.as_deref_mut() {
        i.new.entry(dir.as_os_str().as_bytes().to_owned()).or_default();
    }
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io)? {
        let item = item.map_err(io)?;
        let name = item.file_name();
        if name == ".git" {
            continue;
        }
        let path = item.path();
        let io = |source| TreeIdError::Io { path: path.clone(), source };
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let ft = meta.file_type();
        let (kind, oid) = if ft.is_dir() {
            match tree_of(&path, index.as_deref_mut())? {
                Some(oid) => (EntryKind::Tree, oid),
                None => continue,
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io)?;
            (EntryKind::Link, hash(&path, gix_object::Kind::Blob, target.as_os_str().as_bytes())?)
        } else if ft.is_file() {
            // git looks at the owner's execute bit only.
            let kind = if meta.permissions().mode() & 0o100 != 0 { EntryKind::BlobExecutable } else { EntryKind::Blob };
            let (d, n) = (dir.as_os_str().as_bytes(), name.as_bytes());
            let stat = FileStat::of(&meta);
            let known = index.as_deref_mut().and_then(|i| i.lookup(d, n, stat));
            let oid = match known {
                Some(oid) => oid,
                None => {
                    let data = std::fs::read(&path).map_err(io)?;
                    let oid = hash(&path, gix_object::Kind::Blob, &data)?;
                    if let Some(i) = index.as_deref_mut() {
                        i.record(d, n, stat, oid);
                    }
                    oid
                }
            };
            (kind, oid)
        } else {
            return Err(TreeIdError::FileType(path));
        };
        entries.push(Entry { mode: kind.into(), filename: BString::from(name.as_bytes()), oid });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    // git's order: by name, with trees compared as if their name ended in '/'.
    entries.sort();
    let tree = gix_object::Tree { entries };
    let mut buf = Vec::new();
    tree.write_to(&mut buf).map_err(|source| TreeIdError::Io { path: dir.to_owned(), source })?;
    hash(dir, gix_object::Kind::Tree, &buf).map(Some)
}

fn hash(path: &Path, kind: gix_object::Kind, data: &[u8]) -> Result<gix_hash::ObjectId, TreeIdError> {
    gix_object::compute_hash(gix_hash::Kind::Sha1, kind, data)
        .map_err(|source| TreeIdError::Hash { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.fileMode=true"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_directory_hashes_like_git_write_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        std::fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        std::fs::write(d.join("sub/deeper/a b.patch"), "").unwrap();
        std::fs::write(d.join("sub.txt"), "sorts before sub/ in git").unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        std::os::unix::fs::symlink("sub/deeper", d.join("link")).unwrap();
        git(d, &["init", "-q"]);
        git(d, &["add", "-A"]);
        let expected = git(d, &["write-tree"]);
        assert_eq!(of_dir(d).unwrap().to_string(), expected);
        // And through the stat index, first hashing, then from it.
        let index = t.path().join(".git/stat-index");
        for _ in 0..2 {
            let mut i = index_in(&index, 10);
            assert_eq!(i.of_dir(d).unwrap().to_string(), expected);
            i.save().unwrap();
        }
    }

    /// A run starting `secs` from now: files made by the test look old.
    fn index_in(path: &Path, secs: i64) -> StatIndex {
        let i = StatIndex::load(path);
        let now = i.now_ns;
        i.started_at(now + secs * 1_000_000_000)
    }

    /// The indexed answer of a later run, checked against the unindexed one
    /// and kept for the next; returns (hits, hashed).
    fn agree(d: &Path, index: &Path) -> (usize, usize) {
        let mut i = index_in(index, 10);
        assert_eq!(i.of_dir(d).unwrap(), of_dir(d).unwrap());
        let counts = (i.hits, i.hashed);
        i.save().unwrap();
        counts
    }

    fn mtime(p: &Path) -> SystemTime {
        std::fs::symlink_metadata(p).unwrap().modified().unwrap()
    }

    fn set_mtime(p: &Path, t: SystemTime) {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn the_stat_index_gives_the_same_tree_id_and_rereads_only_what_changed() {
        let t = tempfile::tempdir().unwrap();
        let (d, index) = (t.path().join("pkg"), t.path().join("home/cache/treeid-index"));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        std::fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.join("sub/a.patch"), "aaaa").unwrap();
        std::fs::write(d.join("sub/b.patch"), "bbbb").unwrap();
        std::os::unix::fs::symlink("sub/a.patch", d.join("link")).unwrap();
        assert_eq!(agree(&d, &index), (0, 4), "a first run hashes every file");
        assert_eq!(agree(&d, &index), (4, 0), "an unchanged tree is answered from the index");

        // Same size, same mtime, other contents: the ctime tells.
        let before = mtime(&d.join("PKGBUILD"));
        std::fs::write(d.join("PKGBUILD"), "pkgname=y\n").unwrap();
        set_mtime(&d.join("PKGBUILD"), before);
        assert_eq!(agree(&d, &index), (3, 1));

        // chmod +x: the mode differs.
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(agree(&d, &index), (3, 1));

        // A symlink retargeted: links are read every time, never indexed.
        std::fs::remove_file(d.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/b.patch", d.join("link")).unwrap();
        assert_eq!(agree(&d, &index), (4, 0));

        // Replaced by a file of equal size and mtime but another inode.
        let before = mtime(&d.join("sub/a.patch"));
        std::fs::write(d.join("sub/new"), "cccc").unwrap();
        set_mtime(&d.join("sub/new"), before);
        std::fs::rename(d.join("sub/new"), d.join("sub/a.patch")).unwrap();
        assert_eq!(agree(&d, &index), (3, 1));

        // A removed file goes, and nothing stale is left to trust.
        std::fs::remove_file(d.join("sub/b.patch")).unwrap();
        assert_eq!(agree(&d, &index), (3, 0));
        assert_eq!(agree(&d, &index), (3, 0));
    }

    #[test]
    fn a_file_changed_within_the_second_it_was_hashed_is_hashed_again() {
        let t = tempfile::tempdir().unwrap();
        let (d, index) = (t.path().join("pkg"), t.path().join("index"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        // Runs at the real time: the file is racy, so it is not recorded.
        let mut i = StatIndex::load(&index);
        assert_eq!(i.of_dir(&d).unwrap(), of_dir(&d).unwrap());
        i.save().unwrap();
        let before = mtime(&d.join("PKGBUILD"));
        std::fs::write(d.join("PKGBUILD"), "pkgname=y\n").unwrap();
        set_mtime(&d.join("PKGBUILD"), before);
        let mut i = StatIndex::load(&index);
        assert_eq!(i.of_dir(&d).unwrap(), of_dir(&d).unwrap());
        assert_eq!((i.hits, i.hashed), (0, 1));
    }

    #[test]
    fn a_run_that_keeps_unseen_entries_does_not_drop_another_directorys() {
        let t = tempfile::tempdir().unwrap();
        let index = t.path().join("index");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        }
        let mut i = index_in(&index, 10);
        i.of_dir(&a).unwrap();
        i.of_dir(&b).unwrap();
        i.save().unwrap();
        // `pkgcell srcinfo b`, with b changed: a's entry stays.
        std::fs::write(b.join("PKGBUILD"), "pkgname=y\n").unwrap();
        let mut i = index_in(&index, 10).keep_unseen();
        assert_eq!(i.of_dir(&b).unwrap(), of_dir(&b).unwrap());
        assert_eq!((i.hits, i.hashed), (0, 1));
        i.save().unwrap();
        assert_eq!(agree(&a, &index), (1, 0));
    }

    #[test]
    fn a_damaged_stat_index_is_not_used() {
        let t = tempfile::tempdir().unwrap();
        let (d, index) = (t.path().join("pkg"), t.path().join("index"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        assert_eq!(agree(&d, &index), (0, 1));
        let mut data = std::fs::read(&index).unwrap();
        let last = data.len() - 40;
        data[last] ^= 1; // a bit of the blob id
        std::fs::write(&index, &data).unwrap();
        assert_eq!(agree(&d, &index), (0, 1));
        std::fs::write(&index, &data[..data.len() / 2]).unwrap();
        assert_eq!(agree(&d, &index), (0, 1));
        assert_eq!(agree(&d, &index), (1, 0));
    }

    #[test]
    fn an_empty_directory_is_the_empty_tree() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(of_dir(t.path()).unwrap().to_string(), "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
    }
}
