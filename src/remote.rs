//! A remote store on S3 (`[store] remote = "s3://BUCKET/PREFIX"`), shared by
//! several machines: the same layout as the local store's objects and
//! records, as keys:
//!
//! - `PREFIX/objects/ab/cdef…`: each output and log once, by BLAKE3;
//! - `PREFIX/records/<pkgid>.json`: the build record, uploaded last.
//!
//! Before a pkgid is built, [`RemoteStore::fetch`] looks for its record and
//! downloads the objects it names into the local store, checking each
//! one's BLAKE3 against the record, then writes the record locally. After a
//! build, [`RemoteStore::upload`] sends the objects the bucket lacks, then
//! the record. No conditional writes are needed: objects are named by
//! their content, so two uploads of one object write the same bytes, and a
//! record is only uploaded once every object it names is there. Two
//! machines racing on one pkgid both build it and the last record wins;
//! each is whole.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Mutex;

use crate::error::IoPath;
use crate::ids::{Blake3, PkgId};
use crate::s3::{S3Client, S3Error, S3Settings, S3Url};
use crate::store::{RECORD_VERSION, Record, Store, StoreError};

/// A remote store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The S3 request failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// The local store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record in the bucket is not a record of the pkgid it is named after.
    #[error("the record {key} in the remote store is damaged: {why}")]
    BadRecord {
        /// Its key (`s3://BUCKET/…`).
        key: String,
        /// What is wrong.
        why: String,
    },
    /// An object's content does not match its name.
    #[error("the object {key} in the remote store is damaged: its BLAKE3 is {found}")]
    Corrupt {
        /// Its key (`s3://BUCKET/…`).
        key: String,
        /// The hash it should have.
        expected: Blake3,
        /// The hash it has.
        found: Blake3,
    },
    /// An object a record names is not there.
    #[error("the remote store's record of {pkgid} names {key}, which is missing")]
    MissingObject {
        /// The record's pkgid.
        pkgid: PkgId,
        /// The missing key.
        key: String,
    },
}

impl RemoteError {
    /// Whether the remote store's content is bad (build locally instead),
    /// as opposed to the store being unreachable or refusing us.
    pub fn is_damage(&self) -> bool {
        match self {
            RemoteError::BadRecord { .. } | RemoteError::Corrupt { .. } | RemoteError::MissingObject { .. } => true,
            RemoteError::S3(_) | RemoteError::Store(_) => false,
        }
    }
}

/// What an upload sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Objects sent.
    pub sent: usize,
    /// Objects already there.
    pub skipped: usize,
}

/// A remote store.
#[derive(Debug)]
pub struct RemoteStore {
    client: S3Client,
    url: S3Url,
    // Objects found damaged: uploaded again even though a key exists.
    damaged: Mutex<BTreeSet<Blake3>>,
}

impl RemoteStore {
    /// The remote store at `url`. Sends nothing yet.
    pub fn new(url: S3Url, settings: &S3Settings) -> Result<RemoteStore, S3Error> {
        Ok(RemoteStore { client: S3Client::new(&url, settings)?, url, damaged: Mutex::new(BTreeSet::new()) })
    }

    /// Its location.
    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// Check that the bucket answers and takes our credentials (one listing
    /// of at most one record), so that a bad endpoint stops a run before
    /// any build.
    pub fn probe(&self) -> Result<(), S3Error> {
        self.client.probe(&self.url.key("records/"))
    }

    fn record_key(&self, id: &PkgId) -> String {
        self.url.key(&format!("records/{id}.json"))
    }

    fn object_key(&self, h: &Blake3) -> String {
        let hex = h.to_string();
        self.url.key(&format!("objects/{}/{}", &hex[..2], &hex[2..]))
    }

    fn show(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.url.bucket())
    }

    /// Whether the bucket holds the record of `id`.
    pub fn has_record(&self, id: &PkgId) -> Result<bool, RemoteError> {
        Ok(self.client.head(&self.record_key(id))?.is_some())
    }

    /// Download the build of `id` into `store` when the bucket has it: the
    /// objects first (each checked against the record's BLAKE3), the local
    /// record last. `None` when the bucket has no record of `id`.
    #[tracing::instrument(skip_all, fields(%id))]
    pub fn fetch(&self, id: &PkgId, store: &Store) -> Result<Option<Record>, RemoteError> {
        let key = self.record_key(id);
        let Some(mut reader) = self.client.get(&key)? else { return Ok(None) };
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(|e| RemoteError::BadRecord { key: self.show(&key), why: format!("cannot read it: {e}") })?;
        let record: Record = serde_json::from_slice(&data)
            .map_err(|e| RemoteError::BadRecord { key: self.show(&key), why: e.to_string() })?;
        if &record.pkgid != id || record.version != RECORD_VERSION {
            return Err(RemoteError::BadRecord {
                key: self.show(&key),
                why: format!("it is a version {} record of {}", record.version, record.pkgid),
            });
        }
        for h in record.objects() {
            if store.object_path(&h).exists() {
                continue;
            }
            let okey = self.object_key(&h);
            let Some(mut r) = self.client.get(&okey)? else {
                return Err(RemoteError::MissingObject { pkgid: id.clone(), key: self.show(&okey) });
            };
            if let Err(found) = store.put_reader_expecting(&mut r, &h)? {
                self.damaged.lock().expect("not poisoned").insert(h);
                return Err(RemoteError::Corrupt { key: self.show(&okey), expected: h, found });
            }
        }
        // The -I files are not downloaded: a build that asks for this
        // pkgid was given them (they are in the pkgid) and has stored them.
        store.put_record(&record)?;
        tracing::info!(remote = %self.url, "downloaded from the remote store");
        Ok(Some(record))
    }

    /// Upload the objects of `record` the bucket lacks (or has damaged),
    /// then the record.
    #[tracing::instrument(skip_all, fields(pkgid = %record.pkgid))]
    pub fn upload(&self, record: &Record, store: &Store) -> Result<UploadStats, RemoteError> {
        let mut stats = UploadStats::default();
        // The -I files the store has go too (a record made before the
        // build stored them has none).
        let local = record.local_files().map(|(_, h)| h).filter(|h| store.object_path(h).is_file());
        for h in record.objects().chain(local) {
            let key = self.object_key(&h);
            let damaged = self.damaged.lock().expect("not poisoned").contains(&h);
            let path = store.object_path(&h);
            let size = std::fs::metadata(&path)
                .map_err(|source| StoreError::Io(IoPath::new("stat", path.clone(), source)))?
                .len();
            if !damaged && self.client.head(&key)? == Some(size) {
                stats.skipped += 1;
                continue;
            }
            self.client.put_file(&key, &path)?;
            self.damaged.lock().expect("not poisoned").remove(&h);
            stats.sent += 1;
        }
        // Last: a record in the bucket names only objects already there.
        let data = serde_json::to_vec_pretty(record).expect("records serialize");
        self.client.put_bytes(&self.record_key(&record.pkgid), &data)?;
        tracing::info!(remote = %self.url, sent = stats.sent, skipped = stats.skipped, "uploaded to the remote store");
        Ok(stats)
    }
}
