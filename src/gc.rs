//! `pkgcell store gc` as one library call: every collection of a home in
//! the order that makes each one safe (records first, then what only the
//! dropped records needed), under the home's exclusive gc lock.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::base::BaseError;
use crate::build::BuildError;
use crate::config::Config;
use crate::error::IoPath;
use crate::fetch::{self, FetchError, PackageCacheGc, SourceCacheGc};
use crate::home::{GcMode, Home};
use crate::ids::BaseId;
use crate::leftovers::{self, LeftoversError, LeftoversGc};
use crate::store::{GcReport, Store, StoreError};

/// What a collection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Build records kept per pkgbase (at least 1).
    pub keep: usize,
    /// Logs of builds without a kept record, per pkgbase.
    pub keep_logs: usize,
    /// How old a `failed/` tree must be to go.
    pub failed_age: Duration,
}

/// What [`collect`] removed (with [`GcMode::DryRun`], would remove).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Records and objects of the store.
    pub store: GcReport,
    /// Dependency layers.
    pub layers: usize,
    /// Bytes of those layers.
    pub layer_bytes: u64,
    /// Bases no kept record ran on (and not the newest of their source).
    pub bases: Vec<BaseId>,
    /// The shared package cache.
    pub packages: PackageCacheGc,
    /// The source cache.
    pub sources: SourceCacheGc,
    /// Logs, `failed/` trees and what killed runs left in `tmp/`.
    pub leftovers: LeftoversGc,
}

/// A collection that stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The gc lock could not be taken.
    #[error(transparent)]
    Lock(#[from] IoPath),
    /// Reading or changing the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Collecting dependency layers.
    #[error(transparent)]
    Layers(#[from] BuildError),
    /// Collecting bases.
    #[error(transparent)]
    Bases(#[from] BaseError),
    /// Collecting the package or source cache.
    #[error(transparent)]
    Caches(#[from] FetchError),
    /// Collecting logs, failed trees, scratch leftovers.
    #[error(transparent)]
    Leftovers(#[from] LeftoversError),
}

/// Collect `home`: drop all but the `rules.keep` newest records per pkgbase,
/// then every object, dependency layer, base, cached package and cached
/// source that no kept record needs (sources the `config`'s PKGBUILDs need
/// stay too), then old logs, `failed/` trees and leftovers of killed runs.
///
/// Takes the exclusive gc lock first (calling `on_wait` if a build holds
/// it): a running build's downloads, layer and sources have no record yet
/// and would look unneeded, and its scratch directories like a killed run's.
pub fn collect(
    home: &Home,
    rules: &Rules,
    config: Option<&Config>,
    mode: GcMode,
    on_wait: impl FnOnce(),
) -> Result<Report, GcError> {
    let _alone = home.gc_lock(on_wait)?;
    let store = Store::at(home.store());
    let report = store.gc(rules.keep.max(1), &BTreeSet::new(), mode)?;
    // What stays (in a dry run, what would stay).
    let dropped: BTreeSet<&str> = report.records.iter().map(String::as_str).collect();
    let kept: Vec<_> =
        store.records()?.into_iter().filter(|r| !dropped.contains(r.pkgid.to_string().as_str())).collect();
    let (layers, layer_bytes) = crate::build::gc_layers(home, &kept, mode)?;
    let used: BTreeSet<BaseId> = kept.iter().map(|r| r.base_id).collect();
    let bases = crate::base::gc(home, &used, mode)?;
    let needed: BTreeSet<String> = kept.iter().flat_map(|r| r.cached_packages()).map(str::to_owned).collect();
    let packages = fetch::gc_package_cache(home, &needed, fetch::PARTIAL_DOWNLOAD_MAX_AGE, mode)?;
    // Same grace as the package cache's partial downloads: an entry used
    // that recently may belong to a build that has no record yet.
    let mut needed_sources = fetch::needed_sources(home, &kept);
    if let Some(config) = config {
        fetch::add_needed_by_config(&mut needed_sources, home, config);
    }
    let sources = fetch::gc_source_cache(home, &needed_sources, fetch::PARTIAL_DOWNLOAD_MAX_AGE, mode)?;
    let kept_ids: BTreeSet<_> = kept.iter().map(|r| r.pkgid.clone()).collect();
    let left_rules = leftovers::Rules { keep_logs: rules.keep_logs, failed_age: rules.failed_age };
    let leftovers = leftovers::gc(home, &kept_ids, &left_rules, mode)?;
    Ok(Report { store: report, layers, layer_bytes, bases, packages, sources, leftovers })
}
