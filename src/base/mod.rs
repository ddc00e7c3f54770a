//! Base chroots: the read-only lowest layer of every build, made once,
//! rootless, and named by what is in them.
//!
//! The entry point for other stages is [`resolve`]: given the `[base]`
//! section of the config, it returns the newest ready [`Base`] made from that
//! source (its [`BaseId`] and root directory), making one first when there is
//! none. [`update`] makes a fresh one (the old one stays until removed);
//! [`list`], [`find`] and [`remove`] manage them. A directory pkgcell did
//! not make can be a base too ([`Base::of_dir`], `--base-dir`): it has an
//! id but no record. Every stage takes this one [`Base`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pkgcell::{base, config::Config, home::Home};
//! let config = Config::load("pkgcell.toml".as_ref())?;
//! let base = base::resolve(&Home::from_env()?, &config.base)?;
//! println!("building on {} at {}", base.id, base.root.display());
//! # Ok(()) }
//! ```
//!
//! Layout: `$PKGCELL_HOME/bases/<id>/root/` is the root file system and
//! `$PKGCELL_HOME/bases/<id>/base.json` its [`BaseRecord`]; the `*.log`
//! files beside them are the output of the steps that made it. A base is
//! made in `bases/.tmp-<pid>-<n>/` and renamed into place only once it is
//! complete, so a half-made base is never listed; the next [`create`]
//! removes the leftovers of a creator that died (its pid is gone). A base is
//! never changed after the rename: builds use it as an overlay lower layer.
//!
//! Steps of making one (each a sandbox of `pkgcell-sandbox`, with the
//! caller as root inside and the subordinate ids mapped, so owners are kept):
//! 1. the files: the `command` runs on the host; a `tarball` is unpacked by
//!    the host's tar in a sandbox that sees the host's file system; `pacman`
//!    runs the host's pacman with `--root` in such a sandbox, like
//!    `pacstrap -N`;
//! 2. the preparation ([`prepare`]) inside the new root;
//! 3. the id: BLAKE3 of the source, of the packages in the base's pacman
//!    database with their versions, and of [`PREPARE_VERSION`].
//!
//! Hook for `store gc` (issue 5): a base is unused when no build record
//! names its id and it is not the newest base of the config's source; gc
//! removes it with [`remove`]. Nothing here deletes a base on its own.

mod pacman_conf;
mod prepare;
mod source;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{IoPath, io_err};
use crate::config::{BaseConfig, BaseSource, Signatures};
use crate::home::{GcMode, Home};
use crate::ids::{BaseId, Blake3};

pub use pacman_conf::{DownloadUser, PKGCELL_REPO_DIR, PKGCELL_REPO_NAME, bootstrap_conf, file_servers, layer_conf};
pub use prepare::{MAKEPKG_CONF, PREPARE_VERSION};

/// Version of [`BaseRecord`]'s JSON form (and of `base list/show --json`).
pub const BASE_JSON_VERSION: u32 = 1;

/// How many lines of a failed step's output an error carries.
const TAIL_LINES: usize = 20;

/// A base could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoPath),
    /// A sandbox could not be set up.
    #[error("cannot set up the sandbox for {step}")]
    Sandbox {
        /// What the sandbox was for.
        step: &'static str,
        /// Why.
        #[source]
        source: pkgcell_sandbox::Error,
    },
    /// A step of making the base failed; `tail` is the end of its output.
    #[error("{step} failed ({status}); its output ends with:\n{tail}\n(whole log: {})", log.display())]
    StepFailed {
        /// The step: the base command, unpacking the tarball, pacman, preparing the base.
        step: &'static str,
        /// Its exit status.
        status: String,
        /// The last lines of its output.
        tail: String,
        /// The whole output.
        log: PathBuf,
    },
    /// The base command wrote nothing to `$PKGCELL_BASE_OUT`.
    #[error("the base command `{command}` succeeded but wrote nothing to $PKGCELL_BASE_OUT ({})", out.display())]
    NoOutput {
        /// The command.
        command: String,
        /// Where it should have written.
        out: PathBuf,
    },
    /// The unpacked or written tree is no root file system.
    #[error("{} holds no root file system (no /bin/sh or /usr/bin/sh)", path.display())]
    NotARoot {
        /// The tree.
        path: PathBuf,
    },
    /// Signatures are to be checked, but there are no keys to check them with.
    #[error(
        "cannot check package signatures: no keyrings in {} to initialise a pacman keyring from; \
         install your distribution's keyring package (archlinux-keyring), name your repository's key \
         in `keys` of [base], or set `signatures = \"skip\"` in [base] for unsigned local repositories", dir.display()
    )]
    NoKeyring {
        /// Where keyrings were looked for.
        dir: PathBuf,
    },
    /// `[base] tools` names no root file system with pacman.
    #[error(
        "the tools root {} has no usr/bin/pacman: `tools` in [base] must name a root file system with pacman, \
         pacman-key and gpg (such as Arch's bootstrap tarball, unpacked)", path.display()
    )]
    NoPacman {
        /// The tools root.
        path: PathBuf,
    },
    /// A directory given as a base has no pacman database.
    #[error("{} is not a base root file system (no var/lib/pacman/local)", path.display())]
    NotABase {
        /// The directory.
        path: PathBuf,
    },
    /// No base with this id.
    #[error("no base {query:?}: see `pkgcell base list`")]
    NotFound {
        /// The id or prefix asked for.
        query: String,
    },
    /// A prefix that names several bases.
    #[error("{query:?} names several bases: {}", candidates.join(", "))]
    Ambiguous {
        /// The prefix.
        query: String,
        /// The ids it matches.
        candidates: Vec<String>,
    },
    /// A base record that cannot be read or written.
    #[error("bad base record {}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// A base a build runs on: one made by pkgcell ([`resolve`], [`find`]), or
/// a plain directory ([`Base::of_dir`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// What identifies its content: a made base's own id, or for a plain
    /// directory see [`Base::of_dir`].
    pub id: BaseId,
    /// Its root file system: an overlay lower layer, never written to.
    pub root: PathBuf,
    /// What it was made from and what is in it; none for a plain
    /// directory, which pkgcell did not make.
    pub record: Option<BaseRecord>,
}

impl Base {
    /// A base given as a plain directory (`--base-dir`, not made by
    /// `pkgcell base`): identified by a hash of the entries (name-version)
    /// of its pacman database.
    pub fn of_dir(dir: &Path) -> Result<Base, BaseError> {
        let db = dir.join("var/lib/pacman/local");
        if !db.is_dir() {
            return Err(BaseError::NotABase { path: dir.to_owned() });
        }
        let mut names: Vec<String> = std::fs::read_dir(&db)
            .map_err(io_err("read the base", &db))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let listing = names.join("\n");
        Ok(Base { id: BaseId::of(listing.as_bytes()), root: dir.to_owned(), record: None })
    }
}

/// `base.json`: what a base was made from and what is in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// [`BASE_JSON_VERSION`].
    pub version: u32,
    /// The base id.
    pub id: BaseId,
    /// What it was made from.
    pub source: SourceRecord,
    /// Hash of the source alone: bases of the same config share it, and
    /// [`resolve`] takes the newest of them.
    pub source_key: Blake3,
    /// [`PREPARE_VERSION`] at the time.
    pub prepare_version: u32,
    /// The packages in its pacman database, by name.
    pub packages: Vec<Package>,
    /// When it was made, seconds since the Unix epoch.
    pub created: u64,
}

/// What a base was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceRecord {
    /// Installed by pacman.
    Pacman {
        /// What was asked for.
        packages: Vec<String>,
        /// The pacman.conf used.
        pacman_conf: PathBuf,
        /// Its hash.
        pacman_conf_blake3: Blake3,
        /// Whether signatures were checked.
        signatures: Signatures,
        /// The tools root whose pacman bootstrapped the base; none: the
        /// host's. Not part of the key: see [`SourceRecord::key`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<PathBuf>,
        /// The key files added to the keyrings, with their hashes.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<KeyFile>,
    },
    /// Unpacked from a tarball.
    Tarball {
        /// The file.
        path: PathBuf,
        /// Its hash (the file's name and place do not count).
        blake3: Blake3,
    },
    /// Written by a command.
    Command {
        /// The command.
        command: String,
        /// Where it ran (shown, not part of the key once `program` is known).
        dir: PathBuf,
        /// The program it runs, resolved. `None` in records of older
        /// versions, and when the first word names no file (a shell
        /// builtin, a `$VARIABLE`): then `dir` is part of the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<HashedFile>,
        /// The other words of the command that name files (relative to
        /// `dir`): a script given to an interpreter, a config file.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<HashedFile>,
    },
}

/// A public key file a `pacman` base trusts (`[base] keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFile {
    /// The file.
    pub path: PathBuf,
    /// Its hash: the keys, not the file's place, count.
    pub blake3: Blake3,
}

/// A file a base command names, and what was in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashedFile {
    /// The word of the command.
    pub word: String,
    /// Where it was found (symlinks resolved).
    pub path: PathBuf,
    /// Its content's hash.
    pub blake3: Blake3,
}

/// A package installed in a base.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its full version.
    pub version: String,
}

impl SourceRecord {
    /// Describe the configured source, hashing its inputs.
    pub fn of(config: &BaseConfig) -> Result<SourceRecord, BaseError> {
        Ok(match &config.source {
            BaseSource::Pacman { packages, pacman_conf, signatures, tools, keys } => {
                let path = source::pacman_conf_path(pacman_conf.as_deref(), tools.as_deref());
                let text = std::fs::read(&path).map_err(io_err("read pacman config", &path))?;
                let keys = keys
                    .iter()
                    .map(|k| Ok(KeyFile { path: k.clone(), blake3: Blake3::of(&std::fs::read(k).map_err(io_err("read key file", k))?) }))
                    .collect::<Result<_, BaseError>>()?;
                SourceRecord::Pacman {
                    packages: packages.clone(),
                    pacman_conf: path,
                    pacman_conf_blake3: Blake3::of(&text),
                    signatures: *signatures,
                    tools: tools.clone(),
                    keys,
                }
            }
            BaseSource::Tarball { path } => {
                let mut f = std::fs::File::open(path).map_err(io_err("open base tarball", path))?;
                let mut h = blake3::Hasher::new();
                std::io::copy(&mut f, &mut h).map_err(io_err("read base tarball", path))?;
                SourceRecord::Tarball { path: path.clone(), blake3: Blake3::from_bytes(*h.finalize().as_bytes()) }
            }
            BaseSource::Command { command, dir } => {
                let (program, files) = command_files(command, dir)?;
                SourceRecord::Command { command: command.clone(), dir: dir.clone(), program, files }
            }
        })
    }

    /// One line for people: what the source is, with what tells two bases
    /// of the same text apart (a command's program and file hashes).
    pub fn describe(&self) -> String {
        match self {
            SourceRecord::Pacman { packages, pacman_conf, pacman_conf_blake3, tools, .. } => {
                let tools = tools.as_ref().map(|t| format!(", the pacman of {}", t.display())).unwrap_or_default();
                format!("pacman {} ({} {}{tools})", packages.join(" "), pacman_conf.display(), short(pacman_conf_blake3))
            }
            SourceRecord::Tarball { path, blake3 } => format!("tarball {} ({})", path.display(), short(blake3)),
            SourceRecord::Command { command, dir, program, files } => {
                let mut hashes: Vec<String> = program.iter().chain(files).map(|f| format!("{} {}", f.path.display(), short(&f.blake3))).collect();
                if program.is_none() {
                    hashes.insert(0, format!("in {}", dir.display()));
                }
                format!("command {command} ({})", hashes.join(", "))
            }
        }
    }

    /// Whether the base of `record` was made from this source: it has this
    /// source's key, or it is a base of the same command and directory
    /// that a version before program hashes made (kept in use rather than
    /// made again after an upgrade; `base update` replaces it).
    pub fn made(&self, record: &BaseRecord) -> bool {
        if record.source_key == self.key() {
            return true;
        }
        match (self, &record.source) {
            (
                SourceRecord::Command { command, dir, program: Some(_), .. },
                SourceRecord::Command { command: c, dir: d, program: None, .. },
            ) => command == c && dir == d && record.source_key == record.source.key(),
            _ => false,
        }
    }

    /// The hash that identifies the source: what it is made from, not
    /// where a tarball happens to lie.
    ///
    /// The `pacman` source's tools root is left out, like the host's pacman
    /// it replaces: which pacman (6 or 7) installs the repository's
    /// packages does not change what is installed (the packages, their
    /// versions and the synced databases are in the base id; both write
    /// local database version 9), and its place is no more content than a
    /// tarball's. The trusted keys do count: they end up in the base's
    /// keyring. (Without keys the key is what it was before keys existed.)
    pub fn key(&self) -> Blake3 {
        let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let text = match self {
            SourceRecord::Pacman { packages, pacman_conf_blake3, signatures, keys, .. } => {
                let sig = match signatures {
                    Signatures::Check => "check",
                    Signatures::Skip => "skip",
                };
                let pkgs: Vec<String> = packages.iter().map(|p| q(p)).collect();
                let mut text = format!("pacman\nconf {pacman_conf_blake3}\nsignatures {sig}\npackages {}\n", pkgs.join(" "));
                if !keys.is_empty() {
                    let hashes: Vec<String> = keys.iter().map(|k| k.blake3.to_string()).collect();
                    text.push_str(&format!("keys {}\n", hashes.join(" ")));
                }
                text
            }
            SourceRecord::Tarball { blake3, .. } => format!("tarball\n{blake3}\n"),
            // Records of older versions (and commands whose program is not
            // a file) keep the key they had: by directory and text.
            SourceRecord::Command { command, dir, program: None, .. } => {
                format!("command\ndir {}\ncommand {}\n", q(&dir.to_string_lossy()), q(command))
            }
            // What the command is: its text and the contents of the files it
            // names, not where the config lies.
            SourceRecord::Command { command, program: Some(program), files, .. } => {
                let mut t = format!("command\nprogram {}\ncommand {}\n", program.blake3, q(command));
                for f in files {
                    t.push_str(&format!("file {} {}\n", q(&f.word), f.blake3));
                }
                t
            }
        };
        Blake3::of(text.as_bytes())
    }
}

/// The first 12 hex digits of a hash, for people.
fn short(h: &Blake3) -> String {
    h.to_string()[..12].to_owned()
}

/// The program a base command runs and the other files it names, hashed.
///
/// The command is split as the shell would split plain words (`shlex`);
/// leading `NAME=value` words and `exec` are skipped. The program is the
/// first word: a path (relative ones against `dir`) or a name looked up in
/// `$PATH`, as `/bin/sh` will. Every later word without `$` that names a
/// regular file relative to `dir` is hashed too, so `sh mk-base.sh` and
/// `mk-base --config base.conf` follow their script and config. What the
/// program itself reads (another script it calls) is not seen.
fn command_files(command: &str, dir: &Path) -> Result<(Option<HashedFile>, Vec<HashedFile>), BaseError> {
    let Some(words) = shlex::split(command) else { return Ok((None, Vec::new())) };
    let mut words = words.into_iter().skip_while(|w| {
        w.split_once('=').is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) || w == "exec"
    });
    let Some(first) = words.next() else { return Ok((None, Vec::new())) };
    let found = if first.contains('$') {
        None
    } else if first.contains('/') {
        Some(dir.join(&first)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).map(|d| d.join(&first)).find(|p| p.is_file()))
            .unwrap_or(None)
    };
    let program = found.map(|p| hash_file(first, &p)).transpose()?;
    let mut files = Vec::new();
    for w in words {
        if w.contains('$') || w.is_empty() {
            continue;
        }
        let p = dir.join(&w);
        if p.is_file() {
            files.push(hash_file(w, &p)?);
        }
    }
    Ok((program, files))
}

fn hash_file(word: String, path: &Path) -> Result<HashedFile, BaseError> {
    let path = std::fs::canonicalize(path).map_err(io_err("resolve", path))?;
    let mut f = std::fs::File::open(&path).map_err(io_err("open", &path))?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).map_err(io_err("read", &path))?;
    Ok(HashedFile { word, path, blake3: Blake3::from_bytes(*h.finalize().as_bytes()) })
}

/// The id of a base made from the source with `source_key` that holds
/// `packages` and the synced databases `sync` (`(file name, hash)`: plan
/// resolves dependencies against them, so a base whose sync databases
/// changed is another base; a base without any keeps the id it had before
/// they counted).
pub fn base_id(source_key: &Blake3, packages: &[Package], sync: &[(String, Blake3)], prepare_version: u32) -> BaseId {
    let mut text = format!("pkgcell base\nprepare {prepare_version}\nsource {source_key}\n");
    let mut sorted: Vec<&Package> = packages.iter().collect();
    sorted.sort();
    for p in sorted {
        text.push_str(&format!("installed {} {}\n", p.name, p.version));
    }
    let mut sync: Vec<&(String, Blake3)> = sync.iter().collect();
    sync.sort();
    for (name, hash) in sync {
        text.push_str(&format!("sync {name} {hash}\n"));
    }
    BaseId::of(text.as_bytes())
}

/// The synced databases of a base root (`var/lib/pacman/sync/*.db`) and
/// their hashes.
fn sync_dbs(root: &Path) -> Result<Vec<(String, Blake3)>, BaseError> {
    let dir = root.join("var/lib/pacman/sync");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".db") && e.path().is_file() {
            let data = std::fs::read(e.path()).map_err(|source| IoPath::new("read", e.path(), source))?;
            out.push((name, Blake3::of(&data)));
        }
    }
    Ok(out)
}

/// A step of making a base, reported as it starts (the library does not
/// print; the caller shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Unpacking the tarball (of the tarball source, or of the command's output).
    Unpacking,
    /// Running the `command` source.
    RunningCommand,
    /// Installing the packages of the `pacman` source into the new root.
    Bootstrapping,
    /// Preparing the root (users, makepkg.conf, keyring).
    Preparing,
    /// Reading the installed packages and hashing them into the base's id.
    Hashing,
    /// Renaming the finished base into place.
    Moving,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Unpacking => "unpacking the tarball",
            Phase::RunningCommand => "running the base command",
            Phase::Bootstrapping => "bootstrapping with pacman",
            Phase::Preparing => "preparing the base",
            Phase::Hashing => "hashing the base",
            Phase::Moving => "moving the base into place",
        })
    }
}

/// The newest ready base made from the configured source, made first when
/// there is none. This is what the build stage calls.
pub fn resolve(home: &Home, config: &BaseConfig) -> Result<Base, BaseError> {
    resolve_with(home, config, &|_| {})
}

/// [`resolve`], telling `on_phase` each step of making the base, if it is made.
#[tracing::instrument(skip_all)]
pub fn resolve_with(home: &Home, config: &BaseConfig, on_phase: &dyn Fn(Phase)) -> Result<Base, BaseError> {
    let source = SourceRecord::of(config)?;
    if let Some(b) = list(home)?.into_iter().rev().find(|b| b.record.as_ref().is_some_and(|r| source.made(r))) {
        return Ok(b);
    }
    Ok(make(home, config, source, on_phase)?.base)
}

/// What [`create`] or [`update`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    /// The base.
    pub base: Base,
    /// How it came about.
    pub how: MadeHow,
}

/// Whether a base was made or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadeHow {
    /// Made now.
    New,
    /// Made again, and found identical to an existing base (which is kept).
    Unchanged,
    /// A base of this source existed; nothing was made.
    Existing,
}

/// `pkgcell base create`: the base of the configured source, made unless
/// one exists already.
pub fn create(home: &Home, config: &BaseConfig) -> Result<Made, BaseError> {
    create_with(home, config, &|_| {})
}

/// [`create`], telling `on_phase` each step as it starts.
pub fn create_with(home: &Home, config: &BaseConfig, on_phase: &dyn Fn(Phase)) -> Result<Made, BaseError> {
    let source = SourceRecord::of(config)?;
    if let Some(b) = list(home)?.into_iter().rev().find(|b| b.record.as_ref().is_some_and(|r| source.made(r))) {
        return Ok(Made { base: b, how: MadeHow::Existing });
    }
    make(home, config, source, on_phase)
}

/// `pkgcell base update`: make the base again from its source (pacman picks
/// up new package versions, a command runs again). When what comes out has
/// the id of an existing base, the new copy is dropped; otherwise the new
/// base is the one [`resolve`] returns from now on, and the old one stays
/// until removed.
pub fn update(home: &Home, config: &BaseConfig) -> Result<Made, BaseError> {
    update_with(home, config, &|_| {})
}

/// [`update`], telling `on_phase` each step as it starts.
pub fn update_with(home: &Home, config: &BaseConfig, on_phase: &dyn Fn(Phase)) -> Result<Made, BaseError> {
    let source = SourceRecord::of(config)?;
    make(home, config, source, on_phase)
}

/// Every ready base, oldest first.
pub fn list(home: &Home) -> Result<Vec<Base>, BaseError> {
    let dir = home.bases();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BaseError::Io(IoPath::new("read", dir, e))),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err("read", &dir))?;
        // Names that are no id (".tmp-*" being made, ".rm-*" being removed)
        // are not bases.
        let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<BaseId>().ok()) else { continue };
        match read_record(&e.path()) {
            Ok(record) if record.id == id => out.push((record.created, Base { id, root: e.path().join("root"), record: Some(record) })),
            Ok(_) => tracing::warn!(path = %e.path().display(), "skipping a base whose record names another id"),
            Err(err) => tracing::warn!(path = %e.path().display(), error = %err, "skipping a base without a readable record"),
        }
    }
    out.sort_by_key(|(created, b)| (*created, b.id));
    Ok(out.into_iter().map(|(_, b)| b).collect())
}

/// The base with this id, or the only one whose id starts with `query`.
pub fn find(home: &Home, query: &str) -> Result<Base, BaseError> {
    let all = list(home)?;
    let hits: Vec<Base> = all.into_iter().filter(|b| !query.is_empty() && b.id.to_string().starts_with(query)).collect();
    match hits.len() {
        0 => Err(BaseError::NotFound { query: query.to_owned() }),
        1 => Ok(hits.into_iter().next().expect("one hit")),
        _ => Err(BaseError::Ambiguous { query: query.to_owned(), candidates: hits.iter().map(|b| b.id.to_string()).collect() }),
    }
}

/// Remove a base. It is first renamed out of the way, so that it stops
/// being listed at once even if the removal is interrupted.
pub fn remove(home: &Home, id: BaseId) -> Result<(), BaseError> {
    let dir = home.bases().join(id.to_string());
    if !dir.is_dir() {
        return Err(BaseError::NotFound { query: id.to_string() });
    }
    let doomed = home.bases().join(format!(".rm-{}-{id}", std::process::id()));
    std::fs::rename(&dir, &doomed).map_err(io_err("move away", &dir))?;
    pkgcell_sandbox::remove_tree(&doomed).map_err(|source| BaseError::Sandbox { step: "removing a base", source })
}

/// Remove the bases nothing needs any more: those that no build record in
/// `used` (base ids, as build records name them) ran on and that are not the
/// newest base of their source (what [`resolve`] would pick). Called by
/// `pkgcell store gc` after it dropped old records; returns the removed ids
/// (with [`GcMode::DryRun`], those it would remove, and removes nothing).
pub fn gc(home: &Home, used: &std::collections::BTreeSet<BaseId>, mode: GcMode) -> Result<Vec<BaseId>, BaseError> {
    let all = list(home)?;
    // `list` is sorted by creation time: the last of each source wins.
    let mut newest: std::collections::BTreeMap<String, BaseId> = std::collections::BTreeMap::new();
    for b in &all {
        if let Some(r) = &b.record {
            newest.insert(r.source_key.to_string(), b.id);
        }
    }
    let mut removed = Vec::new();
    for b in all {
        let id = b.id;
        if used.contains(&id) || newest.values().any(|n| *n == id) {
            continue;
        }
        if mode == GcMode::Remove {
            remove(home, id)?;
        }
        removed.push(id);
    }
    Ok(removed)
}

fn read_record(dir: &Path) -> Result<BaseRecord, BaseError> {
    let path = dir.join("base.json");
    let text = std::fs::read(&path).map_err(io_err("read", &path))?;
    serde_json::from_slice(&text).map_err(|source| BaseError::Record { path, source })
}

/// Make a base in a temporary directory, then rename it into place.
fn make(home: &Home, config: &BaseConfig, source: SourceRecord, on_phase: &dyn Fn(Phase)) -> Result<Made, BaseError> {
    let bases = home.bases();
    std::fs::create_dir_all(&bases).map_err(io_err("create", &bases))?;
    remove_stale(&bases);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = bases.join(format!(".tmp-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
    // Whatever happens below, a failed attempt leaves nothing behind.
    let result = make_in(home, config, source, &tmp, on_phase);
    match result {
        Ok(record) => {
            let id = record.id;
            let dst = bases.join(id.to_string());
            if dst.exists() {
                drop_tree(&tmp);
                let base = Base { id, root: dst.join("root"), record: Some(read_record(&dst)?) };
                return Ok(Made { base, how: MadeHow::Unchanged });
            }
            on_phase(Phase::Moving);
            match std::fs::rename(&tmp, &dst) {
                Ok(()) => Ok(Made { base: Base { id, root: dst.join("root"), record: Some(record) }, how: MadeHow::New }),
                // Another pkgcell made the same base at the same time: keep theirs.
                Err(_) if dst.exists() => {
                    drop_tree(&tmp);
                    Ok(Made { base: Base { id, root: dst.join("root"), record: Some(read_record(&dst)?) }, how: MadeHow::Unchanged })
                }
                Err(e) => {
                    drop_tree(&tmp);
                    Err(BaseError::Io(IoPath::new("move the new base to", dst, e)))
                }
            }
        }
        Err(e) => {
            drop_tree(&tmp);
            Err(e)
        }
    }
}

fn make_in(home: &Home, config: &BaseConfig, source: SourceRecord, tmp: &Path, on_phase: &dyn Fn(Phase)) -> Result<BaseRecord, BaseError> {
    let root = tmp.join("root");
    let made = source::populate(home, config, tmp, &root, on_phase)?;
    on_phase(Phase::Preparing);
    tracing::info!(root = %root.display(), "preparing the base");
    source::run_logged(prepare::spec(&root, made.pacman_conf.as_deref(), made.keyring, made.keys.as_deref()), "preparing the base", &tmp.join("prepare.log"), &[])?;
    on_phase(Phase::Hashing);
    let packages = installed_packages(&root)?;
    let source_key = source.key();
    let id = base_id(&source_key, &packages, &sync_dbs(&root)?, PREPARE_VERSION);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let record = BaseRecord {
        version: BASE_JSON_VERSION,
        id,
        source,
        source_key,
        prepare_version: PREPARE_VERSION,
        packages,
        created,
    };
    let path = tmp.join("base.json");
    let mut f = std::fs::File::create(&path).map_err(io_err("create", &path))?;
    serde_json::to_writer_pretty(&mut f, &record).map_err(|source| BaseError::Record { path: path.clone(), source })?;
    f.write_all(b"\n").and_then(|()| f.sync_all()).map_err(io_err("write", &path))?;
    Ok(record)
}

/// The packages of the base's pacman database (`var/lib/pacman/local/*/desc`),
/// sorted by name; none when the base has no pacman database.
pub fn installed_packages(root: &Path) -> Result<Vec<Package>, BaseError> {
    let dir = root.join("var/lib/pacman/local");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BaseError::Io(IoPath::new("read the package database", dir, e))),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let desc = e.path().join("desc");
        let Ok(text) = std::fs::read_to_string(&desc) else { continue };
        if let Some(p) = parse_desc(&text) {
            out.push(p);
        } else {
            tracing::warn!(path = %desc.display(), "skipping a package database entry without a name and version");
        }
    }
    out.sort();
    Ok(out)
}

fn parse_desc(text: &str) -> Option<Package> {
    let mut lines = text.lines();
    let (mut name, mut version) = (None, None);
    while let Some(l) = lines.next() {
        match l {
            "%NAME%" => name = lines.next().map(str::to_owned),
            "%VERSION%" => version = lines.next().map(str::to_owned),
            _ => {}
        }
    }
    Some(Package { name: name.filter(|n| !n.is_empty())?, version: version.filter(|v| !v.is_empty())? })
}

/// Remove what dead creators and removers left: `.tmp-<pid>-*` and
/// `.rm-<pid>-*` whose pid is gone. Failures only warn: they must not stop
/// a new base from being made.
fn remove_stale(bases: &Path) {
    let Ok(entries) = std::fs::read_dir(bases) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-").or_else(|| name.strip_prefix(".rm-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        tracing::info!(path = %e.path().display(), "removing a base left half-made or half-removed");
        drop_tree(&e.path());
    }
}

fn drop_tree(path: &Path) {
    if let Err(e) = pkgcell_sandbox::remove_tree(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package { name: name.into(), version: version.into() }
    }

    #[test]
    fn the_id_covers_packages_and_preparation_but_not_their_order() {
        let key = Blake3::of(b"src");
        let a = base_id(&key, &[pkg("a", "1-1"), pkg("b", "2-1")], &[], 1);
        assert_eq!(a, base_id(&key, &[pkg("b", "2-1"), pkg("a", "1-1")], &[], 1));
        assert_ne!(a, base_id(&key, &[pkg("a", "1-2"), pkg("b", "2-1")], &[], 1));
        assert_ne!(a, base_id(&key, &[pkg("a", "1-1"), pkg("b", "2-1")], &[], 2));
        assert_ne!(a, base_id(&Blake3::of(b"other"), &[pkg("a", "1-1"), pkg("b", "2-1")], &[], 1));
        let synced = base_id(&key, &[pkg("a", "1-1"), pkg("b", "2-1")], &[("extra.db".into(), Blake3::of(b"1"))], 1);
        assert_ne!(a, synced, "the sync databases count");
        assert_ne!(synced, base_id(&key, &[pkg("a", "1-1"), pkg("b", "2-1")], &[("extra.db".into(), Blake3::of(b"2"))], 1));
    }

    #[test]
    fn a_tarball_key_ignores_where_the_file_lies() {
        let h = Blake3::of(b"tar");
        let a = SourceRecord::Tarball { path: "/a.tar".into(), blake3: h };
        let b = SourceRecord::Tarball { path: "/b/c.tar".into(), blake3: h };
        assert_eq!(a.key(), b.key());
        let c = SourceRecord::Command { command: "x".into(), dir: "/".into(), program: None, files: Vec::new() };
        assert_ne!(a.key(), c.key());
    }

    fn command_in(dir: &Path, command: &str) -> SourceRecord {
        let config = BaseConfig { source: BaseSource::Command { command: command.into(), dir: dir.to_owned() } };
        SourceRecord::of(&config).unwrap()
    }

    #[test]
    fn a_command_key_is_its_program_and_files_not_its_directory() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("scripts")).unwrap();
            std::fs::write(d.join("scripts/mk"), "#!/bin/sh\necho one\n").unwrap();
            std::fs::set_permissions(d.join("scripts/mk"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(d.join("base.conf"), "x\n").unwrap();
        }
        for cmd in ["scripts/mk \"$PKGCELL_BASE_OUT\"", "FOO=1 exec ./scripts/mk base.conf $PKGCELL_BASE_OUT", "sh scripts/mk"] {
            let (ra, rb) = (command_in(&a, cmd), command_in(&b, cmd));
            assert_eq!(ra.key(), rb.key(), "{cmd}: the same command in two directories");
            assert_ne!(ra, rb, "the records still say where each ran");
            let SourceRecord::Command { program: Some(p), .. } = &ra else { panic!("{cmd}: no program in {ra:?}") };
            assert!(p.path.is_absolute(), "{p:?}");
            assert!(ra.describe().contains(&short(&p.blake3)), "{}", ra.describe());
        }
        // The script is read whether it is the program or an interpreter's argument.
        let before: Vec<Blake3> = ["scripts/mk x", "sh scripts/mk x"].iter().map(|c| command_in(&a, c).key()).collect();
        std::fs::write(a.join("scripts/mk"), "#!/bin/sh\necho two\n").unwrap();
        let after: Vec<Blake3> = ["scripts/mk x", "sh scripts/mk x"].iter().map(|c| command_in(&a, c).key()).collect();
        assert_ne!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        // So is a config file it names; and the rest of the line counts.
        let k = command_in(&b, "scripts/mk base.conf").key();
        assert_ne!(k, command_in(&b, "scripts/mk other.conf").key());
        std::fs::write(b.join("base.conf"), "y\n").unwrap();
        assert_ne!(k, command_in(&b, "scripts/mk base.conf").key());
        // A first word that is no file: keyed by directory and text, as before.
        let (ca, cb) = (command_in(&a, "cd x && true"), command_in(&b, "cd x && true"));
        assert!(matches!(ca, SourceRecord::Command { program: None, .. }), "{ca:?}");
        assert_ne!(ca.key(), cb.key());
        assert!(ca.describe().contains(&format!("in {}", a.display())), "{}", ca.describe());
    }

    #[test]
    fn a_record_of_the_version_before_program_hashes_loads_and_keeps_its_key() {
        let old = r#"{"version":1,"id":"0123456789abcdef0123456789abcdef","source":{"kind":"command","command":"mk $PKGCELL_BASE_OUT","dir":"/cfg"},
            "source_key":"SK","prepare_version":3,"packages":[],"created":5}"#;
        let legacy_key = Blake3::of(b"command\ndir \"/cfg\"\ncommand \"mk $PKGCELL_BASE_OUT\"\n");
        let r: BaseRecord = serde_json::from_str(&old.replace("SK", &legacy_key.to_string())).unwrap();
        assert_eq!(r.source, SourceRecord::Command { command: "mk $PKGCELL_BASE_OUT".into(), dir: "/cfg".into(), program: None, files: Vec::new() });
        assert_eq!(r.source.key(), r.source_key);
        // The same command in the same directory finds it, once its program is hashed too.
        let now = SourceRecord::Command {
            command: "mk $PKGCELL_BASE_OUT".into(),
            dir: "/cfg".into(),
            program: Some(HashedFile { word: "mk".into(), path: "/cfg/mk".into(), blake3: Blake3::of(b"#!/bin/sh") }),
            files: Vec::new(),
        };
        assert!(now.made(&r));
        let SourceRecord::Command { program, .. } = &now else { unreachable!() };
        let elsewhere = SourceRecord::Command { command: "mk $PKGCELL_BASE_OUT".into(), dir: "/other".into(), program: program.clone(), files: Vec::new() };
        assert!(!elsewhere.made(&r));
        // Written back, it is the same JSON as before (no new empty fields).
        let j = serde_json::to_value(&r.source).unwrap();
        assert_eq!(j, serde_json::json!({"kind": "command", "command": "mk $PKGCELL_BASE_OUT", "dir": "/cfg"}));
    }

    #[test]
    fn a_pacman_key_counts_the_trusted_keys_but_not_the_tools_root() {
        let pacman = |tools: Option<&str>, keys: &[&[u8]]| SourceRecord::Pacman {
            packages: vec!["base".into()],
            pacman_conf: "/etc/pacman.conf".into(),
            pacman_conf_blake3: Blake3::of(b"conf"),
            signatures: Signatures::Check,
            tools: tools.map(PathBuf::from),
            keys: keys.iter().map(|k| KeyFile { path: "/k.asc".into(), blake3: Blake3::of(k) }).collect(),
        };
        let plain = pacman(None, &[]);
        assert_eq!(plain.key(), pacman(Some("/srv/arch"), &[]).key());
        assert_ne!(plain.key(), pacman(None, &[b"key"]).key());
        assert_ne!(pacman(None, &[b"key"]).key(), pacman(None, &[b"other"]).key());
    }

    #[test]
    fn desc_files_give_name_and_version() {
        let text = "%NAME%\nglibc\n\n%VERSION%\n2.39-1\n\n%PROVIDES%\nfoo\n";
        assert_eq!(parse_desc(text), Some(pkg("glibc", "2.39-1")));
        assert_eq!(parse_desc("%NAME%\nx\n"), None);
    }

    #[test]
    fn records_round_trip_through_json() {
        let key = Blake3::of(b"k");
        let r = BaseRecord {
            version: BASE_JSON_VERSION,
            id: base_id(&key, &[], &[], 1),
            source: SourceRecord::Command { command: "make-base $PKGCELL_BASE_OUT".into(), dir: "/cfg".into(), program: None, files: Vec::new() },
            source_key: key,
            prepare_version: 1,
            packages: vec![pkg("a", "1-1")],
            created: 5,
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["version"], 1);
        assert_eq!(j["source"]["kind"], "command");
        assert_eq!(serde_json::from_value::<BaseRecord>(j).unwrap(), r);
    }

    #[test]
    fn a_plain_directory_is_identified_by_its_package_database() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Base::of_dir(d.path()), Err(BaseError::NotABase { .. })));
        std::fs::create_dir_all(d.path().join("var/lib/pacman/local/a-1-1")).unwrap();
        let one = Base::of_dir(d.path()).unwrap();
        assert_eq!(one, Base::of_dir(d.path()).unwrap());
        assert_eq!(one.record, None, "pkgcell did not make it");
        std::fs::create_dir_all(d.path().join("var/lib/pacman/local/b-1-1")).unwrap();
        assert_ne!(one.id, Base::of_dir(d.path()).unwrap().id);
    }

    #[test]
    fn a_home_without_bases_lists_none() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        assert!(list(&home).unwrap().is_empty());
        assert!(matches!(find(&home, "abc"), Err(BaseError::NotFound { .. })));
    }
}
