//! The store's newest builds as publish inputs: for each wanted pkgbase, the
//! package files of its most recent build record, staged under their file
//! names (hard links to the store's objects) so that the publisher can read
//! and copy them like any package file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::store::{Record, Store, StoreError};

use super::PackageInput;

/// Why the store's builds could not be staged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FromStoreError {
    /// Reading the store failed.
    #[error("cannot read the store")]
    Store(#[from] StoreError),
    /// Nothing was built yet for any of the wanted pkgbases.
    #[error("the store holds no build of {0}: run `pkgcell build` first")]
    NothingBuilt(String),
    /// Staging a file failed.
    #[error("cannot stage {path:?} for publishing")]
    Stage {
        /// The staged path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The newest record of each pkgbase in `pkgbases` (by start time).
pub fn newest_records(store: &Store, pkgbases: &[String]) -> Result<Vec<Record>, FromStoreError> {
    let mut newest: BTreeMap<String, Record> = BTreeMap::new();
    for r in store.records()? {
        let base = r.pkgid.pkgbase().to_string();
        if !pkgbases.contains(&base) {
            continue;
        }
        match newest.get(&base) {
            Some(old) if old.started >= r.started => {}
            _ => {
                newest.insert(base, r);
            }
        }
    }
    if newest.is_empty() {
        return Err(FromStoreError::NothingBuilt(pkgbases.join(", ")));
    }
    Ok(newest.into_values().collect())
}

/// Stage the outputs of `records` in `stage` (created; on the store's file
/// system, so hard links work, else copies) and return them as inputs.
pub fn stage(store: &Store, records: &[Record], stage: &Path) -> Result<Vec<PackageInput>, FromStoreError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| FromStoreError::Stage { path, source }
    };
    std::fs::create_dir_all(stage).map_err(err(stage))?;
    let mut inputs = Vec::new();
    for r in records {
        for out in &r.outputs {
            if !out.name.ends_with(".pkg.tar.zst") {
                continue;
            }
            let dst = stage.join(&out.name);
            let src = store.object_path(&out.blake3);
            // A hard link shares the object's mode: only when others may read it.
            let world_readable = std::fs::metadata(&src)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o004 != 0)
                .unwrap_or(false);
            if !world_readable || std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).map_err(err(&dst))?;
                let perm = std::os::unix::fs::PermissionsExt::from_mode(0o644);
                std::fs::set_permissions(&dst, perm).map_err(err(&dst))?;
            }
            inputs.push(PackageInput::new(dst));
        }
    }
    Ok(inputs)
}
