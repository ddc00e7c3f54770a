//! `pkgcell store ls|fsck|gc`: look at and maintain the content-addressed
//! store. Thin: the work is in `pkgcell::store`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use pkgcell::config::{self, Config};
use pkgcell::gc;
use pkgcell::home::{GcMode, Home};
use pkgcell::store::{Repair, Store};

/// Look at and maintain the content-addressed store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// List the build records: pkgid, outputs, when.
    Ls {
        /// One JSON object on stdout (see docs/build.md).
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every object and check every record; repair by dropping what is bad.
    #[command(after_help = "Exit status: 0 clean, 1 something was wrong (and was repaired unless --no-repair, \
except a missing local package file of a record, which only `pkgcell repro -I FILE` can put back).")]
    Fsck {
        /// Only report, change nothing.
        #[arg(long)]
        no_repair: bool,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Drop older builds: keep the newest N records per pkgbase, the objects, dependency layers, cached packages and sources they need;
    /// remove logs of failed builds (but the newest per pkgbase), old failed/ trees and what killed runs left in tmp/.
    Gc {
        /// How many builds to keep per pkgbase.
        #[arg(long, value_name = "N", default_value_t = 1)]
        keep: usize,
        /// How many logs of builds that have no record (failed, or dropped) to keep per pkgbase.
        #[arg(long, value_name = "N", default_value_t = 3)]
        keep_logs: usize,
        /// Remove failed/ trees (--keep-failed) older than this: "7d", "12h", "0" for all.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_age)]
        failed_age: Duration,
        /// Say what would be removed, with sizes, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Also keep the sources this config's PKGBUILDs need (default
        /// pkgcell.toml, when it exists).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `N thing` or `N things`.
fn n<N: std::fmt::Display + PartialEq + From<u8>>(count: N, one: &str) -> String {
    super::count(count, one, &format!("{one}s"))
}

fn parse_age(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    s.parse::<pkgcell_sandbox::Timeout>()
        .map(pkgcell_sandbox::Timeout::duration)
        .map_err(|e| format!("{e} (a duration like \"7d\", \"12h\", \"30m\", or \"0\")"))
}

pub fn store(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let store = Store::at(home.store());
    let mut out = std::io::stdout().lock();
    match args.command {
        StoreCommand::Ls { json } => {
            let records = store.records()?;
            if json {
                let v = serde_json::json!({"version": 1, "records": records});
                serde_json::to_writer(&mut out, &v)?;
                writeln!(out)?;
            } else {
                for r in &records {
                    let files: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
                    writeln!(out, "{}  {:.1}s  {}", r.pkgid, r.seconds, files.join(" "))?;
                }
                eprintln!("{}", super::count(records.len(), "record", "records"));
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Fsck { no_repair, json } => {
            let repair = if no_repair { Repair::No } else { Repair::Yes };
            let report = store.fsck(repair)?;
            if json {
                serde_json::to_writer(&mut out, &serde_json::json!({"version": 1, "fsck": report, "repaired": !no_repair}))?;
                writeln!(out)?;
            } else {
                for o in &report.bad_objects {
                    writeln!(out, "bad object {o}{}", if no_repair { "" } else { " (removed)" })?;
                }
                for r in &report.bad_records {
                    writeln!(out, "bad record {r}{}", if no_repair { "" } else { " (removed)" })?;
                }
                for l in &report.missing_local {
                    writeln!(out, "missing local file {l}")?;
                }
                if !report.missing_local.is_empty() {
                    // Nothing to repair from: only the user has the file.
                    writeln!(
                        out,
                        "the records stay; `pkgcell repro -I FILE PKGID` with the very file (same BLAKE3) puts it back"
                    )?;
                }
                writeln!(
                    out,
                    "{}, {} checked; {}, {}, {}{}",
                    n(report.objects, "object"),
                    n(report.records, "record"),
                    n(report.bad_objects.len(), "bad object"),
                    n(report.bad_records.len(), "bad record"),
                    n(report.temp_files, "temporary file"),
                    if no_repair || report.temp_files == 0 { "" } else { " (removed)" }
                )?;
            }
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        StoreCommand::Gc { keep, keep_logs, failed_age, dry_run, json, config } => {
            // Read first: a bad config stops gc before anything is removed.
            let config = match config {
                Some(path) => Some(Config::load(&path)?),
                None => {
                    let path = Path::new(config::FILE_NAME);
                    if path.exists() { Some(Config::load(path)?) } else { None }
                }
            };
            let mode = if dry_run { GcMode::DryRun } else { GcMode::Remove };
            let rules = gc::Rules { keep, keep_logs, failed_age };
            let gc::Report { store: report, layers, layer_bytes, bases, packages, sources, leftovers: left } =
                gc::collect(&home, &rules, config.as_ref(), mode, || {
                    eprintln!("==> waiting for running builds (build, fetch, repro, publish, plan) to finish")
                })?;
            if json {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({
                        "version": 1, "dry_run": dry_run, "gc": report, "layers": layers, "layer_bytes": layer_bytes,
                        "bases": bases, "packages": packages, "sources": sources, "leftovers": left,
                        "leftover_bytes": left.bytes(),
                    }),
                )?;
                writeln!(out)?;
            } else {
                let (dropped, removed) = if dry_run { ("would drop", "would remove") } else { ("dropped", "removed") };
                for r in &report.records {
                    writeln!(out, "{dropped} {r}")?;
                }
                writeln!(
                    out,
                    "{} and {} ({}) {dropped}; {} ({}) and {} {removed}",
                    n(report.records.len(), "record"),
                    n(report.objects, "object"),
                    n(report.bytes, "byte"),
                    n(layers, "dependency layer"),
                    n(layer_bytes, "byte"),
                    n(bases.len(), "base")
                )?;
                for f in &packages.files {
                    writeln!(out, "{removed} cached package {f}")?;
                }
                writeln!(
                    out,
                    "{} and {} ({}) {removed} from the package cache",
                    n(packages.files.len(), "cached package"),
                    n(packages.partial, "partial download"),
                    n(packages.bytes, "byte")
                )?;
                if !sources.unknown.is_empty() {
                    writeln!(
                        out,
                        "kept every cached source: the sources of {} kept builds or config entries are unknown (not parsed since they last changed: run pkgcell plan; or not synced): {}",
                        sources.unknown.len(),
                        sources.unknown.join(" ")
                    )?;
                }
                for f in &sources.files {
                    writeln!(out, "{removed} cached source {f}")?;
                }
                for m in &sources.mirrors {
                    writeln!(out, "{removed} git mirror {m}")?;
                }
                writeln!(
                    out,
                    "{}, {} and {} ({}) {removed} from the source cache",
                    n(sources.files.len(), "cached source"),
                    n(sources.mirrors.len(), "git mirror"),
                    n(sources.partial, "partial download"),
                    n(sources.bytes, "byte")
                )?;
                for (what, list) in [
                    ("log", &left.logs),
                    ("failed build", &left.failed),
                    ("leftover of a killed run", &left.tmp),
                    ("unused parse snapshot", &left.snapshots),
                ] {
                    for f in list {
                        writeln!(out, "{removed} {what} {} ({})", f.path.display(), n(f.bytes, "byte"))?;
                    }
                }
                writeln!(
                    out,
                    "{}, {}, {} and {} ({}) {removed}",
                    n(left.logs.len(), "log"),
                    n(left.failed.len(), "failed build tree"),
                    super::count(left.tmp.len(), "leftover of a killed run", "leftovers of killed runs"),
                    n(left.snapshots.len(), "unused parse snapshot"),
                    n(left.bytes(), "byte")
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
