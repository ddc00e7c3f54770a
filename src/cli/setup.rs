//! The flags build, fetch, plan and srcinfo (and repro) share, and their
//! resolution, done once here: which config (or laptop mode), `$PKGCELL_HOME`
//! held in use against `store gc`, which base, the parse time limit.
//!
//! Two clap structs, one inside the other: [`BaseFlags`] (where PKGBUILDs
//! are parsed) is all srcinfo has; [`PlanFlags`] adds the config and
//! `--offline` for the commands that plan a config. They resolve into
//! [`Env`] and [`Setup`] the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Arg, Args};
use pkgcell::build;
use pkgcell::config::{self, Config};
use pkgcell::home::{Home, HomeLock};
use pkgcell::local::LocalPackage;
use pkgcell::plan::{self, Plan, PlanOptions};
use pkgcell::sync::{self, SyncMode};

/// Where PKGBUILDs are parsed: every command that parses them.
#[derive(Debug, Args)]
pub struct BaseFlags {
    /// A base root file system directory (default: $PKGCELL_BASE_DIR, else
    /// the base of --base or of the config's [base], made if missing).
    #[arg(long, value_name = "DIR")]
    base_dir: Option<PathBuf>,
    /// A base chroot, by id or unique prefix (see `pkgcell base list`).
    #[arg(long, value_name = "ID", conflicts_with = "base_dir")]
    base: Option<String>,
    /// Time limit for sourcing one PKGBUILD while planning: seconds, or
    /// "90s", "2m".
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    parse_timeout: Duration,
}

/// Where the config and the base come from: the commands that plan a config.
#[derive(Debug, Args)]
pub struct PlanFlags {
    /// The config file (default: pkgcell.toml; without one, laptop mode:
    /// the PKGBUILD in the current directory alone).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not fetch the git repositories of [pkgbuilds]: use them as last synced.
    #[arg(long, alias = "hold")]
    offline: bool,
    #[command(flatten)]
    base: BaseFlags,
}

/// plan and srcinfo word the shared flags as they always have (they parse
/// rather than build), and plan's `--config` defaults to pkgcell.toml: plan
/// has no laptop mode. For `#[command(mut_args(...))]`, which changes the
/// flags in place (their order in help, completions and man pages stays).
pub(super) fn plan_wording(a: Arg) -> Arg {
    match a.get_id().as_str() {
        "config" => a.help("The config file").default_value(config::FILE_NAME),
        "offline" => a.help("Do not fetch: use the git sources as they were last synced"),
        "base_dir" => a.help(
            "The base root file system PKGBUILDs are parsed in and resolved against (default: \
             $PKGCELL_BASE_DIR, else the base of --base or of the config's [base], made if missing)",
        ),
        "base" => a.help("The base chroot to use, by id or unique prefix (see `pkgcell base list`)"),
        "parse_timeout" => a.help("Time limit for sourcing one PKGBUILD: seconds, or \"90s\", \"2m\""),
        _ => a,
    }
}

/// `--parse-timeout`: a [`pkgcell_sandbox::Timeout`].
fn parse_timeout(s: &str) -> Result<Duration, String> {
    s.parse::<pkgcell_sandbox::Timeout>().map(|t| t.duration()).map_err(|e| e.to_string())
}

/// A config, and whether it stands for the PKGBUILD of the current directory.
pub(super) enum Mode {
    /// A pkgcell.toml (the file).
    Config(Config, PathBuf),
    /// The PKGBUILD in `dir`, with the user's defaults when there are some.
    Laptop { config: Config, dir: PathBuf, defaults: Option<PathBuf> },
}

impl Mode {
    /// The config.
    pub(super) fn config(&self) -> &Config {
        match self {
            Mode::Config(c, _) | Mode::Laptop { config: c, .. } => c,
        }
    }

    /// The config, and the file a user would edit to change it.
    fn settings(&self) -> (&Config, SettingsFile<'_>) {
        match self {
            Mode::Config(c, path) => (c, SettingsFile::Config(path)),
            Mode::Laptop { config, defaults: Some(d), .. } => (config, SettingsFile::UserDefaults(d)),
            Mode::Laptop { config, defaults: None, .. } => (config, SettingsFile::NoUserDefaults),
        }
    }
}

/// Where the settings of a run come from, to name in an error that asks the
/// user to change them.
#[derive(Debug, Clone, Copy)]
enum SettingsFile<'a> {
    /// A pkgcell.toml.
    Config(&'a Path),
    /// The user's defaults file, which exists.
    UserDefaults(&'a Path),
    /// No pkgcell.toml and no user defaults: pkgcell's built-in defaults.
    NoUserDefaults,
}

impl SettingsFile<'_> {
    /// Why the base could not be made, and where to change it.
    fn cannot_make_base(&self) -> String {
        const OR: &str = "or pass --base ID or --base-dir DIR";
        match self {
            SettingsFile::Config(p) => format!("cannot make the base that [base] of {} describes (change it there, {OR})", p.display()),
            SettingsFile::UserDefaults(p) => {
                format!("cannot make the base that [base] of {} (your defaults for laptop mode) describes (change it there, {OR})", p.display())
            }
            SettingsFile::NoUserDefaults => format!(
                "cannot make the built-in default base (source = \"pacman\", from this host's pacman.conf): write a [base] section into {} (as in `pkgcell init`'s pkgcell.toml), {OR}",
                user_defaults().map_or("~/.config/pkgcell/config.toml".into(), |p| p.display().to_string())
            ),
        }
    }
}

/// `$XDG_CONFIG_HOME/pkgcell/config.toml` (or `~/.config/...`): the user's
/// defaults for laptop mode.
pub(super) fn user_defaults() -> Option<PathBuf> {
    let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config"))).map(|d| d.join("pkgcell/config.toml"))
}

/// pkgcell's own check that the build user can exist inside a sandbox,
/// before a base is made (or a build starts) rather than after a
/// bootstrap failed with its own words.
pub(super) fn check_build_user_mapped() -> anyhow::Result<()> {
    pkgcell_sandbox::check_id_mapped(build::BUILD_UID, &super::run::subid_files())
        .context("pkgcell builds as the user builder (uid 1000 inside the sandbox), and bases are made for it")
}

/// `$PKGCELL_HOME`, held in use (against `store gc`) until the lock is dropped.
pub(super) fn home_in_use() -> anyhow::Result<(Home, HomeLock)> {
    let home = Home::from_env()?;
    let lock = home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?;
    Ok((home, lock))
}

/// [`BaseFlags`] resolved: the home held in use, the base, the parse limit.
pub(super) struct Env {
    /// `$PKGCELL_HOME`.
    pub home: Home,
    /// Held to the end: no `store gc` while a run's parses, downloads,
    /// layers and outputs have no record yet.
    _in_use: HomeLock,
    /// The base.
    pub base: pkgcell::base::Base,
    /// Time limit for sourcing one PKGBUILD.
    pub parse_timeout: Duration,
}

impl BaseFlags {
    /// Resolve the flags with no config given (srcinfo): unless a flag or
    /// `$PKGCELL_BASE_DIR` names the base, the base of the config in the
    /// current directory, else of the user's defaults (as laptop mode's
    /// build); the config is read for nothing else.
    pub(super) fn resolve_here(&self) -> anyhow::Result<Env> {
        let project = Path::new(config::FILE_NAME);
        let defaults = user_defaults().filter(|p| p.exists());
        let config = match (project.exists(), &defaults) {
            (true, _) => Some((Config::load(project)?, SettingsFile::Config(project))),
            (false, Some(d)) => Some((Config::load(d)?, SettingsFile::UserDefaults(d))),
            (false, None) => None,
        };
        let (home, in_use) = home_in_use()?;
        self.resolve_in(home, in_use, config.as_ref().map(|(c, f)| (c, *f)))
    }

    /// The base of `settings` (made when missing) unless a flag or
    /// `$PKGCELL_BASE_DIR` names one, in a home held in use.
    fn resolve_in(&self, home: Home, in_use: HomeLock, settings: Option<(&Config, SettingsFile<'_>)>) -> anyhow::Result<Env> {
        let base = resolve_base(&home, self.base.as_deref(), self.base_dir.as_deref(), settings)?;
        Ok(Env { home, _in_use: in_use, base, parse_timeout: self.parse_timeout })
    }
}

/// The one answer to "which base", for every command: `--base ID`, else
/// `--base-dir DIR` or `$PKGCELL_BASE_DIR`, else the config's `[base]`
/// (made when missing). Errors name the file to edit.
fn resolve_base(home: &Home, id: Option<&str>, dir: Option<&Path>, config: Option<(&Config, SettingsFile<'_>)>) -> anyhow::Result<pkgcell::base::Base> {
    if let Some(id) = id {
        return Ok(pkgcell::base::find(home, id)?);
    }
    let from_env = std::env::var_os("PKGCELL_BASE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = dir.map(Path::to_owned).or(from_env) {
        let dir = std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
        if !dir.is_dir() {
            bail!("base directory {} does not exist", dir.display());
        }
        return Ok(pkgcell::base::Base::of_dir(&dir)?);
    }
    let Some((config, file)) = config else {
        let defaults = user_defaults().map(|p| format!(", or set [base] in {}", p.display())).unwrap_or_default();
        bail!("no base: pass --base ID or --base-dir DIR, or run where a {} names one{defaults}", config::FILE_NAME);
    };
    check_build_user_mapped()?;
    let phases = super::progress::BasePhases::new();
    let b = pkgcell::base::resolve_with(home, &config.base, &|p| phases.phase(p));
    phases.finish();
    b.with_context(|| file.cannot_make_base())
}

/// [`PlanFlags`] resolved: the config and the [`Env`], ready to plan.
pub(super) struct Setup {
    /// The config, or laptop mode's.
    pub mode: Mode,
    /// The home, the base, the parse limit.
    pub env: Env,
    /// How git sources are synced before planning.
    sync: SyncMode,
}

impl PlanFlags {
    /// The config: `--config`, else pkgcell.toml here, else laptop mode (a
    /// PKGBUILD here, with the user's defaults).
    pub(super) fn mode(&self) -> anyhow::Result<Mode> {
        let path = self.config.clone().unwrap_or_else(|| PathBuf::from(config::FILE_NAME));
        if path.exists() || self.config.is_some() {
            return Ok(Mode::Config(Config::load(&path)?, path));
        }
        let dir = std::env::current_dir().context("cannot find the current directory")?;
        if !dir.join("PKGBUILD").exists() {
            bail!("no {} and no PKGBUILD in {}", config::FILE_NAME, dir.display());
        }
        // One entry for this directory; its key only names it in messages.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.parse::<alpm_types::Name>().is_ok())
            .unwrap_or_else(|| "pkgbuild".into());
        // The user's defaults ([base], [build], [repo]), if any; then one
        // entry for this directory.
        let defaults = user_defaults().filter(|p| p.exists());
        let mut config = match &defaults {
            Some(p) => Config::load(p)?,
            None => Config::from_toml("", Path::new("(laptop mode)"), &dir)?,
        };
        config.pkgbuilds = vec![config::PkgbuildEntry {
            name: name.parse().expect("checked above"),
            location: config::Location::Path { dir: dir.clone() },
            deps: Vec::new(),
            makedeps: Vec::new(),
            home_binds: Vec::new(),
        }];
        Ok(Mode::Laptop { config, dir, defaults })
    }

    /// The config `--config` names, which must exist (plan: no laptop mode;
    /// [`plan_wording`] gives `--config` its default).
    pub(super) fn config_file(&self) -> anyhow::Result<Mode> {
        let path = self.config.clone().unwrap_or_else(|| PathBuf::from(config::FILE_NAME));
        Ok(Mode::Config(Config::load(&path)?, path))
    }

    /// Resolve the flags for `mode` ([`PlanFlags::mode`] or
    /// [`PlanFlags::config_file`]): the home held in use, then the base.
    pub(super) fn resolve(&self, mode: Mode) -> anyhow::Result<Setup> {
        let (home, in_use) = home_in_use()?;
        self.resolve_in(home, in_use, mode)
    }

    /// [`PlanFlags::resolve`] in a home the caller already holds in use
    /// (repro looks into the store before a base may have to be made).
    pub(super) fn resolve_in(&self, home: Home, in_use: HomeLock, mode: Mode) -> anyhow::Result<Setup> {
        let env = self.base.resolve_in(home, in_use, Some(mode.settings()))?;
        let sync = if self.offline { SyncMode::Offline } else { SyncMode::Fetch };
        Ok(Setup { mode, env, sync })
    }
}

impl Setup {
    /// The config.
    pub(super) fn config(&self) -> &Config {
        self.mode.config()
    }

    /// The home.
    pub(super) fn home(&self) -> &Home {
        &self.env.home
    }

    /// Sync and plan the config, with the -I files `local` installed into
    /// every build.
    pub(super) fn plan(&self, local: &[LocalPackage]) -> anyhow::Result<Plan> {
        self.plan_config(self.config(), local)
    }

    /// Sync and plan `config` (repro plans an altered copy) as this run would.
    pub(super) fn plan_config(&self, config: &Config, local: &[LocalPackage]) -> anyhow::Result<Plan> {
        self.plan_synced(config, sync::sync(config, &self.env.home, self.sync), local)
    }

    /// Plan what `sync` gave (repro pins an older commit of an entry).
    pub(super) fn plan_synced(&self, config: &Config, synced: Vec<sync::Synced>, local: &[LocalPackage]) -> anyhow::Result<Plan> {
        let opts = PlanOptions {
            base: self.env.base.root.clone(),
            home: self.env.home.clone(),
            parse_timeout: self.env.parse_timeout,
            local: local.to_vec(),
        };
        Ok(plan::plan(config, synced, &opts)?)
    }
}
