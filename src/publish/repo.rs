//! The repository database on disk (alpm-repo-db(7)): `NAME.db.tar.zst`
//! (one `desc` per package), `NAME.files.tar.zst` (`desc` + `files`), the
//! real-file copies `NAME.db` / `NAME.files` pacman downloads, their
//! signatures, and the small state file that makes adds incremental.
//!
//! The files db is the record of what is published: an existing db (ours or
//! repo-add's) is loaded from it, entries are replaced in memory, and both
//! archives are written again from the kept entries without opening any
//! package. The state file only remembers each published file's size and
//! mtime, so an input that has not changed is not read again.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use super::{
    desc::DescSummary,
    error::{PublishError, Result},
    fsops::{self, RepoLock, Stamp, kill_point},
    sign::Signer,
};

/// zstd level for the db archives. The dbs are mostly tar padding and
/// repeated keys; level 3 is within a few percent of level 19 on them and
/// many times faster, which matters for the one-package-added case.
const ZSTD_LEVEL: i32 = 3;

pub use crate::ids::RepoName;

/// Every path belonging to one repository database.
#[derive(Clone, Debug)]
pub(crate) struct DbPaths {
    pub dir: PathBuf,
    pub name: RepoName,
}

impl DbPaths {
    /// From `PATH/NAME.db.tar.zst`, the argument repo-add takes.
    pub(crate) fn from_db_path(path: &Path) -> Result<Self> {
        let bad = || PublishError::BadDbPath { path: path.to_owned() };
        let file = path.file_name().and_then(|f| f.to_str()).ok_or_else(bad)?;
        let name = file.strip_suffix(".db.tar.zst").ok_or_else(bad)?;
        let name = RepoName::new(name)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(DbPaths { dir, name })
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }
    pub(crate) fn db(&self) -> PathBuf {
        self.file(".db.tar.zst")
    }
    pub(crate) fn files_db(&self) -> PathBuf {
        self.file(".files.tar.zst")
    }
    fn state(&self) -> PathBuf {
        self.dir.join(format!(".{}.pkgcell-state.json", self.name))
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.dir.join(format!(".{}.pkgcell-lock", self.name))
    }

    /// Takes the repository lock (creating the directory if needed).
    pub(crate) fn lock(&self) -> Result<RepoLock> {
        fs::create_dir_all(&self.dir).map_err(PublishError::io("creating repository directory", &self.dir))?;
        RepoLock::acquire(&self.lock_file())
    }
}

/// One package in the database, as stored.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The entry directory, `NAME-VERSION`.
    pub dir: String,
    pub summary: DescSummary,
    pub desc: String,
    /// The `files` entry; absent when loaded from a db without a files db.
    pub files: Option<Vec<u8>>,
}

/// The state file: stamps of published package files, valid only while the
/// files db is the one they were written with.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    version: u32,
    files_db: Option<Stamp>,
    stamps: HashMap<String, InputStamp>,
}

/// What a package file (and its signature) looked like when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct InputStamp {
    pub file: Stamp,
    pub sig: Option<Stamp>,
}

impl InputStamp {
    pub(crate) fn of(path: &Path, sig: Option<&Path>) -> Option<Self> {
        Some(InputStamp { file: Stamp::of(path)?, sig: sig.and_then(Stamp::of) })
    }
}

/// Whether signatures of the temp archives were made and go in with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sigs {
    Made,
    None,
}

/// A repository database loaded into memory.
#[derive(Debug)]
pub(crate) struct RepoDb {
    pub paths: DbPaths,
    /// Entries by package name; pacman holds one version per name.
    pub entries: BTreeMap<String, Entry>,
    /// Stamps by published file name.
    pub stamps: HashMap<String, InputStamp>,
}

impl RepoDb {
    /// Loads the db at `paths` (an empty one if none exists yet). Call with
    /// the lock held.
    pub(crate) fn load(paths: DbPaths) -> Result<Self> {
        let files_db = paths.files_db();
        let db = paths.db();
        let entries = if files_db.is_file() {
            read_archive(&files_db)?
        } else if db.is_file() {
            tracing::warn!(db = %db.display(), "no files db next to the db; file lists start empty");
            read_archive(&db)?
        } else {
            BTreeMap::new()
        };
        let mut stamps = match fs::read(paths.state()) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                // Stamps written with another files db (repo-add ran since,
                // or we crashed before saving) cannot be trusted.
                Ok(state) if state.files_db.is_some() && state.files_db == Stamp::of(&files_db) => state.stamps,
                _ => HashMap::new(),
            },
            Err(_) => HashMap::new(),
        };
        let named: HashSet<&str> = entries.values().map(|e| e.summary.filename.as_str()).collect();
        stamps.retain(|filename, _| named.contains(filename.as_str()));
        Ok(RepoDb { paths, entries, stamps })
    }

    /// Whether `filename` is in the db and its stamp says the file now
    /// given is the one that was read. A hash lookup: [`RepoDb::load`] keeps
    /// only stamps of files the db names, and [`RepoDb::set_stamp`] keeps
    /// it that way.
    pub(crate) fn unchanged(&self, filename: &str, stamp: Option<&InputStamp>) -> bool {
        stamp.is_some() && self.stamps.get(filename) == stamp
    }

    /// Records the stamp of a file just put in the db, dropping the stamp of
    /// the file it replaces.
    pub(crate) fn set_stamp(&mut self, replaced: Option<&str>, filename: &str, stamp: Option<InputStamp>) {
        if let Some(old) = replaced {
            self.stamps.remove(old);
        }
        match stamp {
            Some(stamp) => self.stamps.insert(filename.to_owned(), stamp),
            None => self.stamps.remove(filename),
        };
    }

    /// Writes both archives from the entries and swaps them in: temp files,
    /// fsync, signatures, then renames, files db first. A reader sees the
    /// old db or the new one, never a mix; the package files the new db
    /// names must already be in place.
    pub(crate) fn commit(&self, signer: Option<&Signer>) -> Result<()> {
        let db = self.paths.db();
        let files_db = self.paths.files_db();
        let db_bytes = build_archive(&self.entries, false).map_err(PublishError::io("building", &db))?;
        let files_bytes = build_archive(&self.entries, true).map_err(PublishError::io("building", &files_db))?;
        let db_tmp = fsops::write_temp(&db, &db_bytes)?;
        let files_tmp = fsops::write_temp(&files_db, &files_bytes)?;
        kill_point("db-temp-written");
        let sig = |p: &Path| -> PathBuf {
            let mut s = p.as_os_str().to_owned();
            s.push(".sig");
            s.into()
        };
        if let Some(signer) = signer {
            signer.sign(&db_tmp, &sig(&db_tmp))?;
            signer.sign(&files_tmp, &sig(&files_tmp))?;
        }
        let sigs = if signer.is_some() { Sigs::Made } else { Sigs::None };
        self.swap_in(&files_tmp, &files_db, &self.paths.file(".files"), sigs, &sig)?;
        kill_point("files-db-renamed");
        self.swap_in(&db_tmp, &db, &self.paths.file(".db"), sigs, &sig)?;
        kill_point("db-renamed");
        fsops::sync_dir(&self.paths.dir)
    }

    /// Puts one archive (and its signature) in place under both its names.
    fn swap_in(&self, tmp: &Path, target: &Path, short: &Path, sigs: Sigs, sig: &dyn Fn(&Path) -> PathBuf) -> Result<()> {
        // `NAME.db` is pacman's download name; it must be a real file, and
        // it is made before the rename so both names flip to new content
        // back to back.
        let short_tmp = fsops::temp_path(short);
        fsops::link_or_copy(tmp, &short_tmp)?;
        if sigs == Sigs::Made {
            fsops::link_or_copy(&sig(tmp), &sig(&short_tmp))?;
        }
        fsops::rename(tmp, target)?;
        fsops::rename(&short_tmp, short)?;
        if sigs == Sigs::Made {
            fsops::rename(&sig(tmp), &sig(target))?;
            fsops::rename(&sig(&short_tmp), &sig(short))?;
        } else {
            // A signature left from a signed run would not match any more.
            fsops::remove_if_exists(&sig(target))?;
            fsops::remove_if_exists(&sig(short))?;
        }
        Ok(())
    }

    /// Saves the stamps, tied to the files db just written.
    pub(crate) fn save_state(&self) -> Result<()> {
        let state = State { version: 1, files_db: Stamp::of(&self.paths.files_db()), stamps: self.stamps.clone() };
        let path = self.paths.state();
        let bytes = serde_json::to_vec(&state).map_err(|e| PublishError::io("serializing", &path)(e.into()))?;
        let tmp = fsops::write_temp(&path, &bytes)?;
        fsops::rename(&tmp, &path)
    }
}

/// Reads a db archive into entries, grouped by entry directory.
fn read_archive(path: &Path) -> Result<BTreeMap<String, Entry>> {
    let corrupt = |reason: String| PublishError::CorruptDb { path: path.to_owned(), reason };
    let file = fs::File::open(path).map_err(PublishError::io("opening", path))?;
    let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| corrupt(e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut raw: BTreeMap<String, (Option<String>, Option<Vec<u8>>)> = BTreeMap::new();
    for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some((dir, leaf)) = member.split_once('/') else { continue };
        let mut data = Vec::new();
        match leaf {
            "desc" | "files" => {
                entry.read_to_end(&mut data).map_err(|e| corrupt(e.to_string()))?;
            }
            _ => continue,
        }
        let slot = raw.entry(dir.to_owned()).or_default();
        if leaf == "desc" {
            slot.0 = Some(String::from_utf8(data).map_err(|_| corrupt(format!("{member} is not UTF-8")))?);
        } else {
            slot.1 = Some(data);
        }
    }
    let mut entries = BTreeMap::new();
    for (dir, (desc, files)) in raw {
        let desc = desc.ok_or_else(|| corrupt(format!("{dir}/ has no desc")))?;
        let summary = DescSummary::parse(&desc).map_err(|e| corrupt(format!("{dir}/desc: {e}")))?;
        entries.insert(summary.name.clone(), Entry { dir, summary, desc, files });
    }
    Ok(entries)
}

/// Builds a db archive: per entry a directory, its `desc` and, for the
/// files db, its `files`, like repo-add's `bsdtar -cf` of its temp dir.
fn build_archive(entries: &BTreeMap<String, Entry>, with_files: bool) -> std::io::Result<Vec<u8>> {
    // The members' time is the newest package's build date, not the clock:
    // the same entries make the same bytes, so a publish that changed
    // nothing sends nothing (S3 compares checksums) and mirrors see no new db.
    let mtime = newest_builddate(entries);
    let encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
    let mut builder = tar::Builder::new(encoder);
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        // Setting "root" cannot fail: it fits the field.
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        h
    };
    // pacman reads entries in any order; sort by directory name so the
    // output does not depend on hash order.
    let mut sorted: Vec<&Entry> = entries.values().collect();
    sorted.sort_by(|a, b| a.dir.cmp(&b.dir));
    for entry in sorted {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        builder.append_data(&mut h, format!("{}/", entry.dir), std::io::empty())?;
        if with_files && let Some(files) = &entry.files {
            let mut h = header(files.len() as u64, 0o644, tar::EntryType::Regular);
            builder.append_data(&mut h, format!("{}/files", entry.dir), &files[..])?;
        }
        let mut h = header(entry.desc.len() as u64, 0o644, tar::EntryType::Regular);
        builder.append_data(&mut h, format!("{}/desc", entry.dir), entry.desc.as_bytes())?;
    }
    builder.into_inner()?.finish()
}

/// The largest `%BUILDDATE%` of the entries' desc (0 when none has one).
fn newest_builddate(entries: &BTreeMap<String, Entry>) -> u64 {
    let date = |desc: &str| desc.split_once("%BUILDDATE%\n").and_then(|(_, rest)| rest.lines().next()?.trim().parse::<u64>().ok());
    entries.values().filter_map(|e| date(&e.desc)).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_entries_make_the_same_archive_dated_by_the_newest_build() {
        let entry = |name: &str, date: u64| {
            let desc = format!("%FILENAME%\n{name}-1-1-any.pkg.tar.zst\n\n%NAME%\n{name}\n\n%VERSION%\n1-1\n\n%CSIZE%\n10\n\n%SHA256SUM%\nab\n\n%BUILDDATE%\n{date}\n\n");
            Entry { dir: format!("{name}-1-1"), summary: DescSummary::parse(&desc).unwrap(), desc, files: None }
        };
        let entries: BTreeMap<String, Entry> = [("a".to_owned(), entry("a", 1700000000)), ("b".to_owned(), entry("b", 1700000500))].into();
        assert_eq!(newest_builddate(&entries), 1700000500);
        let first = build_archive(&entries, false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(build_archive(&entries, false).unwrap(), first, "a second later, the same bytes");
        let mut tar = tar::Archive::new(zstd::stream::read::Decoder::new(&first[..]).unwrap());
        for member in tar.entries().unwrap() {
            assert_eq!(member.unwrap().header().mtime().unwrap(), 1700000500);
        }
        assert_eq!(newest_builddate(&BTreeMap::new()), 0);
    }

    #[test]
    fn db_path_gives_dir_and_name() {
        let paths = DbPaths::from_db_path(Path::new("/srv/repo/my-repo.db.tar.zst")).unwrap();
        assert_eq!(paths.dir, Path::new("/srv/repo"));
        assert_eq!(paths.name.as_str(), "my-repo");
        assert_eq!(paths.files_db(), Path::new("/srv/repo/my-repo.files.tar.zst"));
        let bare = DbPaths::from_db_path(Path::new("x.db.tar.zst")).unwrap();
        assert_eq!(bare.dir, Path::new("."));
    }

    #[test]
    fn other_db_paths_are_refused() {
        for bad in ["x.db", "x.db.tar.gz", ".db.tar.zst", "a/.x.db.tar.zst"] {
            assert!(DbPaths::from_db_path(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_names_are_validated() {
        for good in ["core", "my-repo", "a_b.c", "x@y+z"] {
            assert!(RepoName::new(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "ä"] {
            assert!(RepoName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn archive_round_trips_entries() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DbPaths { dir: dir.path().to_owned(), name: RepoName::new("t").unwrap() };
        let desc = "%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n%CSIZE%\n10\n\n%SHA256SUM%\nab\n\n";
        let mut db = RepoDb { paths: paths.clone(), entries: BTreeMap::new(), stamps: HashMap::new() };
        db.entries.insert(
            "a".into(),
            Entry {
                dir: "a-1-1".into(),
                summary: DescSummary::parse(desc).unwrap(),
                desc: desc.into(),
                files: Some(b"%FILES%\nusr/\n".to_vec()),
            },
        );
        db.commit(None).unwrap();
        let loaded = RepoDb::load(paths.clone()).unwrap();
        let entry = &loaded.entries["a"];
        assert_eq!(entry.desc, desc);
        assert_eq!(entry.files.as_deref(), Some(&b"%FILES%\nusr/\n"[..]));
        // The short names are real files, not symlinks.
        let short = fs::symlink_metadata(dir.path().join("t.db")).unwrap();
        assert!(short.file_type().is_file());
    }
}
