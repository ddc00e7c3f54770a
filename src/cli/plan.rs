//! `pkgcell init`, `pkgcell plan` and `pkgcell srcinfo`: thin wrappers that
//! turn flags into library calls and print tables or JSON.

use super::build::{SettingsFile, resolve_base, user_defaults};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pkgcell::config::{self, Config};
use pkgcell::home::Home;
use pkgcell::plan::{self, PlanOptions, Status};
use pkgcell::sync::{self, SyncMode};

/// Write a commented starter pkgcell.toml in the current directory.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(long, value_name = "FILE", default_value = config::FILE_NAME)]
    config: PathBuf,
}

/// Options shared by plan and srcinfo: where the base is, parse limits.
#[derive(Debug, Args)]
pub struct BaseArgs {
    /// The base root file system PKGBUILDs are parsed in and resolved
    /// against (default: $PKGCELL_BASE_DIR, else the base of --base or of
    /// the config's [base], made if missing).
    #[arg(long, value_name = "DIR")]
    base_dir: Option<PathBuf>,
    /// The base chroot to use, by id or unique prefix (see `pkgcell base list`).
    #[arg(long, value_name = "ID", conflicts_with = "base_dir")]
    base: Option<String>,
    /// Time limit for sourcing one PKGBUILD: seconds, or "90s", "2m".
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    parse_timeout: Duration,
}

/// `--parse-timeout`: a [`pkgcell_sandbox::Timeout`].
pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    s.parse::<pkgcell_sandbox::Timeout>().map(|t| t.duration()).map_err(|e| e.to_string())
}

/// Show what would be built, why, and in which order, without building.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 all planned, 1 some package failed to plan, 2 usage or setup error.")]
pub struct PlanArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", default_value = config::FILE_NAME)]
    config: PathBuf,
    /// Do not fetch: use the git sources as they were last synced.
    #[arg(long, alias = "hold")]
    offline: bool,
    /// Print the plan as one JSON object (see docs/plan.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    base: BaseArgs,
}

/// Print the .SRCINFO of PKGBUILDs exactly as `makepkg --printsrcinfo`,
/// parsed in a sandbox.
#[derive(Debug, Args)]
#[command(after_help = "With several directories, each .SRCINFO is preceded by a line `==> DIR`.\n\
Exit status: 0 all printed, 1 some PKGBUILD failed, 2 usage or setup error.")]
pub struct SrcinfoArgs {
    /// Directories holding a PKGBUILD (default: the current directory).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    #[command(flatten)]
    base: BaseArgs,
}

impl BaseArgs {
    /// The base root, resolved as every command does
    /// ([`super::build::resolve_base`]).
    fn base(&self, home: &Home, config: Option<(&Config, SettingsFile<'_>)>) -> anyhow::Result<PathBuf> {
        Ok(resolve_base(home, self.base.as_deref(), self.base_dir.as_deref(), config)?.root)
    }

    fn timeout(&self) -> anyhow::Result<Duration> {
        Ok(self.parse_timeout)
    }
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    Config::write_starter(&args.config)?;
    eprintln!("wrote {}", args.config.display());
    Ok(ExitCode::SUCCESS)
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let home = Home::from_env()?;
    // Parses run in tmp/parse-*: `store gc` must not take them for a killed run's.
    let _in_use = home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?;
    let base = args.base.base(&home, Some((&config, SettingsFile::Config(&args.config))))?;
    let mode = if args.offline { SyncMode::Offline } else { SyncMode::Fetch };
    let synced = sync::sync(&config, &home, mode);
    let store = pkgcell::store::Store::at(home.store());
    let opts = PlanOptions { base, home, parse_timeout: args.base.timeout()?, local: Vec::new() };
    let plan = plan::plan(&config, synced, &opts)?;
    // Which pkgids are built already: the store answers, plan does not know it.
    let built: Vec<bool> = plan
        .packages
        .iter()
        .map(|p| p.pkgid.as_ref().is_some_and(|id| matches!(store.record(id), Ok(Some(_)))))
        .collect();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&plan)?;
        if let Some(pkgs) = v.get_mut("packages").and_then(|p| p.as_array_mut()) {
            for (p, built) in pkgs.iter_mut().zip(&built) {
                p["built"] = serde_json::Value::Bool(*built);
            }
        }
        serde_json::to_writer(&mut stdout, &v)?;
        writeln!(stdout)?;
    } else {
        print_table(&mut stdout, &plan, &built)?;
    }
    Ok(if plan.has_failures() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_table(w: &mut impl Write, plan: &plan::Plan, built: &[bool]) -> std::io::Result<()> {
    let mut rows = vec![["PKGBASE", "VERSION", "TREE-ID", "PKGID", "WAVE", "STATUS"].map(String::from)];
    for (p, built) in plan.packages.iter().zip(built) {
        let status = match &p.status {
            Status::ToBuild if *built => "built (in the store)".to_owned(),
            Status::ToBuild => "to build".to_owned(),
            Status::Blocked { by } => format!("blocked by {}", by.join(", ")),
            Status::Error(e) => format!("error ({}): {}", e.stage(), pkgcell::error::error_chain(e)),
            Status::NotForArch { archs } => format!("not for {} (arch = {})", plan.arch, archs.join(" ")),
        };
        let mut version = p.pkgver.clone().unwrap_or_else(|| "-".into());
        if p.pkgver_func {
            version.push_str(" (pkgver())");
        }
        rows.push([
            p.pkgbase.clone().unwrap_or_else(|| p.name.clone()),
            version,
            p.tree_id.map_or("-".into(), |t| t.short()),
            p.pkgid.as_ref().map_or("-".into(), |i| i.short()),
            p.wave.map_or("-".into(), |w| w.to_string()),
            status,
        ]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for (i, r) in rows.iter().enumerate() {
        for (c, width) in widths.iter().enumerate() {
            write!(w, "{:<width$}  ", r[c])?;
        }
        writeln!(w, "{}", r[5])?;
        // Where what the build installs comes from (the base's own packages left out).
        let Some(p) = i.checked_sub(1).map(|i| &plan.packages[i]) else { continue };
        let from: Vec<String> = p
            .installs
            .iter()
            .filter_map(|d| {
                let whence = match &d.from {
                    plan::InstallFrom::Base => return None,
                    plan::InstallFrom::Local { path } => format!("-I {}", path.display()),
                    plan::InstallFrom::Pkgbuild { entry } => format!("entry {entry}"),
                    plan::InstallFrom::Repo { repo, .. } => format!("repo {repo}"),
                    plan::InstallFrom::Sync { repo, .. } => format!("sync {repo}"),
                };
                Some(format!("{} {} ({whence})", d.name, d.version))
            })
            .collect();
        if !from.is_empty() {
            writeln!(w, "    installs {}", from.join(", "))?;
        }
    }
    writeln!(w, "{}; {} parsed, {} from cache", super::count(plan.packages.len(), "package", "packages"), plan.parsed, plan.cached)
}

pub fn srcinfo(args: SrcinfoArgs) -> anyhow::Result<ExitCode> {
    let dirs: Vec<PathBuf> = if args.dirs.is_empty() { vec![PathBuf::from(".")] } else { args.dirs.clone() };
    let mut abs = Vec::new();
    for d in &dirs {
        let a = std::fs::canonicalize(d).with_context(|| format!("cannot open {}", d.display()))?;
        if !a.is_dir() {
            bail!("{} is not a directory", d.display());
        }
        abs.push(a);
    }
    let home = Home::from_env()?;
    // Parses run in tmp/parse-*: `store gc` must not take them for a killed run's.
    let _in_use = home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?;
    // Without --base or --base-dir, the base of the config in the current
    // directory, else of the user's defaults (as laptop mode's build).
    let project = Path::new(config::FILE_NAME);
    let defaults = user_defaults().filter(|p| p.exists());
    let config = match (project.exists(), &defaults) {
        (true, _) => Some((Config::load(project)?, SettingsFile::Config(project))),
        (false, Some(d)) => Some((Config::load(d)?, SettingsFile::UserDefaults(d))),
        (false, None) => None,
    };
    let base = args.base.base(&home, config.as_ref().map(|(c, f)| (c, *f)))?;
    let (results, _) = plan::srcinfo_of_dirs(&abs, &base, home, args.base.timeout()?)?;
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    for (d, r) in dirs.iter().zip(results) {
        if dirs.len() > 1 {
            writeln!(stdout, "==> {}", d.display())?;
        }
        match r {
            Ok(s) => stdout.write_all(s.text.as_bytes())?,
            Err(e) => {
                failed = true;
                stdout.flush()?;
                eprintln!("pkgcell: {}: {}", display_dir(d), pkgcell::error::error_chain(&e));
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn display_dir(d: &Path) -> String {
    d.join("PKGBUILD").display().to_string()
}
