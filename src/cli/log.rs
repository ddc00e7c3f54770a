//! `pkgcell log NAME`: the newest log of a package, `-f` to follow a
//! running build, as `tail -f` does, until it ends.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use pkgcell::buildlog;
use pkgcell::home::Home;
use pkgcell::store::Store;

/// Show the newest build log of a package (of a build, its dependency
/// layer, or a repro rebuild).
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 shown, 2 no log or usage error.")]
pub struct LogArgs {
    /// The pkgbase (the name of a [pkgbuilds] entry builds the pkgbase its
    /// PKGBUILD states).
    #[arg(value_name = "PKGBASE")]
    pkgbase: String,
    /// Follow the log while its build runs, and stop when it ends.
    #[arg(short, long)]
    follow: bool,
    /// Print the log's path instead of the log.
    #[arg(long, conflicts_with = "follow")]
    path: bool,
}

pub fn log(args: LogArgs) -> anyhow::Result<ExitCode> {
    // A name with a slash would read another directory's logs.
    if args.pkgbase.parse::<alpm_types::Name>().is_err() {
        bail!("{:?} is not a package name", args.pkgbase);
    }
    let home = Home::from_env()?;
    let Some(path) = buildlog::newest(&home.logs(), &args.pkgbase)? else {
        bail!("no log of {} under {} (has it been built here?)", args.pkgbase, home.logs().display());
    };
    let mut out = std::io::stdout().lock();
    if args.path {
        use std::io::Write as _;
        writeln!(out, "{}", path.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::at(home.store());
    let pkgid = buildlog::pkgid_of_log(&path);
    // A build holds its pkgid's lock while it runs: the log grows until it
    // is released.
    let running = || args.follow && pkgid.as_ref().is_some_and(|id| store.is_locked(id));
    buildlog::follow(&path, &mut out, &running).with_context(|| format!("cannot show {}", PathBuf::from(&path).display()))?;
    Ok(ExitCode::SUCCESS)
}
