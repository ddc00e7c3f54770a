//! Mirror a published repository directory (`DIR/ARCH/`, made by
//! [`Publisher`](super::Publisher)) to an S3 prefix, in the order that keeps
//! the bucket a working pacman repository at every moment:
//!
//! 1. list the prefix once (sizes and ETags);
//! 2. upload the new or changed package files and their signatures; a
//!    file is unchanged when its size and MD5 equal the object's size and
//!    ETag (the ETag of a plain PUT is the MD5 of its content), so nothing
//!    is downloaded to compare;
//! 3. upload the databases: files db before package db, each db before its
//!    signature, as the local publish renames them;
//! 4. delete the objects the directory no longer has.
//!
//! A reader between any two steps sees an old or a new db, and either
//! names only objects that exist. S3 has no symlinks and pkgcell writes
//! none: `NAME.db` is an object of its own with the content of
//! `NAME.db.tar.zst`. The `latest/` and `updated/` views are not uploaded
//! (they would double the upload; see docs/s3.md).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};
use serde::Serialize;

use super::fsops::kill_point;
use super::repo::RepoName;
use crate::error::{IoPath, io_err};
use crate::s3::{S3Client, S3Error, S3Url};

/// What an upload did, in the order it did it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UploadReport {
    /// Where to: `s3://BUCKET/PREFIX/ARCH`.
    pub target: String,
    /// Each request that changed the bucket, in order: `PUT key` or `DELETE key`.
    pub operations: Vec<String>,
    /// How many objects were sent.
    pub puts: usize,
    /// How many objects were deleted.
    pub deletes: usize,
    /// Files already in the bucket with the same size and MD5.
    pub unchanged: usize,
    /// Bytes sent.
    pub bytes: u64,
}

/// Whether a file of the repository directory is a database (uploaded
/// last) or something a database names (uploaded first).
fn is_db_file(repo: &RepoName, name: &str) -> bool {
    let base = name.strip_suffix(".sig").unwrap_or(name);
    let r = repo.as_str();
    [".db", ".db.tar.zst", ".files", ".files.tar.zst"].iter().any(|s| base == format!("{r}{s}"))
}

/// The order of the dbs: files db first (pacman -Fy reads it, -Sy does not),
/// package db last, each followed by its signature.
fn db_rank(repo: &RepoName, name: &str) -> usize {
    let r = repo.as_str();
    let order = [".files.tar.zst", ".files", ".db.tar.zst", ".db"];
    let base = name.strip_suffix(".sig").unwrap_or(name);
    let i = order.iter().position(|s| base == format!("{r}{s}")).unwrap_or(0);
    2 * i + usize::from(name.ends_with(".sig"))
}

/// Mirror `arch_dir` to `dest` (the prefix that gets `ARCH/`'s files).
#[tracing::instrument(skip_all, fields(dir = %arch_dir.display(), %dest))]
pub fn upload(client: &S3Client, arch_dir: &Path, dest: &S3Url, repo: &RepoName) -> Result<UploadReport, S3Error> {
    let mut report = UploadReport { target: dest.to_string(), ..UploadReport::default() };
    let list_prefix = dest.key("");
    let remote: BTreeMap<String, (u64, String)> =
        client.list(&list_prefix)?.into_iter().map(|o| (o.key, (o.size, o.etag))).collect();
    tracing::debug!(objects = remote.len(), prefix = %list_prefix, "listed");
    // Not every server lists ETags (s3s-fs does not); our own record of the
    // MD5s we sent stands in for them, for objects whose size still matches.
    let manifest_key = dest.key(MANIFEST);
    let manifest: BTreeMap<String, (u64, String)> = match client.get(&manifest_key)? {
        Some(mut r) => {
            let mut text = String::new();
            r.read_to_string(&mut text).map_err(|source| IoPath::new("read", manifest_key.clone(), source))?;
            serde_json::from_str::<Manifest>(&text).map(|m| m.files).unwrap_or_default()
        }
        None => BTreeMap::new(),
    };
    let mut sent: BTreeMap<String, (u64, String)> = BTreeMap::new();

    // Top-level regular files only: hidden ones are the lock, the state and
    // temporaries; directories are the views.
    let mut local: Vec<(String, u64)> = Vec::new();
    let rd = std::fs::read_dir(arch_dir).map_err(io_err("list", arch_dir))?;
    for e in rd {
        let e = e.map_err(io_err("list", arch_dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Followed: an input given as a symlink may be linked in as one.
        let meta = std::fs::metadata(e.path()).map_err(io_err("stat", &e.path()))?;
        if name.starts_with('.') || !meta.is_file() {
            continue;
        }
        local.push((name, meta.len()));
    }
    local.sort();
    let (mut dbs, files): (Vec<_>, Vec<_>) = local.iter().partition(|(n, _)| is_db_file(repo, n));
    dbs.sort_by_key(|(n, _)| db_rank(repo, n));

    let send = |name: &str, size: u64, report: &mut UploadReport, sent: &mut BTreeMap<String, (u64, String)>| -> Result<(), S3Error> {
        let key = dest.key(name);
        let path = arch_dir.join(name);
        let md5 = md5_hex(&path)?;
        let known = match remote.get(&key) {
            Some((rsize, etag)) if *rsize == size && is_plain_md5(etag) => Some(etag.to_ascii_lowercase()),
            Some((rsize, _)) if *rsize == size => manifest.get(name).filter(|(s, _)| *s == size).map(|(_, m)| m.clone()),
            Some(_) | None => None,
        };
        sent.insert(name.to_owned(), (size, md5.clone()));
        if known.as_deref() == Some(md5.as_str()) {
            report.unchanged += 1;
            return Ok(());
        }
        client.put_file(&key, &path)?;
        tracing::debug!(%key, size, "uploaded");
        report.operations.push(format!("PUT {key}"));
        report.puts += 1;
        report.bytes += size;
        Ok(())
    };
    for (name, size) in &files {
        send(name, *size, &mut report, &mut sent)?;
    }
    // Everything the new db names is in the bucket now. Record it, so that a
    // run that dies before the end does not make the next one send it again.
    let mut checkpoint = manifest.clone();
    checkpoint.extend(sent.iter().map(|(k, v)| (k.clone(), v.clone())));
    put_manifest(client, &manifest_key, checkpoint)?;
    kill_point("s3-packages-uploaded");
    for (name, size) in &dbs {
        send(name, *size, &mut report, &mut sent)?;
    }
    kill_point("s3-dbs-uploaded");
    // Only now can old files go: no db in the bucket names them any more.
    for key in remote.keys() {
        let Some(rel) = key.strip_prefix(&list_prefix) else { continue };
        // Objects below ARCH/ (another tool's, or an old view) are not ours.
        if rel.contains('/') || rel == MANIFEST || local.iter().any(|(n, _)| n == rel) {
            continue;
        }
        client.delete(key)?;
        report.operations.push(format!("DELETE {key}"));
        report.deletes += 1;
    }
    put_manifest(client, &manifest_key, sent)?;
    Ok(report)
}

fn put_manifest(client: &S3Client, key: &str, files: BTreeMap<String, (u64, String)>) -> Result<(), S3Error> {
    let data = serde_json::to_vec(&Manifest { files }).expect("a manifest serializes");
    client.put_bytes(key, &data)
}

/// The name of the object that records what was sent (hidden: pacman never
/// asks for it).
const MANIFEST: &str = ".pkgcell-upload.json";

/// `MANIFEST`: file name → (size, MD5) of what the last upload left in the bucket.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Manifest {
    files: BTreeMap<String, (u64, String)>,
}

/// A single-part upload's ETag is 32 hex digits; a multipart one ends in
/// `-N`, and with SSE-KMS it is not the MD5: then the file is sent again.
fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

fn md5_hex(path: &Path) -> Result<String, S3Error> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbs_are_told_from_packages_and_ordered_package_db_last() {
        let repo = RepoName::new("core").unwrap();
        for db in ["core.db", "core.db.sig", "core.files.tar.zst", "core.db.tar.zst.sig"] {
            assert!(is_db_file(&repo, db), "{db}");
        }
        for pkg in ["core.db-1-1-any.pkg.tar.zst", "core-1-1-any.pkg.tar.zst.sig", "other.db"] {
            assert!(!is_db_file(&repo, pkg), "{pkg}");
        }
        let mut dbs = vec!["core.db", "core.db.sig", "core.db.tar.zst", "core.files", "core.files.tar.zst.sig", "core.files.tar.zst"];
        dbs.sort_by_key(|n| db_rank(&repo, n));
        assert_eq!(dbs, ["core.files.tar.zst", "core.files.tar.zst.sig", "core.files", "core.db.tar.zst", "core.db", "core.db.sig"]);
    }

    #[test]
    fn only_plain_etags_count_as_md5() {
        assert!(is_plain_md5("d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!is_plain_md5("d41d8cd98f00b204e9800998ecf8427e-2"));
        assert!(!is_plain_md5(""));
    }
}
