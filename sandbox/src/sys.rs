//! One thin function per system call, with typed arguments and an error that
//! names the call and its argument. Nothing else in the crate touches nix,
//! rustix, libc or caps directly; this is also the only module allowed to
//! use `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Pid, Uid};

/// A failed system call: which call, on what, and the errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} {arg}")]
pub struct SysError {
    /// The call, e.g. `mount`.
    pub call: &'static str,
    /// Its argument, e.g. the path.
    pub arg: String,
    /// The errno.
    #[source]
    pub errno: Errno,
}

pub(crate) type SysResult<T> = Result<T, SysError>;

fn err(call: &'static str, arg: impl std::fmt::Display) -> impl FnOnce(Errno) -> SysError {
    let arg = arg.to_string();
    move |errno| SysError { call, arg, errno }
}

fn disp(p: &Path) -> std::path::Display<'_> {
    p.display()
}

/// The namespaces a sandbox can unshare (our names, converted to clone flags here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    User,
    Mount,
    Pid,
    Ipc,
    Uts,
    Net,
}

fn clone_flags(namespaces: &[Namespace]) -> CloneFlags {
    let mut f = CloneFlags::empty();
    for ns in namespaces {
        f |= match ns {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
        };
    }
    f
}

pub(crate) fn unshare(namespaces: &[Namespace]) -> SysResult<()> {
    nix::sched::unshare(clone_flags(namespaces)).map_err(err("unshare", format!("{namespaces:?}")))
}

// ---------------------------------------------------------------- mounts

/// Mount propagation of `/` and everything below it becomes private.
pub(crate) fn make_rprivate(path: &Path) -> SysResult<()> {
    nix::mount::mount(None::<&str>, path, None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(err("mount --make-rprivate", disp(path)))
}

/// Extra flags for a fresh file-system mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountFlags {
    /// nosuid, nodev.
    NoSuidDev,
    /// nosuid, nodev, noexec.
    NoSuidDevExec,
    /// nosuid only (device nodes allowed).
    NoSuid,
    /// No extra flags.
    Plain,
}

fn ms(flags: MountFlags) -> MsFlags {
    match flags {
        MountFlags::NoSuidDev => MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        MountFlags::NoSuidDevExec => MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        MountFlags::NoSuid => MsFlags::MS_NOSUID,
        MountFlags::Plain => MsFlags::empty(),
    }
}

/// Mount a new file system of type `fstype` on `target`.
pub(crate) fn mount_fs(fstype: &str, source: &str, target: &Path, flags: MountFlags, data: &str) -> SysResult<()> {
    nix::mount::mount(Some(source), target, Some(fstype), ms(flags), Some(data)).map_err(|errno| SysError {
        call: "mount",
        arg: if data.is_empty() {
            format!("{fstype} on {}", target.display())
        } else {
            format!("{fstype} on {} ({data})", target.display())
        },
        errno,
    })
}

/// Bind `src` (and the mounts below it) onto `dst`.
pub(crate) fn bind(src: &Path, dst: &Path) -> SysResult<()> {
    nix::mount::mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|errno| SysError {
            call: "mount --rbind",
            arg: format!("{} on {}", src.display(), dst.display()),
            errno,
        })
}

/// Mount attributes for [`set_mount_attrs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountAttrs {
    /// Read-only, nosuid, nodev.
    ReadOnly,
    /// nosuid, nodev (still writable).
    NoSuidDev,
    /// Read-only, keeping nodev off (for device binds and /proc parts).
    ReadOnlyKeepDev,
}

/// mount_setattr(2)'s `AT_RECURSIVE` (not in libc's crate for every target).
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// mount_setattr(2)'s `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on `path` and every mount below it: unlike a remount it
/// applies recursively and keeps the flags the kernel locked for us.
pub(crate) fn set_mount_attrs(path: &Path, attrs: MountAttrs) -> SysResult<()> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    let set = match attrs {
        MountAttrs::ReadOnly => MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        MountAttrs::NoSuidDev => MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        MountAttrs::ReadOnlyKeepDev => MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
    };
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string and `attr` a properly laid
    // out `struct mount_attr` that outlives the call; the size passed matches.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(SysError { call: "mount_setattr", arg: format!("{} {attrs:?}", path.display()), errno: Errno::last() });
    }
    Ok(())
}

pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> SysResult<()> {
    nix::unistd::pivot_root(new_root, put_old)
        .map_err(err("pivot_root", format!("{} {}", new_root.display(), put_old.display())))
}

/// Lazily unmount `path` and everything below it.
pub(crate) fn umount_detach(path: &Path) -> SysResult<()> {
    nix::mount::umount2(path, MntFlags::MNT_DETACH).map_err(err("umount2 MNT_DETACH", disp(path)))
}

/// mount_setattr(2) flags of a [`MountAttrs`] value.
fn attr_bits(attrs: MountAttrs) -> rustix::mount::MountAttrFlags {
    use rustix::mount::MountAttrFlags as A;
    match attrs {
        MountAttrs::ReadOnly => A::MOUNT_ATTR_RDONLY | A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NODEV,
        MountAttrs::NoSuidDev => A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NODEV,
        MountAttrs::ReadOnlyKeepDev => A::MOUNT_ATTR_RDONLY | A::MOUNT_ATTR_NOSUID,
    }
}

fn rerr(call: &'static str, arg: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> SysError {
    let arg = arg.to_string();
    move |e| SysError { call, arg, errno: Errno::from_raw(e.raw_os_error()) }
}

/// Attach the detached mount `mnt` onto the directory or file `target` (an
/// O_PATH fd): the mount lands on exactly that inode, whatever a path to it
/// would resolve to by now.
fn move_mount_onto(mnt: &OwnedFd, target: BorrowedFd<'_>, shown: &Path) -> SysResult<()> {
    use rustix::mount::MoveMountFlags as F;
    rustix::mount::move_mount(mnt, c"", target, c"", F::MOVE_MOUNT_F_EMPTY_PATH | F::MOVE_MOUNT_T_EMPTY_PATH)
        .map_err(rerr("move_mount", format!("onto {}", shown.display())))
}

/// A fresh file system of type `fstype` on `target` (an O_PATH fd), through
/// the new mount API: fsopen, fsconfig (`options`, `key=value` or a flag),
/// fsmount with the mount flags, move_mount onto the fd. `shown` is the path
/// inside the sandbox, for messages.
pub(crate) fn mount_fs_onto(
    fstype: &str,
    source: &str,
    options: &[(&str, Option<&str>)],
    flags: MountFlags,
    target: BorrowedFd<'_>,
    shown: &Path,
) -> SysResult<()> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags as A};
    let what = || format!("{fstype} on {}", shown.display());
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(rerr("fsopen", what()))?;
    rustix::mount::fsconfig_set_string(&fs, "source", source).map_err(rerr("fsconfig source", what()))?;
    for (key, value) in options {
        match value {
            Some(v) => rustix::mount::fsconfig_set_string(&fs, *key, *v),
            None => rustix::mount::fsconfig_set_flag(&fs, *key),
        }
        .map_err(rerr("fsconfig", format!("{} ({key}{})", what(), value.map(|v| format!("={v}")).unwrap_or_default())))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(rerr("fsconfig create", what()))?;
    let attrs = match flags {
        MountFlags::NoSuidDev => A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NODEV,
        MountFlags::NoSuidDevExec => A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NODEV | A::MOUNT_ATTR_NOEXEC,
        MountFlags::NoSuid => A::MOUNT_ATTR_NOSUID,
        MountFlags::Plain => A::empty(),
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(rerr("fsmount", what()))?;
    move_mount_onto(&mnt, target, shown)
}

/// Bind `src` (and the mounts below it) onto `target` (an O_PATH fd) with
/// `attrs` (none: keep the source's): open_tree clones it detached,
/// mount_setattr sets the flags before anyone can see it, move_mount
/// attaches it to exactly that inode.
pub(crate) fn bind_onto(src: &Path, attrs: Option<MountAttrs>, target: BorrowedFd<'_>, shown: &Path) -> SysResult<()> {
    use rustix::mount::OpenTreeFlags as T;
    let what = || format!("{} on {}", src.display(), shown.display());
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        src,
        T::OPEN_TREE_CLONE | T::OPEN_TREE_CLOEXEC | T::AT_RECURSIVE,
    )
    .map_err(rerr("open_tree", what()))?;
    if let Some(attrs) = attrs {
        set_mount_attrs_fd(tree.as_fd(), attrs, &what())?;
    }
    move_mount_onto(&tree, target, shown)
}

/// mount_setattr(2) on the mount `fd` and every mount below it.
fn set_mount_attrs_fd(fd: BorrowedFd<'_>, attrs: MountAttrs, shown: &str) -> SysResult<()> {
    let attr = MountAttr { attr_set: u64::from(attr_bits(attrs).bits()), attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH: the
    // fd itself), `attr` a properly laid out `struct mount_attr` that
    // outlives the call, and the size passed matches it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            AT_RECURSIVE | libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(SysError { call: "mount_setattr", arg: format!("{shown} {attrs:?}"), errno: Errno::last() });
    }
    Ok(())
}

// ---------------------------------------------------------------- files beneath a root

/// An O_PATH fd of the directory `path` (ours: the staging tmpfs's /newroot).
pub(crate) fn open_dir_path(path: &Path) -> SysResult<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(rerr("open O_PATH", disp(path)))
}

/// What [`open_beneath`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// Anything else (a file to bind a file onto).
    File,
}

/// Open `path` (relative) beneath `root` as if `root` were `/`: absolute
/// symlinks and `..` resolve inside it, magic links are refused
/// (openat2(2) RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). An O_PATH fd.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, path: &Path, kind: Kind, shown: &Path) -> SysResult<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if kind == Kind::Dir {
        flags |= OFlags::DIRECTORY;
    }
    let path: &Path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    rustix::fs::openat2(root, path, flags, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS)
        .map_err(rerr("openat2 RESOLVE_IN_ROOT", disp(shown)))
}

/// chown the file of the (O_PATH) fd `fd`: fchownat(fd, "", AT_EMPTY_PATH).
pub(crate) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32, shown: &Path) -> SysResult<()> {
    use rustix::fs::{AtFlags, Gid, Uid};
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::fs::chownat(fd, "", Some(uid), Some(gid), AtFlags::EMPTY_PATH)
        .map_err(rerr("fchownat AT_EMPTY_PATH", format!("{} to {}:{}", disp(shown), uid.as_raw(), gid.as_raw())))
}

/// mkdir `name` (one component) in the directory `dir`; never follows a
/// symlink (one in the way is EEXIST).
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, mode: u32, shown: &Path) -> SysResult<()> {
    rustix::fs::mkdirat(dir, name, rustix::fs::Mode::from_raw_mode(mode)).map_err(rerr("mkdirat", disp(shown)))
}

/// Create the empty file `name` (one component) in the directory `dir`;
/// O_EXCL | O_NOFOLLOW, so a symlink in the way is EEXIST, never followed.
pub(crate) fn create_file_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, mode: u32, shown: &Path) -> SysResult<()> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map(drop)
    .map_err(rerr("open O_CREAT|O_EXCL", disp(shown)))
}

/// symlink(2) `name` -> `target` in the directory `dir`.
pub(crate) fn symlink_at(target: &str, dir: BorrowedFd<'_>, name: &str, shown: &Path) -> SysResult<()> {
    rustix::fs::symlinkat(target, dir, name).map_err(rerr("symlinkat", format!("{} -> {target}", shown.display())))
}

// ---------------------------------------------------------------- keys and seccomp

/// Join a new, empty, anonymous session keyring (keyctl(2)
/// KEYCTL_JOIN_SESSION_KEYRING with a NULL name), as runc and crun do for
/// every container: the caller's session keyring (and the keys in it) is no
/// longer reachable, and keys added later do not land in it.
pub(crate) fn join_session_keyring() -> SysResult<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name takes no other
    // pointer; it only replaces this process's session keyring.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>()) };
    if r < 0 {
        return Err(SysError { call: "keyctl", arg: "KEYCTL_JOIN_SESSION_KEYRING NULL".into(), errno: Errno::last() });
    }
    Ok(())
}

/// The payload's syscall filter: the classic BPF program that build.rs
/// compiled with libseccomp from `crate::seccomp`, for the target's
/// architectures, when this crate was built. Loading it costs one syscall;
/// compiling it at every sandbox start cost a few hundred microseconds.
static SYSCALL_FILTER_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

/// The syscall filter, ready to load with [`load_syscall_filter`].
pub(crate) struct SyscallFilter(Vec<libc::sock_filter>);

/// The built-in filter as instructions (build.rs wrote them with
/// seccomp_export_bpf(3): `struct sock_filter`s in native byte order).
pub(crate) fn syscall_filter() -> SysResult<SyscallFilter> {
    const SIZE: usize = std::mem::size_of::<libc::sock_filter>();
    if SYSCALL_FILTER_BPF.is_empty() || !SYSCALL_FILTER_BPF.len().is_multiple_of(SIZE) {
        return Err(SysError {
            call: "seccomp",
            arg: format!("built-in filter of {} bytes is not a BPF program", SYSCALL_FILTER_BPF.len()),
            errno: Errno::EINVAL,
        });
    }
    let insns = SYSCALL_FILTER_BPF
        .chunks_exact(SIZE)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    Ok(SyscallFilter(insns))
}

/// seccomp(2) SECCOMP_SET_MODE_FILTER: load `filter` into this thread; it
/// is inherited by every child and kept across exec. Needs no_new_privs set
/// first.
pub(crate) fn load_syscall_filter(filter: &SyscallFilter) -> SysResult<()> {
    let prog = libc::sock_fprog {
        len: filter.0.len() as libc::c_ushort,
        filter: filter.0.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` valid instructions owned by `filter`,
    // which outlives the call; the kernel copies them and keeps no pointer.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_uint, &prog as *const libc::sock_fprog)
    };
    if r < 0 {
        return Err(SysError {
            call: "seccomp",
            arg: format!("SECCOMP_SET_MODE_FILTER ({} instructions)", filter.0.len()),
            errno: Errno::last(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- files

fn cpath(path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError {
        call: "path",
        arg: format!("{} (contains NUL)", path.display()),
        errno: Errno::EINVAL,
    })
}

pub(crate) fn mkdir_all(path: &Path, mode: u32) -> SysResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(path).map_err(|e| SysError {
        call: "mkdir",
        arg: path.display().to_string(),
        errno: io_errno(&e),
    })
}

pub(crate) fn chdir(path: &Path) -> SysResult<()> {
    nix::unistd::chdir(path).map_err(err("chdir", disp(path)))
}


/// Give the tree at `path` to `uid`:`gid` and make each of its directories
/// readable, writable and searchable by its owner (chown -R, and chmod
/// u+rwx on directories only). Never follows a symlink: every step is an
/// openat with O_NOFOLLOW or an fchownat with AT_SYMLINK_NOFOLLOW relative
/// to the directory fd just opened, so a symlink planted in the tree is
/// chowned itself, never its target. A missing `path` is nothing to do.
pub(crate) fn hand_back_tree(path: &Path, uid: u32, gid: u32) -> SysResult<()> {
    use rustix::fs::{AtFlags, CWD, FileType, Gid, Uid};
    let ids = (Uid::from_raw(uid), Gid::from_raw(gid));
    let top = match rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(rerr("lstat", disp(path))(e)),
    };
    let c = cpath(path)?;
    rustix::fs::chownat(CWD, &c, Some(ids.0), Some(ids.1), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(rerr("fchownat AT_SYMLINK_NOFOLLOW", disp(path)))?;
    if FileType::from_raw_mode(top.st_mode) != FileType::Directory {
        return Ok(());
    }
    hand_back_dir(open_dir_nofollow(CWD, &c, path)?, path, ids)
}

fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &Path) -> SysResult<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(rerr("openat O_NOFOLLOW", disp(shown)))
}

/// [`hand_back_tree`] below the open directory `dir` (already chowned):
/// depth first, one open directory per level.
fn hand_back_dir(dir: OwnedFd, shown: &Path, ids: (rustix::fs::Uid, rustix::fs::Gid)) -> SysResult<()> {
    use rustix::fs::{AtFlags, FileType, Mode};
    let st = rustix::fs::fstat(&dir).map_err(rerr("fstat", disp(shown)))?;
    rustix::fs::fchmod(&dir, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700)).map_err(rerr("fchmod", disp(shown)))?;
    let entries = rustix::fs::Dir::read_from(&dir).map_err(rerr("getdents", disp(shown)))?;
    for entry in entries {
        let entry = entry.map_err(rerr("getdents", disp(shown)))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let child = shown.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        rustix::fs::chownat(&dir, name, Some(ids.0), Some(ids.1), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(rerr("fchownat AT_SYMLINK_NOFOLLOW", disp(&child)))?;
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .map_err(rerr("fstatat", disp(&child)))?,
            _ => false,
        };
        if is_dir {
            hand_back_dir(open_dir_nofollow(dir.as_fd(), name, &child)?, &child, ids)?;
        }
    }
    Ok(())
}

/// Remove the tree at `path` (rm -r; std's removal never follows a symlink
/// out of the tree). A missing `path` is nothing to do.
pub(crate) fn remove_tree(path: &Path) -> SysResult<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SysError { call: "rm -r", arg: path.display().to_string(), errno: io_errno(&e) }),
    }
}

pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// True if `path` (not following a final symlink) is a directory.
pub(crate) fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

// ---------------------------------------------------------------- processes

pub(crate) fn set_parent_death_signal_kill() -> SysResult<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(err("prctl PR_SET_PDEATHSIG", "SIGKILL"))
}

pub(crate) fn set_no_new_privs() -> SysResult<()> {
    nix::sys::prctl::set_no_new_privs().map_err(err("prctl PR_SET_NO_NEW_PRIVS", 1))
}

pub(crate) fn set_process_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        // Best effort: only `ps` reads it.
        let _ = nix::sys::prctl::set_name(&c);
    }
}

pub(crate) fn getppid() -> i32 {
    nix::unistd::getppid().as_raw()
}

pub(crate) fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

pub(crate) fn getuid() -> u32 {
    nix::unistd::getuid().as_raw()
}

pub(crate) fn getgid() -> u32 {
    nix::unistd::getgid().as_raw()
}

/// The user name of `uid`, from the password database.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// True when this process has exactly one thread (read from /proc).
pub(crate) fn is_single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim() == "1")))
        .unwrap_or(false)
}

/// Which side of a fork we are on.
pub(crate) enum Forked {
    Parent(i32),
    Child,
}

/// fork(2).
///
/// # Safety
/// Only call this in a single-threaded process (the freshly exec'd helper
/// and the sandbox's pid 1 are): after a fork of a threaded process the child
/// may deadlock on locks held by threads that do not exist in it.
pub(crate) unsafe fn fork() -> SysResult<Forked> {
    // SAFETY: the caller guarantees the process is single-threaded.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw())),
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(SysError { call: "fork", arg: String::new(), errno: e }),
    }
}

pub(crate) fn setsid() -> SysResult<()> {
    nix::unistd::setsid().map(drop).map_err(err("setsid", ""))
}

pub(crate) fn sethostname(name: &str) -> SysResult<()> {
    nix::unistd::sethostname(name).map_err(err("sethostname", name))
}

pub(crate) fn setgroups(gids: &[u32]) -> SysResult<()> {
    let g: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&g).map_err(err("setgroups", format!("{gids:?}")))
}

pub(crate) fn setresgid(gid: u32) -> SysResult<()> {
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(err("setresgid", gid))
}

pub(crate) fn setresuid(uid: u32) -> SysResult<()> {
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(err("setresuid", uid))
}

/// Drop every capability from the bounding and ambient sets, so nothing run
/// later (a setuid binary included) can get one back.
pub(crate) fn drop_bounding_and_ambient_caps() -> SysResult<()> {
    caps::clear(None, caps::CapSet::Ambient).map_err(|_| SysError {
        call: "prctl PR_CAP_AMBIENT_CLEAR_ALL",
        arg: String::new(),
        errno: Errno::last(),
    })?;
    for cap in caps::all() {
        match caps::drop(None, caps::CapSet::Bounding, cap) {
            Ok(()) => {}
            // Caps unknown to this kernel are fine to skip.
            Err(_) if Errno::last() == Errno::EINVAL => {}
            Err(_) => {
                return Err(SysError { call: "prctl PR_CAPBSET_DROP", arg: cap.to_string(), errno: Errno::last() });
            }
        }
    }
    Ok(())
}


/// setrlimit(2) with soft = hard = `limit`.
pub(crate) fn setrlimit(resource: crate::spec::RlimitResource, limit: u64) -> SysResult<()> {
    use crate::spec::RlimitResource as R;
    use nix::sys::resource::Resource;
    let r = match resource {
        R::AddressSpace => Resource::RLIMIT_AS,
        R::Core => Resource::RLIMIT_CORE,
        R::Cpu => Resource::RLIMIT_CPU,
        R::Data => Resource::RLIMIT_DATA,
        R::FileSize => Resource::RLIMIT_FSIZE,
        R::OpenFiles => Resource::RLIMIT_NOFILE,
        R::Processes => Resource::RLIMIT_NPROC,
        R::Stack => Resource::RLIMIT_STACK,
    };
    nix::sys::resource::setrlimit(r, limit, limit).map_err(err("setrlimit", format!("{resource:?}={limit}")))
}

/// Mark every fd from `first` up close-on-exec, so the payload inherits only
/// stdio while we can still report an exec failure through our own pipe.
pub(crate) fn cloexec_from(first: u32) -> SysResult<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds;
    // it closes nothing and takes no pointers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 {
        return Err(SysError { call: "close_range CLOEXEC", arg: format!("{first}..") , errno: Errno::last() });
    }
    Ok(())
}

/// execve(2); returns only on failure.
pub(crate) fn execve(path: &Path, argv: &[String], env: &[(String, String)]) -> SysError {
    let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let p = to_c(path.as_os_str().as_bytes());
    let a: Vec<CString> = argv.iter().map(|s| to_c(s.as_bytes())).collect();
    let e: Vec<CString> = env.iter().map(|(k, v)| to_c(format!("{k}={v}").as_bytes())).collect();
    match nix::unistd::execve(&p, &a, &e) {
        Err(errno) => SysError { call: "execve", arg: path.display().to_string(), errno },
        Ok(never) => match never {},
    }
}

/// access(2) X_OK: may this process execute `path`?
pub(crate) fn is_executable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && !is_dir(path)
}

pub(crate) fn exit(code: i32) -> ! {
    // _exit: no atexit handlers or stdio flushing of state copied by fork.
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

pub(crate) fn kill(pid: i32, signal: Signal) -> SysResult<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(err("kill", format!("{pid} {signal}")))
}

/// Send SIGKILL to every process this one may signal (in a pid namespace's
/// init: every other process of the namespace).
pub(crate) fn kill_all() {
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
}

/// How a waited-for child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildExit {
    Exited(i32),
    Signaled(i32),
}

/// Wait for any child (`pid` = -1) or one child. `None`: no child left.
pub(crate) fn wait_any(pid: i32) -> SysResult<Option<(i32, ChildExit)>> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(p, code)) => return Ok(Some((p.as_raw(), ChildExit::Exited(code)))),
            Ok(WaitStatus::Signaled(p, sig, _)) => return Ok(Some((p.as_raw(), ChildExit::Signaled(sig as i32)))),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(SysError { call: "waitpid", arg: pid.to_string(), errno: e }),
        }
    }
}

/// CPU times and peak memory of all waited-for children.
pub(crate) struct Usage {
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kib: u64,
}

pub(crate) fn children_usage() -> Usage {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            Usage { user: tv(u.user_time()), sys: tv(u.system_time()), max_rss_kib: u.max_rss().max(0) as u64 }
        }
        Err(_) => Usage { user: Duration::ZERO, sys: Duration::ZERO, max_rss_kib: 0 },
    }
}

/// An fd of the user namespace of the process `pid` (/proc/PID/ns/user);
/// it keeps the namespace alive while open.
pub(crate) fn open_user_ns(pid: i32) -> SysResult<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/{pid}/ns/user");
    let fd = rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(rerr("open", path))?;
    // >= 10, like the helper's pipes, for `pass_fds`.
    rustix::io::fcntl_dupfd_cloexec(&fd, 10).map_err(rerr("fcntl F_DUPFD_CLOEXEC", 10))
}

/// Move into the user namespace of `fd` (setns CLONE_NEWUSER). The kernel
/// allows it only to a single-threaded process, and gives it every
/// capability there when its owner is our uid.
pub(crate) fn setns_user(fd: BorrowedFd<'_>) -> SysResult<()> {
    nix::sched::setns(fd, CloneFlags::CLONE_NEWUSER).map_err(err("setns", "CLONE_NEWUSER"))
}

/// A pidfd for `pid` (to wait for it with a time-out).
pub(crate) fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid).ok_or(SysError {
        call: "pidfd_open",
        arg: pid.to_string(),
        errno: Errno::EINVAL,
    })?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .map_err(|e| SysError { call: "pidfd_open", arg: pid.to_string(), errno: Errno::from_raw(e.raw_os_error()) })
}

/// Wait until `fd` is readable (or hung up). `false` on time-out.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> SysResult<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let t = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, t) {
            Ok(0) => {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError { call: "poll", arg: fd.as_raw_fd().to_string(), errno: e }),
        }
    }
}

/// A pipe whose both ends are close-on-exec and numbered at least `min_fd`
/// (so that later dup2 onto 3 and 4 can never clobber one of them).
pub(crate) fn pipe_high(min_fd: RawFd) -> SysResult<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SysError { call: "pipe2", arg: String::new(), errno: Errno::from_raw(e.raw_os_error()) })?;
    let hi = |fd: OwnedFd| {
        rustix::io::fcntl_dupfd_cloexec(&fd, min_fd)
            .map_err(|e| SysError { call: "fcntl F_DUPFD_CLOEXEC", arg: min_fd.to_string(), errno: Errno::from_raw(e.raw_os_error()) })
    };
    Ok((hi(r)?, hi(w)?))
}

/// A plain close-on-exec pipe.
pub(crate) fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SysError { call: "pipe2", arg: String::new(), errno: Errno::from_raw(e.raw_os_error()) })
}

/// Arrange for `fds[i]` to become fd `3 + i` in a child spawned by `cmd`,
/// without close-on-exec.
pub(crate) fn pass_fds(cmd: &mut std::process::Command, fds: &[&OwnedFd]) {
    pass_fds_raw(cmd, &fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>())
}

/// [`pass_fds`] of raw fd numbers (each open until the spawn).
pub(crate) fn pass_fds_raw(cmd: &mut std::process::Command, raw: &[RawFd]) {
    use std::os::unix::process::CommandExt;
    let raw = raw.to_vec();
    // SAFETY: the closure runs between fork and exec; it only calls dup2,
    // which is async-signal-safe, and allocates nothing. The source fds were
    // made >= 10 (`pipe_high`, `open_user_ns`), so dup2 onto 3.. never
    // clobbers a source.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Take ownership of an fd number we were handed at exec.
pub(crate) fn adopt_fd(fd: RawFd) -> SysResult<OwnedFd> {
    use std::os::fd::FromRawFd;
    // Check that it is open before taking it over.
    nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD)
        .map_err(err("fcntl F_GETFD", fd))?;
    // Our own fds must not leak into the payload either.
    nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(err("fcntl F_SETFD", fd))?;
    // SAFETY: the fd was passed to us at exec by the supervisor for this
    // purpose, is open (checked above) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unsafe_borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used by `adopt_fd` for fcntl on an fd number handed to us
    // at exec; fcntl on a closed fd fails with EBADF and touches nothing.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Bring the loopback interface up (in a fresh network namespace it is down).
pub(crate) fn loopback_up() -> SysResult<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err("socket", "AF_INET SOCK_DGRAM"))?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own; the
    // union field ifru_flags is the one these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(SysError { call: "ioctl SIOCGIFFLAGS", arg: "lo".into(), errno: Errno::last() });
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(SysError { call: "ioctl SIOCSIFFLAGS", arg: "lo up".into(), errno: Errno::last() });
        }
    }
    Ok(())
}

/// Write `data` to a /proc file of another process (uid_map, gid_map, setgroups).
pub(crate) fn write_proc_file(path: &Path, data: &str) -> SysResult<()> {
    std::fs::write(path, data).map_err(|e| SysError {
        call: "write",
        arg: format!("{} ({})", path.display(), data.trim()),
        errno: io_errno(&e),
    })
}


/// Borrow an owned fd.
pub(crate) fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    fd.as_fd()
}

