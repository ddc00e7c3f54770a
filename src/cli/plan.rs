//! `pkgcell init`, `pkgcell plan` and `pkgcell srcinfo`: thin wrappers that
//! turn flags into library calls and print tables or JSON.

use super::setup::{BaseFlags, PlanFlags, plan_wording};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use pkgcell::config::{self, Config};
use pkgcell::plan::{self, Status};

/// Write a commented starter pkgcell.toml in the current directory.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(long, value_name = "FILE", default_value = config::FILE_NAME)]
    config: PathBuf,
}

/// Show what would be built, why, and in which order, without building.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 all planned, 1 some package failed to plan, 2 usage or setup error.")]
#[command(mut_args(plan_wording))]
pub struct PlanArgs {
    #[command(flatten)]
    common: PlanFlags,
    /// Print the plan as one JSON object (see docs/plan.md).
    #[arg(long)]
    json: bool,
}

/// Print the .SRCINFO of PKGBUILDs exactly as `makepkg --printsrcinfo`,
/// parsed in a sandbox.
#[derive(Debug, Args)]
#[command(after_help = "With several directories, each .SRCINFO is preceded by a line `==> DIR`.\n\
Exit status: 0 all printed, 1 some PKGBUILD failed, 2 usage or setup error.")]
#[command(mut_args(plan_wording))]
pub struct SrcinfoArgs {
    /// Directories holding a PKGBUILD (default: the current directory).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    #[command(flatten)]
    base: BaseFlags,
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    Config::write_starter(&args.config)?;
    eprintln!("wrote {}", args.config.display());
    Ok(ExitCode::SUCCESS)
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    // Holds the home in use: parses run in tmp/parse-*, which `store gc`
    // must not take for a killed run's.
    let setup = args.common.resolve(args.common.config_file()?)?;
    let store = pkgcell::store::Store::at(setup.home().store());
    let plan = setup.plan(&[])?;
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
    // Holds the home in use: parses run in tmp/parse-*, which `store gc`
    // must not take for a killed run's.
    let env = args.base.resolve_here()?;
    let (results, _) = plan::srcinfo_of_dirs(&abs, &env.base.root, env.home.clone(), env.parse_timeout)?;
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
