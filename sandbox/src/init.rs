//! The sandbox's pid 1: builds the root, then starts the payload, reaps every
//! process and reports how the payload ended.
//!
//! Runs in the helper's forked child, which is single-threaded, inside the
//! new user, mount, pid, ipc, uts (and net) namespaces. The setup order
//! follows bubblewrap's `main` and `setup_newroot`
//! (<https://github.com/containers/bubblewrap/blob/main/bubblewrap.c>).

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::error::{SetupError, Step};
use crate::message::{FromHelper, LockMsg, Receiver, Sender};
use crate::mounts::{self, MountOp, NEW_ROOT, OLD_ROOT, UPPER_FS};
use crate::outcome::{IdMapUsed, Status};
use crate::spec::{Access, Network, Seccomp, Spec};
use crate::sys::{self, ChildExit, Forked, Kind, MountAttrs, MountFlags, Namespace, SyscallFilter};

/// PATH used to find the command when the spec's environment has none,
/// and the one every sandbox of pkgcell's gets.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn step<T>(s: Step, r: sys::SysResult<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError::new(s, e))
}

/// pid 1 of the sandbox. Never returns.
pub(crate) fn init_main(spec: &Spec, id_map: IdMapUsed, tx: &mut Sender<FromHelper>) -> ! {
    sys::set_process_name("pkgcell-init");
    let filter = match init_setup(spec) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(&FromHelper::Failed(e));
            sys::exit(1);
        }
    };
    let pipes = sys::pipe().and_then(|a| sys::pipe().map(|b| (a, b)));
    let ((to_payload_r, to_payload_w), (to_init_r, to_init_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(&FromHelper::Failed(SetupError::new(Step::Fork, e)));
            sys::exit(1);
        }
    };
    let forked = std::time::Instant::now();
    // SAFETY: pid 1 is single-threaded: it is a fork of the single-threaded helper.
    #[allow(unsafe_code)]
    let payload = match unsafe { sys::fork() } {
        Ok(Forked::Child) => {
            drop((to_payload_w, to_init_r));
            let lock = LockChannel { rx: Receiver::new(to_payload_r), tx: Sender::new(to_init_w) };
            payload_main(spec, id_map, filter.as_ref(), lock, tx)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            let _ = tx.send(&FromHelper::Failed(SetupError::new(Step::Fork, e)));
            sys::exit(1);
        }
    };
    drop((to_payload_r, to_init_w));
    write_nested_maps(payload, id_map, Receiver::new(to_init_r), Sender::new(to_payload_w));
    let status = reap_until(payload);
    let payload_time = forked.elapsed();
    // The payload is done: whatever it left running goes with it, as it would
    // when pid 1 exits, but we want every process reaped before we measure.
    sys::kill_all();
    while let Ok(Some(_)) = sys::wait_any(-1) {}
    let usage = sys::children_usage();
    let _ = tx.send(&FromHelper::Finished {
        status,
        user: usage.user,
        sys: usage.sys,
        peak_memory_kib: usage.max_rss_kib,
        payload: payload_time,
    });
    sys::exit(0)
}

/// pid 1's half of the lock step: when the payload has made its nested user
/// namespace, map the same ids into it (we hold CAP_SETUID in ours). If the
/// payload failed instead, it has reported so and exits; nothing to do.
fn write_nested_maps(payload: i32, id_map: IdMapUsed, mut rx: Receiver<LockMsg>, mut tx: Sender<LockMsg>) {
    if !matches!(rx.recv(), Ok(Some(LockMsg::NestedUserNsReady))) {
        return;
    }
    // The same ids, one line per extent of our own map: the kernel wants
    // each line to fall within a single extent of the parent's map.
    let map = match id_map {
        IdMapUsed::Subordinate { count } => format!("0 0 1\n1 1 {count}\n"),
        IdMapUsed::Single => "0 0 1\n".to_owned(),
    };
    let proc = PathBuf::from(format!("/proc/{payload}"));
    let ok = (match id_map {
        // A namespace below one with setgroups denied must deny it too.
        IdMapUsed::Single => sys::write_proc_file(&proc.join("setgroups"), "deny"),
        IdMapUsed::Subordinate { .. } => Ok(()),
    })
    .and_then(|()| sys::write_proc_file(&proc.join("uid_map"), &map))
    .and_then(|()| sys::write_proc_file(&proc.join("gid_map"), &map));
    // On failure the payload finds the pipe closed and reports it.
    if ok.is_ok() {
        let _ = tx.send(&LockMsg::NestedMapsWritten);
    }
}

/// The payload's end of the lock step.
struct LockChannel {
    rx: Receiver<LockMsg>,
    tx: Sender<LockMsg>,
}

/// Reap every child (orphans re-parent to us) until `payload` has ended.
fn reap_until(payload: i32) -> Status {
    loop {
        match sys::wait_any(-1) {
            Ok(Some((pid, exit))) if pid == payload => {
                return match exit {
                    ChildExit::Exited(code) => Status::Exited { code },
                    ChildExit::Signaled(signal) => Status::Signaled { signal },
                };
            }
            Ok(Some(_)) => continue,
            // Cannot happen while the payload lives; report it as killed.
            Ok(None) | Err(_) => return Status::Signaled { signal: libc::SIGKILL },
        }
    }
}

/// Everything pid 1 sets up before it forks the payload: the keyring, the
/// root, and the syscall filter the payload will load.
fn init_setup(spec: &Spec) -> Result<Option<SyscallFilter>, SetupError> {
    // Our own mount table, made here rather than in the helper, which stays
    // in the caller's to clean up after us (see `helper::run_sandbox`).
    step(Step::UnshareNamespaces, sys::unshare(&[Namespace::Mount]))?;
    // A fresh, empty session keyring before anything of the sandbox runs, so
    // that the payload (which inherits it) can neither read the caller's keys
    // nor leave keys behind in the caller's session: keyrings are kernel
    // state that namespaces do not separate (runc and crun do the same).
    match sys::join_session_keyring() {
        Ok(()) => {}
        // A filter of the caller's (an outer pkgcell sandbox, a container)
        // denies keyctl. Ours will deny keyctl, add_key and request_key to
        // the payload anyway, so no keyring is reachable from it.
        Err(e) if matches!(e.errno, Errno::EPERM | Errno::ENOSYS) && spec.seccomp == Seccomp::On => {}
        Err(e) => return Err(SetupError::new(Step::JoinSessionKeyring, e)),
    }
    setup_root(spec)?;
    // Read here, before the fork: the payload only loads it.
    match spec.seccomp {
        Seccomp::On => Ok(Some(step(Step::SyscallFilter, sys::syscall_filter())?)),
        Seccomp::Off => Ok(None),
    }
}

/// Build the new root and pivot into it.
fn setup_root(spec: &Spec) -> Result<(), SetupError> {
    // Make every mount private before mounting anything; otherwise our mounts
    // would propagate back into the caller's namespace.
    step(Step::MakeRootPrivate, sys::make_rprivate(Path::new("/")))?;

    // A staging tmpfs to become the root while we build: the host's root then
    // sits at /oldroot, so that spec paths anywhere on the host (even under
    // /tmp, which the staging tmpfs covers) stay reachable through it.
    let staging = Path::new("/tmp");
    step(Step::MountStaging, sys::mount_fs("tmpfs", "pkgcell-staging", staging, MountFlags::NoSuidDev, "mode=0755"))?;
    for d in ["newroot", "oldroot"] {
        step(Step::MountStaging, sys::mkdir_all(&staging.join(d), 0o755))?;
    }
    step(Step::PivotRoot, sys::chdir(staging))?;
    step(Step::PivotRoot, sys::pivot_root(Path::new("."), Path::new("oldroot")))?;
    step(Step::PivotRoot, sys::chdir(Path::new("/")))?;

    let mut root = None;
    for op in mounts::plan(spec) {
        apply(&op, &mut root)?;
    }
    drop(root);

    // A fixed host name keeps builds reproducible and hides the host's.
    step(Step::Hostname, sys::sethostname(&spec.hostname))?;
    // A new network namespace starts with `lo` down: bring it up so that
    // builds can still talk to 127.0.0.1.
    match spec.network {
        Network::Loopback => step(Step::LoopbackUp, sys::loopback_up())?,
        Network::Host => {}
    }

    // Enter the new root. pivot_root(".", ".") stacks the staging root on top
    // of the new one; detaching it removes it and the host's root below it
    // (the technique of runc's pivotRoot and `man 2 pivot_root`).
    step(Step::PivotRoot, sys::chdir(Path::new(NEW_ROOT)))?;
    step(Step::PivotRoot, sys::pivot_root(Path::new("."), Path::new(".")))?;
    step(Step::DetachOldRoot, sys::umount_detach(Path::new(".")))?;
    step(Step::DetachOldRoot, sys::chdir(Path::new("/")))?;
    Ok(())
}

/// Find or make the mount point `dst` beneath the new root's fd `root`, one
/// component at a time, and return an O_PATH fd of it to mount onto.
///
/// Every lookup is openat2(RESOLVE_IN_ROOT) from the root's fd: a symlink in
/// a lower layer (`evil -> /oldroot/home/x`) resolves inside the new root,
/// never to the host's. A missing component is made with mkdirat (or an
/// O_EXCL|O_NOFOLLOW create) in the directory fd just resolved, which never
/// follows a symlink either. The mount then goes onto the fd, so nothing can
/// swap a path between this check and the mount.
fn mount_point(root: BorrowedFd<'_>, dst: &Path, kind: Kind) -> Result<OwnedFd, SetupError> {
    let create = |e| SetupError::new(Step::CreateMountPoint, e);
    // The spec's validation refused `..`; `/` and `.` carry nothing.
    let names: Vec<&OsStr> = dst
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::RootDir | Component::CurDir | Component::ParentDir | Component::Prefix(_) => None,
        })
        .collect();
    let mut dir = sys::open_beneath(root, Path::new(""), Kind::Dir, dst).map_err(create)?;
    let mut walked = PathBuf::new();
    for (i, name) in names.iter().enumerate() {
        walked.push(name);
        let want = if i + 1 == names.len() { kind } else { Kind::Dir };
        let fd = match sys::open_beneath(root, &walked, want, dst) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::ENOENT => {
                let made = match want {
                    Kind::Dir => sys::mkdir_at(sys::borrow(&dir), name, 0o755, dst),
                    Kind::File => sys::create_file_at(sys::borrow(&dir), name, 0o644, dst),
                };
                match made {
                    // EEXIST: something is there after all, maybe a symlink: look again.
                    Ok(()) => {}
                    Err(e) if e.errno == Errno::EEXIST => {}
                    Err(e) => return Err(create(e)),
                }
                sys::open_beneath(root, &walked, want, dst).map_err(|e| match e.errno {
                    Errno::ENOENT => SetupError {
                        step: Step::CreateMountPoint,
                        call: format!(
                            "{}: /{} is a symlink to a path that does not exist inside the sandbox root \
                             (mount points resolve inside the root, never outside the sandbox root)",
                            dst.display(),
                            walked.display()
                        ),
                        errno: libc::ENOENT,
                    },
                    _ => create(e),
                })?
            }
            Err(e) => return Err(create(e)),
        };
        dir = fd;
    }
    Ok(dir)
}

/// Apply one mount operation. `root` is the new root's fd, open from the
/// moment the root is mounted.
fn apply(op: &MountOp, root: &mut Option<OwnedFd>) -> Result<(), SetupError> {
    let new_root = Path::new(NEW_ROOT);
    // Every op after the root's is mounted beneath it (the plan's order).
    let beneath = |root: &Option<OwnedFd>, dst: &Path, kind: Kind| -> Result<OwnedFd, SetupError> {
        match root {
            Some(r) => mount_point(sys::borrow(r), dst, kind),
            None => Err(SetupError {
                step: Step::CreateMountPoint,
                call: format!("{} before the root was mounted", dst.display()),
                errno: libc::EINVAL,
            }),
        }
    };
    match op {
        MountOp::BindRoot { src } => {
            step(Step::BindRoot, sys::mkdir_all(new_root, 0o755))?;
            step(Step::BindRoot, sys::bind(src, new_root))?;
            *root = Some(step(Step::BindRoot, sys::open_dir_path(new_root))?);
        }
        MountOp::UpperTmpfs { size } => {
            let fs = Path::new(UPPER_FS);
            step(Step::MountUpperTmpfs, sys::mkdir_all(fs, 0o755))?;
            step(
                Step::MountUpperTmpfs,
                sys::mount_fs("tmpfs", "pkgcell-upper", fs, MountFlags::Plain, &format!("size={size},mode=0755")),
            )?;
            for d in ["upper", "work"] {
                step(Step::MountUpperTmpfs, sys::mkdir_all(&fs.join(d), 0o755))?;
            }
        }
        MountOp::Overlay { lowers, upper, work } => {
            step(Step::MountOverlay, sys::mkdir_all(new_root, 0o755))?;
            let opts = mounts::overlay_options(lowers, upper, work);
            step(Step::MountOverlay, sys::mount_fs("overlay", "pkgcell", new_root, MountFlags::Plain, &opts))?;
            *root = Some(step(Step::MountOverlay, sys::open_dir_path(new_root))?);
        }
        MountOp::Proc => {
            let dst = Path::new("/proc");
            let fd = beneath(root, dst, Kind::Dir)?;
            step(Step::MountProc, sys::mount_fs_onto("proc", "proc", &[], MountFlags::NoSuidDevExec, sys::borrow(&fd), dst))?;
        }
        MountOp::ProtectProc(name) => {
            // Through our own fresh /proc (mounted just before): the kernel's
            // entries, nothing a layer could have planted.
            let p = new_root.join("proc").join(name);
            if p.exists() {
                step(Step::ProtectProc, sys::bind(&p, &p))?;
                step(Step::ProtectProc, sys::set_mount_attrs(&p, MountAttrs::ReadOnlyKeepDev))?;
            }
        }
        MountOp::DevTmpfs => {
            let dst = Path::new("/dev");
            let fd = beneath(root, dst, Kind::Dir)?;
            step(
                Step::MountDev,
                sys::mount_fs_onto("tmpfs", "pkgcell-dev", &[("mode", Some("0755"))], MountFlags::NoSuidDev, sys::borrow(&fd), dst),
            )?;
        }
        MountOp::Device(name) => {
            let dst = Path::new("/dev").join(name);
            let fd = beneath(root, &dst, Kind::File)?;
            let host = Path::new(OLD_ROOT).join("dev").join(name);
            step(Step::BindDevice, sys::bind_onto(&host, None, sys::borrow(&fd), &dst))?;
        }
        MountOp::Devpts => {
            let dst = Path::new("/dev/pts");
            let fd = beneath(root, dst, Kind::Dir)?;
            // newinstance: our own pty namespace, never the host's terminals.
            let opts = [("newinstance", None), ("ptmxmode", Some("0666")), ("mode", Some("620"))];
            step(Step::MountDevpts, sys::mount_fs_onto("devpts", "devpts", &opts, MountFlags::NoSuid, sys::borrow(&fd), dst))?;
            let dev = beneath(root, Path::new("/dev"), Kind::Dir)?;
            step(Step::MountDevpts, sys::symlink_at("pts/ptmx", sys::borrow(&dev), "ptmx", Path::new("/dev/ptmx")))?;
        }
        MountOp::DevSymlinks => {
            let dev = beneath(root, Path::new("/dev"), Kind::Dir)?;
            for (name, target) in [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
                ("core", "/proc/kcore"),
            ] {
                let shown = Path::new("/dev").join(name);
                step(Step::MountDev, sys::symlink_at(target, sys::borrow(&dev), name, &shown))?;
            }
        }
        MountOp::StickyTmpfs { dst, size } => {
            let fd = beneath(root, dst, Kind::Dir)?;
            let size = size.to_string();
            let opts = [("size", Some(size.as_str())), ("mode", Some("1777"))];
            step(Step::MountTmp, sys::mount_fs_onto("tmpfs", "tmpfs", &opts, MountFlags::NoSuidDev, sys::borrow(&fd), dst))?;
        }
        MountOp::Bind { src, dst, access } => {
            let kind = if sys::is_dir(src) { Kind::Dir } else { Kind::File };
            let fd = beneath(root, dst, kind)?;
            let attrs = match access {
                Access::ReadOnly => MountAttrs::ReadOnly,
                Access::ReadWrite => MountAttrs::NoSuidDev,
            };
            step(Step::Bind, sys::bind_onto(src, Some(attrs), sys::borrow(&fd), dst))?;
        }
        MountOp::Chown { dst, uid, gid } => {
            let fd = beneath(root, dst, Kind::Dir)?;
            step(Step::Chown, sys::chown_fd(sys::borrow(&fd), *uid, *gid, dst))?;
        }
        MountOp::Tmpfs { dst, size } => {
            let fd = beneath(root, dst, Kind::Dir)?;
            let size = size.to_string();
            let opts = [("size", Some(size.as_str())), ("mode", Some("0755"))];
            step(Step::MountTmpfs, sys::mount_fs_onto("tmpfs", "tmpfs", &opts, MountFlags::NoSuidDev, sys::borrow(&fd), dst))?;
        }
    }
    Ok(())
}

/// The payload's process: drop what it must not have, then exec. Never returns.
fn payload_main(
    spec: &Spec,
    id_map: IdMapUsed,
    filter: Option<&SyscallFilter>,
    lock: LockChannel,
    tx: &mut Sender<FromHelper>,
) -> ! {
    let err = match lock_mounts(lock).and_then(|()| payload_setup(spec, id_map, filter)) {
        Ok(()) => payload_exec(spec),
        Err(e) => e,
    };
    let _ = tx.send(&FromHelper::Failed(err));
    sys::exit(127)
}

/// Move into a nested user and mount namespace. The kernel locks the flags
/// of every mount copied into a mount namespace owned by a less privileged
/// user namespace (mount_namespaces(7), "restrictions on mount namespaces"):
/// so even root inside, with all capabilities in its own namespace, can no
/// longer make a read-only bind writable, unmount a mount to see below it,
/// or change the host name.
fn lock_mounts(mut lock: LockChannel) -> Result<(), SetupError> {
    step(Step::LockMounts, sys::unshare(&[Namespace::User, Namespace::Mount]))?;
    let wrote = lock.tx.send(&LockMsg::NestedUserNsReady).is_ok()
        && matches!(lock.rx.recv(), Ok(Some(LockMsg::NestedMapsWritten)));
    if !wrote {
        return Err(SetupError { step: Step::LockMounts, call: "write nested id maps".into(), errno: libc::EPERM });
    }
    Ok(())
}

fn payload_setup(spec: &Spec, id_map: IdMapUsed, filter: Option<&SyscallFilter>) -> Result<(), SetupError> {
    // Its own session: no controlling terminal, no signals from the caller's
    // terminal, and kill(-sid) reaches its whole tree.
    step(Step::Setsid, sys::setsid())?;
    for r in &spec.rlimits {
        step(Step::Rlimit, sys::setrlimit(r.resource, r.limit))?;
    }
    step(Step::Chdir, sys::chdir(&spec.cwd))?;
    if spec.uid != 0 || spec.gid != 0 {
        // While still root inside: empty the bounding set so that nothing the
        // payload runs (a setuid binary included) can gain a capability back.
        step(Step::DropCapabilities, sys::drop_bounding_and_ambient_caps())?;
        match id_map {
            // setgroups is only allowed with a map written by newgidmap.
            IdMapUsed::Subordinate { .. } => step(Step::SetIds, sys::setgroups(&[spec.gid]))?,
            IdMapUsed::Single => {}
        }
        step(Step::SetIds, sys::setresgid(spec.gid))?;
        // Changing from uid 0 to another uid clears the permitted and
        // effective capabilities (capabilities(7)).
        step(Step::SetIds, sys::setresuid(spec.uid))?;
    }
    // Last before exec: no setuid/setcap binary can raise privileges.
    step(Step::NoNewPrivs, sys::set_no_new_privs())?;
    // Only stdio reaches the payload; our pipe stays open until exec so that
    // an exec failure can still be reported.
    step(Step::CloseFds, sys::cloexec_from(3))?;
    // The syscall filter very last, once nothing of our own setup needs a
    // call it denies (no_new_privs, which the kernel requires for an
    // unprivileged filter, is set): it is inherited by everything the
    // payload starts and cannot be removed.
    if let Some(f) = filter {
        step(Step::SyscallFilter, sys::load_syscall_filter(f))?;
    }
    Ok(())
}

/// Find argv[0] on the payload's PATH (not ours) and exec it.
fn payload_exec(spec: &Spec) -> SetupError {
    let env: Vec<(String, String)> = spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let cmd = &spec.argv[0];
    let path_var = spec.env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
    if cmd.contains('/') {
        return SetupError::new(Step::Exec, sys::execve(Path::new(cmd), &spec.argv, &env));
    }
    let mut last = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if sys::is_executable(&candidate) {
            last = Some(sys::execve(&candidate, &spec.argv, &env));
        }
    }
    match last {
        Some(e) => SetupError::new(Step::Exec, e),
        None => SetupError {
            step: Step::Exec,
            call: format!("execvp {cmd} (PATH={path_var})"),
            errno: libc::ENOENT,
        },
    }
}
