//! Command line: clap structs hold raw values; each subcommand converts them
//! into typed library calls. anyhow, exit codes and JSON printing live here only.

mod base;
mod build;
mod kept;
mod log;
mod plan;
mod progress;
mod publish;
mod repro;
mod run;
mod setup;
mod store;

use std::process::ExitCode;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory, Parser, Subcommand};

/// Build Arch Linux packages in rootless sandboxes and publish them as a pacman repository.
#[derive(Debug, Parser)]
#[command(name = "pkgcell", version, about, long_about = None)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one command in a sandbox.
    Run(Box<run::RunArgs>),
    /// Write a commented starter pkgcell.toml.
    Init(plan::InitArgs),
    /// Show what would be built, why, and in which order.
    Plan(plan::PlanArgs),
    /// Print the .SRCINFO of PKGBUILDs, parsed in a sandbox.
    Srcinfo(plan::SrcinfoArgs),
    /// Manage base chroots: create, update, list, show, rm.
    Base(base::BaseArgs),
    /// Publish package files as a pacman repository in DIR/ARCH/ (db, files
    /// db, latest/ and updated/ views).
    Publish(publish::PublishArgs),
    /// Add packages to or remove them from a repository db, like repo-add
    /// and repo-remove (natively, incrementally).
    #[command(subcommand)]
    Repo(publish::RepoCommand),
    /// Build packages in sandboxes, in dependency order, skipping what the store has.
    Build(Box<build::BuildArgs>),
    /// Download the sources of PKGBUILDs into the cache.
    Fetch(build::FetchArgs),
    /// Look at and maintain the content-addressed store of build outputs.
    Store(store::StoreArgs),
    /// Rebuild a package pkgcell built, with no network, and compare the bytes.
    Repro(Box<repro::ReproArgs>),
    /// Show the newest build log of a package (-f: follow a running build).
    Log(log::LogArgs),
    /// Run a shell (or CMD) as the build user in the kept sandbox of a failed build.
    Shell(kept::ShellArgs),
    /// Remove the kept trees of failed builds (all, or the named ones).
    Clean(kept::CleanArgs),
    /// Print a shell completion script: bash, zsh or fish.
    Completions(CompletionsArgs),
    /// Print the man page, or write one per subcommand into a directory.
    Man(ManArgs),
}

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "bash: pkgcell completions bash > ~/.local/share/bash-completion/completions/pkgcell\n\
zsh:  pkgcell completions zsh > ~/.zfunc/_pkgcell (with ~/.zfunc in $fpath)\n\
fish: pkgcell completions fish > ~/.config/fish/completions/pkgcell.fish\n\
`make install` installs all three.")]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Print the man page (roff), or write them all.
#[derive(Debug, Args)]
struct ManArgs {
    /// Write pkgcell.1 and a pkgcell-SUBCOMMAND.1 per subcommand into DIR
    /// instead of printing pkgcell.1 (`make install` does this).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `N thing` or `N things`, as the count asks.
pub(crate) fn count<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let word = if n == N::from(1) { one } else { many };
    format!("{n} {word}")
}

fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pkgcell", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            std::io::stdout().lock().write_all(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(repo_add_verify(std::env::args_os().collect()));
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        // `pkgcell plan | head`: the reader has what it wanted. As ripgrep
        // does, end quietly and successfully (Rust ignores SIGPIPE, so the
        // write fails with EPIPE instead of killing us).
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pkgcell: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `repo add -v` and `repo remove -v` mean `--verify`, as in repo-add
/// and repo-remove, not the global `-v` (--verbose); clap cannot take a
/// global short flag back in one subcommand, so the word is changed here.
fn repo_add_verify(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let is = |i: usize, w: &[&str]| args.get(i).and_then(|a| a.to_str()).is_some_and(|a| w.contains(&a));
    if is(1, &["repo"]) && is(2, &["add", "remove"]) {
        for a in args.iter_mut().skip(3) {
            if a == "--" {
                break;
            }
            if a == "-v" {
                *a = "--verify".into();
            }
        }
    }
    args
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // Log lines go above the progress spinners, never through them.
    let builder = tracing_subscriber::fmt().with_writer(progress::log_writer).with_target(false).with_ansi(progress::colour());
    // An EnvFilter compiles its directives, which costs more than a whole
    // sandbox start; only pay for it when asked.
    match std::env::var("PKGCELL_LOG") {
        Ok(directives) => builder.with_env_filter(tracing_subscriber::EnvFilter::new(directives)).init(),
        Err(_) => builder.with_max_level(level).init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Init(args) => plan::init(args),
        Command::Plan(args) => plan::plan(args),
        Command::Srcinfo(args) => plan::srcinfo(args),
        Command::Base(args) => base::base(args),
        Command::Publish(args) => publish::run_publish(args),
        Command::Repo(publish::RepoCommand::Add(args)) => publish::run_repo_add(args),
        Command::Repo(publish::RepoCommand::Remove(args)) => publish::run_repo_remove(args),
        Command::Build(args) => build::build(*args),
        Command::Fetch(args) => build::fetch(args),
        Command::Store(args) => store::store(args),
        Command::Repro(args) => repro::repro(*args),
        Command::Log(args) => log::log(args),
        Command::Shell(args) => kept::shell(args),
        Command::Clean(args) => kept::clean(args),
        Command::Completions(args) => completions(args),
        Command::Man(args) => man(args),
    }
}
