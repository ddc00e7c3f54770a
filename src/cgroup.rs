//! Per-build cgroups, where the host delegates cgroup v2 to the user (as
//! systemd does for `user@.service`): a build's memory and processes are
//! then limited as totals (`memory.max`, `pids.max`) instead of per process
//! by rlimits.
//!
//! Detection: `/proc/self/cgroup` names our cgroup v2 (`0::/path`),
//! `/sys/fs/cgroup` is a cgroup2 mount (it has `cgroup.controllers`), and
//! the parent of our cgroup enables `memory` and `pids` for its children
//! and lets us create a child and move processes (we own it). A process
//! lives in a leaf, so per-build cgroups are made next to ours, in that
//! parent: `<parent>/pkgcell-<pid>-<n>`. The sandbox's helper is moved in
//! by the sandbox crate ([`pkgcell_sandbox::Spec::cgroup`]).
//!
//! Only paths are read and written here: no mount, no syscall beyond file
//! operations on cgroupfs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the cgroup files are read: injectable for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPaths {
    /// `/proc/self/cgroup`.
    pub proc_self_cgroup: PathBuf,
    /// The cgroup2 mount, `/sys/fs/cgroup`.
    pub mount: PathBuf,
}

impl Default for CgroupPaths {
    fn default() -> Self {
        CgroupPaths { proc_self_cgroup: "/proc/self/cgroup".into(), mount: "/sys/fs/cgroup".into() }
    }
}

/// Why no cgroup is used (said in the log, and by `--verbose`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotDelegated {
    /// `/proc/self/cgroup` has no `0::` line: cgroup v1 only.
    #[error("this process is in no cgroup v2 ({} has no \"0::\" line)", .0.display())]
    NoUnifiedHierarchy(PathBuf),
    /// The mount point is not a cgroup2 file system.
    #[error("{} is not a cgroup2 mount (no cgroup.controllers)", .0.display())]
    NotCgroup2(PathBuf),
    /// The parent cgroup does not give its children the controllers.
    #[error("{} does not enable memory and pids for its children (cgroup.subtree_control: {have:?})", path.display())]
    ControllersOff {
        /// The parent cgroup.
        path: PathBuf,
        /// What it enables.
        have: String,
    },
    /// The parent cgroup is not ours to write.
    #[error("{} is not delegated to this user: {why}", path.display())]
    NotWritable {
        /// The parent cgroup.
        path: PathBuf,
        /// The failed operation.
        why: String,
    },
}

/// A cgroup v2 directory under which per-build cgroups can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated {
    parent: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Delegated {
    /// Look for a delegated cgroup v2 (see the module's note).
    pub fn detect(paths: &CgroupPaths) -> Result<Delegated, NotDelegated> {
        let text = fs::read_to_string(&paths.proc_self_cgroup).unwrap_or_default();
        let ours = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| NotDelegated::NoUnifiedHierarchy(paths.proc_self_cgroup.clone()))?;
        if !paths.mount.join("cgroup.controllers").is_file() {
            return Err(NotDelegated::NotCgroup2(paths.mount.clone()));
        }
        let rel = Path::new(ours.trim()).strip_prefix("/").unwrap_or(Path::new(""));
        // Our own cgroup has processes (us), so it cannot have children
        // with controllers: its parent is where siblings go. At the root
        // (no parent) there is nothing an unprivileged user may write.
        let parent = match rel.parent() {
            Some(p) => paths.mount.join(p),
            None => paths.mount.clone(),
        };
        let have = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        let on: Vec<&str> = have.split_whitespace().collect();
        if !(on.contains(&"memory") && on.contains(&"pids")) {
            return Err(NotDelegated::ControllersOff { path: parent, have: have.trim().to_owned() });
        }
        // Moving a process between two children needs write access to
        // their common ancestor's cgroup.procs, and making one to the dir.
        let not_writable = |why: String| NotDelegated::NotWritable { path: parent.clone(), why };
        fs::File::options()
            .write(true)
            .open(parent.join("cgroup.procs"))
            .map_err(|e| not_writable(format!("cannot open cgroup.procs for writing: {e}")))?;
        let probe = parent.join(format!("pkgcell-probe-{}", std::process::id()));
        fs::create_dir(&probe).map_err(|e| not_writable(format!("cannot create {}: {e}", probe.display())))?;
        let _ = fs::remove_dir(&probe);
        Ok(Delegated { parent })
    }

    /// The directory per-build cgroups are made in.
    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// Make a cgroup for one build with these totals.
    pub fn create(&self, memory: Option<u64>, pids: Option<u64>) -> io::Result<BuildCgroup> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self.parent.join(format!("pkgcell-{}-{n}", std::process::id()));
        fs::create_dir(&path)?;
        let cg = BuildCgroup { path };
        // Without swap the limit means what it says.
        for (file, value) in [
            ("memory.max", memory.map(|m| m.to_string())),
            ("memory.swap.max", memory.map(|_| "0".to_owned())),
            ("pids.max", pids.map(|p| p.to_string())),
        ] {
            if let Some(v) = value {
                let r = fs::write(cg.path.join(file), v);
                // memory.swap.max is missing without swap accounting: fine.
                if r.is_err() && file != "memory.swap.max" {
                    r?;
                }
            }
        }
        Ok(cg)
    }
}

/// The cgroup of one build, removed when dropped.
#[derive(Debug)]
pub struct BuildCgroup {
    path: PathBuf,
}

impl BuildCgroup {
    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a limit was hit: (memory: the OOM killer ran, pids: a fork
    /// was refused), from `memory.events` and `pids.events`.
    pub fn limits_hit(&self) -> (bool, bool) {
        let count = |file: &str, key: &str| {
            fs::read_to_string(self.path.join(file))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (count("memory.events", "oom_kill ") > 0, count("pids.events", "max ") > 0)
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        // The sandbox's processes are gone once its helper is reaped, but
        // the kernel may take a moment to empty the cgroup.
        for _ in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        tracing::warn!(path = %self.path.display(), "cannot remove a build's cgroup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /sys/fs/cgroup and /proc/self/cgroup in a temporary directory.
    fn fake(proc_line: &str, subtree: Option<&str>, cgroup2: bool) -> (tempfile::TempDir, CgroupPaths) {
        let d = tempfile::tempdir().unwrap();
        let mount = d.path().join("cgroup");
        let ours = mount.join("user.slice/user@1000.service/app.slice/run.scope");
        fs::create_dir_all(&ours).unwrap();
        if cgroup2 {
            fs::write(mount.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        }
        let parent = ours.parent().unwrap();
        if let Some(s) = subtree {
            fs::write(parent.join("cgroup.subtree_control"), s).unwrap();
        }
        fs::write(parent.join("cgroup.procs"), "").unwrap();
        let proc = d.path().join("proc-self-cgroup");
        fs::write(&proc, proc_line).unwrap();
        (d, CgroupPaths { proc_self_cgroup: proc, mount })
    }

    const OURS: &str = "0::/user.slice/user@1000.service/app.slice/run.scope\n";

    #[test]
    fn a_delegated_parent_with_memory_and_pids_is_found() {
        let (_d, paths) = fake(OURS, Some("cpu memory pids\n"), true);
        let found = Delegated::detect(&paths).unwrap();
        assert_eq!(found.parent(), paths.mount.join("user.slice/user@1000.service/app.slice"));
        assert!(fs::read_dir(found.parent()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("probe")));
    }

    #[test]
    fn a_cgroup_v1_host_has_no_unified_line() {
        let (_d, paths) = fake("12:memory:/user.slice\n1:name=systemd:/user.slice\n", Some("memory pids"), true);
        assert!(matches!(Delegated::detect(&paths), Err(NotDelegated::NoUnifiedHierarchy(_))));
    }

    #[test]
    fn a_hybrid_host_whose_mount_is_not_cgroup2_is_refused() {
        let (_d, paths) = fake(&format!("4:memory:/x\n{OURS}"), Some("memory pids"), false);
        assert!(matches!(Delegated::detect(&paths), Err(NotDelegated::NotCgroup2(_))));
    }

    #[test]
    fn a_parent_without_the_memory_controller_is_refused() {
        let (_d, paths) = fake(OURS, Some("cpu pids\n"), true);
        let e = Delegated::detect(&paths).unwrap_err();
        assert!(matches!(&e, NotDelegated::ControllersOff { have, .. } if have == "cpu pids"), "{e}");
        let (_d, paths) = fake(OURS, None, true);
        assert!(matches!(Delegated::detect(&paths), Err(NotDelegated::ControllersOff { .. })));
    }

    #[test]
    fn a_parent_that_is_not_ours_is_refused() {
        let (_d, paths) = fake(OURS, Some("memory pids"), true);
        let parent = paths.mount.join("user.slice/user@1000.service/app.slice");
        fs::remove_file(parent.join("cgroup.procs")).unwrap();
        let e = Delegated::detect(&paths).unwrap_err();
        assert!(matches!(e, NotDelegated::NotWritable { .. }), "{e}");
    }

    #[test]
    fn a_build_cgroup_gets_its_limits_and_is_removed_when_dropped() {
        let (_d, paths) = fake(OURS, Some("memory pids"), true);
        let found = Delegated::detect(&paths).unwrap();
        let cg = found.create(Some(256 << 20), Some(64)).unwrap();
        assert_eq!(fs::read_to_string(cg.path().join("memory.max")).unwrap(), (256u64 << 20).to_string());
        assert_eq!(fs::read_to_string(cg.path().join("pids.max")).unwrap(), "64");
        fs::write(cg.path().join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        fs::write(cg.path().join("pids.events"), "max 0\n").unwrap();
        assert_eq!(cg.limits_hit(), (true, false));
        // A real cgroup's files vanish with its directory; these do not.
        let path = cg.path().to_owned();
        for f in ["memory.max", "memory.swap.max", "pids.max", "memory.events", "pids.events"] {
            let _ = fs::remove_file(path.join(f));
        }
        drop(cg);
        assert!(!path.exists());
    }
}
