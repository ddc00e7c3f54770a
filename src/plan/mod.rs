//! Plan: what would be built, why, and in which order, without building.
//!
//! Input: the synced sources ([`crate::sync::Synced`]) and the base. Steps:
//! tree-id per source ([`treeid`]); .SRCINFO per tree, sourced in the
//! sandbox and cached by tree-id ([`srcinfo`]); the .SRCINFO read with
//! alpm-srcinfo; dependencies resolved against the base and the other
//! PKGBUILDs ([`deps`]); then a DAG in waves (a wave's packages only need
//! earlier waves) and a pkgid per package, whose dephash covers the
//! dependencies a build would install. A problem with one package (a broken
//! PKGBUILD, a missing dependency, a cycle) is reported for that package and
//! those that need it; the others are still planned.

pub mod deps;
pub mod repodb;
pub mod srcinfo;
pub mod treeid;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alpm_srcinfo::{MergedPackage, SourceInfoV1};
use alpm_types::{Architecture, Architectures, Name, RelationOrSoname, SystemArchitecture};
use serde::Serialize;

use crate::config::{Config, DephashMode, PkgbuildEntry};
use crate::error::error_chain;
use crate::home::Home;
use crate::ids::{DepHash, PkgId, TreeId};
use crate::local::LocalPackage;
use crate::sync::{Checkout, SyncError, Synced};
use deps::{Origin, Provider};
use srcinfo::{ParseJob, Parser, TreeSource};

pub use srcinfo::{PkgbuildError, Srcinfo, SrcinfoError};

/// Version of the `--json` form of [`Plan`].
pub const PLAN_JSON_VERSION: u32 = 1;

/// A plan that could not be made at all (as opposed to one package failing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Parsing could not run.
    #[error(transparent)]
    Srcinfo(#[from] SrcinfoError),
    /// The base's package database could not be read.
    #[error(transparent)]
    Db(#[from] deps::DbError),
    /// A repository database (sync or own) could not be read.
    #[error(transparent)]
    RepoDb(#[from] repodb::RepoDbError),
}

/// Settings of a plan run.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The base root file system (parsing runs in it, its packages are installed).
    pub base: PathBuf,
    /// The state directory.
    pub home: Home,
    /// Time limit for sourcing one PKGBUILD.
    pub parse_timeout: Duration,
    /// Package files installed into every build (`-I`): providers, and part
    /// of every dephash.
    pub local: Vec<LocalPackage>,
}

/// The plan: one entry per `[pkgbuilds]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// [`PLAN_JSON_VERSION`].
    pub version: u32,
    /// The architecture planned for.
    pub arch: String,
    /// What the dephashes cover.
    pub dephash: DephashMode,
    /// Trees sourced in the sandbox in this run.
    pub parsed: usize,
    /// Trees answered from the cache.
    pub cached: usize,
    /// The packages, in config order.
    pub packages: Vec<PlannedPackage>,
}

/// A package of another entry that a build installs: built first, taken
/// from that entry's record in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltDep {
    /// The `[pkgbuilds]` entry that builds it.
    pub entry: String,
    /// The package (one of the entry's pkgnames).
    pub pkgname: String,
}

/// One planned PKGBUILD.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPackage {
    /// The `[pkgbuilds]` key.
    pub name: String,
    /// Where it comes from.
    pub source: SourceRef,
    /// Its tree-id, once known.
    pub tree_id: Option<TreeId>,
    /// Its pkgbase, once parsed.
    pub pkgbase: Option<String>,
    /// The full version the PKGBUILD states (`[epoch:]pkgver-pkgrel`).
    pub pkgver: Option<String>,
    /// Whether it has a `pkgver()` function: the version shown is the one
    /// written in the PKGBUILD; the built one is only known after fetching.
    pub pkgver_func: bool,
    /// The package names it builds.
    pub pkgnames: Vec<String>,
    /// The `[pkgbuilds]` entries that must be built before it.
    pub after: Vec<String>,
    /// Its wave: 0 needs nothing else of the config, wave n needs only waves < n.
    pub wave: Option<usize>,
    /// Its pkgid.
    pub pkgid: Option<PkgId>,
    /// What happens to it.
    pub status: Status,
    /// Where its tree is, for the build stage (not part of the JSON).
    #[serde(skip)]
    pub checkout: Option<Checkout>,
    /// Its .SRCINFO text, for the fetch stage (not part of the JSON).
    #[serde(skip)]
    pub srcinfo: Option<String>,
    /// Packages of other entries its build installs, for the build stage
    /// (not part of the JSON).
    #[serde(skip)]
    pub built_deps: Vec<BuiltDep>,
    /// Every package its build installs (depends, makedepends and
    /// checkdepends, transitively), by name, with where it comes from.
    pub installs: Vec<Install>,
}

/// A package a build installs, and where from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Install {
    /// Its name.
    pub name: String,
    /// Its version (for a config PKGBUILD, the one it states).
    pub version: String,
    /// Where it comes from.
    pub from: InstallFrom,
}

/// Where an installed package comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InstallFrom {
    /// Already installed in the base: nothing to do.
    Base,
    /// A package file given with `-I` (installed into every build).
    Local {
        /// The file.
        path: PathBuf,
    },
    /// Built from this `[pkgbuilds]` entry (its package file in the store).
    Pkgbuild {
        /// The entry.
        entry: String,
    },
    /// pkgcell's own published repository.
    Repo {
        /// The repository name.
        repo: String,
        /// The directory holding its db and package files.
        dir: PathBuf,
        /// The package file.
        filename: String,
        /// Its SHA-256, from the db.
        sha256: String,
    },
    /// A sync repository of the base.
    Sync {
        /// The repository name.
        repo: String,
        /// Its servers (pacman.conf order).
        servers: Vec<String>,
        /// The package file.
        filename: String,
        /// Its SHA-256, from the db.
        sha256: String,
    },
}

/// Where a PKGBUILD comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceRef {
    /// A git source at a commit.
    Git {
        /// The URL.
        url: String,
        /// The synced commit, when sync worked.
        commit: Option<String>,
        /// The subtree.
        subtree: Option<PathBuf>,
    },
    /// A directory.
    Path {
        /// The directory.
        path: PathBuf,
    },
}

/// What plan decided for a package.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Status {
    /// It would be built.
    ToBuild,
    /// It cannot be built because entries it needs failed.
    Blocked {
        /// The failed entries it needs, directly or not.
        by: Vec<String>,
    },
    /// Its `arch` does not include the repository's architecture: it is
    /// left out, which is not a failure (makepkg would refuse to build it).
    NotForArch {
        /// The architectures it is built for.
        archs: Vec<String>,
    },
    /// It failed to plan. In the JSON: `"stage"` ([`EntryError::stage`])
    /// and `"message"` (the error and its causes on one line).
    Error(EntryError),
}

/// The step of planning an entry failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Syncing its source.
    Sync,
    /// Computing its tree-id.
    TreeId,
    /// Sourcing its PKGBUILD and reading the .SRCINFO.
    Parse,
    /// Resolving its dependencies.
    Deps,
    /// Ordering: it is on a dependency cycle.
    Cycle,
}

impl Stage {
    /// The name `--json` and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Sync => "sync",
            Stage::TreeId => "tree-id",
            Stage::Parse => "parse",
            Stage::Deps => "deps",
            Stage::Cycle => "cycle",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one entry could not be planned (the others still are). Each cause
/// belongs to one [`Stage`]; the stage modules' own errors are kept whole
/// (their causes as sources), behind an `Arc` because a plan is `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Its source could not be synced.
    #[error(transparent)]
    Sync(Arc<SyncError>),
    /// Its tree-id could not be computed.
    #[error(transparent)]
    TreeId(Arc<treeid::TreeIdError>),
    /// Its PKGBUILD gave no usable .SRCINFO.
    #[error(transparent)]
    Pkgbuild(PkgbuildError),
    /// An earlier entry builds the same pkgbase.
    #[error("pkgbase {pkgbase} is also built by entry {entry}")]
    DuplicatePkgbase {
        /// The pkgbase.
        pkgbase: String,
        /// The earlier entry.
        entry: String,
    },
    /// A dependency nothing provides.
    #[error(transparent)]
    Unresolved(Unresolved),
    /// It is on a dependency cycle.
    #[error("dependency cycle: {} → {}", .entries.join(" → "), .entries[0])]
    Cycle {
        /// The entries of the cycle, in order (each needs the next, the last
        /// the first); never empty.
        entries: Vec<String>,
    },
}

impl EntryError {
    /// The step it failed in.
    pub fn stage(&self) -> Stage {
        match self {
            EntryError::Sync(_) => Stage::Sync,
            EntryError::TreeId(_) => Stage::TreeId,
            EntryError::Pkgbuild(_) | EntryError::DuplicatePkgbase { .. } => Stage::Parse,
            EntryError::Unresolved(_) => Stage::Deps,
            EntryError::Cycle { .. } => Stage::Cycle,
        }
    }
}

/// `{"stage": ..., "message": ...}`: what `--json` has always printed, the
/// message with every cause.
impl Serialize for EntryError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("EntryError", 2)?;
        st.serialize_field("stage", &self.stage())?;
        st.serialize_field("message", &error_chain(self))?;
        st.end()
    }
}

/// A dependency nothing provides, and the chain of packages that led to it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("nothing provides {dep}{}", needed_by(.chain))]
pub struct Unresolved {
    /// The dependency.
    pub dep: RelationOrSoname,
    /// The packages that led to it, from the entry's own dependency on;
    /// empty when the entry itself depends on it.
    pub chain: Vec<String>,
}

fn needed_by(chain: &[String]) -> String {
    if chain.is_empty() { String::new() } else { format!(" (needed by {})", chain.join(" → ")) }
}

impl Plan {
    /// Whether some package failed to plan (exit code 1).
    pub fn has_failures(&self) -> bool {
        self.packages.iter().any(|p| !matches!(p.status, Status::ToBuild | Status::NotForArch { .. }))
    }
}

/// A package that parsed, with what resolution needs.
struct Node {
    pkgbase: Name,
    tree_id: TreeId,
    /// Packages it builds, merged for the planned architecture.
    packages: Vec<MergedPackage>,
    depends: Vec<RelationOrSoname>,
    makedepends: Vec<RelationOrSoname>,
    checkdepends: Vec<RelationOrSoname>,
}

/// Make the plan for the synced entries of `config`.
#[tracing::instrument(skip_all)]
pub fn plan(config: &Config, synced: Vec<Synced>, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let arch = config.repo.arch.clone();
    let mut out: Vec<PlannedPackage> = Vec::new();
    let mut jobs: Vec<(usize, ParseJob)> = Vec::new();
    let mut index = treeid::StatIndex::load(&opts.home.tree_index());
    for (s, entry) in synced.into_iter().zip(&config.pkgbuilds) {
        let mut p = PlannedPackage {
            name: s.name.to_string(),
            source: source_ref(entry, s.checkout.as_ref().ok()),
            tree_id: None,
            pkgbase: None,
            pkgver: None,
            pkgver_func: false,
            pkgnames: Vec::new(),
            after: Vec::new(),
            wave: None,
            pkgid: None,
            status: Status::ToBuild,
            checkout: s.checkout.as_ref().ok().cloned(),
            srcinfo: None,
            built_deps: Vec::new(),
            installs: Vec::new(),
        };
        let tree = match s.checkout {
            Err(e) => Err(EntryError::Sync(Arc::new(e))),
            Ok(Checkout::Dir { dir }) => index
                .of_dir(&dir)
                .map(|t| (t, TreeSource::Dir(dir)))
                .map_err(|e| EntryError::TreeId(Arc::new(e))),
            Ok(Checkout::Git { repo, commit, subtree, .. }) => treeid::of_git(&repo, &commit, subtree.as_deref())
                .map(|t| (t, TreeSource::Git { repo }))
                .map_err(|e| EntryError::TreeId(Arc::new(e))),
        };
        match tree {
            Ok((tree_id, tree)) => {
                p.tree_id = Some(tree_id);
                jobs.push((out.len(), ParseJob { tree_id, tree }));
            }
            Err(e) => p.status = Status::Error(e),
        }
        out.push(p);
    }
    save_index(index);

    let parser = Parser::new(&opts.base, opts.home.clone(), opts.parse_timeout)?;
    let job_list: Vec<ParseJob> = jobs.iter().map(|(_, j)| j.clone()).collect();
    let run = parser.parse(&job_list)?;

    // Read each .SRCINFO; nodes[i] is the parsed form of out[i].
    let mut nodes: Vec<Option<Node>> = (0..out.len()).map(|_| None).collect();
    for ((i, job), result) in jobs.iter().zip(run.results) {
        let p = &mut out[*i];
        match result.and_then(|s| read_srcinfo(&s, job.tree_id, &arch, &config.pkgbuilds[*i]).map(|n| (s, n))) {
            Ok((s, Read::NotForArch { pkgbase, archs })) => {
                p.pkgver_func = s.has_pkgver_func;
                p.pkgbase = Some(pkgbase.to_string());
                p.status = Status::NotForArch { archs };
            }
            Ok((s, Read::Node(node))) => {
                p.pkgver_func = s.has_pkgver_func;
                p.pkgbase = Some(node.pkgbase.to_string());
                p.pkgver = node.packages.first().map(|m| m.version.to_string());
                p.pkgnames = node.packages.iter().map(|m| m.name.to_string()).collect();
                p.srcinfo = Some(s.text.clone());
                debug_assert_eq!(node.tree_id, job.tree_id);
                nodes[*i] = Some(node);
            }
            Err(e) => p.status = Status::Error(EntryError::Pkgbuild(e)),
        }
    }
    // Two entries with one pkgbase would fight over the same packages.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..out.len() {
        if let Some(base) = out[i].pkgbase.clone() {
            if let Some(&first) = seen.get(&base) {
                out[i].status = Status::Error(EntryError::DuplicatePkgbase { pkgbase: base, entry: out[first].name.clone() });
                nodes[i] = None;
            } else {
                seen.insert(base, i);
            }
        }
    }

    let mut providers = deps::read_base_db(&opts.base)?;
    // -I files go in before the config's PKGBUILDs: asked for by name, they
    // win over an entry that builds the same package.
    for (k, l) in opts.local.iter().enumerate() {
        providers.push(Provider {
            name: l.name.clone(),
            version: l.version.clone(),
            provides: l.provides.clone(),
            depends: l.depends.clone(),
            origin: Origin::Local(k),
            file: None,
        });
    }
    for (i, n) in nodes.iter().enumerate() {
        for m in n.iter().flat_map(|n| &n.packages) {
            providers.push(Provider {
                name: m.name.clone(),
                version: m.version.clone(),
                provides: m.provides.clone(),
                depends: m.dependencies.clone(),
                origin: Origin::Pkgbuild(i),
                file: None,
            });
        }
    }
    // pkgcell's own published repository, then the base's sync repositories.
    let own_dir = config.repo.publish.join(arch.to_string());
    providers.extend(repodb::read_own(&own_dir, &config.repo.name)?);
    let sync_repos = repodb::sync_repos(&opts.base, &arch.to_string(), crate::base::PKGCELL_REPO_NAME);
    providers.extend(repodb::read_sync(&opts.base, &sync_repos)?);
    let install_of = |p: &Provider, out: &[PlannedPackage]| Install {
        name: p.name.to_string(),
        version: p.version.to_string(),
        from: match (p.origin, &p.file) {
            (Origin::Base, _) => InstallFrom::Base,
            (Origin::Local(k), _) => InstallFrom::Local { path: opts.local[k].path.clone() },
            (Origin::Pkgbuild(j), _) => InstallFrom::Pkgbuild { entry: out[j].name.clone() },
            (Origin::Repo, Some(f)) => InstallFrom::Repo {
                repo: f.repo.clone(),
                dir: own_dir.clone(),
                filename: f.filename.clone(),
                sha256: f.sha256.clone(),
            },
            (Origin::Sync(r), Some(f)) => InstallFrom::Sync {
                repo: f.repo.clone(),
                servers: sync_repos[r].servers.clone(),
                filename: f.filename.clone(),
                sha256: f.sha256.clone(),
            },
            (Origin::Repo | Origin::Sync(_), None) => unreachable!("repository providers carry their file"),
        },
    };

    // Edges: i needs j when a package of j is installed for i's build,
    // directly or as a run-time dependency of one that is.
    let mut needs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); out.len()];
    let mut install_sets: Vec<Vec<(usize, String)>> = vec![Vec::new(); out.len()];
    let mut install_lists: Vec<Vec<Install>> = vec![Vec::new(); out.len()];
    let resolver = deps::Resolver::new(&providers);
    // Strict dephashes hash this same closure: kept for them.
    let mut closures: Vec<Option<Vec<&Provider>>> = vec![None; out.len()];
    for i in 0..out.len() {
        let Some(n) = &nodes[i] else { continue };
        let roots: Vec<&RelationOrSoname> = n.depends.iter().chain(&n.makedepends).chain(&n.checkdepends).collect();
        match closure(&resolver, i, &roots) {
            Ok(set) => {
                let mut list: Vec<Install> =
                    set.iter().filter(|p| p.origin != Origin::Pkgbuild(i)).map(|p| install_of(p, &out)).collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                install_lists[i] = list;
                let mut installs: Vec<(usize, String)> = set
                    .iter()
                    .filter_map(|p| match p.origin {
                        Origin::Pkgbuild(j) if j != i => Some((j, p.name.to_string())),
                        _ => None,
                    })
                    .collect();
                installs.sort();
                installs.dedup();
                install_sets[i] = installs;
                needs[i] = set.iter().filter_map(|p| match p.origin {
                    Origin::Pkgbuild(j) if j != i => Some(j),
                    _ => None,
                }).collect();
                if config.build.dephash == DephashMode::Strict {
                    closures[i] = Some(set);
                }
            }
            Err(e) => {
                out[i].status = Status::Error(EntryError::Unresolved(e));
            }
        }
    }
    for i in 0..out.len() {
        out[i].after = needs[i].iter().map(|&j| out[j].name.clone()).collect();
        out[i].built_deps =
            install_sets[i].iter().map(|(j, n)| BuiltDep { entry: out[*j].name.clone(), pkgname: n.clone() }).collect();
        out[i].installs = std::mem::take(&mut install_lists[i]);
    }

    order(&mut out, &needs);

    // pkgids in wave order, so that each dependency's pkgid is known first.
    let mut by_wave: Vec<usize> = (0..out.len()).filter(|&i| out[i].wave.is_some()).collect();
    by_wave.sort_by_key(|&i| out[i].wave);
    let mut pkgids: Vec<Option<PkgId>> = vec![None; out.len()];
    for i in by_wave {
        let n = nodes[i].as_ref().expect("planned packages parsed");
        let roots: Vec<&RelationOrSoname> = match config.build.dephash {
            DephashMode::Strict => n.depends.iter().chain(&n.makedepends).chain(&n.checkdepends).collect(),
            DephashMode::Loose => n.depends.iter().collect(),
            DephashMode::None => Vec::new(),
        };
        let set = match closures[i].take() {
            Some(set) => set,
            None => closure(&resolver, i, &roots).expect("resolved above"),
        };
        let mut lines: Vec<String> = set
            .iter()
            .filter(|p| p.origin != Origin::Pkgbuild(i))
            .map(|p| match (p.origin, &p.file) {
                (Origin::Base, _) => format!("installed {} {}", p.name, p.version),
                (Origin::Local(k), _) => format!("local {}", opts.local[k].line()),
                // The file's hash too: a package rebuilt without a version
                // bump is another dependency.
                (Origin::Repo, f) => {
                    format!("repo {} {} {}", p.name, p.version, f.as_ref().map_or("", |f| f.sha256.as_str()))
                }
                (Origin::Sync(_), f) => format!(
                    "sync {} {} {} {}",
                    f.as_ref().map_or("", |f| f.repo.as_str()),
                    p.name,
                    p.version,
                    f.as_ref().map_or("", |f| f.sha256.as_str())
                ),
                (Origin::Pkgbuild(j), _) => format!(
                    "built {} {}",
                    p.name,
                    pkgids[j].as_ref().expect("dependencies come in earlier waves")
                ),
            })
            .collect();
        // Every -I file is installed into every build, needed or not.
        lines.extend(opts.local.iter().map(|l| format!("local {}", l.line())));
        lines.sort();
        lines.dedup();
        let canonical = lines.iter().fold(String::new(), |acc, l| acc + l + "\n");
        let id = PkgId::new(n.pkgbase.clone(), n.tree_id, DepHash::of(canonical.as_bytes()));
        tracing::debug!(pkgid = %id, deps = ?lines, "dephash");
        out[i].pkgid = Some(id.clone());
        pkgids[i] = Some(id);
    }

    Ok(Plan {
        version: PLAN_JSON_VERSION,
        arch: arch.to_string(),
        dephash: config.build.dephash,
        parsed: run.parsed,
        cached: run.cached,
        packages: out,
    })
}

/// Every provider installed for `roots` of entry `me`: each root's provider
/// and, transitively, the providers of their run-time dependencies. Err names
/// the chain to a dependency nothing provides.
fn closure<'a>(resolver: &deps::Resolver<'a>, me: usize, roots: &[&RelationOrSoname]) -> Result<Vec<&'a Provider>, Unresolved> {
    let mut found: Vec<&Provider> = Vec::new();
    // (dependency, chain of package names that led to it)
    let mut stack: Vec<(&RelationOrSoname, Vec<String>)> = roots.iter().map(|d| (*d, Vec::new())).collect();
    while let Some((dep, chain)) = stack.pop() {
        let Some(p) = resolver.resolve(dep) else {
            return Err(Unresolved { dep: dep.clone(), chain });
        };
        if found.iter().any(|f| std::ptr::eq(*f, p)) {
            continue;
        }
        found.push(p);
        // What the base has installed comes with its dependencies already;
        // anything else is installed with its run-time dependencies.
        let follow = match p.origin {
            Origin::Base => false,
            Origin::Pkgbuild(j) => j != me,
            // A -I file is installed with pacman -U too: its dependencies
            // must be there as well.
            Origin::Local(_) | Origin::Repo | Origin::Sync(_) => true,
        };
        if follow {
            let mut next = chain.clone();
            next.push(p.name.to_string());
            stack.extend(p.depends.iter().map(|d| (d, next.clone())));
        }
    }
    Ok(found)
}

/// Block the dependents of failed entries, report cycles, and put the rest
/// in waves.
fn order(out: &mut [PlannedPackage], needs: &[BTreeSet<usize>]) {
    let n = out.len();
    // Entries left out of the graph: failed ones, and those not built for
    // this architecture (nothing can need them: they provide nothing).
    let failed = |out: &[PlannedPackage], i: usize| matches!(out[i].status, Status::Error(_) | Status::NotForArch { .. });
    // Waves by repeated passes: an entry gets a wave once all it needs have one.
    let mut wave: Vec<Option<usize>> = vec![None; n];
    loop {
        let mut progress = false;
        for i in 0..n {
            if wave[i].is_some() || failed(out, i) {
                continue;
            }
            if needs[i].iter().all(|&j| wave[j].is_some()) {
                wave[i] = Some(needs[i].iter().map(|&j| wave[j].unwrap_or(0) + 1).max().unwrap_or(0));
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    // What is left either waits on a failed entry or sits on a cycle.
    for i in 0..n {
        if wave[i].is_some() || failed(out, i) {
            continue;
        }
        if let Some(cycle) = find_cycle(i, needs, &wave, out) {
            let error = EntryError::Cycle { entries: cycle.iter().map(|&j| out[j].name.clone()).collect() };
            for &j in &cycle {
                if !failed(out, j) {
                    out[j].status = Status::Error(error.clone());
                }
            }
        }
    }
    for i in 0..n {
        if wave[i].is_some() || failed(out, i) {
            continue;
        }
        // Every failed entry reachable through what i needs.
        let mut by = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = needs[i].iter().copied().collect();
        while let Some(j) = stack.pop() {
            if !seen.insert(j) {
                continue;
            }
            if failed(out, j) {
                by.insert(out[j].name.clone());
            } else {
                stack.extend(needs[j].iter().copied());
            }
        }
        out[i].status = Status::Blocked { by: by.into_iter().collect() };
    }
    for i in 0..n {
        out[i].wave = wave[i];
    }
}

/// A cycle through `start` among entries without a wave, if there is one.
fn find_cycle(start: usize, needs: &[BTreeSet<usize>], wave: &[Option<usize>], out: &[PlannedPackage]) -> Option<Vec<usize>> {
    fn dfs(v: usize, start: usize, needs: &[BTreeSet<usize>], open: &dyn Fn(usize) -> bool, path: &mut Vec<usize>, seen: &mut BTreeSet<usize>) -> bool {
        for &w in &needs[v] {
            if w == start {
                return true;
            }
            if open(w) && seen.insert(w) {
                path.push(w);
                if dfs(w, start, needs, open, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let open = |j: usize| wave[j].is_none() && !matches!(out[j].status, Status::Error(_) | Status::NotForArch { .. });
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    dfs(start, start, needs, &open, &mut path, &mut seen).then_some(path)
}

/// What a .SRCINFO gives for the planned architecture.
enum Read {
    /// What planning needs.
    Node(Node),
    /// It is not built for the planned architecture.
    NotForArch { pkgbase: Name, archs: Vec<String> },
}

/// Read the .SRCINFO text into what planning needs, for `arch`.
fn read_srcinfo(s: &Srcinfo, tree_id: TreeId, arch: &SystemArchitecture, entry: &PkgbuildEntry) -> Result<Read, PkgbuildError> {
    let info = SourceInfoV1::from_string(&s.text)
        .map_err(|e| PkgbuildError::Invalid { message: e.to_string().trim().to_owned() })?;
    let base = &info.base;
    // The typed list: its Display joins with ", ", which is not makepkg's
    // syntax and must not be split again.
    let target: Architecture = match &base.architectures {
        Architectures::Any => Architecture::Any,
        Architectures::Some(archs) if archs.contains(arch) => Architecture::Some(arch.clone()),
        Architectures::Some(archs) => {
            let archs = archs.iter().map(ToString::to_string).collect();
            return Ok(Read::NotForArch { pkgbase: base.name.clone(), archs });
        }
    };
    let packages: Vec<MergedPackage> = info.packages_for_architecture(target.clone()).collect();
    let specific = match &target {
        Architecture::Some(a) => base.architecture_properties.get(a),
        Architecture::Any => None,
    };
    let rel = |v: &[alpm_types::PackageRelation]| v.iter().cloned().map(RelationOrSoname::Relation).collect::<Vec<_>>();
    let mut depends = base.dependencies.clone();
    let mut makedepends = rel(&base.make_dependencies);
    let mut checkdepends = rel(&base.check_dependencies);
    if let Some(sp) = specific {
        depends.extend(sp.dependencies.iter().cloned());
        makedepends.extend(rel(&sp.make_dependencies));
        checkdepends.extend(rel(&sp.check_dependencies));
    }
    depends.extend(rel(&entry.deps));
    makedepends.extend(rel(&entry.makedeps));
    Ok(Read::Node(Node { pkgbase: base.name.clone(), tree_id, packages, depends, makedepends, checkdepends }))
}

fn source_ref(entry: &PkgbuildEntry, checkout: Option<&Checkout>) -> SourceRef {
    match (&entry.location, checkout) {
        (crate::config::Location::Git { url, subtree, .. }, c) => SourceRef::Git {
            url: url.clone(),
            commit: match c {
                Some(Checkout::Git { commit, .. }) => Some(commit.clone()),
                _ => None,
            },
            subtree: subtree.clone(),
        },
        (crate::config::Location::Path { dir }, _) => SourceRef::Path { path: dir.clone() },
    }
}

/// Keep the stat index for the next run; it is only a cache, so failing to
/// write it costs that run re-hashing, no more.
fn save_index(index: treeid::StatIndex) {
    tracing::debug!(hits = index.hits, hashed = index.hashed, "tree-ids computed");
    if let Err(e) = index.save() {
        tracing::warn!(error = %e, "cannot write the stat index of tree-ids; the next plan will hash every file again");
    }
}


/// The .SRCINFO of each directory, parsed in one sandbox (`pkgcell srcinfo`).
/// A directory fails with [`EntryError::TreeId`] or [`EntryError::Pkgbuild`].
pub fn srcinfo_of_dirs(dirs: &[PathBuf], base: &Path, home: Home, timeout: Duration) -> Result<(Vec<Result<Srcinfo, EntryError>>, usize), PlanError> {
    let mut jobs = Vec::new();
    let mut early: Vec<Option<EntryError>> = Vec::new();
    let mut index = treeid::StatIndex::load(&home.tree_index()).keep_unseen();
    for d in dirs {
        match index.of_dir(d) {
            Ok(t) => {
                jobs.push(ParseJob { tree_id: t, tree: TreeSource::Dir(d.clone()) });
                early.push(None);
            }
            Err(e) => early.push(Some(EntryError::TreeId(Arc::new(e)))),
        }
    }
    save_index(index);
    let parser = Parser::new(base, home, timeout)?;
    let run = parser.parse(&jobs)?;
    let mut results = run.results.into_iter();
    let all = early
        .into_iter()
        .map(|e| match e {
            Some(e) => Err(e),
            None => results.next().expect("one result per job").map_err(EntryError::Pkgbuild),
        })
        .collect();
    Ok((all, run.parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: EntryError) -> String {
        serde_json::to_string(&Status::Error(e)).unwrap()
    }

    #[test]
    fn an_entry_error_serializes_as_its_stage_and_its_message_with_every_cause() {
        let sync = SyncError::NotFetched { url: "https://example.invalid/a.git".into() };
        assert_eq!(
            json(EntryError::Sync(Arc::new(sync))),
            r#"{"kind":"error","stage":"sync","message":"https://example.invalid/a.git was never fetched; run once without --offline"}"#
        );
        let tree = treeid::TreeIdError::Git { rev: "abc:sub".into(), source: SyncError::NotADirectory("/x".into()) };
        assert_eq!(
            json(EntryError::TreeId(Arc::new(tree))),
            r#"{"kind":"error","stage":"tree-id","message":"cannot find the tree abc:sub: /x is not a directory"}"#
        );
        assert_eq!(
            json(EntryError::Pkgbuild(PkgbuildError::Missing)),
            r#"{"kind":"error","stage":"parse","message":"no PKGBUILD in the tree"}"#
        );
        assert_eq!(
            json(EntryError::DuplicatePkgbase { pkgbase: "foo".into(), entry: "bar".into() }),
            r#"{"kind":"error","stage":"parse","message":"pkgbase foo is also built by entry bar"}"#
        );
        let dep: RelationOrSoname = "libfoo>=2".parse().unwrap();
        assert_eq!(
            json(EntryError::Unresolved(Unresolved { dep: dep.clone(), chain: Vec::new() })),
            r#"{"kind":"error","stage":"deps","message":"nothing provides libfoo>=2"}"#
        );
        assert_eq!(
            json(EntryError::Unresolved(Unresolved { dep, chain: vec!["a".into(), "b".into()] })),
            r#"{"kind":"error","stage":"deps","message":"nothing provides libfoo>=2 (needed by a → b)"}"#
        );
        assert_eq!(
            json(EntryError::Cycle { entries: vec!["a".into(), "b".into()] }),
            r#"{"kind":"error","stage":"cycle","message":"dependency cycle: a → b → a"}"#
        );
    }
}
