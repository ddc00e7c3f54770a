//! `pkgcell publish` and `pkgcell repo add/remove`: thin wrappers over
//! [`pkgcell::publish`].

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use pkgcell::publish;
use pkgcell::s3::{S3Client, S3Url};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum DescVersionArg {
    /// With %MD5SUM%, byte for byte like repo-add of pacman 6.
    V1,
    /// Without %MD5SUM%, the current format (pacman 7).
    #[default]
    V2,
}

impl From<DescVersionArg> for publish::DescVersion {
    fn from(v: DescVersionArg) -> Self {
        match v {
            DescVersionArg::V1 => publish::DescVersion::V1,
            DescVersionArg::V2 => publish::DescVersion::V2,
        }
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The publish directory; the repository goes to DIR/ARCH/ (default:
    /// `[repo] publish` of the config). Or `s3://BUCKET/PREFIX`: published
    /// into `$PKGCELL_HOME/s3-mirror/BUCKET/PREFIX/`, then uploaded to
    /// PREFIX/ARCH/ (endpoint and region from `[s3]` or AWS_*).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    to: Option<PathBuf>,
    /// Repository name: `[NAME]` in pacman.conf, NAME.db on disk (default:
    /// `[repo] name` of the config).
    #[arg(long, value_name = "NAME")]
    repo: Option<String>,
    /// Architecture directory (packages must be for it or `any`; default:
    /// `[repo] arch` of the config, else the host's).
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// The config (default pkgcell.toml); used when no FILE_OR_DIR is given:
    /// then the newest build of each `[pkgbuilds]` entry in the store is published.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Versions of each package to keep as files (the newest is in the db).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    keep: u32,
    /// Sign packages without a .sig, and the dbs, with this gpg key.
    #[arg(long, value_name = "KEY")]
    sign: Option<String>,
    /// Remove this package from the repository (repeatable).
    #[arg(long, value_name = "NAME")]
    remove: Vec<String>,
    /// Desc format for new entries.
    #[arg(long, value_enum, default_value_t)]
    desc_version: DescVersionArg,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Package files (*.pkg.tar.zst, with .sig next to them if signed) or
    /// directories holding them.
    #[arg(value_name = "FILE_OR_DIR")]
    inputs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add or update packages in PATH/NAME.db.tar.zst (repo-add's arguments).
    Add(RepoAddArgs),
    /// Remove packages by name from PATH/NAME.db.tar.zst (repo-remove's arguments).
    Remove(RepoRemoveArgs),
}

#[derive(Debug, Args)]
pub struct RepoSignArgs {
    /// Sign the updated dbs with gpg.
    #[arg(short, long)]
    sign: bool,
    /// The gpg key to sign with (implies --sign).
    #[arg(short, long, value_name = "KEY")]
    key: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Verify the db's signature (DB.sig, with gpg) before updating it, as
    /// repo-add -v/--verify; here too `-v` means this, not --verbose.
    #[arg(long)]
    verify: bool,
    /// Accepted for repo-add compatibility; messages are plain.
    #[arg(long, hide = true)]
    nocolor: bool,
    /// Accepted for repo-add compatibility; only warnings are printed.
    #[arg(short, long, hide = true)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct RepoAddArgs {
    #[command(flatten)]
    common: RepoSignArgs,
    /// Accepted for compatibility: the files db is always written.
    #[arg(long)]
    files: bool,
    /// Skip packages whose name and version are already in the db.
    #[arg(short, long)]
    new: bool,
    /// Delete the replaced package file (and its .sig) from disk.
    #[arg(short = 'R', long, alias = "remove")]
    remove_old: bool,
    /// Skip packages older than the version in the db.
    #[arg(short, long)]
    prevent_downgrade: bool,
    /// Desc format for new entries.
    #[arg(long, value_enum, default_value_t)]
    desc_version: DescVersionArg,
    /// The database, PATH/NAME.db.tar.zst.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Package files to add.
    #[arg(value_name = "FILE", required = true)]
    files_to_add: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RepoRemoveArgs {
    #[command(flatten)]
    common: RepoSignArgs,
    /// The database, PATH/NAME.db.tar.zst.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Package names to remove.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
}

impl PublishArgs {
    /// `pkgcell publish --config CONFIG`: the newest builds of the config's
    /// entries, into its `[repo]` (for `build --publish`).
    pub(super) fn of_config(config: PathBuf) -> PublishArgs {
        PublishArgs {
            to: None,
            repo: None,
            arch: None,
            config: Some(config),
            keep: 2,
            sign: None,
            remove: Vec::new(),
            desc_version: DescVersionArg::default(),
            json: false,
            inputs: Vec::new(),
        }
    }
}

pub fn run_publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    // Without package files, publish the store's newest builds of the config.
    let from_config = args.inputs.is_empty() && args.remove.is_empty() || args.config.is_some();
    let config = if from_config {
        let path = args.config.clone().unwrap_or_else(|| PathBuf::from("pkgcell.toml"));
        Some(pkgcell::config::Config::load(&path).with_context(|| {
            format!("no package files given, so publishing the builds of {}", path.display())
        })?)
    } else {
        None
    };
    let repo_name = match (&args.repo, &config) {
        (Some(r), _) => r.clone(),
        (None, Some(c)) => c.repo.name.clone(),
        (None, None) => anyhow::bail!("--repo NAME is needed when publishing files without a config"),
    };
    // An s3:// destination is published locally as usual, into a mirror
    // kept between runs (so the next publish is incremental), then uploaded.
    let s3_dest = match args.to.as_deref().and_then(|p| p.to_str()).filter(|t| S3Url::is_s3(t)) {
        Some(t) => Some(t.parse::<S3Url>()?),
        None => None,
    };
    let dir = match (&args.to, &config) {
        (Some(_), _) if s3_dest.is_some() => {
            let url = s3_dest.as_ref().expect("checked");
            pkgcell::home::Home::from_env()?.root().join("s3-mirror").join(url.bucket()).join(url.prefix())
        }
        (Some(d), _) => d.clone(),
        (None, Some(c)) => c.repo.publish.clone(),
        (None, None) => anyhow::bail!("--to DIR is needed when publishing files without a config"),
    };
    let arch = match (&args.arch, &config) {
        (Some(a), _) => a.clone(),
        (None, Some(c)) => c.repo.arch.to_string(),
        (None, None) => std::env::consts::ARCH.to_owned(),
    };
    let repo = publish::RepoName::new(&repo_name)?;
    // Checked (credentials, endpoint) before anything is written.
    let s3 = match &s3_dest {
        Some(url) => {
            let settings = config.as_ref().map(|c| c.s3.clone()).unwrap_or_default();
            let client = S3Client::new(url, &settings)?;
            client.probe(&url.key("")).with_context(|| format!("publishing to {url}"))?;
            Some(client)
        }
        None => None,
    };
    let mut settings = publish::PublishSettings::new(repo.clone(), arch.clone(), dir);
    settings.keep = args.keep as usize;
    settings.sign = args.sign.or_else(|| config.as_ref().and_then(|c| c.repo.sign.clone())).map(publish::SignKey::new);
    settings.desc_version = args.desc_version.into();
    let publisher = publish::Publisher::new(settings)?;
    let mut stage_dir = None;
    // Held until the staged files in tmp/ are gone: `store gc` takes what
    // it finds there for a killed run's.
    let mut _in_use = None;
    let inputs = match &config {
        Some(c) if args.inputs.is_empty() => {
            let home = pkgcell::home::Home::from_env()?;
            _in_use = Some(home.use_lock(|| eprintln!("==> waiting for `pkgcell store gc` to finish"))?);
            let store = pkgcell::store::Store::at(home.store());
            let wanted: Vec<String> = c.pkgbuilds.iter().map(|p| p.name.to_string()).collect();
            let records = publish::from_store::newest_records(&store, &wanted)?;
            let stage = home.tmp().join(format!("publish-{}", std::process::id()));
            let inputs = publish::from_store::stage(&store, &records, &stage)?;
            stage_dir = Some(stage);
            inputs
        }
        _ => publish::PackageInput::collect(&args.inputs)?,
    };
    let result = publisher
        .publish(&inputs, &args.remove)
        .with_context(|| format!("publishing to {}", publisher.arch_dir().display()));
    if let Some(stage) = stage_dir {
        let _ = std::fs::remove_dir_all(stage);
    }
    let report = result?;
    let upload = match (&s3, &s3_dest) {
        (Some(client), Some(url)) => {
            let dest = url.join(&arch);
            let up = publish::upload::upload(client, &publisher.arch_dir(), &dest, &repo)
                .with_context(|| format!("uploading {} to {dest}", publisher.arch_dir().display()))?;
            Some(up)
        }
        _ => None,
    };
    print_publish_report(&report, upload.as_ref(), args.json)
}

fn print_publish_report(
    report: &publish::Report,
    upload: Option<&publish::upload::UploadReport>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(up) = upload else { return print_report(report, json) };
    if json {
        let mut value = serde_json::to_value(report)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("version".into(), 1.into());
            map.insert("s3".into(), serde_json::to_value(up)?);
        }
        writeln!(std::io::stdout().lock(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    print_report(report, false)?;
    for op in &up.operations {
        eprintln!("{op}");
    }
    eprintln!("{}: {} sent ({} bytes), {} unchanged, {} deleted", up.target, up.puts, up.bytes, up.unchanged, up.deletes);
    Ok(ExitCode::SUCCESS)
}

pub fn run_repo_add(args: RepoAddArgs) -> anyhow::Result<ExitCode> {
    if args.common.verify && !verify_db(&args.db)? {
        return Ok(ExitCode::from(1));
    }
    let options = publish::RepoAddOptions {
        sign: args.common.sign,
        key: args.common.key.map(publish::SignKey::new),
        only_new: args.new,
        remove_old: args.remove_old,
        prevent_downgrade: args.prevent_downgrade,
        desc_version: args.desc_version.into(),
    };
    let report = publish::repo_add(&args.db, &args.files_to_add, &options)
        .with_context(|| format!("updating {}", args.db.display()))?;
    print_report(&report, args.common.json)
}

pub fn run_repo_remove(args: RepoRemoveArgs) -> anyhow::Result<ExitCode> {
    if args.common.verify && !verify_db(&args.db)? {
        return Ok(ExitCode::from(1));
    }
    let options = publish::RepoAddOptions {
        sign: args.common.sign,
        key: args.common.key.map(publish::SignKey::new),
        ..publish::RepoAddOptions::default()
    };
    let report = publish::repo_remove(&args.db, &args.names, &options)
        .with_context(|| format!("updating {}", args.db.display()))?;
    print_report(&report, args.common.json)
}

/// repo-add's --verify: check DB.sig with gpg before the update; a db
/// without a signature (or no db yet) is updated with a warning, as
/// repo-add does. False (after saying why) when the signature is bad.
fn verify_db(db: &std::path::Path) -> anyhow::Result<bool> {
    let sig = PathBuf::from(format!("{}.sig", db.display()));
    if !db.exists() || !sig.exists() {
        eprintln!("==> WARNING: no existing signature found for {}, skipping verification", db.display());
        return Ok(true);
    }
    let out = std::process::Command::new("gpg")
        .args(["--batch", "--verify"])
        .arg(&sig)
        .arg(db)
        .output()
        .context("cannot run gpg to verify the db's signature (--verify)")?;
    if !out.status.success() {
        eprintln!(
            "==> ERROR: the signature of {} is invalid, the db was not updated: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(false);
    }
    eprintln!("==> the signature of {} is valid", db.display());
    Ok(true)
}

/// The report: JSON (with a schema version) on stdout, or one line per
/// change on stderr, keeping stdout for --json only.
fn print_report(report: &publish::Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let mut value = serde_json::to_value(report)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("version".into(), 1.into());
        }
        writeln!(std::io::stdout().lock(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    for pkg in &report.added {
        eprintln!("added {} {} ({})", pkg.name, pkg.version, pkg.filename);
    }
    for name in &report.removed {
        eprintln!("removed {name}");
    }
    for file in &report.deleted_files {
        eprintln!("deleted {file}");
    }
    eprintln!(
        "{}: {} added, {} unchanged, {} removed, {} read",
        report.db.display(),
        report.added.len(),
        report.unchanged.len(),
        report.removed.len(),
        super::count(report.packages_read, "package file", "package files")
    );
    Ok(ExitCode::SUCCESS)
}
