//! The config file `pkgcell.toml`: raw serde structs (unknown keys refused,
//! with the line and the valid keys) turned into typed values in one place,
//! [`Config::from_toml`]. Relative paths are taken from the config file's
//! directory. Knows nothing of git, sandboxes or PKGBUILD contents.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use alpm_types::{Name, PackageRelation, SystemArchitecture};
use pkgcell_sandbox::{Size, Timeout};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use toml::Spanned;

use crate::s3::{AddressStyle, S3Settings, S3Url};

/// The file name looked for in the current directory.
pub const FILE_NAME: &str = "pkgcell.toml";

/// The AUR's git URL for a package, used for `name = "AUR"`.
pub fn aur_url(name: &str) -> String {
    format!("https://aur.archlinux.org/{name}.git")
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error, an unknown key, or a value of the wrong kind.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value (0 when unknown).
        line: usize,
        /// What is wrong, with the valid keys or values where there is a choice.
        message: String,
    },
    /// `pkgcell init` found a config already there.
    #[error("{} already exists; not overwriting it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// `pkgcell init` could not write the file.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The whole configuration, typed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[repo]`.
    pub repo: RepoConfig,
    /// `[base]`.
    pub base: BaseConfig,
    /// `[build]`.
    pub build: BuildConfig,
    /// `[pkgbuilds]`, sorted by name.
    pub pkgbuilds: Vec<PkgbuildEntry>,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[s3]`: where the S3 service is, for `[store] remote` and `publish --to s3://`.
    pub s3: S3Settings,
}

/// `[store]`: the build store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreConfig {
    /// A remote store shared by several machines: builds are looked up
    /// there before building and uploaded there after.
    pub remote: Option<S3Url>,
}

/// `[repo]`: the pacman repository pkgcell publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoConfig {
    /// Repository name (`<name>.db.tar.zst`).
    pub name: String,
    /// The architecture packages are planned and built for.
    pub arch: SystemArchitecture,
    /// Directory the repository is written to.
    pub publish: PathBuf,
    /// GPG key id for packages and database.
    pub sign: Option<String>,
}

/// `[base]`: where the base root file system comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseConfig {
    /// How the base is made.
    pub source: BaseSource,
}

/// How the base root file system is made.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BaseSource {
    /// Installed by pacman.
    Pacman {
        /// What to install.
        packages: Vec<String>,
        /// The pacman.conf to use (the host's when unset).
        pacman_conf: Option<PathBuf>,
        /// Whether package signatures are checked while bootstrapping.
        signatures: Signatures,
        /// The tools root: a root file system whose pacman, pacman-key and
        /// gpg bootstrap the base (the host's `/` when unset).
        tools: Option<PathBuf>,
        /// Public key files (ASCII-armored or binary) added to the keyrings
        /// of the bootstrap and of the base, and locally signed there.
        keys: Vec<PathBuf>,
    },
    /// Unpacked from a tarball.
    Tarball {
        /// The tarball.
        path: PathBuf,
    },
    /// Written by a command to `$PKGCELL_BASE_OUT`.
    Command {
        /// The shell command.
        command: String,
        /// The directory it runs in: the config file's.
        dir: PathBuf,
    },
}

/// Whether pacman checks package signatures when it bootstraps a base.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signatures {
    /// As the pacman.conf says, with a keyring initialised for the purpose.
    #[default]
    Check,
    /// `SigLevel = Never`: an explicit opt-out, for unsigned local repos.
    Skip,
}

/// `[build]`: how builds run.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    /// Builds at the same time.
    pub jobs: NonZeroUsize,
    /// Whether builds may reach the network.
    pub network: bool,
    /// Which dependencies go into the dephash.
    pub dephash: DephashMode,
    /// Time limit of one build.
    pub timeout: Duration,
    /// Memory limit of each process of a build, in bytes (RLIMIT_DATA).
    pub memory: Option<u64>,
    /// Process limit of a build: processes of its user inside its sandbox
    /// (RLIMIT_NPROC, counted per user namespace).
    pub pids: Option<u64>,
    /// Size of the package files of one build, each and together, in bytes
    /// (None: the default of `pkgcell::build::DEFAULT_MAX_OUTPUT`).
    pub max_output: Option<u64>,
    /// Size of each of /tmp and /dev/shm inside a build, in bytes (none:
    /// the sandbox's default, [`pkgcell_sandbox::DEFAULT_TMP_SIZE`]).
    pub tmp_size: Option<u64>,
    /// Bytes of one build's log kept: its head and its tail, with a line
    /// saying what was cut between them.
    pub log_limit: u64,
    /// makepkg's `PACKAGER` for this repository's builds (over the user's
    /// makepkg.conf; the environment's `PACKAGER` wins over both).
    pub packager: Option<String>,
    /// Host directories `file://` sources may read (absolute; relative ones
    /// in the file are taken from the config's directory). See
    /// [`BuildConfig::file_source_dirs`].
    pub file_sources: Vec<PathBuf>,
}

impl Config {
    /// The host directories a PKGBUILD's `file://` sources may read: `[build]
    /// file_sources`, and the directory of each `path` entry. A PKGBUILD
    /// names its sources itself, so a `file:///home/you/.ssh/id_ed25519`
    /// source with a `SKIP` checksum would otherwise copy any file you can
    /// read into the source cache and the build.
    pub fn file_source_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.build.file_sources.clone();
        for e in &self.pkgbuilds {
            if let Location::Path { dir } = &e.location {
                dirs.push(dir.clone());
            }
        }
        dirs
    }
}

/// Which dependencies go into a pkgid's dephash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DephashMode {
    /// depends + makedepends + checkdepends, transitively.
    Strict,
    /// depends only, transitively.
    Loose,
    /// None: a pkgid changes only with its tree.
    None,
}

/// One `[pkgbuilds]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PkgbuildEntry {
    /// The key in `[pkgbuilds]`.
    pub name: Name,
    /// Where its PKGBUILD lives.
    pub location: Location,
    /// Extra run-time dependencies, on top of the PKGBUILD's.
    pub deps: Vec<PackageRelation>,
    /// Extra build-time dependencies, on top of the PKGBUILD's.
    pub makedeps: Vec<PackageRelation>,
    /// Directories of the build user's home kept between builds.
    pub home_binds: Vec<PathBuf>,
}

/// Where a PKGBUILD lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A git repository, kept as a local bare mirror.
    Git {
        /// The URL to fetch.
        url: String,
        /// The branch (the remote's HEAD when unset).
        branch: Option<String>,
        /// The directory holding the PKGBUILD, relative to the repository root.
        subtree: Option<PathBuf>,
    },
    /// A directory read in place.
    Path {
        /// The directory (absolute).
        dir: PathBuf,
    },
}

// ---- raw form: exactly what the file says -------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repo: RawRepo,
    #[serde(default)]
    base: RawBase,
    #[serde(default)]
    build: RawBuild,
    #[serde(default)]
    pkgbuilds: BTreeMap<Spanned<String>, Spanned<RawSource>>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    s3: RawS3,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    remote: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: Option<Spanned<String>>,
    region: Option<String>,
    path_style: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    name: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    publish: Option<PathBuf>,
    sign: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    source: Option<Spanned<RawBaseKind>>,
    packages: Option<Vec<String>>,
    pacman_conf: Option<PathBuf>,
    tarball: Option<PathBuf>,
    command: Option<String>,
    signatures: Option<Signatures>,
    tools: Option<PathBuf>,
    keys: Option<Spanned<Vec<PathBuf>>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawBaseKind {
    Pacman,
    Tarball,
    Command,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    jobs: Option<NonZeroUsize>,
    network: Option<bool>,
    dephash: Option<DephashMode>,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    pids: Option<Spanned<i64>>,
    max_output: Option<Spanned<String>>,
    tmp_size: Option<Spanned<String>>,
    log_limit: Option<Spanned<String>>,
    #[serde(default)]
    file_sources: Vec<PathBuf>,
    packager: Option<Spanned<String>>,
}

#[derive(Debug)]
enum RawSource {
    /// `name = "URL"` or `name = "AUR"`.
    Url(String),
    Table(RawSourceTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceTable {
    url: Option<String>,
    path: Option<PathBuf>,
    branch: Option<String>,
    subtree: Option<PathBuf>,
    #[serde(default)]
    deps: Vec<Spanned<String>>,
    #[serde(default)]
    makedeps: Vec<Spanned<String>>,
    #[serde(default)]
    home_binds: Vec<Spanned<String>>,
}

// A hand-written visitor rather than `#[serde(untagged)]`: untagged would
// swallow the table's "unknown field, expected one of" error (and its span).
impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a git URL, "AUR", or a table with `url` or `path`"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSource, E> {
                Ok(RawSource::Url(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSource, A::Error> {
                RawSourceTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawSource::Table)
            }
        }
        d.deserialize_any(V)
    }
}

// ---- raw → typed ----------------------------------------------------------

impl Config {
    /// Read and check the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir = std::path::absolute(&dir).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text, path, &dir)
    }

    /// Check config text; `path` names it in errors, relative paths are
    /// taken from `dir`.
    pub fn from_toml(text: &str, path: &Path, dir: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            message,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim_end().to_owned()))?;

        let arch = match &raw.repo.arch {
            None => SystemArchitecture::X86_64,
            Some(a) => a.get_ref().parse().map_err(|_| {
                invalid(Some(a.span()), format!("unknown architecture {:?}", a.get_ref()))
            })?,
        };
        // The name goes into file names (<name>.db.tar.zst) and paths: check
        // it here, not first at publish, after a whole build.
        if let Some(n) = &raw.repo.name {
            crate::ids::RepoName::new(n.get_ref()).map_err(|e| invalid(Some(n.span()), e.to_string()))?;
        }
        let repo = RepoConfig {
            name: raw.repo.name.map_or_else(|| "pkgcell".to_owned(), Spanned::into_inner),
            arch,
            publish: dir.join(raw.repo.publish.unwrap_or_else(|| "repo".into())),
            sign: raw.repo.sign,
        };

        let b = raw.base;
        let pacman_only = |key: &str, span| invalid(span, format!(r#"`{key}` is a key of source = "pacman" only"#));
        if !matches!(b.source.as_ref().map(|s| *s.get_ref()), None | Some(RawBaseKind::Pacman)) {
            let span = b.source.as_ref().map(Spanned::span);
            if b.tools.is_some() {
                return Err(pacman_only("tools", span));
            }
            if b.keys.is_some() {
                return Err(pacman_only("keys", span));
            }
        }
        let source = match b.source.as_ref().map(|s| (*s.get_ref(), s.span())) {
            None | Some((RawBaseKind::Pacman, _)) => {
                let signatures = b.signatures.unwrap_or_default();
                let keys = match b.keys {
                    None => Vec::new(),
                    Some(k) if signatures == Signatures::Skip => {
                        return Err(invalid(Some(k.span()), r#"`keys` are for checking signatures: not with signatures = "skip""#.into()));
                    }
                    Some(k) => k.into_inner().into_iter().map(|p| dir.join(p)).collect(),
                };
                BaseSource::Pacman {
                    packages: b.packages.unwrap_or_else(|| vec!["base-devel".to_owned()]),
                    pacman_conf: b.pacman_conf.map(|p| dir.join(p)),
                    signatures,
                    tools: b.tools.map(|p| dir.join(p)),
                    keys,
                }
            }
            Some((RawBaseKind::Tarball, span)) => BaseSource::Tarball {
                path: dir.join(b.tarball.ok_or_else(|| {
                    invalid(Some(span), r#"source = "tarball" needs `tarball = "FILE"`"#.into())
                })?),
            },
            Some((RawBaseKind::Command, span)) => BaseSource::Command {
                command: b.command.ok_or_else(|| {
                    invalid(Some(span), r#"source = "command" needs `command = "..."`"#.into())
                })?,
                dir: dir.to_owned(),
            },
        };

        let timeout = match &raw.build.timeout {
            None => Duration::from_secs(2 * 3600),
            Some(t) => t
                .get_ref()
                .parse::<Timeout>()
                .map_err(|why| invalid(Some(t.span()), format!("timeout {:?}: {why}", t.get_ref())))?
                .duration(),
        };
        let memory = match &raw.build.memory {
            None => None,
            Some(m) => Some(parse_memory(m.get_ref()).map_err(|why| invalid(Some(m.span()), format!("memory {:?}: {why}", m.get_ref())))?),
        };
        let tmp_size = match &raw.build.tmp_size {
            None => None,
            Some(m) => Some(
                m.get_ref()
                    .parse::<Size>()
                    .map_err(|why| invalid(Some(m.span()), format!("tmp_size {:?}: {why}", m.get_ref())))?
                    .bytes(),
            ),
        };
        let pids = match &raw.build.pids {
            None => None,
            Some(p) => Some(check_pids(*p.get_ref()).map_err(|why| invalid(Some(p.span()), format!("pids = {}: {why}", p.get_ref())))?),
        };
        let log_limit = match &raw.build.log_limit {
            None => DEFAULT_LOG_LIMIT,
            Some(l) => parse_log_limit(l.get_ref()).map_err(|why| invalid(Some(l.span()), format!("log_limit {:?}: {why}", l.get_ref())))?,
        };
        let max_output = match &raw.build.max_output {
            None => None,
            Some(m) => Some(
                m.get_ref()
                    .parse::<Size>()
                    .map_err(|why| invalid(Some(m.span()), format!("max_output {:?}: {why}", m.get_ref())))?
                    .bytes(),
            ),
        };
        // It becomes a line of .PKGINFO and .BUILDINFO: one line.
        let packager = match &raw.build.packager {
            None => None,
            Some(p) if p.get_ref().trim().is_empty() || p.get_ref().chars().any(char::is_control) => {
                return Err(invalid(Some(p.span()), format!("packager {:?}: one line of text, like \"Jane Doe <jane@example.org>\"", p.get_ref())));
            }
            Some(p) => Some(p.get_ref().clone()),
        };
        let build = BuildConfig {
            jobs: raw.build.jobs.unwrap_or(NonZeroUsize::MIN),
            network: raw.build.network.unwrap_or(false),
            dephash: raw.build.dephash.unwrap_or(DephashMode::Strict),
            timeout,
            memory,
            pids,
            max_output,
            tmp_size,
            log_limit,
            file_sources: raw.build.file_sources.iter().map(|p| dir.join(p)).collect(),
            packager,
        };

        let mut pkgbuilds = Vec::new();
        for (key, value) in raw.pkgbuilds {
            let name = Name::new(key.get_ref()).map_err(|e| {
                invalid(Some(key.span()), format!("{:?} is not a valid package name: {e}", key.get_ref()))
            })?;
            let span = value.span();
            let entry = match value.into_inner() {
                RawSource::Url(u) if u == "AUR" => PkgbuildEntry::git(name.clone(), aur_url(name.as_ref())),
                RawSource::Url(u) => PkgbuildEntry::git(name, u),
                RawSource::Table(t) => {
                    let location = match (t.url, t.path) {
                        (Some(_), Some(_)) | (None, None) => {
                            return Err(invalid(
                                Some(span),
                                format!("pkgbuilds.{name}: give exactly one of `url` or `path`"),
                            ));
                        }
                        (None, Some(p)) => {
                            if t.branch.is_some() || t.subtree.is_some() {
                                return Err(invalid(
                                    Some(span),
                                    format!("pkgbuilds.{name}: `branch` and `subtree` go with `url`, not `path`"),
                                ));
                            }
                            Location::Path { dir: dir.join(p) }
                        }
                        (Some(u), None) => {
                            let url = if u == "AUR" { aur_url(name.as_ref()) } else { u };
                            let subtree = t.subtree.map(|s| s.components().collect::<PathBuf>());
                            if let Some(s) = &subtree
                                && (s.is_absolute()
                                    || s.components().any(|c| matches!(c, std::path::Component::ParentDir)))
                            {
                                return Err(invalid(
                                    Some(span),
                                    format!("pkgbuilds.{name}: subtree {s:?} must be a relative path inside the repository"),
                                ));
                            }
                            Location::Git { url, branch: t.branch, subtree: subtree.filter(|s| !s.as_os_str().is_empty()) }
                        }
                    };
                    let rel = |v: Vec<Spanned<String>>| {
                        v.into_iter()
                            .map(|d| {
                                PackageRelation::from_str(d.get_ref()).map_err(|e| {
                                    invalid(Some(d.span()), format!("{:?} is not a valid dependency: {e}", d.get_ref()))
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    };
                    // A bind that left the home would be a read-write
                    // host directory anywhere in the sandbox.
                    let home_binds = t
                        .home_binds
                        .into_iter()
                        .map(|b| {
                            home_bind(b.get_ref()).ok_or_else(|| {
                                invalid(
                                    Some(b.span()),
                                    format!(
                                        "pkgbuilds.{name}: home_binds entry {:?} must be a relative path inside the home, without `..`",
                                        b.get_ref()
                                    ),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    PkgbuildEntry {
                        name,
                        location,
                        deps: rel(t.deps)?,
                        makedeps: rel(t.makedeps)?,
                        home_binds,
                    }
                }
            };
            pkgbuilds.push(entry);
        }
        let store = StoreConfig {
            remote: match &raw.store.remote {
                None => None,
                Some(r) => Some(r.get_ref().parse::<S3Url>().map_err(|e| invalid(Some(r.span()), e.to_string()))?),
            },
        };
        if let Some(e) = &raw.s3.endpoint
            && !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://"))
        {
            return Err(invalid(Some(e.span()), format!("endpoint {:?} must be an http:// or https:// URL", e.get_ref())));
        }
        let s3 = S3Settings {
            endpoint: raw.s3.endpoint.map(Spanned::into_inner),
            region: raw.s3.region,
            style: raw.s3.path_style.map(|p| if p { AddressStyle::Path } else { AddressStyle::VirtualHost }),
        };
        Ok(Config { repo, base: BaseConfig { source }, build, pkgbuilds, store, s3 })
    }

    /// Write the commented starter config to `path`; refuses to overwrite.
    pub fn write_starter(path: &Path) -> Result<(), ConfigError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                ConfigError::Exists { path: path.to_owned() }
            } else {
                ConfigError::Write { path: path.to_owned(), source }
            }
        })?;
        f.write_all(STARTER.as_bytes())
            .map_err(|source| ConfigError::Write { path: path.to_owned(), source })
    }
}

impl PkgbuildEntry {
    fn git(name: Name, url: String) -> PkgbuildEntry {
        PkgbuildEntry {
            name,
            location: Location::Git { url, branch: None, subtree: None },
            deps: Vec::new(),
            makedeps: Vec::new(),
            home_binds: Vec::new(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A home_binds entry as a path below the home: relative, only plain
/// components (no `..`, no `.`), not empty; none when it is not.
fn home_bind(s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    let plain = !p.as_os_str().is_empty()
        && p.components().all(|c| matches!(c, std::path::Component::Normal(_)))
        && !s.split('/').any(|part| part == "." || part == "..");
    plain.then(|| p.components().collect())
}

/// The smallest memory limit taken: below it pacman and makepkg cannot start.
pub const MIN_MEMORY: u64 = 16 << 20;

/// The smallest process limit taken: makepkg alone runs a few at once.
pub const MIN_PIDS: u64 = 16;

/// The default of `[build] log_limit`.
pub const DEFAULT_LOG_LIMIT: u64 = 256 << 20;

/// The smallest log limit taken: room for makepkg's own messages.
pub const MIN_LOG_LIMIT: u64 = 64 << 10;

/// A log limit, written as a [`Size`]; at least [`MIN_LOG_LIMIT`].
pub fn parse_log_limit(s: &str) -> Result<u64, String> {
    let bytes = s.parse::<Size>().map_err(|e| e.to_string())?.bytes();
    if bytes < MIN_LOG_LIMIT {
        return Err(format!("below the minimum of {}K", MIN_LOG_LIMIT >> 10));
    }
    Ok(bytes)
}

/// A memory limit, written as a [`Size`] (`"4G"`, `"512M"`, plain
/// bytes); at least [`MIN_MEMORY`]. Err says what is wrong.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let bytes = s.parse::<Size>().map_err(|e| e.to_string())?.bytes();
    if bytes < MIN_MEMORY {
        return Err(format!("below the minimum of {}M (pacman and makepkg need more)", MIN_MEMORY >> 20));
    }
    Ok(bytes)
}

/// A process limit: at least [`MIN_PIDS`].
pub fn check_pids(n: i64) -> Result<u64, String> {
    match u64::try_from(n) {
        Ok(n) if n >= MIN_PIDS => Ok(n),
        _ => Err(format!("must be at least {MIN_PIDS} (makepkg alone runs a few processes at once)")),
    }
}

/// What `pkgcell init` writes.
pub const STARTER: &str = r#"# pkgcell.toml: the PKGBUILDs pkgcell builds and the repository it publishes.
# Every key is optional; the values shown are the defaults unless marked "example".

[repo]
name = "pkgcell"             # the pacman repository: <name>.db.tar.zst
arch = "x86_64"              # packages are planned and built for this architecture
publish = "repo"             # directory the pacman repo is written to
# sign = "KEYID"             # example: gpg key for packages and db

[base]
source = "pacman"            # "pacman" | "tarball" | "command"
packages = ["base-devel"]    # pacman: what to install
# pacman_conf = "/etc/pacman.conf"
# tarball = "archlinux-bootstrap-x86_64.tar.zst"
# command = "scripts/make-test-base $PKGCELL_BASE_OUT"
# signatures = "check"       # pacman: "check", or "skip" for unsigned local repos
# tools = "root.x86_64"      # example, pacman: a root file system whose pacman bootstraps the base (default: the host's /)
# keys = ["myrepo.asc"]      # example, pacman: public keys added and locally signed in the keyrings

[build]
jobs = 1                     # builds at the same time
network = false              # builds reach no network unless true
dephash = "strict"           # "strict" | "loose" | "none": what a pkgid's dephash covers
timeout = "2h"               # per build: "90s", "30m", "2h", "1h30m"
# memory = "4G"              # example: memory of each process of a build (default: no limit)
# pids = 512                 # example: processes of a build at once (default: no limit)
# max_output = "8G"          # example: package files of a build, each and together (default: 8G)
# tmp_size = "2G"            # example: size of each of /tmp and /dev/shm in a build (default: 1G)
log_limit = "256M"           # per build: bytes of its log kept (head and tail)
# packager = "Jane Doe <jane@example.org>"  # example: PACKAGER of the packages (default: your makepkg.conf's)
# file_sources = ["/srv/git"]  # example: host directories file:// sources may read, beyond the path entries' own

[store]
# remote = "s3://bucket/pkgcell-store"  # example: a store shared by several machines

[s3]                         # the S3 service of `[store] remote` and `publish --to s3://`
# endpoint = "http://127.0.0.1:9000"  # example; else AWS_ENDPOINT_URL, else AWS
# region = "us-east-1"       # else AWS_REGION / AWS_DEFAULT_REGION
# path_style = true          # true with an endpoint (bucket in the path), false for AWS
# credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)

[pkgbuilds]
# One entry per PKGBUILD (examples):
# hello = { path = "pkgs/hello" }                  # a directory, read in place
# yay = "AUR"                                      # the AUR's git repository of that name
# foo = "https://example.org/foo.git"              # a git repository, its default branch
# bar = { url = "https://example.org/pkgs.git", branch = "main", subtree = "bar/", makedeps = ["git"], home_binds = [".cargo"] }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("pkgcell.toml"), Path::new("/cfg"))
    }

    fn error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ConfigError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn the_design_example_parses() {
        let c = parse(
            r#"
[repo]
name = "myrepo"
arch = "x86_64"
publish = "repo"

[base]
source = "pacman"
packages = ["base-devel"]

[build]
jobs = 2
network = false
dephash = "loose"
timeout = "2h"

[pkgbuilds]
hello = { path = "pkgs/hello" }
yay = "AUR"
foo = "https://example.org/foo.git"
bar = { url = "https://example.org/pkgs.git", branch = "main", subtree = "bar/", makedeps = ["git"], home_binds = [".cargo"] }
"#,
        )
        .unwrap();
        assert_eq!(c.repo.name, "myrepo");
        assert_eq!(c.repo.publish, Path::new("/cfg/repo"));
        assert_eq!(c.build.jobs.get(), 2);
        assert_eq!(c.build.dephash, DephashMode::Loose);
        assert_eq!(c.build.timeout, Duration::from_secs(7200));
        let names: Vec<_> = c.pkgbuilds.iter().map(|p| p.name.to_string()).collect();
        assert_eq!(names, ["bar", "foo", "hello", "yay"]);
        assert_eq!(
            c.pkgbuilds[0].location,
            Location::Git { url: "https://example.org/pkgs.git".into(), branch: Some("main".into()), subtree: Some("bar".into()) }
        );
        assert_eq!(c.pkgbuilds[0].makedeps[0].to_string(), "git");
        assert_eq!(c.pkgbuilds[2].location, Location::Path { dir: "/cfg/pkgs/hello".into() });
        assert_eq!(
            c.pkgbuilds[3].location,
            Location::Git { url: aur_url("yay"), branch: None, subtree: None }
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.build.dephash, DephashMode::Strict);
        assert_eq!(c.repo.arch, SystemArchitecture::X86_64);
        assert!(c.pkgbuilds.is_empty());
    }

    #[test]
    fn the_starter_config_parses() {
        let c = parse(STARTER).unwrap();
        assert_eq!((c.build.memory, c.build.pids), (None, None));
        // Its commented limits are valid when uncommented.
        let text = STARTER.replace("# memory = ", "memory = ").replace("# pids = ", "pids = ");
        let c = parse(&text).unwrap();
        assert_eq!((c.build.memory, c.build.pids), (Some(4 << 30), Some(512)));
    }

    #[test]
    fn unknown_keys_name_the_line_and_the_valid_keys() {
        let (line, msg) = error("[repo]\nname = \"x\"\nnmae = \"y\"\n");
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `nmae`"), "{msg}");
        assert!(msg.contains("`name`, `arch`, `publish`, `sign`"), "{msg}");

        let (line, msg) = error("[pkgbuilds]\nfoo = { path = \"x\" }\nbar = { url = \"u\", brnach = \"main\" }\n");
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `brnach`"), "{msg}");
        assert!(msg.contains("`branch`"), "{msg}");

        let (line, msg) = error("\n[biuld]\n");
        assert_eq!(line, 2);
        assert!(msg.contains("`repo`, `base`, `build`, `pkgbuilds`, `store`, `s3`"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let (line, msg) = error("[build]\ndephash = \"sometimes\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("`strict`, `loose`, `none`"), "{msg}");
        let (line, msg) = error("[build]\njobs = 1\ntimeout = \"soon\"\n");
        assert_eq!(line, 3);
        assert!(msg.starts_with("timeout \"soon\"") && msg.contains("not a duration"), "{msg}");
        let (line, _) = error("[pkgbuilds]\n\"a/b\" = \"AUR\"\n");
        assert_eq!(line, 2);
        let (line, msg) = error("[pkgbuilds]\nx = { url = \"u\", path = \"p\" }\n");
        assert_eq!(line, 2);
        assert!(msg.contains("exactly one of"), "{msg}");
        let (_, msg) = error("[pkgbuilds]\nx = { url = \"u\", subtree = \"../up\" }\n");
        assert!(msg.contains("inside the repository"), "{msg}");
        let (line, msg) = error("[pkgbuilds]\nx = { path = \"p\", deps = [\"ok\", \"<bad\"] }\n");
        assert_eq!(line, 2);
        assert!(msg.contains("not a valid dependency"), "{msg}");
    }

    #[test]
    fn base_sources_carry_what_making_them_needs() {
        let c = parse("[base]\nsource = \"pacman\"\nsignatures = \"skip\"\n").unwrap();
        assert_eq!(
            c.base.source,
            BaseSource::Pacman {
                packages: vec!["base-devel".into()],
                pacman_conf: None,
                signatures: Signatures::Skip,
                tools: None,
                keys: vec![]
            }
        );
        let c = parse("[base]\ntools = \"arch\"\nkeys = [\"k.asc\"]\n").unwrap();
        assert!(
            matches!(&c.base.source, BaseSource::Pacman { tools: Some(t), keys, .. } if t == Path::new("/cfg/arch") && keys == &[PathBuf::from("/cfg/k.asc")]),
            "{:?}",
            c.base.source
        );
        let (line, msg) = error("[base]\nsource = \"tarball\"\ntarball = \"x\"\ntools = \"arch\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("`tools` is a key of source = \"pacman\" only"), "{msg}");
        let (line, msg) = error("[base]\nsignatures = \"skip\"\nkeys = [\"k.asc\"]\n");
        assert_eq!(line, 3);
        assert!(msg.contains("not with signatures = \"skip\""), "{msg}");
        let c = parse("[base]\nsource = \"command\"\ncommand = \"mk $PKGCELL_BASE_OUT\"\n").unwrap();
        assert_eq!(c.base.source, BaseSource::Command { command: "mk $PKGCELL_BASE_OUT".into(), dir: "/cfg".into() });
        let (line, msg) = error("[base]\n\nsignatures = \"never\"\n");
        assert_eq!(line, 3);
        assert!(msg.contains("`check` or `skip`"), "{msg}");
    }

    #[test]
    fn memory_and_pids_limits() {
        let c = parse("[build]\nmemory = \"4G\"\npids = 512\n").unwrap();
        assert_eq!(c.build.memory, Some(4 << 30));
        assert_eq!(c.build.pids, Some(512));
        let c = parse("").unwrap();
        assert_eq!((c.build.memory, c.build.pids), (None, None));
        let (line, msg) = error("[build]\njobs = 1\nmemory = \"lots\"\n");
        assert_eq!(line, 3);
        assert!(msg.contains("memory \"lots\"") && msg.contains("not a size"), "{msg}");
        let (line, msg) = error("[build]\n\npids = 0\n");
        assert_eq!(line, 3);
        assert!(msg.contains("at least 16"), "{msg}");
        let (line, msg) = error("[build]\npids = \"many\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn max_output_is_a_size_and_defaults_to_none() {
        assert_eq!(parse("[build]\nmax_output = \"2G\"\n").unwrap().build.max_output, Some(2 << 30));
        assert_eq!(parse("").unwrap().build.max_output, None);
        let (line, msg) = error("[build]\nmax_output = \"huge\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("max_output \"huge\"") && msg.contains("not a size"), "{msg}");
    }

    #[test]
    fn memory_goes_through_the_one_size_parser_with_a_minimum() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("4GiB"), Ok(4 << 30));
        assert_eq!(parse_memory("33554432"), Ok(32 << 20));
        for bad in ["", "G", "4X", "-4G", "4.5G", "1M", "0", "99999999999T", "18446744073709551615"] {
            assert!(parse_memory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn absurd_limits_are_errors_naming_the_key_and_line() {
        for (text, key) in [
            ("[build]\n\ntimeout = \"0\"\n", "timeout"),
            ("[build]\n\ntimeout = \"1e300\"\n", "timeout"),
            ("[build]\n\ntimeout = \"-5\"\n", "timeout"),
            ("[build]\n\ntimeout = \"nan\"\n", "timeout"),
            ("[build]\n\ntimeout = \"99999999999999999999d\"\n", "timeout"),
            ("[build]\n\nmemory = \"18446744073709551615\"\n", "memory"),
            ("[build]\n\ntmp_size = \"0\"\n", "tmp_size"),
            ("[build]\n\ntmp_size = \"18446744073709551615\"\n", "tmp_size"),
            ("[build]\n\ntmp_size = \"-1G\"\n", "tmp_size"),
        ] {
            let (line, msg) = error(text);
            assert_eq!(line, 3, "{text}");
            assert!(msg.starts_with(key), "{text}: {msg}");
        }
        let c = parse("[build]\ntmp_size = \"2G\"\ntimeout = \"1.5\"\n").unwrap();
        assert_eq!(c.build.tmp_size, Some(2 << 30));
        assert_eq!(c.build.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn names_that_become_paths_are_checked_on_load() {
        let (line, msg) = error("[repo]\narch = \"x86_64\"\nname = \"../../evil\"\n");
        assert_eq!(line, 3);
        assert!(msg.contains("repository name \"../../evil\" is invalid"), "{msg}");
        for bad in ["../x", "/abs", "a/../b", "", ".", "./a"] {
            let (line, msg) = error(&format!("[pkgbuilds]\n\nx = {{ path = \"p\", home_binds = [\".cargo\", {bad:?}] }}\n"));
            assert_eq!(line, 3, "{bad:?}");
            assert!(msg.contains("home_binds entry") && msg.contains(&format!("{bad:?}")), "{msg}");
        }
        let c = parse("[pkgbuilds]\nx = { path = \"p\", home_binds = [\".cargo/registry\", \"go/\"] }\n").unwrap();
        assert_eq!(c.pkgbuilds[0].home_binds, vec![PathBuf::from(".cargo/registry"), PathBuf::from("go")]);
    }

    #[test]
    fn the_remote_store_and_s3_settings_are_checked() {
        let c = parse("[store]\nremote = \"s3://bucket/pfx/\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\n").unwrap();
        assert_eq!(c.store.remote.as_ref().map(|u| u.to_string()).as_deref(), Some("s3://bucket/pfx"));
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.s3.style, Some(AddressStyle::Path));
        assert_eq!(parse("").unwrap().store.remote, None);
        let (line, msg) = error("[store]\n\nremote = \"/srv/store\"\n");
        assert_eq!(line, 3);
        assert!(msg.contains("s3://BUCKET"), "{msg}");
        let (line, msg) = error("[s3]\nendpoint = \"127.0.0.1:9000\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("http://"), "{msg}");
        let (line, msg) = error("[s3]\nregoin = \"x\"\n");
        assert_eq!(line, 2);
        assert!(msg.contains("`endpoint`, `region`, `path_style`"), "{msg}");
    }
}
