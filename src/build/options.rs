//! Settings of a build run, and the resource limits of its sandboxes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pkgcell_sandbox::{Mount, Network, Rlimit, RlimitResource, Spec};

use crate::base::Base;
use crate::buildlog;
use crate::home::Home;
use crate::local::LocalPackage;
use crate::remote::RemoteStore;
use crate::cgroup::{BuildCgroup, Delegated};
use crate::store::LimitsApplied;

use super::BuildError;

/// Whether a failed build's directory is kept to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepFailed {
    /// Remove it.
    No,
    /// Move it to `$PKGCELL_HOME/failed/<pkgid>`.
    Yes,
}

/// The environment makepkg runs in that a reproducibility check varies or
/// pins (see [`crate::repro`]). `Default` is what `build` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakepkgEnv {
    /// SOURCE_DATE_EPOCH; `None`: the PKGBUILD's commit time (or mtime).
    pub epoch: Option<u64>,
    /// The host name inside.
    pub hostname: String,
    /// `TZ`.
    pub tz: String,
    /// `LANG`.
    pub lang: String,
    /// The umask makepkg starts with; `None` leaves the sandbox's.
    pub umask: Option<u32>,
    /// `PACKAGER`, over [`BuildOptions::packager`] (repro: the recorded one).
    pub packager: Option<String>,
}

impl Default for MakepkgEnv {
    fn default() -> Self {
        MakepkgEnv { epoch: None, hostname: "pkgcell".into(), tz: "UTC".into(), lang: "C.UTF-8".into(), umask: None, packager: None }
    }
}

/// Settings of a build run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The state directory.
    pub home: Home,
    /// The base.
    pub base: Base,
    /// Network of makepkg.
    pub network: Network,
    /// Time limit per build.
    pub timeout: Duration,
    /// Builds at the same time.
    pub jobs: usize,
    /// What happens to the directory of a failed build.
    pub keep_failed: KeepFailed,
    /// The architecture built for (source_<arch> entries).
    pub arch: String,
    /// Per entry, directories of the build user's home kept between its
    /// builds (`home_binds`, relative to the home), under
    /// `$PKGCELL_HOME/homes/<entry>/`.
    pub home_binds: BTreeMap<String, Vec<PathBuf>>,
    /// Extra binds into every makepkg sandbox (`-d`/`-D`).
    pub binds: Vec<Mount>,
    /// Package files installed into every build's dependency layer before
    /// its dependencies (`-I`).
    pub local: Vec<LocalPackage>,
    /// Whether dependency layers are reused or made afresh (`-c`).
    pub layers: LayerMode,
    /// Memory and process limits of the fetch, dependency layer and makepkg sandboxes.
    pub limits: Limits,
    /// Bytes of each log of a build kept (`[build] log_limit`).
    pub log_limit: u64,
    /// A cgroup v2 delegated to the user: when there is one, [`Limits`]
    /// are totals of a per-build cgroup in it, not rlimits.
    pub cgroup: Option<Delegated>,
    /// A remote store: looked up before building, uploaded to after.
    pub remote: Option<Arc<RemoteStore>>,
    /// Whether a pkgid already in the store is built again (`-f`).
    pub rebuild: Rebuild,
    /// Extra makepkg flags (after `--`), checked by [`MakepkgFlags::new`].
    pub makepkg_flags: MakepkgFlags,
    /// makepkg's `PACKAGER` (else makepkg's default, `Unknown Packager`).
    pub packager: Option<String>,
    /// Host directories `file://` sources may read
    /// (`Config::file_source_dirs`).
    pub file_sources: Vec<PathBuf>,
    /// Where the logs of the dependency layer and makepkg go besides their
    /// files as they come (laptop mode: stderr).
    pub echo: buildlog::Echo,
    /// Told how each build's downloads go (a byte counter on a terminal).
    pub on_download: Option<OnDownload>,
}

/// What an [`OnDownload`] calls: with the entry, and how far its download is.
pub type DownloadObserver = dyn Fn(&str, crate::fetch::Download<'_>) + Send + Sync;

/// An observer of the downloads of a build run.
#[derive(Clone)]
pub struct OnDownload(pub Arc<DownloadObserver>);

impl std::fmt::Debug for OnDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDownload")
    }
}

/// Whether a build whose pkgid is in the store (or the remote store) runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Rebuild {
    /// No: the stored result is the result.
    #[default]
    IfMissing,
    /// Yes for these entries (`-f`, as makepkg's: the entries named, or all);
    /// the new record replaces the stored one, and objects only the old one
    /// named go with the next `store gc`. What they need is built only when
    /// missing, as always.
    Entries(BTreeSet<String>),
}

impl Rebuild {
    pub(super) fn forced(&self, entry: &str) -> bool {
        match self {
            Rebuild::IfMissing => false,
            Rebuild::Entries(e) => e.contains(entry),
        }
    }
}

/// makepkg flags a user may add to every makepkg run (`pkgcell build --
/// --nocheck`, as makechrootpkg passes them). Only flags that change how
/// makepkg gets to the package, not what pkgcell expects of it: no
/// `--nobuild`, `--noarchive`, `--install`, `--syncdeps`, `--config` and the
/// like, which would leave no package or reach outside the sandbox's job.
/// They are not part of the pkgid: a stored result is not built again
/// because of them (`-f` does that); the build log's header names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakepkgFlags(Vec<String>);

impl MakepkgFlags {
    /// The flags makepkg may be given, long form first.
    pub const ALLOWED: [(&'static str, Option<&'static str>); 9] = [
        ("--nocheck", None),
        ("--check", None),
        ("--skippgpcheck", None),
        ("--skipchecksums", None),
        ("--skipinteg", None),
        ("--holdver", None),
        ("--cleanbuild", Some("-C")),
        ("--nocolor", Some("-m")),
        ("--noprepare", None),
    ];

    /// Check `flags` against [`Self::ALLOWED`].
    pub fn new(flags: &[String]) -> Result<MakepkgFlags, String> {
        for f in flags {
            if !Self::ALLOWED.iter().any(|(long, short)| f == long || Some(f.as_str()) == *short) {
                let allowed: Vec<String> = Self::ALLOWED
                    .iter()
                    .map(|(l, s)| s.map_or_else(|| l.to_string(), |s| format!("{s}/{l}")))
                    .collect();
                return Err(format!(
                    "makepkg flag {f:?} is not one pkgcell can pass on (it would leave no package, or do what pkgcell does itself); allowed after --: {}",
                    allowed.join(" ")
                ));
            }
        }
        Ok(MakepkgFlags(flags.to_vec()))
    }

    /// The flags, as given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl BuildOptions {
    /// How the limits are applied to a build.
    pub fn limits_applied(&self) -> LimitsApplied {
        match (self.limits.memory.is_some() || self.limits.pids.is_some(), &self.cgroup) {
            (false, _) => LimitsApplied::None,
            (true, Some(_)) => LimitsApplied::Cgroup,
            (true, None) => LimitsApplied::Rlimit,
        }
    }

    /// The limits as a build's log header says them.
    pub(super) fn limits_text(&self, cgroup: Option<&BuildCgroup>) -> String {
        let memory = self.limits.memory.map_or("unlimited".into(), size_text);
        let pids = self.limits.pids.map_or("unlimited".into(), |p| p.to_string());
        match cgroup {
            Some(cg) => format!("memory {memory}, processes {pids}, for the whole build (cgroup {})", cg.path().display()),
            None => format!("memory {memory} per process, processes {pids} (rlimits)"),
        }
    }
}

/// Whether a build reuses the cached dependency layer of its set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerMode {
    /// Reuse it when it is there (it is keyed by content).
    #[default]
    Reuse,
    /// Reuse only a layer made at or after this time (the start of the
    /// run), else make a fresh one and put it in the cache's place (`-c`, as
    /// makechrootpkg's `-c`): later builds reuse the fresh one; a build
    /// still running on the old one keeps it (its overlay holds it) until
    /// `store gc` removes it.
    Fresh(SystemTime),
}

impl LayerMode {
    /// Whether the layer whose `ready` marker is at `ready` may be used.
    pub(super) fn usable(&self, ready: &Path) -> bool {
        match self {
            LayerMode::Reuse => ready.exists(),
            LayerMode::Fresh(since) => fs::metadata(ready).and_then(|m| m.modified()).is_ok_and(|t| t >= *since),
        }
    }
}

/// Per-build resource limits, applied as rlimits to every process of the
/// fetch, dependency layer and makepkg sandboxes (no cgroup: see docs/build.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory of each process, in bytes (RLIMIT_DATA: heap and private
    /// writable mappings).
    pub memory: Option<u64>,
    /// Processes at once of the sandbox's user, in its sandbox (RLIMIT_NPROC,
    /// which the kernel counts per user namespace and uid, so one build's
    /// processes never count against another's limit).
    pub pids: Option<u64>,
    /// Size of the package files of one build, each and together, in bytes
    /// (None: [`DEFAULT_MAX_OUTPUT`]). Read by the host, not an rlimit.
    pub max_output: Option<u64>,
    /// Size of each of /tmp and /dev/shm in the makepkg sandbox, in bytes
    /// (none: the sandbox's default, [`pkgcell_sandbox::DEFAULT_TMP_SIZE`]).
    pub tmp: Option<u64>,
}

/// The default of [`Limits::max_output`]: 8 GiB, more than the largest
/// packages of Arch's repositories (a few GiB, compressed).
pub const DEFAULT_MAX_OUTPUT: u64 = 8 << 30;

impl Limits {
    /// [`Limits::max_output`] or its default.
    pub fn max_output(&self) -> u64 {
        self.max_output.unwrap_or(DEFAULT_MAX_OUTPUT)
    }

    /// The rlimits that carry these limits.
    pub fn rlimits(&self) -> Vec<Rlimit> {
        let mut out = Vec::new();
        if let Some(m) = self.memory {
            out.push(Rlimit { resource: RlimitResource::Data, limit: m });
        }
        if let Some(p) = self.pids {
            out.push(Rlimit { resource: RlimitResource::Processes, limit: p });
        }
        out
    }

    /// A hint for a failed sandbox whose cgroup saw a limit hit: (memory:
    /// the OOM killer ran, pids: a fork was refused).
    pub(super) fn cgroup_hint(&self, (memory, pids): (bool, bool)) -> Option<String> {
        if let (true, Some(m)) = (memory, self.memory) {
            return Some(format!(
                "killed by the kernel's OOM killer: over the memory limit of {} for the whole build (cgroup memory.max; [build] memory, --memory)",
                size_text(m)
            ));
        }
        if let (true, Some(p)) = (pids, self.pids) {
            return Some(format!("fork failed: over the process limit of {p} for the whole build (cgroup pids.max; [build] pids, --pids)"));
        }
        None
    }

    /// A hint for a failed sandbox whose log shows that a limit was hit.
    pub(super) fn hint(&self, log: &str) -> Option<String> {
        let log = log.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| log.contains(n));
        if let Some(m) = self.memory
            && any(&["cannot allocate", "out of memory", "memory exhausted", "bad_alloc", "memoryerror", "xmalloc", "xrealloc"])
        {
            return Some(format!("memory allocation failed: over the memory limit of {} per process ([build] memory, --memory)", size_text(m)));
        }
        if let Some(p) = self.pids
            && any(&["cannot fork", "fork: retry", "fork: resource temporarily unavailable", "cannot create thread", "resource temporarily unavailable"])
        {
            return Some(format!("fork failed: over the process limit of {p} ([build] pids, --pids)"));
        }
        None
    }
}

/// Put the memory and process limits of `opts` on `spec`: a cgroup of its
/// own where the host delegates one (totals; it is removed when the
/// returned value is dropped, after the sandbox), else rlimits.
pub(super) fn apply_limits(opts: &BuildOptions, spec: &mut Spec) -> Result<Option<BuildCgroup>, BuildError> {
    match opts.limits_applied() {
        LimitsApplied::None => Ok(None),
        LimitsApplied::Rlimit => {
            spec.rlimits.extend(opts.limits.rlimits());
            Ok(None)
        }
        LimitsApplied::Cgroup => {
            let delegated = opts.cgroup.as_ref().expect("limits_applied said cgroup");
            let cg = delegated
                .create(opts.limits.memory, opts.limits.pids)
                .map_err(|source| BuildError::Cgroup { path: delegated.parent().to_owned(), source })?;
            spec.cgroup = Some(cg.path().to_owned());
            Ok(Some(cg))
        }
    }
}

/// Bytes as the config writes them (`4G`, `512M`, `65536K`), by the one
/// printer of sizes, [`pkgcell_sandbox::Size`].
pub(super) fn size_text(b: u64) -> String {
    pkgcell_sandbox::Size::new(b).map_or_else(|_| format!("{b} bytes"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_rlimits_and_failures_that_hit_them_name_them() {
        assert!(Limits::default().rlimits().is_empty());
        let l = Limits { memory: Some(256 << 20), pids: Some(64), tmp: None, max_output: None };
        assert_eq!(
            l.rlimits(),
            [
                Rlimit { resource: RlimitResource::Data, limit: 256 << 20 },
                Rlimit { resource: RlimitResource::Processes, limit: 64 }
            ]
        );
        let hint = l.hint("dd: memory exhausted\n").unwrap();
        assert!(hint.contains("memory limit of 256M per process"), "{hint}");
        let hint = l.hint("sh: 0: Cannot fork\n").unwrap();
        assert!(hint.contains("process limit of 64"), "{hint}");
        assert_eq!(l.hint("error: test failed\n"), None);
        // No limit set: no hint, whatever the log says.
        assert_eq!(Limits::default().hint("memory exhausted, Cannot fork"), None);
        assert_eq!(size_text(4 << 30), "4G");
        assert_eq!(size_text(1536 << 20), "1536M");
        assert_eq!(size_text(1000), "1000");
        assert_eq!(size_text(0), "0 bytes");
    }
}
