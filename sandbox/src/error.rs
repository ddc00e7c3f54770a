//! Errors of the sandbox: one value per failed setup step (with the path and
//! the errno), plus a hint naming the fix for the errnos we know.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::spec::SpecError;
use crate::sys::SysError;

/// The setup step that failed, named after what it was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Reading the job from the supervisor.
    ReadJob,
    /// Making the user namespace.
    UnshareUser,
    /// Making the other namespaces.
    UnshareNamespaces,
    /// Forking the sandbox's pid 1 or the payload.
    Fork,
    /// Joining a fresh session keyring.
    JoinSessionKeyring,
    /// Making mount propagation private.
    MakeRootPrivate,
    /// Mounting the staging tmpfs.
    MountStaging,
    /// pivot_root into the staging area or the new root.
    PivotRoot,
    /// Bind-mounting a root directory.
    BindRoot,
    /// Mounting the tmpfs that holds the overlay's upper dir.
    MountUpperTmpfs,
    /// Mounting the overlay root.
    MountOverlay,
    /// Mounting /proc.
    MountProc,
    /// Making parts of /proc read-only.
    ProtectProc,
    /// Making /dev.
    MountDev,
    /// Binding a device node into /dev.
    BindDevice,
    /// Mounting /dev/pts.
    MountDevpts,
    /// Mounting /dev/shm or /tmp.
    MountTmp,
    /// Making a mount point.
    CreateMountPoint,
    /// A bind mount from the spec.
    Bind,
    /// Setting the flags of a bind mount.
    SetBindFlags,
    /// A tmpfs mount from the spec.
    MountTmpfs,
    /// Giving a path to ids inside (the spec's `owners`).
    Chown,
    /// Setting the host name.
    Hostname,
    /// Bringing `lo` up.
    LoopbackUp,
    /// Detaching the old root.
    DetachOldRoot,
    /// Changing to the working directory.
    Chdir,
    /// Moving the payload into a nested user namespace that locks the mounts.
    LockMounts,
    /// New session.
    Setsid,
    /// Setting resource limits.
    Rlimit,
    /// Switching to the payload's uid and gid.
    SetIds,
    /// Dropping capabilities.
    DropCapabilities,
    /// Setting no_new_privs.
    NoNewPrivs,
    /// Marking inherited fds close-on-exec.
    CloseFds,
    /// Compiling or loading the syscall filter.
    SyscallFilter,
    /// Executing the payload.
    Exec,
    /// Waiting for processes.
    Wait,
    /// Removing a directory tree.
    RemoveTree,
    /// A cleanup step of the spec, after the sandbox ended.
    Cleanup,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::ReadJob => "read the job from the supervisor",
            Step::UnshareUser => "create a user namespace",
            Step::UnshareNamespaces => "create mount, pid, ipc, uts and net namespaces",
            Step::Fork => "fork",
            Step::JoinSessionKeyring => "join a fresh session keyring",
            Step::MakeRootPrivate => "make mount propagation private",
            Step::MountStaging => "mount the staging tmpfs",
            Step::PivotRoot => "pivot_root",
            Step::BindRoot => "bind the root directory",
            Step::MountUpperTmpfs => "mount the tmpfs for the overlay upper",
            Step::MountOverlay => "mount the overlay root",
            Step::MountProc => "mount /proc",
            Step::ProtectProc => "make parts of /proc read-only",
            Step::MountDev => "make /dev",
            Step::BindDevice => "bind a device into /dev",
            Step::MountDevpts => "mount /dev/pts",
            Step::MountTmp => "mount a tmpfs",
            Step::CreateMountPoint => "create a mount point",
            Step::Bind => "bind mount",
            Step::SetBindFlags => "set bind mount flags",
            Step::MountTmpfs => "mount a tmpfs",
            Step::Chown => "give a path to ids inside",
            Step::Hostname => "set the host name",
            Step::LoopbackUp => "bring up the loopback interface",
            Step::DetachOldRoot => "detach the old root",
            Step::Chdir => "change to the working directory",
            Step::LockMounts => "lock the mounts in a nested user namespace",
            Step::Setsid => "start a new session",
            Step::Rlimit => "set a resource limit",
            Step::SetIds => "switch uid/gid",
            Step::DropCapabilities => "drop capabilities",
            Step::NoNewPrivs => "set no_new_privs",
            Step::CloseFds => "close inherited file descriptors",
            Step::SyscallFilter => "set up the syscall filter",
            Step::Exec => "execute the command",
            Step::Wait => "wait for the payload",
            Step::RemoveTree => "remove a directory tree",
            Step::Cleanup => "clean up after the sandbox",
        }
    }
}

/// A setup step inside the sandbox failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupError {
    /// Which step.
    pub step: Step,
    /// The system call and its argument, e.g. `mount overlay on /newroot (...)`.
    pub call: String,
    /// The errno (raw, so that it can cross the pipe).
    pub errno: i32,
}

impl SetupError {
    pub(crate) fn new(step: Step, e: SysError) -> Self {
        SetupError { step, call: format!("{} {}", e.call, e.arg).trim_end().to_owned(), errno: e.errno as i32 }
    }

    pub(crate) fn io(step: Step, call: impl Into<String>, e: &std::io::Error) -> Self {
        SetupError { step, call: call.into(), errno: e.raw_os_error().unwrap_or(libc::EIO) }
    }

    /// The errno as a typed value.
    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }

    /// A hint naming the fix, for the failures we know.
    pub fn hint(&self) -> Option<&'static str> {
        let e = self.errno();
        Some(match (self.step, e) {
            (Step::UnshareUser, Errno::EPERM | Errno::ENOSPC | Errno::EUSERS | Errno::EINVAL) => {
                "user namespaces are disabled or exhausted here: check `sysctl user.max_user_namespaces` (must be > 0), \
                 `kernel.unprivileged_userns_clone=1` (Debian kernels before 5.10) or \
                 `kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu), and that no seccomp filter (a container) forbids unshare"
            }
            (Step::MountOverlay, Errno::EINVAL | Errno::EPERM | Errno::EOPNOTSUPP) => {
                "overlayfs in a user namespace needs Linux 5.11 or newer, and the upper dir must be on a file system that \
                 can hold one (ext4, xfs, btrfs, tmpfs; not another overlayfs, NFS or FAT): use a tmpfs upper or move the upper dir"
            }
            (Step::MountProc, Errno::EPERM | Errno::EACCES) => {
                "the kernel refuses a new /proc when the /proc this process sees is partly covered by other mounts \
                 (as in many containers, which mask /proc paths): run on the host, or in a container whose /proc is not masked"
            }
            (_, Errno::ENOSPC) if self.call.starts_with("mount") => {
                "too many mounts: raise `sysctl fs.mount-max` (this is not a full disk)"
            }
            (Step::JoinSessionKeyring, Errno::EPERM | Errno::ENOSYS) => {
                "a seccomp filter of the caller (a container, or an outer sandbox) denies keyctl: \
                 run with the syscall filter on (the default), which keeps keyrings out of reach instead"
            }
            (Step::Exec, Errno::ENOENT) => "the command (or its interpreter) does not exist inside the sandbox",
            (Step::Exec, Errno::EACCES) => "the command is not executable inside the sandbox, or its mount is noexec",
            (Step::SetIds, Errno::EINVAL) => {
                "that uid/gid is not mapped: a non-root id inside needs a subordinate id range (see the warning above)"
            }
            (Step::Chdir, Errno::ENOENT) => "the working directory does not exist inside the sandbox",
            (Step::Bind | Step::BindRoot, Errno::ENOENT) => "the source path does not exist",
            _ => return None,
        })
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}: {}", self.step.what(), self.call, self.errno().desc())?;
        if let Some(h) = self.hint() {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SetupError {}

/// Everything that can go wrong running a sandbox (but not the payload
/// failing: that is an [`crate::Outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec cannot be run.
    #[error("invalid sandbox spec")]
    Spec(#[from] SpecError),
    /// The helper process could not be started.
    #[error("cannot start the sandbox helper {exe:?}")]
    SpawnHelper {
        /// The executable.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the helper failed.
    #[error("lost contact with the sandbox helper while {during}")]
    Helper {
        /// What we were waiting for.
        during: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper ended without saying why.
    #[error("the sandbox helper exited unexpectedly ({status}) while {during}")]
    HelperDied {
        /// What we were waiting for.
        during: &'static str,
        /// Its exit status.
        status: String,
    },
    /// The uid or gid inside is not mapped.
    #[error(
        "{what} {id} inside the sandbox is not mapped (the highest mapped id is {max}): a non-root id inside \
         needs a subordinate id range of the calling user in /etc/subuid and /etc/subgid, and newuidmap/newgidmap; \
         fix: `{fix}`"
    )]
    UnmappedId {
        /// uid or gid.
        what: &'static str,
        /// The id asked for.
        id: u32,
        /// The highest id mapped.
        max: u32,
        /// The command that gives the user a free range.
        fix: String,
    },
    /// The id maps could not be written.
    #[error("cannot write the id maps of the sandbox")]
    IdMap(#[from] crate::idmap::IdMapError),
    /// A setup step inside the sandbox failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The helper could not be moved into the spec's cgroup.
    #[error("cannot move the sandbox into the cgroup {path:?} (writing its cgroup.procs)")]
    JoinCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Preparing a host path failed.
    #[error("cannot prepare {path:?}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
