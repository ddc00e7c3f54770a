//! `pkgcell build` and `pkgcell fetch`: flags into a plan and a build run,
//! progress on stderr, the summary or `--json` on stdout.
//!
//! Laptop mode (no config file, a PKGBUILD in the current directory) is
//! decided here: a one-entry config for the current directory, and the
//! package files copied next to the PKGBUILD afterwards, as makepkg would.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use pkgcell::build::{self, BuildOptions, Event, KeepFailed, LayerMode, Limits, PackageResult, PackageStatus, Rebuild};
use pkgcell::config;
use pkgcell::fetch::{self, Fetcher};
use pkgcell::home::Home;
use pkgcell::local::LocalPackage;
use pkgcell::plan::Status;
use pkgcell::remote::RemoteStore;
use pkgcell::store::Store;
use pkgcell::userconf::UserConf;
use pkgcell_sandbox::Network;

use super::progress;
use super::setup::{Mode, PlanFlags};

/// Build packages in sandboxes, in dependency order, skipping what the store has.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 all built or cached, 1 some package failed or was skipped, 2 usage or setup error.\n\
Without a config file, in a directory holding a PKGBUILD, builds that package and leaves its files there.")]
pub struct BuildArgs {
    /// The [pkgbuilds] entries to build, with what they need (default: all).
    #[arg(value_name = "PKG")]
    packages: Vec<String>,
    /// Builds at the same time (default: [build] jobs).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Give builds the host's network (default: [build] network, normally off).
    #[arg(long)]
    net: bool,
    /// Keep the sandbox of a failed build under $PKGCELL_HOME/failed/<pkgid>
    /// (yours to read and remove): enter it with `pkgcell shell NAME`,
    /// remove it with `pkgcell clean` (or `store gc` after --failed-age).
    #[arg(long, visible_alias = "inspect")]
    keep_failed: bool,
    /// Print the result as one JSON object on stdout (see docs/build.md).
    #[arg(long)]
    json: bool,
    /// Then publish the config's repository, as `pkgcell publish` does (the
    /// newest build of every entry, into [repo] publish), even when some
    /// package failed (it keeps its published version). Needs a pkgcell.toml.
    #[arg(long)]
    publish: bool,
    /// Bind a host directory read-write into every build (as makechrootpkg -d).
    #[arg(short = 'd', long = "bind", value_name = "SRC[:DST]", value_parser = parse_bind_rw)]
    binds_rw: Vec<pkgcell_sandbox::Mount>,
    /// Bind a host directory read-only into every build (as makechrootpkg -D).
    #[arg(short = 'D', long = "ro-bind", value_name = "SRC[:DST]", value_parser = parse_bind_ro)]
    binds_ro: Vec<pkgcell_sandbox::Mount>,
    /// Install this package file (.pkg.tar.zst) into every build before its
    /// dependencies (as makechrootpkg -I; repeatable). Part of every pkgid.
    #[arg(short = 'I', long = "install", value_name = "FILE")]
    install: Vec<PathBuf>,
    /// Make fresh dependency layers instead of reusing the cached ones (as
    /// makechrootpkg -c); later builds reuse the fresh ones.
    #[arg(short = 'c', long)]
    clean: bool,
    /// Do not show the build's output (laptop mode shows it as it comes,
    /// as makepkg does); it is in the log either way.
    #[arg(short, long)]
    quiet: bool,
    /// Build the named entries (default: all) even when their pkgid is in
    /// the store, as makepkg -f; the new record replaces the stored one.
    #[arg(short = 'f', long)]
    force: bool,
    /// Flags for makepkg, after `--` (as makechrootpkg passes them):
    /// --nocheck, --check, --skippgpcheck, --skipchecksums, --skipinteg,
    /// --holdver, -C/--cleanbuild, -m/--nocolor, --noprepare. Not part of the
    /// pkgid: a stored result is not rebuilt for them (add -f).
    #[arg(last = true, value_name = "MAKEPKG_FLAGS")]
    makepkg_flags: Vec<String>,
    /// Memory limit of each process of a build, e.g. 4G (default: [build] memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Processes of a build at once (default: [build] pids).
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pids: Option<u64>,
    /// Bytes of a build's log kept, e.g. 64M: its head and its tail, with a
    /// line saying what was cut (default: [build] log_limit, 256M).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_log_limit)]
    log_limit: Option<u64>,
    #[command(flatten)]
    common: PlanFlags,
}

/// The delegated cgroup v2 builds get their limits from, if the host has one.
pub(crate) fn delegated_cgroup() -> Option<pkgcell::cgroup::Delegated> {
    match pkgcell::cgroup::Delegated::detect(&Default::default()) {
        Ok(d) => {
            tracing::info!(parent = %d.parent().display(), "limits as totals of a cgroup per build");
            Some(d)
        }
        Err(why) => {
            tracing::info!(%why, "limits as rlimits: no delegated cgroup v2");
            None
        }
    }
}

fn parse_bind_rw(s: &str) -> Result<pkgcell_sandbox::Mount, String> {
    existing(super::run::parse_bind_rw(s)?)
}

fn parse_bind_ro(s: &str) -> Result<pkgcell_sandbox::Mount, String> {
    existing(super::run::parse_bind_ro(s)?)
}

/// A -d/-D source must exist when the command line is read: a usage error
/// (exit 2) before any build, not a failed package.
fn existing(m: pkgcell_sandbox::Mount) -> Result<pkgcell_sandbox::Mount, String> {
    if let pkgcell_sandbox::Mount::Bind { src, .. } = &m {
        match src.try_exists() {
            Ok(true) => {}
            Ok(false) => return Err(format!("{} does not exist", src.display())),
            Err(e) => return Err(format!("cannot look at {}: {e}", src.display())),
        }
    }
    Ok(m)
}

fn parse_memory(s: &str) -> Result<u64, String> {
    config::parse_memory(s)
}

fn parse_pids(s: &str) -> Result<u64, String> {
    config::check_pids(s.parse().map_err(|_| format!("{s:?} is not a number"))?)
}

/// Download the sources of PKGBUILDs into the cache.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 all fetched, 1 some source failed, 2 usage or setup error.\n\
Without a config file, in a directory holding a PKGBUILD, fetches the sources of that PKGBUILD.")]
pub struct FetchArgs {
    /// The [pkgbuilds] entries whose sources to fetch (default: all).
    #[arg(value_name = "PKG")]
    packages: Vec<String>,
    #[command(flatten)]
    common: PlanFlags,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    // -I files are checked before anything starts.
    let local = args.install.iter().map(|p| LocalPackage::read(p)).collect::<Result<Vec<_>, _>>()?;
    let mode = args.common.mode()?;
    let publish_config = match (&mode, args.publish) {
        (_, false) => None,
        (Mode::Config(_, path), true) => Some(path.clone()),
        (Mode::Laptop { .. }, true) => {
            bail!("--publish publishes the [repo] of a {}: laptop mode (a PKGBUILD alone) has none; use `pkgcell repo add DB FILE`", config::FILE_NAME)
        }
    };
    let makepkg_flags = build::MakepkgFlags::new(&args.makepkg_flags).map_err(anyhow::Error::msg)?;
    // The packager's makepkg.conf and environment, as makechrootpkg honours
    // them: read while the run plans (bash, ~2 ms), needed after.
    let user = UserConf::start()?;
    // Holds the home in use to the end: no `store gc` while this run's
    // downloads, layers and outputs have no record yet.
    let setup = args.common.resolve(mode)?;
    let (mode, config, home) = (&setup.mode, setup.config(), setup.home());
    let jobs = args.jobs.unwrap_or(config.build.jobs.get());
    if jobs == 0 {
        bail!("-j must be at least 1");
    }
    eprintln!("==> planning {} on base {}", super::count(config.pkgbuilds.len(), "entry", "entries"), setup.env.base.id);
    let plan = setup.plan(&local)?;
    let user = user.finish(&|k| std::env::var_os(k))?;
    let remote = match &config.store.remote {
        Some(url) => {
            let r = RemoteStore::new(url.clone(), &config.s3).with_context(|| format!("remote store {url}"))?;
            // A bad endpoint or key stops the run here, not in every build.
            r.probe().with_context(|| format!("remote store {url}"))?;
            Some(std::sync::Arc::new(r))
        }
        None => None,
    };
    let opts = BuildOptions {
        home: home.clone(),
        base: setup.env.base.clone(),
        network: if args.net || config.build.network { Network::Host } else { Network::Loopback },
        timeout: config.build.timeout,
        jobs,
        keep_failed: if args.keep_failed { KeepFailed::Yes } else { KeepFailed::No },
        arch: config.repo.arch.to_string(),
        binds: args.binds_rw.iter().chain(&args.binds_ro).cloned().collect(),
        home_binds: config
            .pkgbuilds
            .iter()
            .filter(|e| !e.home_binds.is_empty())
            .map(|e| (e.name.to_string(), e.home_binds.clone()))
            .collect(),
        local,
        layers: if args.clean { LayerMode::Fresh(std::time::SystemTime::now()) } else { LayerMode::Reuse },
        limits: Limits {
            memory: args.memory.or(config.build.memory),
            pids: args.pids.or(config.build.pids),
            tmp: config.build.tmp_size,
            max_output: config.build.max_output,
        },
        log_limit: args.log_limit.unwrap_or(config.build.log_limit),
        cgroup: delegated_cgroup(),
        remote,
        rebuild: match (args.force, args.packages.is_empty()) {
            (false, _) => Rebuild::IfMissing,
            (true, true) => Rebuild::Entries(config.pkgbuilds.iter().map(|e| e.name.to_string()).collect()),
            (true, false) => Rebuild::Entries(args.packages.iter().cloned().collect()),
        },
        makepkg_flags,
        // The environment's PACKAGER, else the config's, else makepkg.conf's.
        packager: std::env::var("PACKAGER")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| config.build.packager.clone())
            .or_else(|| user.packager.clone()),
        file_sources: config.file_source_dirs(),
        // Laptop mode builds one package, as makepkg: its output is shown.
        // A repository's builds run side by side: `pkgcell log -f NAME`.
        echo: match (mode, args.quiet) {
            (Mode::Laptop { .. }, false) => pkgcell::buildlog::Echo::Stderr,
            (Mode::Laptop { .. }, true) | (Mode::Config(..), _) => pkgcell::buildlog::Echo::Off,
        },
        on_download: Some({
            let downloads = std::sync::Arc::new(progress::Downloads::new());
            build::OnDownload(std::sync::Arc::new(move |entry: &str, d: fetch::Download<'_>| downloads.event_of(entry, d)))
        }),
    };
    // The build's own output on stderr leaves no room for spinners.
    let progress = Progress::new(opts.echo == pkgcell::buildlog::Echo::Off);
    let results = build::build_plan(&plan, &args.packages, &opts, &|e| progress.event(e));
    progress.clear();
    let results = results?;

    let mut results = results;
    if let Mode::Laptop { dir, .. } = mode {
        leave_outputs(home, dir, &user, &mut results)?;
    }

    let laptop_mode = matches!(mode, Mode::Laptop { .. });
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let packages: Vec<serde_json::Value> = results.iter().map(json_of).collect();
        serde_json::to_writer(&mut stdout, &serde_json::json!({"version": build::BUILD_JSON_VERSION, "packages": packages}))?;
        writeln!(stdout)?;
    } else {
        summary(&mut stdout, &results)?;
        if laptop_mode {
            for r in &results {
                if let (Some(log), Some(base)) = (&r.log, &r.pkgbase) {
                    eprintln!("==> log: {} (pkgcell log {base})", log.display());
                }
            }
        }
    }
    // In laptop mode the one PKGBUILD asked for is not built: as makepkg,
    // that is a failure. In a repository it is only left out.
    let bad = results.iter().any(|r| match r.status {
        PackageStatus::Failed | PackageStatus::Skipped => true,
        PackageStatus::NotForArch => laptop_mode,
        PackageStatus::Built | PackageStatus::Cached | PackageStatus::Downloaded => false,
    });
    drop(stdout);
    // The exit status says the worse of the two: a publish that failed (2)
    // over a package that failed (1).
    if let Some(path) = publish_config {
        eprintln!("==> publishing the repository of {}", path.display());
        match super::publish::run_publish(super::publish::PublishArgs::of_config(path)) {
            Ok(code) if code == ExitCode::SUCCESS => {}
            Ok(code) => return Ok(code),
            Err(e) => {
                eprintln!("pkgcell: error: {e:#}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Laptop mode: the package files where makepkg would leave them (beside the
/// PKGBUILD, or PKGDEST), signed when BUILDENV has `sign` (as makepkg
/// signs: a detached `.sig` by gpg, with GPGKEY when set), and a copy of the
/// build log in LOGDEST when set.
fn leave_outputs(home: &Home, dir: &Path, user: &UserConf, results: &mut [PackageResult]) -> anyhow::Result<()> {
    let store = Store::at(home.store());
    let pkgdest = user.pkgdest.clone().unwrap_or_else(|| dir.to_owned());
    for r in results {
        if !r.files.is_empty() {
            std::fs::create_dir_all(&pkgdest).with_context(|| format!("cannot create PKGDEST {}", pkgdest.display()))?;
        }
        for f in &mut r.files {
            let dst = pkgdest.join(&f.name);
            store.copy_out(&f.blake3, &dst)?;
            f.path = dst;
            if user.sign {
                sign(&f.path, user.gpgkey.as_deref())?;
            }
        }
        if let (Some(logdest), Some(log)) = (&user.logdest, &r.log)
            && let Some(name) = log.file_name()
        {
            std::fs::create_dir_all(logdest).with_context(|| format!("cannot create LOGDEST {}", logdest.display()))?;
            let dst = logdest.join(name);
            std::fs::copy(log, &dst).with_context(|| format!("cannot copy the build log to {}", dst.display()))?;
        }
    }
    Ok(())
}

/// `gpg --detach-sign` as makepkg runs it, replacing an older signature.
fn sign(file: &Path, key: Option<&str>) -> anyhow::Result<()> {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    let mut cmd = std::process::Command::new("gpg");
    cmd.args(["--batch", "--yes", "--detach-sign", "--use-agent", "--no-armor"]);
    if let Some(k) = key {
        cmd.args(["-u", k]);
    }
    let out = cmd.arg(file).output().context("cannot run gpg to sign the package (BUILDENV has sign)")?;
    if !out.status.success() {
        bail!(
            "gpg could not sign {} (BUILDENV has sign{}): {}",
            file.display(),
            key.map(|k| format!(", GPGKEY={k}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!("==> signed {}", file.display());
    Ok(())
}

fn json_of(r: &PackageResult) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "pkgbase": r.pkgbase,
        "pkgid": r.pkgid,
        "status": r.status,
        "files": r.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
        "outputs": r.files,
        "log": r.log,
        "reason": r.reason,
        "seconds": r.seconds,
        "peak_memory_kib": r.peak_memory_kib,
        "limits": r.limits,
        "layer": r.layer,
    })
}

fn summary(w: &mut impl Write, results: &[PackageResult]) -> std::io::Result<()> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        let status = status_word(r.status);
        *counts.entry(status).or_default() += 1;
        let id = r.pkgid.as_ref().map_or("-".into(), |i| i.short());
        match r.status {
            PackageStatus::Built => {
                let files: Vec<String> = r.files.iter().map(|f| f.name.clone()).collect();
                writeln!(w, "built    {:<16} {id}  {:.1}s  {}", r.name, r.seconds.unwrap_or(0.0), files.join(" "))?;
            }
            PackageStatus::Cached => {
                writeln!(w, "cached   {:<16} {id}  {}", r.name, r.reason.as_deref().unwrap_or(""))?;
            }
            PackageStatus::Downloaded => {
                writeln!(w, "downloaded {:<14} {id}  {}", r.name, r.reason.as_deref().unwrap_or(""))?;
            }
            PackageStatus::Failed | PackageStatus::Skipped | PackageStatus::NotForArch => {
                writeln!(w, "{:<8} {:<16} {id}  {}", status, r.name, r.reason.as_deref().unwrap_or(""))?;
            }
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if results.iter().all(|r| r.status == PackageStatus::Cached) && !results.is_empty() {
        writeln!(w, "nothing to build: every pkgid is already in the store ({})", super::count(results.len(), "package", "packages"))
    } else {
        writeln!(w, "{}", parts.join(", "))
    }
}

fn status_word(s: PackageStatus) -> &'static str {
    match s {
        PackageStatus::Built => "built",
        PackageStatus::Cached => "cached",
        PackageStatus::Downloaded => "downloaded",
        PackageStatus::Failed => "failed",
        PackageStatus::Skipped => "skipped",
        PackageStatus::NotForArch => "not for this arch",
    }
}

/// Progress of builds on stderr: on a terminal, a spinner per running
/// build (its step and running time) above a line of counts; otherwise
/// plain `==> NAME: step` lines. Finished builds get a line either way.
struct Progress {
    /// The spinners, on a terminal.
    bars: Option<Bars>,
}

struct Bars {
    counts: ProgressBar,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    running: BTreeMap<String, ProgressBar>,
    done: usize,
    failed: usize,
}

impl Progress {
    /// `spinners`: on a terminal, spinners; else (or when not a terminal) plain lines.
    fn new(spinners: bool) -> Progress {
        let bars = (spinners && progress::on_terminal())
            .then(|| Bars { counts: progress::text_line(), state: Mutex::new(Counts::default()) });
        let p = Progress { bars };
        if let Some(b) = &p.bars {
            b.show_counts(&b.state.lock().unwrap_or_else(|e| e.into_inner()));
        }
        p
    }

    fn event(&self, e: Event<'_>) {
        let Some(bars) = &self.bars else {
            match e {
                Event::Started { name } => progress::line(format!("==> {name}: started")),
                Event::Step { name, step } => progress::line(format!("==> {name}: {step}")),
                Event::Finished(r) => progress::line(finished_line(r)),
            }
            return;
        };
        let mut s = bars.state.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Started { name } => {
                let bar = progress::spinner(name.to_owned(), Some(&bars.counts));
                bar.set_message("start");
                s.running.insert(name.to_owned(), bar);
            }
            Event::Step { name, step } => {
                if let Some(bar) = s.running.get(name) {
                    bar.set_message(step);
                }
            }
            Event::Finished(r) => {
                if let Some(bar) = s.running.remove(&r.name) {
                    bar.finish_and_clear();
                    progress::multi().remove(&bar);
                }
                match r.status {
                    PackageStatus::Built | PackageStatus::Cached | PackageStatus::Downloaded | PackageStatus::NotForArch => {
                        s.done += 1
                    }
                    PackageStatus::Failed | PackageStatus::Skipped => s.failed += 1,
                }
                bars.show_counts(&s);
                progress::line(finished_line(r));
                return;
            }
        }
        bars.show_counts(&s);
    }

    /// Remove the spinners (the run is over).
    fn clear(&self) {
        if let Some(b) = &self.bars {
            for bar in b.state.lock().unwrap_or_else(|e| e.into_inner()).running.values() {
                bar.finish_and_clear();
            }
            b.counts.finish_and_clear();
            let _ = progress::multi().clear();
        }
    }
}

impl Bars {
    fn show_counts(&self, s: &Counts) {
        self.counts.set_message(format!("    {} done, {} failed, {} running", s.done, s.failed, s.running.len()));
    }
}

/// `==> NAME: built in 1.2s`, `==> NAME: failed: why`, ...
fn finished_line(r: &PackageResult) -> String {
    let reason = match r.status {
        PackageStatus::Failed | PackageStatus::Skipped | PackageStatus::NotForArch => {
            format!(": {}", r.reason.as_deref().unwrap_or("").lines().next().unwrap_or(""))
        }
        PackageStatus::Built => format!(" in {:.1}s", r.seconds.unwrap_or(0.0)),
        PackageStatus::Cached | PackageStatus::Downloaded => String::new(),
    };
    format!("==> {}: {}{reason}", r.name, status_word(r.status))
}

pub fn fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let setup = args.common.resolve(args.common.mode()?)?;
    let config = setup.config();
    let plan = setup.plan(&[])?;
    let limits = Limits { memory: config.build.memory, pids: config.build.pids, tmp: config.build.tmp_size, max_output: config.build.max_output };
    let downloads = std::sync::Arc::new(progress::Downloads::new());
    let fetcher = Fetcher::new(setup.home().clone(), setup.env.base.root.clone())
        .with_rlimits(limits.rlimits())
        .with_file_sources(config.file_source_dirs())
        .with_progress({
            let d = downloads.clone();
            move |e| d.event(e)
        });
    let mut failed = false;
    for p in &plan.packages {
        if !args.packages.is_empty() && !args.packages.contains(&p.name) {
            continue;
        }
        let Some(srcinfo) = &p.srcinfo else {
            let why = match &p.status {
                Status::Error(e) => format!("{}: {}", e.stage(), build::error_chain(e)),
                Status::NotForArch { archs } => {
                    writeln!(std::io::stdout().lock(), "==> {}: not built for {} (arch = {}): nothing to fetch", p.name, config.repo.arch, archs.join(" "))?;
                    continue;
                }
                Status::Blocked { .. } | Status::ToBuild => "not parsed".into(),
            };
            eprintln!("==> {}: failed: {why}", p.name);
            failed = true;
            continue;
        };
        let sources = fetch::sources_of(srcinfo, &config.repo.arch.to_string());
        downloads.entry(&p.name);
        match fetcher.fetch(&sources).and_then(|got| Ok((got, fetcher.fetch_packages(&p.installs)?))) {
            Ok((got, pkgs)) if pkgs.is_empty() => writeln!(std::io::stdout().lock(), "==> {}: {} fetched", p.name, super::count(got.len(), "source", "sources"))?,
            Ok((got, pkgs)) => {
                writeln!(
                    std::io::stdout().lock(),
                    "==> {}: {} and {} fetched",
                    p.name,
                    super::count(got.len(), "source", "sources"),
                    super::count(pkgs.len(), "repository package", "repository packages")
                )?
            }
            Err(e) => {
                eprintln!("==> {}: failed: {}", p.name, build::error_chain(&e));
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
