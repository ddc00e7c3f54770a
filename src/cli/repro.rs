//! `pkgcell repro`: flags into a [`Target`] and build options with no
//! network, the report on stdout (text or `--json`), exit 0 reproducible,
//! 1 not, 2 could not check.
//!
//! The config (or laptop-mode directory) and base are found as `build`
//! finds them: the rebuild needs the PKGBUILD of the recorded pkgid, which
//! only the config knows where to find.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pkgcell::build::{BuildOptions, KeepFailed};
use pkgcell::home::Home;
use pkgcell::ids::PkgId;
use pkgcell::local::LocalPackage;
use pkgcell::config::Config;
use pkgcell::repro::{self, FileReport, Report, Target, Verdict};
use pkgcell::store::Store;
use pkgcell::sync::{self, SyncMode};
use pkgcell_sandbox::Network;

use super::setup::{PlanFlags, home_in_use};

/// Rebuild a package pkgcell built, with no network, and compare the bytes.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 reproducible, 1 not reproducible, 2 could not check (usage, setup, \
a package version of the .BUILDINFO not available, or the rebuild failed).\n\
With $REBUILDERD_OUTDIR set, the rebuilt files are written there (see docs/repro.md).")]
pub struct ReproArgs {
    /// A package file pkgcell built (FILE.pkg.tar.zst), or a pkgid in the
    /// store; with --twice, a [pkgbuilds] entry.
    #[arg(value_name = "FILE|PKGID|PKG")]
    target: String,
    /// Build the [pkgbuilds] entry PKG twice, the second time with another
    /// hostname, time zone, locale, umask and build directory, and compare;
    /// when they differ, name the variation that matters.
    #[arg(long, conflicts_with = "output")]
    twice: bool,
    /// Write the rebuilt package files here, under the original names,
    /// whether or not they match (default: $REBUILDERD_OUTDIR, if set).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Print the report as one JSON object on stdout (see docs/repro.md).
    #[arg(long)]
    json: bool,
    /// A local package file (-I) of the original build that the store lacks
    /// (a record made before builds stored them): the very file, checked by
    /// its BLAKE3, and put back into the store (repeatable). With --twice,
    /// installed into both builds, as `pkgcell build -I`.
    #[arg(short = 'I', long = "install", value_name = "FILE")]
    install: Vec<PathBuf>,
    #[command(flatten)]
    common: PlanFlags,
}

pub fn repro(args: ReproArgs) -> anyhow::Result<ExitCode> {
    if args.twice {
        return twice(&args);
    }
    match check(&args) {
        Ok((report, written)) => {
            let mut out = std::io::stdout().lock();
            if args.json {
                let mut v = serde_json::to_value(&report)?;
                v["output"] = serde_json::json!(written);
                serde_json::to_writer(&mut out, &v)?;
                writeln!(out)?;
            } else {
                print_report(&mut out, &report)?;
            }
            Ok(if report.reproducible { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Err(e) if args.json => {
            // A scheduler reading --json gets an object in every case.
            let v = serde_json::json!({"version": repro::REPRO_JSON_VERSION, "error": format!("{e:#}")});
            writeln!(std::io::stdout().lock(), "{v}")?;
            eprintln!("pkgcell: error: {e:#}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}

/// Everything up to the report; an error means "could not check".
fn check(args: &ReproArgs) -> anyhow::Result<(Report, Vec<PathBuf>)> {
    let target = parse_target(&args.target)?;
    let given = read_local(&args.install)?;
    let output = args.output.clone().or_else(|| std::env::var_os("REBUILDERD_OUTDIR").filter(|v| !v.is_empty()).map(PathBuf::from));
    let (home, in_use) = home_in_use()?;
    let store = Store::at(home.store());
    let found = repro::find(&store, &target)?;
    // The -I files of the original build, as it installed them: part of its pkgid.
    let local = repro::local_packages(&store, &found.record, &given)?;
    // Only now the base: a wrong target must not wait for a base to be made.
    let setup = args.common.resolve_in(home, in_use, args.common.mode()?)?;
    let (config, home) = (setup.config(), setup.home());
    eprintln!(
        "==> rebuilding {} with no network, SOURCE_DATE_EPOCH={}",
        found.record.pkgid, found.buildinfo.builddate
    );
    let tmp = home.tmp();
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let scratch = tempfile::Builder::new().prefix("repro-src-").tempdir_in(&tmp).context("cannot make a scratch directory")?;
    let mut plan = setup.plan(&local)?;
    let pkgid = &found.record.pkgid;
    if repro::planned_entry(&plan, pkgid).is_none()
        && let Some(copy) = repro::without_outputs(config, &plan, &found, scratch.path())?
    {
        plan = setup.plan_config(&copy, &local)?;
    }
    if repro::planned_entry(&plan, pkgid).is_none() {
        // A git entry that moved on: pin the commit whose tree is the recorded one.
        let mut synced = sync::sync(config, home, SyncMode::Offline);
        if repro::pin_recorded_tree(&mut synced, &plan, pkgid)? {
            plan = setup.plan_synced(config, synced, &local)?;
        }
    }
    let opts = rebuild_options(home, setup.env.base.clone(), config, local);
    let dest = tempfile::Builder::new().prefix("repro-out-").tempdir_in(&tmp).context("cannot make a directory for the rebuild")?;
    let reports = home.root().join("repro").join(found.record.pkgid.to_string());
    let report = repro::check(&found, &plan, &opts, dest.path(), &reports)?;
    let written = match &output {
        Some(dir) => write_output(dir, &report)?,
        None => Vec::new(),
    };
    Ok((report, written))
}

/// `--twice`: the two builds' report, exit 0 same, 1 different, 2 error.
fn twice(args: &ReproArgs) -> anyhow::Result<ExitCode> {
    let local = read_local(&args.install)?;
    let (home, in_use) = home_in_use()?;
    let setup = args.common.resolve_in(home, in_use, args.common.mode()?)?;
    let (config, home) = (setup.config(), setup.home());
    let plan = setup.plan(&local)?;
    let opts = rebuild_options(home, setup.env.base.clone(), config, local);
    let tmp = home.tmp();
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let work = tempfile::Builder::new().prefix("repro-twice-").tempdir_in(&tmp).context("cannot make a directory for the builds")?;
    let name = &args.target;
    eprintln!("==> building {name} twice with no network, the second time varying hostname, time zone, locale, umask and build directory");
    let reports = home.root().join("repro").join(format!("{name}-twice"));
    let report = repro::twice(&plan, name, &opts, work.path(), &reports)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for f in &report.files {
            match f.verdict {
                Verdict::Reproducible => writeln!(out, "REPRODUCIBLE      {}", f.name)?,
                Verdict::NotReproducible => {
                    writeln!(out, "NOT REPRODUCIBLE  {}", f.name)?;
                    print_differences(&mut out, f)?;
                }
            }
        }
        if report.nondeterministic {
            writeln!(out, "a third build with nothing varied differs too: the build is not deterministic by itself (time, randomness, ordering)")?;
        } else if !report.reproducible {
            let names: Vec<&str> = report.matters.iter().map(|v| v.name()).collect();
            if names.is_empty() {
                writeln!(out, "no variation alone changes the output: it takes several together")?;
            } else {
                writeln!(out, "the variation that matters: {}", names.join(", "))?;
            }
        }
    }
    Ok(if report.reproducible { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The files given with -I, read and hashed before anything starts.
fn read_local(files: &[PathBuf]) -> anyhow::Result<Vec<LocalPackage>> {
    Ok(files.iter().map(|p| LocalPackage::read(p)).collect::<Result<Vec<_>, _>>()?)
}

/// Build options of a check: the config's, but never the network; `local`
/// the -I files installed into the build.
fn rebuild_options(home: &Home, base: pkgcell::base::Base, config: &Config, local: Vec<LocalPackage>) -> BuildOptions {
    BuildOptions {
        home: home.clone(),
        base,
        // The point of the check: whatever the config says, no network.
        network: Network::Loopback,
        timeout: config.build.timeout,
        jobs: 1,
        keep_failed: KeepFailed::No,
        arch: config.repo.arch.to_string(),
        binds: Vec::new(),
        home_binds: Default::default(),
        local,
        layers: Default::default(),
        limits: pkgcell::build::Limits {
            memory: config.build.memory,
            pids: config.build.pids,
            tmp: config.build.tmp_size,
            max_output: config.build.max_output,
        },
        log_limit: config.build.log_limit,
        cgroup: super::build::delegated_cgroup(),
        // A check rebuilds here, whatever a remote store holds.
        remote: None,
        // rebuild() runs makepkg whatever the store holds; plain makepkg.
        rebuild: Default::default(),
        makepkg_flags: Default::default(),
        // rebuild() takes the recorded packager (MakepkgEnv).
        packager: None,
        file_sources: config.file_source_dirs(),
        echo: Default::default(),
        on_download: None,
    }
}

/// A path to an existing file (or one that looks like a package) is a
/// file; anything else must be a pkgid.
fn parse_target(s: &str) -> anyhow::Result<Target> {
    let p = Path::new(s);
    if p.is_file() || s.contains(".pkg.tar") {
        let abs = std::path::absolute(p).with_context(|| format!("cannot resolve {s}"))?;
        anyhow::ensure!(abs.is_file(), "{} is not a file", abs.display());
        return Ok(Target::File(abs));
    }
    let id: PkgId = s.parse().with_context(|| format!("{s} is neither a package file nor a pkgid"))?;
    Ok(Target::PkgId(id))
}

/// Copy each rebuilt file to `dir` under its original name (rebuilderd
/// compares them itself, so mismatches are written too).
fn write_output(dir: &Path, report: &Report) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for f in &report.files {
        if let Some(r) = &f.rebuilt {
            let dst = dir.join(&f.name);
            std::fs::copy(&r.path, &dst).with_context(|| format!("cannot write {}", dst.display()))?;
            written.push(dst);
        }
    }
    Ok(written)
}

fn print_report(w: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for f in &report.files {
        match f.verdict {
            Verdict::Reproducible => writeln!(w, "REPRODUCIBLE      {}", f.name)?,
            Verdict::NotReproducible => {
                writeln!(w, "NOT REPRODUCIBLE  {}", f.name)?;
                print_differences(w, f)?;
            }
        }
    }
    writeln!(w, "log: {}", report.log.display())
}

fn print_differences(w: &mut impl Write, f: &FileReport) -> std::io::Result<()> {
    let Some(rebuilt) = &f.rebuilt else {
        return writeln!(w, "    the rebuild made no file of that name");
    };
    writeln!(w, "    original {} bytes, blake3 {}", f.original.size, f.original.blake3)?;
    writeln!(w, "    rebuilt  {} bytes, blake3 {}", rebuilt.size, rebuilt.blake3)?;
    if f.members.is_empty() {
        writeln!(w, "    every member is the same: only the archive's order or compression differs")?;
    }
    let side = |m: &Option<pkgcell::alpm_file::Member>| match m {
        Some(m) => format!("{} bytes {} mode {:o} mtime {}", m.size, short(&m.blake3.to_string()), m.mode, m.mtime),
        None => "absent".to_owned(),
    };
    for m in &f.members {
        writeln!(w, "    differs: {}", m.path)?;
        writeln!(w, "        original: {}", side(&m.original))?;
        writeln!(w, "        rebuilt:  {}", side(&m.rebuilt))?;
    }
    if let Some(d) = &f.diffoscope {
        writeln!(w, "    diffoscope: {}", d.display())?;
    }
    Ok(())
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}
