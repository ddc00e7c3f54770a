//! A build again, outside the store, in a varied environment: the entry
//! point of [`crate::repro`].

use std::fs;
use std::path::{Path, PathBuf};


use crate::error::io_err;
use crate::fetch::{self, Fetcher};
use crate::plan::Plan;
use crate::store::{DepRef, Store};

use super::deps::dep_files_of_lines;
use super::layer::{check_layer, dep_layer};
use super::makepkg::{Made, run_makepkg};
use super::{BuildError, Job};
use super::options::{BuildOptions, KeepFailed, MakepkgEnv};
use super::workdir::{BuildDir, DirKind};

/// What a [`rebuild`] made.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Its package files, in the directory asked for.
    pub files: Vec<PathBuf>,
    /// Its build log.
    pub log: PathBuf,
}

/// Build the planned entry `name` again as [`super::build_plan`] would, but in
/// the environment `menv`, on exactly the dependency set `deps` (the lines
/// of a [`crate::store::Record::deps`]), and with the package files copied into `dest`
/// instead of the store: nothing is recorded, no lock is taken. `tag`
/// names the log (`….repro-<tag>.log`). For [`crate::repro`].
pub fn rebuild(
    plan: &Plan,
    name: &str,
    deps: &[DepRef],
    opts: &BuildOptions,
    menv: &MakepkgEnv,
    tag: &str,
    dest: &Path,
) -> Result<Rebuilt, BuildError> {
    let p = plan.packages.iter().find(|p| p.name == name).ok_or_else(|| BuildError::NotPlanned(name.to_owned()))?;
    let (Some(pkgid), Some(checkout), Some(srcinfo)) = (&p.pkgid, &p.checkout, &p.srcinfo) else {
        return Err(BuildError::NotPlanned(name.to_owned()));
    };
    let span = tracing::info_span!("rebuild", pkgbase = p.pkgbase.as_deref().unwrap_or(""), %pkgid, tag);
    let _enter = span.enter();
    let job = Job { name: &p.name, pkgid, checkout, srcinfo, installs: &p.built_deps, packages: &p.installs, pkgnames: &p.pkgnames };
    let store = Store::at(opts.home.store());
    // Sources come from the cache; only what it lacks is downloaded, on
    // the host, before the build (which has no network).
    let fetcher = Fetcher::new(opts.home.clone(), opts.base.root.clone())
        .with_rlimits(opts.limits.rlimits())
        .with_file_sources(opts.file_sources.clone());
    let fetched = fetcher.fetch(&fetch::sources_of(srcinfo, &opts.arch))?;
    let dep_files = dep_files_of_lines(&opts.home, &store, deps)?;
    let layer = dep_layer(opts, &job, &dep_files).map_err(|f| *f.error)?;
    if let Some(layer) = &layer {
        check_layer(&layer.upper, &opts.base.root, &dep_files, &opts.local)?;
    }
    let dir = BuildDir::new(&opts.home, DirKind::Repro, pkgid)?;
    let log = crate::buildlog::log_path(&opts.home.logs(), pkgid, srcinfo, crate::buildlog::LogKind::Repro(tag));
    let made = run_makepkg(&job, opts, &dir, layer.as_ref(), &fetched, &log, menv);
    let copied = made.and_then(|Made { files, .. }| {
        fs::create_dir_all(dest).map_err(io_err("create", dest))?;
        let mut out = Vec::new();
        for f in files {
            // The name was checked: a plain file name.
            let dst = dest.join(&f.name);
            let mut w = fs::File::create(&dst).map_err(io_err("create", &dst))?;
            f.file
                .copy_to(&mut w, opts.limits.max_output())
                .map_err(|source| BuildError::Refused { what: "a package file of the build", source })?;
            out.push(dst);
        }
        Ok(out)
    });
    dir.finish(KeepFailed::No, opts, pkgid);
    Ok(Rebuilt { files: copied?, log })
}
