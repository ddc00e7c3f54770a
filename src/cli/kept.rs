//! `pkgcell shell` and `pkgcell clean`: enter and remove the kept trees of
//! failed builds (`build --keep-failed`). Thin: the work is in `pkgcell::kept`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use pkgcell::home::Home;
use pkgcell::kept;

/// Run a shell (or CMD) as the build user in the kept sandbox of a failed build.
#[derive(Debug, Args)]
#[command(after_help = "As arch-nspawn into the chroot makechrootpkg kept: the failed build's overlay (its /build, \
PKGDEST, SRCDEST) over the same base and dependency layer, with the build's binds and environment, in \
/build/PKGBASE when makepkg got there. Changes stay in the kept tree. Exit status: CMD's, or 2 if the \
sandbox could not be entered.")]
pub struct ShellArgs {
    /// The failed build: a package name (its newest kept build), or a
    /// pkgid or a prefix of it (see `ls $PKGCELL_HOME/failed`).
    #[arg(value_name = "PKGID|NAME")]
    which: String,
    /// The command to run instead of bash, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Remove the kept trees of failed builds (all, or the named ones).
#[derive(Debug, Args)]
#[command(after_help = "`pkgcell store gc` removes them too, once older than --failed-age (7 days by default).")]
pub struct CleanArgs {
    /// Package names or pkgids (prefixes) whose kept trees go (default: all).
    #[arg(value_name = "PKGID|NAME")]
    which: Vec<String>,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn shell(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    // Against a `store gc` removing the tree (or its layer) meanwhile.
    let _in_use = home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?;
    let k = kept::find(&home, &args.which)?;
    eprintln!("==> entering the kept build {} ({})", k.pkgid, k.path.display());
    Ok(ExitCode::from(k.shell(args.command)?))
}

pub fn clean(args: CleanArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let _in_use = home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?;
    let all = kept::list(&home)?;
    let chosen: Vec<kept::Kept> = if args.which.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for w in &args.which {
            // A name: every kept build of it, not only the newest.
            let by_name: Vec<_> = all.iter().filter(|k| k.pkgid.pkgbase().to_string() == *w).cloned().collect();
            if by_name.is_empty() {
                v.push(kept::find(&home, w)?);
            } else {
                v.extend(by_name);
            }
        }
        v
    };
    let mut out = std::io::stdout().lock();
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for k in &chosen {
        if !args.dry_run {
            k.remove()?;
        }
        writeln!(out, "{verb} {}", k.path.display())?;
    }
    writeln!(out, "{} {verb}", super::count(chosen.len(), "kept failed build", "kept failed builds"))?;
    Ok(ExitCode::SUCCESS)
}
