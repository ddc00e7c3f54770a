//! The sandbox spec: everything that describes one sandbox, as plain data.
//!
//! A spec is built (by the builder in `command.rs`, or deserialized from JSON),
//! then checked once by [`Spec::validate`] in the supervisor, before any
//! process is started, so the helper never meets a malformed spec halfway
//! through its setup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{Size, Timeout, UnitError};

/// Version of the JSON form of [`Spec`] and [`crate::Outcome`].
pub const SPEC_VERSION: u32 = 1;

/// A complete description of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The root file system.
    pub root: Root,
    /// Mounts on top of the root, applied in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Network access.
    #[serde(default)]
    pub network: Network,
    /// User id inside the sandbox (0 = the calling user).
    #[serde(default)]
    pub uid: u32,
    /// Group id inside the sandbox.
    #[serde(default)]
    pub gid: u32,
    /// The whole environment of the payload (nothing is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory inside the root.
    #[serde(default = "default_cwd")]
    pub cwd: PathBuf,
    /// The command and its arguments. `argv[0]` is looked up in the
    /// payload's `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Wall-clock limit; the whole process tree is killed when it is
    /// reached. At most [`Timeout::MAX`].
    #[serde(default, with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Size of the tmpfs on /tmp, in bytes; none: [`Spec::default_tmp_size`].
    #[serde(default)]
    pub tmp_size: Option<u64>,
    /// Size of the tmpfs on /dev/shm, in bytes; none: [`Spec::default_tmp_size`].
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Resource limits for the payload.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Host name inside.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// How ids are mapped into the user namespace.
    #[serde(default)]
    pub id_map: IdMapMode,
    /// A cgroup v2 directory the sandbox runs in: the helper is moved into
    /// it (its `cgroup.procs`) before anything of the sandbox starts, so
    /// every process of it counts against the cgroup's limits. The caller
    /// makes the directory and sets its limits, and removes it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// The payload's syscall filter.
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Paths inside (mount points, after every mount) given to an id
    /// inside: a bind of a host directory that a non-root payload must
    /// write is chowned inside the user namespace rather than opened to
    /// every user of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Owner>,
    /// Host trees the helper removes or hands back to the calling user
    /// once every process of the sandbox has ended, in order. The helper
    /// is root of the sandbox's user namespace, where every id a payload
    /// can use is mapped: it can remove or chown the files of a build user
    /// (a subordinate id outside), which the calling user cannot, so the
    /// caller needs no second sandbox for that. Best effort: a failure is
    /// logged and leaves the tree as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup: Vec<Cleanup>,
}

/// A host tree to deal with once the sandbox has ended (see [`Spec::cleanup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// The host path (absolute). Missing: nothing to do.
    pub path: PathBuf,
    /// What to do with it.
    pub action: CleanupAction,
}

/// What [`Cleanup`] does with its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupAction {
    /// Remove it and everything in it.
    Remove,
    /// Give every entry of it (not following symlinks) to the calling user
    /// and make its directories writable by that user, who can then read
    /// and remove it without a sandbox. File modes are kept.
    HandBack,
}

/// A path inside the sandbox and the ids inside it is given to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The path inside (absolute, no `..`), resolved inside the root.
    pub path: PathBuf,
    /// The uid inside.
    pub uid: u32,
    /// The gid inside.
    pub gid: u32,
}

fn default_cwd() -> PathBuf {
    PathBuf::from("/")
}

fn default_hostname() -> String {
    "pkgcell".to_owned()
}

/// The root file system of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Root {
    /// A directory used as it is (writable where the caller may write).
    Dir {
        /// The directory.
        path: PathBuf,
    },
    /// An overlayfs: read-only lower layers, writes go to `upper`.
    Overlay {
        /// Lower layers, top first. Never written to.
        lowers: Vec<PathBuf>,
        /// Where writes go.
        upper: Upper,
    },
}

/// Where the writes to an overlay root go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Upper {
    /// A tmpfs of at most `size` bytes that vanishes with the sandbox.
    Tmpfs {
        /// Size limit in bytes.
        size: u64,
    },
    /// Directories on disk (same file system), kept after the sandbox ends.
    /// `work` must be empty or absent; both are created when missing.
    Dir {
        /// The overlay upper directory.
        upper: PathBuf,
        /// The overlay work directory.
        work: PathBuf,
    },
}

/// One mount on top of the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mount {
    /// Bind a host path (file or directory) into the sandbox.
    Bind {
        /// Host path.
        src: PathBuf,
        /// Path inside the sandbox.
        dst: PathBuf,
        /// Read-only or read-write.
        #[serde(default)]
        access: Access,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Path inside the sandbox.
        dst: PathBuf,
        /// Size limit in bytes (none: [`Spec::default_tmp_size`]).
        #[serde(default)]
        size: Option<u64>,
    },
}

/// Whether a bind mount may be written through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read-only, nosuid, nodev.
    #[default]
    ReadOnly,
    /// Read-write, nosuid, nodev.
    ReadWrite,
}

/// Network access of the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A private network namespace with only `lo` (up, 127.0.0.1).
    #[default]
    Loopback,
    /// The host's network.
    Host,
}

/// How ids are mapped into the user namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdMapMode {
    /// The caller's subordinate range when there is one (and newuidmap),
    /// else a single-id map with a warning.
    #[default]
    Auto,
    /// Only the caller's own id, mapped to 0.
    Single,
}

/// The payload's syscall filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// Syscalls no build needs (keyrings, bpf, io_uring, unusual socket
    /// families, ...) return EPERM: the README's sandbox section has the list.
    #[default]
    On,
    /// No filter, for the rare payload that needs one of those calls.
    Off,
}

/// A resource limit (setrlimit(2)); soft and hard are set to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// Which resource.
    pub resource: RlimitResource,
    /// The limit.
    pub limit: u64,
}

/// The resources [`Rlimit`] can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlimitResource {
    /// RLIMIT_AS: address space, bytes.
    AddressSpace,
    /// RLIMIT_CORE: core file size, bytes.
    Core,
    /// RLIMIT_CPU: CPU time, seconds.
    Cpu,
    /// RLIMIT_DATA: data segment and private writable mappings (heap,
    /// anonymous mmap), bytes; unlike RLIMIT_AS it ignores reserved but
    /// inaccessible address space.
    Data,
    /// RLIMIT_FSIZE: largest file, bytes.
    FileSize,
    /// RLIMIT_NOFILE: open files.
    OpenFiles,
    /// RLIMIT_NPROC: processes of the user.
    Processes,
    /// RLIMIT_STACK: stack size, bytes.
    Stack,
}

/// A spec that cannot be run, found before anything was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A path that must be absolute is not.
    #[error("{what} must be an absolute path, got {path:?}")]
    NotAbsolute {
        /// Which field.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A path given to the overlay contains a character overlayfs options cannot carry.
    #[error("{what} {path:?} contains ',' or ':' or a newline, which overlayfs cannot take; rename it")]
    OverlayPath {
        /// Which field.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A host path does not exist.
    #[error("{what} {path:?} does not exist")]
    Missing {
        /// Which field.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// No command.
    #[error("no command given: argv is empty")]
    EmptyArgv,
    /// An overlay without lower layers.
    #[error("an overlay root needs at least one lower directory")]
    NoLowers,
    /// A bad host name.
    #[error("host name {0:?} is not valid (1-64 characters, letters, digits, '-' and '.')")]
    Hostname(String),
    /// A bad environment entry.
    #[error("environment variable {0:?} is not valid (empty, or contains '=' or NUL)")]
    Env(String),
    /// A string with a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which field.
        what: &'static str,
    },
    /// The uid or gid inside is larger than any map can cover.
    #[error("{what} {id} is larger than 65535, the largest id the sandbox maps")]
    IdTooLarge {
        /// uid or gid.
        what: &'static str,
        /// The id.
        id: u32,
    },
    /// A mount destination that would replace the root.
    #[error("mount destination {0:?} must be below /, not / itself")]
    MountOnRoot(PathBuf),
    /// A mount destination with a `..` component.
    #[error("mount destination {0:?} contains '..': give the path inside the sandbox without it")]
    MountDotDot(PathBuf),
    /// A size or time limit out of bounds.
    #[error("{what} {value}: {reason}")]
    Limit {
        /// Which field.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it (in the message, not a source: it is
        /// the whole reason, not an underlying failure).
        reason: UnitError,
    },
}

/// The size of /tmp, /dev/shm and caller tmpfs mounts when neither the
/// spec nor a tmpfs upper gives one: 1 GiB. Fixed rather than a share of
/// RAM so that a build that fits on one host fits on every host (and one
/// that does not fails the same way everywhere), and so that `-j N` builds
/// can claim at most a known amount; builds do their heavy writing in the
/// upper (on disk), not in /tmp.
pub const DEFAULT_TMP_SIZE: u64 = 1 << 30;

impl Spec {
    /// The size /tmp and /dev/shm get when `tmp_size`/`shm_size` are not
    /// set: that of the tmpfs upper, when the root is an overlay with one
    /// (the caller already chose how much memory its writes may take), else
    /// [`DEFAULT_TMP_SIZE`]. Each of them is its own tmpfs of that size.
    pub fn default_tmp_size(&self) -> u64 {
        match &self.root {
            Root::Overlay { upper: Upper::Tmpfs { size }, .. } => *size,
            Root::Overlay { upper: Upper::Dir { .. }, .. } | Root::Dir { .. } => DEFAULT_TMP_SIZE,
        }
    }

    /// A spec that runs `argv` in the directory `root`, with every other
    /// setting at its default.
    pub fn new(root: Root, argv: Vec<String>) -> Self {
        Spec {
            root,
            mounts: Vec::new(),
            network: Network::default(),
            uid: 0,
            gid: 0,
            env: BTreeMap::new(),
            cwd: default_cwd(),
            argv,
            timeout: None,
            tmp_size: None,
            shm_size: None,
            rlimits: Vec::new(),
            hostname: default_hostname(),
            id_map: IdMapMode::default(),
            cgroup: None,
            seccomp: Seccomp::default(),
            owners: Vec::new(),
            cleanup: Vec::new(),
        }
    }

    /// Check everything that can be checked before starting: absolute paths,
    /// existing sources, names. Called by the supervisor before the spawn.
    pub fn validate(&self) -> Result<(), SpecError> {
        match &self.root {
            Root::Dir { path } => {
                absolute("root directory", path)?;
                exists("root directory", path)?;
            }
            Root::Overlay { lowers, upper } => {
                if lowers.is_empty() {
                    return Err(SpecError::NoLowers);
                }
                for l in lowers {
                    overlay_path("lower directory", l)?;
                    exists("lower directory", l)?;
                }
                match upper {
                    Upper::Tmpfs { size } => size_in_bounds("root.overlay.upper.tmpfs.size", *size)?,
                    Upper::Dir { upper, work } => {
                        overlay_path("upper directory", upper)?;
                        overlay_path("work directory", work)?;
                    }
                }
            }
        }
        if let Some(c) = &self.cgroup {
            absolute("cgroup directory", c)?;
            exists("cgroup directory", c)?;
        }
        for m in &self.mounts {
            match m {
                Mount::Bind { src, dst, .. } => {
                    absolute("bind source", src)?;
                    exists("bind source", src)?;
                    mount_dst(dst)?;
                }
                Mount::Tmpfs { dst, size } => {
                    mount_dst(dst)?;
                    if let Some(size) = size {
                        size_in_bounds("mounts.tmpfs.size", *size)?;
                    }
                }
            }
        }
        for o in &self.owners {
            mount_dst(&o.path)?;
        }
        for c in &self.cleanup {
            absolute("cleanup path", &c.path)?;
        }
        for (what, size) in [("tmp_size", self.tmp_size), ("shm_size", self.shm_size)] {
            if let Some(size) = size {
                size_in_bounds(what, size)?;
            }
        }
        if let Some(t) = self.timeout {
            Timeout::new(t).map_err(|reason| SpecError::Limit {
                what: "timeout",
                value: crate::units::secs_text(t.as_secs_f64()),
                reason,
            })?;
        }
        absolute("working directory", &self.cwd)?;
        if self.argv.is_empty() {
            return Err(SpecError::EmptyArgv);
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(SpecError::Nul { what: "argv" });
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(SpecError::Env(k.clone()));
            }
            if v.contains('\0') {
                return Err(SpecError::Nul { what: "an environment value" });
            }
        }
        let h = &self.hostname;
        if h.is_empty()
            || h.len() > 64
            || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(SpecError::Hostname(h.clone()));
        }
        for (what, id) in [("uid", self.uid), ("gid", self.gid)] {
            if id > 65535 {
                return Err(SpecError::IdTooLarge { what, id });
            }
        }
        Ok(())
    }
}

fn size_in_bounds(what: &'static str, bytes: u64) -> Result<(), SpecError> {
    Size::new(bytes).map(drop).map_err(|reason| SpecError::Limit { what, value: bytes.to_string(), reason })
}

fn absolute(what: &'static str, path: &Path) -> Result<(), SpecError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(SpecError::NotAbsolute { what, path: path.to_owned() })
    }
}

fn exists(what: &'static str, path: &Path) -> Result<(), SpecError> {
    // symlink_metadata: a dangling link is "missing" too, but a link to a
    // directory is fine (the mount follows it).
    if path.exists() {
        Ok(())
    } else {
        Err(SpecError::Missing { what, path: path.to_owned() })
    }
}

fn overlay_path(what: &'static str, path: &Path) -> Result<(), SpecError> {
    absolute(what, path)?;
    let s = path.as_os_str().as_encoded_bytes();
    if s.iter().any(|b| matches!(b, b',' | b':' | b'\n' | b'\\')) {
        return Err(SpecError::OverlayPath { what, path: path.to_owned() });
    }
    Ok(())
}

fn mount_dst(dst: &Path) -> Result<(), SpecError> {
    absolute("mount destination", dst)?;
    if dst.parent().is_none() {
        return Err(SpecError::MountOnRoot(dst.to_owned()));
    }
    // Mount points are resolved inside the new root, where `..` could not
    // leave it anyway; but a `..` in a destination is never meant, and
    // refusing it here says so before anything starts.
    if dst.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(SpecError::MountDotDot(dst.to_owned()));
    }
    Ok(())
}

/// Durations travel as (fractional) seconds in JSON.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<f64> = Option::deserialize(d)?;
        match v {
            None => Ok(None),
            Some(secs) => crate::units::Timeout::from_secs_f64(secs)
                .map(|t| Some(t.duration()))
                .map_err(|e| serde::de::Error::custom(format!("timeout {}: {e}", crate::units::secs_text(secs)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    fn dir_spec() -> Spec {
        Spec::new(Root::Dir { path: "/".into() }, vec!["true".into()])
    }

    #[test]
    fn a_minimal_spec_is_valid() {
        assert_eq!(dir_spec().validate(), Ok(()));
    }

    #[test]
    fn relative_paths_are_refused_before_start() {
        let mut s = dir_spec();
        s.cwd = "rel".into();
        assert_eq!(
            s.validate(),
            Err(SpecError::NotAbsolute { what: "working directory", path: "rel".into() })
        );
    }

    #[test]
    fn overlay_paths_with_commas_are_refused() {
        let s = Spec::new(
            Root::Overlay { lowers: vec!["/a,b".into()], upper: Upper::Tmpfs { size: 1 } },
            vec!["true".into()],
        );
        assert!(matches!(s.validate(), Err(SpecError::OverlayPath { .. })));
    }

    #[test]
    fn empty_argv_and_bad_hostname_are_refused() {
        let mut s = dir_spec();
        s.argv.clear();
        assert_eq!(s.validate(), Err(SpecError::EmptyArgv));
        let mut s = dir_spec();
        s.hostname = "a b".into();
        assert_eq!(s.validate(), Err(SpecError::Hostname("a b".into())));
    }

    #[test]
    fn mount_destinations_with_dot_dot_are_refused() {
        for dst in ["/../oldroot/x", "/tmp/../etc", "/a/.."] {
            let mut s = dir_spec();
            s.mounts.push(Mount::Tmpfs { dst: dst.into(), size: None });
            assert_eq!(s.validate(), Err(SpecError::MountDotDot(dst.into())), "{dst}");
        }
    }

    #[test]
    fn the_syscall_filter_is_on_unless_the_spec_says_off() {
        let s: Spec = serde_json::from_str(r#"{"root":{"dir":{"path":"/"}},"argv":["true"]}"#).unwrap();
        assert_eq!(s.seccomp, Seccomp::On);
        let s: Spec =
            serde_json::from_str(r#"{"root":{"dir":{"path":"/"}},"argv":["true"],"seccomp":"off"}"#).unwrap();
        assert_eq!(s.seccomp, Seccomp::Off);
    }

    #[test]
    fn json_round_trips_and_rejects_unknown_keys() {
        let mut s = dir_spec();
        s.timeout = Some(Duration::from_millis(1500));
        s.mounts.push(Mount::Bind { src: "/etc".into(), dst: "/x".into(), access: Access::ReadWrite });
        let j = serde_json::to_string(&s).unwrap();
        let back: Spec = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        let bad = r#"{"root":{"dir":{"path":"/"}},"argv":["true"],"nope":1}"#;
        let err = serde_json::from_str::<Spec>(bad).unwrap_err().to_string();
        assert!(err.contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn sizes_and_time_limits_out_of_bounds_are_refused_naming_the_field() {
        let tmpfs = |size| Spec::new(Root::Overlay { lowers: vec!["/".into()], upper: Upper::Tmpfs { size } }, vec!["true".into()]);
        for size in [0, u64::MAX, crate::units::Size::MAX.bytes() + 1] {
            let err = tmpfs(size).validate().unwrap_err();
            assert!(matches!(err, SpecError::Limit { what: "root.overlay.upper.tmpfs.size", .. }), "{err:?}");
        }
        let mut s = dir_spec();
        s.tmp_size = Some(0);
        assert!(s.validate().unwrap_err().to_string().starts_with("tmp_size 0: a size of 0"));
        let mut s = dir_spec();
        s.shm_size = Some(u64::MAX);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "shm_size 18446744073709551615: larger than the largest size taken, 1P"
        );
        let mut s = dir_spec();
        s.mounts.push(Mount::Tmpfs { dst: "/x".into(), size: Some(0) });
        assert!(matches!(s.validate(), Err(SpecError::Limit { what: "mounts.tmpfs.size", .. })));
        let mut s = dir_spec();
        s.timeout = Some(Duration::MAX);
        assert!(matches!(s.validate(), Err(SpecError::Limit { what: "timeout", .. })));
    }

    #[test]
    fn absurd_timeouts_in_json_are_errors_naming_the_timeout() {
        for t in ["1e300", "-1", "0", "1.7976931348623157e308", "18446744073709551616"] {
            let j = format!(r#"{{"root":{{"dir":{{"path":"/"}}}},"argv":["true"],"timeout":{t}}}"#);
            let err = serde_json::from_str::<Spec>(&j).unwrap_err().to_string();
            assert!(err.starts_with("timeout ") && !err.contains("000000000000000"), "{t}: {err}");
        }
    }

    proptest::proptest! {
        /// Whatever numbers a JSON spec carries, parsing, validating and
        /// planning its mounts ends in a value or an error, never a panic;
        /// and a spec that validates has every size and limit in bounds.
        #[test]
        fn the_spec_parser_never_panics_on_absurd_numbers(
            upper in proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                proptest::num::i64::ANY.prop_map(|n| n.to_string()),
                proptest::num::f64::ANY.prop_map(|n| n.to_string()),
                "[0-9]{19,40}",
            ],
            tmp in proptest::option::of(proptest::num::u64::ANY),
            shm in proptest::option::of(proptest::num::i64::ANY),
            mount in proptest::option::of(proptest::num::u64::ANY),
            timeout in proptest::prop_oneof![
                proptest::num::f64::ANY.prop_map(|n| n.to_string()),
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                proptest::num::i64::ANY.prop_map(|n| n.to_string()),
                "-?[0-9]{1,3}e[0-9]{1,3}",
                "[0-9]{19,40}(\\.[0-9]{1,5})?",
            ],
        ) {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
            let j = format!(
                r#"{{"root":{{"overlay":{{"lowers":["/"],"upper":{{"tmpfs":{{"size":{upper}}}}}}}}},
                    "mounts":[{{"tmpfs":{{"dst":"/x","size":{}}}}}],
                    "argv":["true"],"timeout":{timeout},"tmp_size":{},"shm_size":{}}}"#,
                opt(mount.map(|m| m.to_string())),
                opt(tmp.map(|m| m.to_string())),
                opt(shm.map(|m| m.to_string())),
            );
            if let Ok(spec) = serde_json::from_str::<Spec>(&j)
                && spec.validate().is_ok()
            {
                for op in crate::mounts::plan(&spec) {
                    let size = match op {
                        crate::mounts::MountOp::UpperTmpfs { size }
                        | crate::mounts::MountOp::StickyTmpfs { size, .. }
                        | crate::mounts::MountOp::Tmpfs { size, .. } => size,
                        _ => continue,
                    };
                    proptest::prop_assert!(size > 0 && size <= crate::units::Size::MAX.bytes());
                }
                let t = spec.timeout.unwrap();
                proptest::prop_assert!(!t.is_zero() && t <= crate::units::Timeout::MAX.duration());
            }
        }
    }
}
