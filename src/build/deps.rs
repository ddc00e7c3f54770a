//! The dependency set of a build: the package files it installs, from the
//! store (packages of other entries, `-I` files) and from repositories (in
//! the shared package cache), and the [`crate::store::Record::deps`] lines
//! that name them.

use std::fs;
use std::path::PathBuf;


use crate::error::io_err;
use crate::fetch::Fetcher;
use crate::home::Home;
use crate::ids::Blake3;
use crate::local::LocalPackage;
use crate::plan::{Install, InstallFrom, Plan};
use crate::store::{DepRef, DepRefError, Output, Store};

use super::BuildError;
use crate::alpm_file::{pkgname_of, version_of};

/// A package file the dependency layer installs.
#[derive(Debug, Clone)]
pub(super) struct DepFile {
    /// Its pkgname.
    pub(super) pkgname: String,
    /// Its version, as its pacman database entry must say.
    pub(super) version: String,
    /// Its file name (pacman -U reads the format from it).
    pub(super) filename: String,
    /// Where it is.
    pub(super) src: PathBuf,
    /// The SHA-256 its copy must have (files of a repository database).
    pub(super) sha256: Option<String>,
    /// How [`crate::store::Record::deps`] names it.
    pub(super) line: DepRef,
}

impl DepFile {
    /// A package file of the store.
    pub(super) fn of_store(store: &Store, pkgname: &str, o: &Output) -> Result<DepFile, DepRefError> {
        Ok(DepFile {
            pkgname: pkgname.to_owned(),
            version: version_of(&o.name).unwrap_or_default(),
            filename: o.name.clone(),
            src: store.object_path(&o.blake3),
            sha256: None,
            line: format!("{pkgname} {}", o.blake3).parse()?,
        })
    }

    /// A package file of a repository, in the shared package cache.
    pub(super) fn of_cache(home: &Home, pkgname: &str, version: &str, filename: &str, sha256: &str) -> Result<DepFile, DepRefError> {
        Ok(DepFile {
            pkgname: pkgname.to_owned(),
            version: version.to_owned(),
            filename: filename.to_owned(),
            src: home.package_cache().join(filename),
            sha256: Some(sha256.to_owned()),
            line: format!("{pkgname} sha256:{sha256} {filename}").parse()?,
        })
    }
}

/// The package files of repositories that `packages` installs, fetched
/// into the shared package cache ([`Fetcher::fetch_packages`]).
pub(super) fn fetch_repo_deps(fetcher: &Fetcher, home: &Home, packages: &[Install]) -> Result<Vec<DepFile>, BuildError> {
    let mut out = Vec::new();
    for (i, _) in fetcher.fetch_packages(packages)? {
        let p = &packages[i];
        if let InstallFrom::Sync { filename, sha256, .. } | InstallFrom::Repo { filename, sha256, .. } = &p.from {
            out.push(DepFile::of_cache(home, &p.name, &p.version, filename, sha256)?);
        }
    }
    Ok(out)
}

/// The dependency set a build of the planned entry `name` would install
/// now, as [`crate::store::Record::deps`] names it (sorted): the packages of the entries it
/// needs, from their records in the store, and those of repositories.
pub fn dep_lines(plan: &Plan, name: &str, store: &Store) -> Result<Vec<DepRef>, BuildError> {
    let p = plan.packages.iter().find(|p| p.name == name).ok_or_else(|| BuildError::NotPlanned(name.to_owned()))?;
    let mut lines = Vec::new();
    for crate::plan::BuiltDep { entry, pkgname } in &p.built_deps {
        let missing = || BuildError::MissingDependency { entry: entry.clone(), pkgname: pkgname.clone() };
        let id = plan.packages.iter().find(|q| q.name == *entry).and_then(|q| q.pkgid.as_ref()).ok_or_else(missing)?;
        let rec = store.record(id)?.ok_or_else(missing)?;
        let out = rec.outputs.iter().find(|o| pkgname_of(&o.name).as_deref() == Some(pkgname.as_str())).ok_or_else(missing)?;
        lines.push(format!("{pkgname} {}", out.blake3).parse()?);
    }
    for i in &p.installs {
        if let InstallFrom::Sync { filename, sha256, .. } | InstallFrom::Repo { filename, sha256, .. } = &i.from {
            lines.push(format!("{} sha256:{sha256} {filename}", i.name).parse()?);
        }
    }
    lines.sort();
    Ok(lines)
}

/// The package files a record names: those of the store found by hash
/// among the outputs of the store's records, those of repositories in the
/// shared package cache.
pub(super) fn dep_files_of_lines(home: &Home, store: &Store, deps: &[DepRef]) -> Result<Vec<DepFile>, BuildError> {
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let records = store.records()?;
    let mut out = Vec::new();
    for dep in deps {
        let missing = || BuildError::MissingDependencyFile { dep: dep.clone() };
        let pkgname = dep.name().to_string();
        match dep {
            DepRef::Repo { sha256, filename, .. } => {
                let version = version_of(filename).unwrap_or_default();
                let d = DepFile::of_cache(home, &pkgname, &version, filename, &sha256.to_string())?;
                if !d.src.is_file() || filename.contains('/') {
                    return Err(missing());
                }
                out.push(d);
            }
            DepRef::Store { blake3, .. } => {
                let found = records.iter().flat_map(|r| &r.outputs).find(|o| o.blake3 == *blake3 && store.object_path(&o.blake3).exists());
                out.push(DepFile::of_store(store, &pkgname, found.ok_or_else(missing)?)?);
            }
        }
    }
    out.sort_by(|a, b| a.line.cmp(&b.line));
    Ok(out)
}

/// Put each `-I` file into the store as an object (read once: one already
/// there is left alone), so that a record naming it is self-contained and
/// `pkgcell repro` can install the very same file again. The file must
/// still have the hash it was read with: that hash is in the pkgid.
pub fn store_local(store: &Store, local: &[LocalPackage]) -> Result<(), BuildError> {
    for l in local {
        if store.object_path(&l.blake3).is_file() {
            continue;
        }
        let data = fs::read(&l.path).map_err(io_err("read", &l.path))?;
        let found = Blake3::of(&data);
        if found != l.blake3 {
            return Err(BuildError::LocalChanged { path: l.path.clone(), expected: l.blake3, found });
        }
        store.put_bytes(&data)?;
    }
    Ok(())
}
