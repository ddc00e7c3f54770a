//! `pkgcell base create|update|list|show|rm`: thin wrappers around
//! [`pkgcell::base`] that print tables or JSON.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pkgcell::base::{self, Base, BaseRecord, MadeHow, SourceRecord};
use pkgcell::config::{self, Config};
use pkgcell::home::Home;
use serde::Serialize;

/// Manage base chroots: the read-only lowest layer of every build.
#[derive(Debug, Args)]
pub struct BaseArgs {
    #[command(subcommand)]
    command: BaseCommand,
}

#[derive(Debug, Subcommand)]
enum BaseCommand {
    /// Make the base of the config's [base] source, unless it exists already; print its id.
    Create(MakeArgs),
    /// Make the base again from its source; a new base when what is in it changed.
    Update(MakeArgs),
    /// List the bases, oldest first.
    List(JsonArg),
    /// Show one base: its source, root and packages.
    Show(ShowArgs),
    /// Remove a base.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
struct MakeArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", default_value = config::FILE_NAME)]
    config: PathBuf,
    /// Print the base as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print one JSON object (see docs/base.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The base id, or a unique prefix of it.
    id: String,
    /// Print one JSON object (see docs/base.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The base id, or a unique prefix of it.
    id: String,
}

/// A base in JSON: its record plus where it lives. The bases here are
/// made ones (`base::list`, `find`, `create`), which have a record.
#[derive(Serialize)]
struct BaseJson<'a> {
    #[serde(flatten)]
    record: Option<&'a BaseRecord>,
    root: &'a std::path::Path,
}

impl<'a> From<&'a Base> for BaseJson<'a> {
    fn from(b: &'a Base) -> Self {
        BaseJson { record: b.record.as_ref(), root: &b.root }
    }
}

pub fn base(args: BaseArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    match args.command {
        BaseCommand::Create(a) => make(&home, a, base::create_with),
        BaseCommand::Update(a) => make(&home, a, base::update_with),
        BaseCommand::List(a) => list(&home, a.json),
        BaseCommand::Show(a) => show(&home, &a.id, a.json),
        BaseCommand::Rm(a) => {
            let b = base::find(&home, &a.id)?;
            base::remove(&home, b.id).with_context(|| format!("cannot remove base {}", b.id))?;
            eprintln!("removed base {}", b.id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

type MakeFn = fn(&Home, &config::BaseConfig, &dyn Fn(base::Phase)) -> Result<base::Made, base::BaseError>;

fn make(home: &Home, args: MakeArgs, f: MakeFn) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    // Before the source runs (a `command` may bootstrap for minutes and
    // fail with its own words): the base is prepared for the build user.
    super::setup::check_build_user_mapped()?;
    eprintln!("pkgcell: making the base if needed (a bootstrap can take minutes)...");
    let phases = super::progress::BasePhases::new();
    let made = f(home, &config.base, &|p| phases.phase(p));
    phases.finish();
    let made = made.context("cannot make the base")?;
    let how = match made.how {
        MadeHow::New => "new",
        MadeHow::Unchanged => "unchanged",
        MadeHow::Existing => "existing",
    };
    match made.how {
        MadeHow::New => eprintln!("made base {}", made.base.id),
        MadeHow::Unchanged => eprintln!("made again: identical to base {}, which is kept", made.base.id),
        MadeHow::Existing => eprintln!("base {} of this source exists already (`pkgcell base update` makes it again)", made.base.id),
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            status: &'a str,
            base: BaseJson<'a>,
        }
        let out = Out { version: base::BASE_JSON_VERSION, status: how, base: (&made.base).into() };
        serde_json::to_writer(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout, "{}", made.base.id)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let bases = base::list(home)?;
    let mut stdout = std::io::stdout().lock();
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            bases: Vec<BaseJson<'a>>,
        }
        let out = Out { version: base::BASE_JSON_VERSION, bases: bases.iter().map(BaseJson::from).collect() };
        serde_json::to_writer(&mut stdout, &out)?;
        writeln!(stdout)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "{:<32}  {:<20}  {:>8}  SOURCE", "ID", "CREATED (UTC)", "PACKAGES")?;
    for b in &bases {
        // Listed bases were made by pkgcell: each has its record.
        let Some(r) = &b.record else { continue };
        writeln!(stdout, "{}  {:<20}  {:>8}  {}", b.id, date(r.created), r.packages.len(), describe(&r.source))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(home: &Home, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let b = base::find(home, id)?;
    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut stdout, &BaseJson::from(&b))?;
        writeln!(stdout)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "id:        {}", b.id)?;
    writeln!(stdout, "root:      {}", b.root.display())?;
    let Some(r) = &b.record else { return Ok(ExitCode::SUCCESS) };
    writeln!(stdout, "created:   {} UTC", date(r.created))?;
    writeln!(stdout, "source:    {}", describe(&r.source))?;
    writeln!(stdout, "prepared:  version {}", r.prepare_version)?;
    writeln!(stdout, "packages:  {}", r.packages.len())?;
    for p in &r.packages {
        writeln!(stdout, "  {} {}", p.name, p.version)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &SourceRecord) -> String {
    s.describe()
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, in UTC (Howard Hinnant's
/// days-to-civil algorithm), to avoid a date crate for one column.
fn date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::date;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(date(1_795_000_000), "2026-11-18 11:06:40");
    }
}
