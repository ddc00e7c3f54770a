//! `pkgcell run`: one command in a sandbox. Raw flags are turned into a
//! typed [`Spec`] in one place ([`RunArgs::to_spec`]), which reports every
//! misuse before anything starts.

use std::io::Write as _;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::{Context, bail};
use clap::Args;
use pkgcell_sandbox::{
    Access, IdMapMode, Mount, Network, Rlimit, RlimitResource, Root, Sandbox, Seccomp, Size, Spec, SubIdFiles,
    Timeout, Upper,
};

/// Default size limit of a tmpfs upper.
const DEFAULT_TMPFS_UPPER: u64 = 4 << 30;

/// Run one command in a sandbox.
///
/// The root is a directory (`--root`) or an overlay of read-only lower
/// directories (`--lower`, top first) with writes going to a tmpfs (default)
/// or to `--upper DIR`. Inside, uid 0 is you; ids 1..65535 are your
/// subordinate ids (/etc/subuid). The network is only loopback unless `--net`.
/// The environment is empty but for PATH, HOME, TERM and `--env`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: the command's own (128+N if killed by signal N, 124 on time-out), \
or 2 if the sandbox could not be set up.\n\nExample:\n  pkgcell run --lower /srv/base --bind $PWD:/build --cwd /build --uid 1000 -- makepkg")]
pub struct RunArgs {
    /// Use this directory as the root, as it is (writes go to it).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["lower", "spec"])]
    root: Option<PathBuf>,
    /// A read-only lower layer of an overlay root (repeatable, top first).
    #[arg(long, value_name = "DIR")]
    lower: Vec<PathBuf>,
    /// Use this base chroot (an id or a unique prefix, see `pkgcell base list`)
    /// as the lowest layer, below any --lower.
    #[arg(long, value_name = "ID", conflicts_with = "root")]
    base: Option<String>,
    /// Put the overlay's writes in this directory (kept afterwards).
    #[arg(long, value_name = "DIR", conflicts_with = "tmpfs_upper")]
    upper: Option<PathBuf>,
    /// Put the overlay's writes on a tmpfs of this size (default 4G), gone afterwards.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmpfs_upper: Option<u64>,
    /// Size of the tmpfs on /tmp (default: that of the tmpfs upper, else 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmp_size: Option<u64>,
    /// Size of the tmpfs on /dev/shm (default: that of the tmpfs upper, else 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    shm_size: Option<u64>,
    /// Bind a host path read-write (DST defaults to SRC).
    #[arg(long, value_name = "SRC[:DST]", value_parser = parse_bind_rw)]
    bind: Vec<Mount>,
    /// Bind a host path read-only, nosuid, nodev (DST defaults to SRC).
    #[arg(long, value_name = "SRC[:DST]", value_parser = parse_bind_ro)]
    ro_bind: Vec<Mount>,
    /// Mount a fresh tmpfs here (as large as /tmp).
    #[arg(long, value_name = "DST", value_parser = parse_tmpfs)]
    tmpfs: Vec<Mount>,
    /// Use the host's network (default: a private one with only loopback).
    #[arg(long)]
    net: bool,
    /// User id inside (0 = you).
    #[arg(long, default_value_t = 0)]
    uid: u32,
    /// Group id inside.
    #[arg(long, default_value_t = 0)]
    gid: u32,
    /// Working directory inside.
    #[arg(long, value_name = "DIR", default_value = "/")]
    cwd: PathBuf,
    /// Set an environment variable (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Host name inside.
    #[arg(long, value_name = "NAME", default_value = "pkgcell")]
    hostname: String,
    /// Kill everything after this many seconds (or "90s", "2h", "1h30m").
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Timeout>,
    /// A resource limit for the command, soft = hard (repeatable): nofile,
    /// nproc, as (bytes), data (bytes), fsize (bytes), cpu (seconds), core, stack.
    #[arg(long, value_name = "NAME=N", value_parser = parse_rlimit)]
    rlimit: Vec<Rlimit>,
    /// Map only your own id (to 0), even if you have a subordinate range.
    #[arg(long)]
    single_id: bool,
    /// The syscall filter: `on` (default) makes the calls no build needs
    /// (keyrings, bpf, io_uring, unusual socket families, ...) fail with
    /// EPERM; `off` for the rare command that needs one of them.
    #[arg(long, value_name = "on|off", value_enum, default_value_t = SeccompArg::On)]
    seccomp: SeccompArg,
    /// Read the whole spec as JSON from FILE (or - for stdin) instead of flags.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["lower", "root", "base", "command"])]
    spec: Option<PathBuf>,
    /// Print the outcome as JSON on stdout (the command's stdout goes to stderr).
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `--seccomp` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SeccompArg {
    On,
    Off,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<Size>().map(Size::bytes).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<Timeout, String> {
    s.parse::<Timeout>().map_err(|e| e.to_string())
}

fn split_bind(s: &str) -> Result<(PathBuf, PathBuf), String> {
    let (src, dst) = match s.split_once(':') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(format!("{s:?} is not SRC[:DST]"));
    }
    let src = std::path::absolute(src).map_err(|e| format!("{src}: {e}"))?;
    let dst = PathBuf::from(dst);
    if !dst.is_absolute() {
        return Err(format!("destination {} must be absolute", dst.display()));
    }
    Ok((src, dst))
}

pub(super) fn parse_bind_rw(s: &str) -> Result<Mount, String> {
    let (src, dst) = split_bind(s)?;
    Ok(Mount::Bind { src, dst, access: Access::ReadWrite })
}

pub(super) fn parse_bind_ro(s: &str) -> Result<Mount, String> {
    let (src, dst) = split_bind(s)?;
    Ok(Mount::Bind { src, dst, access: Access::ReadOnly })
}

fn parse_tmpfs(s: &str) -> Result<Mount, String> {
    let dst = PathBuf::from(s);
    if !dst.is_absolute() {
        return Err(format!("{s} must be an absolute path"));
    }
    Ok(Mount::Tmpfs { dst, size: None })
}

fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=N"))?;
    let resource = match name {
        "as" => RlimitResource::AddressSpace,
        "core" => RlimitResource::Core,
        "cpu" => RlimitResource::Cpu,
        "data" => RlimitResource::Data,
        "fsize" => RlimitResource::FileSize,
        "nofile" => RlimitResource::OpenFiles,
        "nproc" => RlimitResource::Processes,
        "stack" => RlimitResource::Stack,
        other => return Err(format!("unknown resource {other:?} (as, core, cpu, data, fsize, nofile, nproc, stack)")),
    };
    let limit = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
    Ok(Rlimit { resource, limit })
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// The environment a payload starts with before `--env`.
fn base_env(uid: u32) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), pkgcell_sandbox::DEFAULT_PATH.into());
    env.insert("HOME".into(), if uid == 0 { "/root".into() } else { "/tmp".into() });
    if let Ok(term) = std::env::var("TERM") {
        env.insert("TERM".into(), term);
    }
    env
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

impl RunArgs {
    /// The typed spec these flags describe.
    fn to_spec(&self) -> anyhow::Result<Spec> {
        if let Some(file) = &self.spec {
            let text = if file == Path::new("-") {
                std::io::read_to_string(std::io::stdin()).context("cannot read the spec from stdin")?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("cannot read the spec {}", file.display()))?
            };
            // serde_path_to_error: the error names the field ("root.overlay.
            // upper.tmpfs.size: invalid value: integer `-1`"), which
            // serde_json's own message does not.
            let spec: Spec = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|e| {
                    let path = e.path().to_string();
                    let msg = e.into_inner().to_string();
                    // Our own checks name their field already ("timeout 1e300: ...").
                    if msg.starts_with(&path) { anyhow::anyhow!(msg) } else { anyhow::anyhow!("{path}: {msg}") }
                })
                .with_context(|| format!("{} is not a valid sandbox spec (see README, \"pkgcell run --spec\")", file.display()))?;
            return Ok(spec);
        }
        if self.command.is_empty() {
            bail!("no command given: put it after `--`, e.g. `pkgcell run --root DIR -- sh -c 'echo hi'`");
        }
        let mut lowers = self.lower.clone();
        if let Some(id) = &self.base {
            let home = pkgcell::home::Home::from_env()?;
            let base = pkgcell::base::find(&home, id).with_context(|| format!("cannot use base {id}"))?;
            lowers.push(base.root);
        }
        let root = match (&self.root, lowers.as_slice()) {
            (Some(dir), _) => {
                if self.upper.is_some() || self.tmpfs_upper.is_some() {
                    bail!("--upper and --tmpfs-upper need --lower (an overlay root), not --root");
                }
                Root::Dir { path: absolute(dir)? }
            }
            (None, []) => bail!("no root given: use --root DIR, --lower DIR or --base ID"),
            (None, lowers) => {
                let lowers = lowers.iter().map(|l| absolute(l)).collect::<anyhow::Result<Vec<_>>>()?;
                let upper = match &self.upper {
                    Some(u) => {
                        let u = absolute(u)?;
                        // The work dir must be on the same file system as the upper.
                        let work = u.with_file_name(format!(
                            "{}.work",
                            u.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                        ));
                        Upper::Dir { upper: u, work }
                    }
                    None => Upper::Tmpfs { size: self.tmpfs_upper.unwrap_or(DEFAULT_TMPFS_UPPER) },
                };
                Root::Overlay { lowers, upper }
            }
        };
        let mut spec = Spec::new(root, self.command.clone());
        spec.mounts.extend(self.bind.iter().chain(&self.ro_bind).chain(&self.tmpfs).cloned());
        spec.network = if self.net { Network::Host } else { Network::Loopback };
        spec.uid = self.uid;
        spec.gid = self.gid;
        spec.cwd = self.cwd.clone();
        spec.env = base_env(self.uid);
        spec.env.extend(self.env.iter().cloned());
        spec.hostname = self.hostname.clone();
        spec.timeout = self.timeout.map(Timeout::duration);
        spec.tmp_size = self.tmp_size;
        spec.shm_size = self.shm_size;
        spec.rlimits = self.rlimit.clone();
        spec.id_map = if self.single_id { IdMapMode::Single } else { IdMapMode::Auto };
        spec.seccomp = match self.seccomp {
            SeccompArg::On => Seccomp::On,
            SeccompArg::Off => Seccomp::Off,
        };
        Ok(spec)
    }
}

/// /etc/subuid and /etc/subgid, or the files named by PKGCELL_SUBUID_FILE and
/// PKGCELL_SUBGID_FILE (for tests of the fallback paths, and for systems that
/// keep them elsewhere).
pub(super) fn subid_files() -> SubIdFiles {
    let mut f = SubIdFiles::default();
    if let Some(p) = std::env::var_os("PKGCELL_SUBUID_FILE") {
        f.subuid = p.into();
    }
    if let Some(p) = std::env::var_os("PKGCELL_SUBGID_FILE") {
        f.subgid = p.into();
    }
    f
}

/// Run the command; the exit code is the payload's.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = args.to_spec()?;
    let mut sandbox = Sandbox::new(spec).subid_files(subid_files());
    if args.json {
        // stdout carries only our JSON; the payload's output goes to stderr.
        let err = std::io::stderr().as_fd().try_clone_to_owned().context("cannot duplicate stderr")?;
        sandbox = sandbox.stdout(Stdio::from(err));
    }
    match sandbox.run() {
        Ok(outcome) => {
            if args.json {
                writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&outcome)?)?;
            }
            Ok(ExitCode::from(outcome.status.exit_code()))
        }
        Err(e) if args.json => {
            let detail = match &e {
                pkgcell_sandbox::Error::Setup(s) => {
                    serde_json::json!({"step": s.step, "call": s.call, "errno": s.errno, "hint": s.hint()})
                }
                _ => serde_json::Value::Null,
            };
            let msg = format!("{:#}", anyhow::Error::from(e));
            writeln!(std::io::stdout().lock(), "{}", serde_json::json!({"version": pkgcell_sandbox::SPEC_VERSION, "error": msg, "setup": detail}))?;
            eprintln!("pkgcell: error: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::Error::from(e).context("sandbox setup failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("3X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("18446744073709551615").is_err());
    }

    #[test]
    fn binds_default_their_destination() {
        let Mount::Bind { src, dst, access } = parse_bind_ro("/etc").unwrap() else { panic!() };
        assert_eq!((src.as_path(), dst.as_path(), access), (Path::new("/etc"), Path::new("/etc"), Access::ReadOnly));
        let Mount::Bind { dst, access, .. } = parse_bind_rw("/a:/b").unwrap() else { panic!() };
        assert_eq!((dst.as_path(), access), (Path::new("/b"), Access::ReadWrite));
        assert!(parse_bind_rw("/a:rel").is_err());
    }
}
