//! The helper: a freshly exec'd, single-threaded copy of the calling binary
//! that creates the namespaces. Unsharing after a fork of a multi-threaded
//! supervisor is unsafe (locks held by other threads, see NixOS/nix's
//! `startChild`), so the supervisor only spawns this process and talks to it
//! over two pipes (fd 3: from the supervisor, fd 4: to the supervisor).
//!
//! The helper unshares the user namespace, waits for the supervisor to write
//! its id maps, unshares the rest, forks the sandbox's pid 1 and then watches
//! it: time limit, and reporting a pid 1 that died without a word.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::Signal;

use crate::error::{SetupError, Step};
use crate::message::{FromHelper, HelperChannel, Job, Receiver, Sender};
use crate::outcome::{IdMapUsed, Status};
use crate::spec::{CleanupAction, Network, Spec};
use crate::sys::{self, ChildExit, Forked, Namespace};

/// The argument that turns the binary into the helper.
pub(crate) const HELPER_ARG: &str = "__pkgcell-sandbox-helper";

/// If this process was started as the sandbox helper, run it and exit;
/// otherwise return at once.
///
/// Call it first thing in `main` of any binary that runs sandboxes (the
/// helper is that binary re-executed), before threads or logging start.
pub fn helper_main_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(HELPER_ARG)) {
        return;
    }
    let ppid = args.next().and_then(|p| p.to_str().and_then(|s| s.parse().ok())).unwrap_or(-1);
    let fds = match (sys::adopt_fd(3), sys::adopt_fd(4)) {
        (Ok(rx), Ok(tx)) => Some((rx, tx)),
        _ => None,
    };
    sys::exit(match fds {
        Some((rx, tx)) => helper_main(ppid, rx, tx),
        None => 1,
    })
}

/// The helper, given its two pipe ends. Runs either in the re-executed
/// binary, or in a fork of a supervisor that is single-threaded (see
/// `supervisor::start_helper`); returns the exit code.
pub(crate) fn helper_main(expected_parent: i32, rx: OwnedFd, tx: OwnedFd) -> i32 {
    sys::set_process_name("pkgcell-sandbox");
    // Die with the supervisor, first of all; then check it did not die
    // before the death signal was armed.
    if sys::set_parent_death_signal_kill().is_err() || sys::getppid() != expected_parent {
        return 1;
    }
    let mut ch = HelperChannel { rx: Receiver::new(rx), tx: Sender::new(tx) };
    let (job, join_user_ns) = match ch.wait_for_job() {
        Ok(Some(j)) => j,
        Ok(None) => return 1,
        Err(e) => {
            ch.failed(SetupError::io(Step::ReadJob, "read job", &e));
            return 1;
        }
    };

    // The user namespace first: it gives us the capabilities for the rest.
    // An earlier sandbox of the supervisor made one whose maps are written:
    // joining it spares the supervisor running newuidmap and newgidmap
    // again (two setuid programs, most of a sandbox's start). Sandboxes
    // stay apart by their own mount, pid, ipc, uts and net namespaces, and
    // each payload gets a nested user namespace of its own (`init::lock_mounts`).
    let entered = match join_user_ns {
        Some(fd) => sys::adopt_fd(fd).and_then(|fd| sys::setns_user(sys::borrow(&fd))),
        None => sys::unshare(&[Namespace::User]),
    };
    if let Err(e) = entered {
        ch.failed(SetupError::new(Step::UnshareUser, e));
        return 1;
    }
    // Only a process outside can write our id maps (newuidmap checks the
    // caller's subordinate ranges); ask the supervisor and wait (it answers
    // at once for a joined namespace, but first moves us into its cgroup).
    if ch.user_ns_ready().is_err() {
        return 1;
    }
    let id_map = match ch.wait_for_id_map() {
        Ok(Some(m)) => m,
        _ => return 1,
    };

    match job {
        Job::RemoveTree(path) => {
            // Root in the namespace may remove files owned by any mapped id.
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    let _ = ch.tx.send(&FromHelper::Removed);
                    0
                }
                Err(e) => {
                    ch.failed(SetupError::io(Step::RemoveTree, format!("rm -r {}", path.display()), &e));
                    1
                }
            }
        }
        Job::Run(spec) => run_sandbox(&spec, id_map, ch),
    }
}

fn run_sandbox(spec: &Spec, id_map: IdMapUsed, mut ch: HelperChannel) -> i32 {
    let code = run_sandbox_and_wait(spec, id_map, &mut ch);
    // Every process of the sandbox is gone (pid 1 was reaped, and its death
    // killed the rest), and with them its mount namespace: the trees the
    // caller wants removed or handed back are nobody's any more. We are
    // still in the caller's mount namespace, as root of the user namespace
    // that maps every id the payload could use.
    for c in &spec.cleanup {
        let done = match c.action {
            CleanupAction::Remove => sys::remove_tree(&c.path),
            CleanupAction::HandBack => sys::hand_back_tree(&c.path, 0, 0),
        };
        if let Err(e) = done {
            let _ = ch.tx.send(&FromHelper::CleanupFailed(SetupError::new(Step::Cleanup, e)));
        }
    }
    code
}

fn run_sandbox_and_wait(spec: &Spec, id_map: IdMapUsed, ch: &mut HelperChannel) -> i32 {
    // Pid: the payload cannot see or signal the host's processes, and all of
    // them die with our pid 1. Ipc, uts: private SysV IPC and host name. Net:
    // only `lo`, unless the host network is asked for. The mount namespace
    // is pid 1's own (it makes it first thing): this process stays in the
    // caller's, so that it can still reach the host's paths for the spec's
    // cleanup once the sandbox has ended.
    let mut namespaces = vec![Namespace::Pid, Namespace::Ipc, Namespace::Uts];
    match spec.network {
        Network::Loopback => namespaces.push(Namespace::Net),
        Network::Host => {}
    }
    if let Err(e) = sys::unshare(&namespaces) {
        ch.failed(SetupError::new(Step::UnshareNamespaces, e));
        return 1;
    }

    // pid 1 learns of our death through this pipe if the death signal raced.
    let (alive_r, alive_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            ch.failed(SetupError::new(Step::Fork, e));
            return 1;
        }
    };
    // SAFETY: the helper is single-threaded: it was just exec'd and starts no threads.
    #[allow(unsafe_code)]
    let init = match unsafe { sys::fork() } {
        Ok(Forked::Child) => {
            drop(alive_w);
            if sys::set_parent_death_signal_kill().is_err()
                || sys::poll_readable(sys::borrow(&alive_r), Some(std::time::Duration::ZERO)).unwrap_or(true)
            {
                sys::exit(1);
            }
            drop(alive_r);
            crate::init::init_main(spec, id_map, &mut ch.tx)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            ch.failed(SetupError::new(Step::Fork, e));
            return 1;
        }
    };
    drop(alive_r);

    // Watch pid 1 with the time limit: a pidfd becomes readable when it exits.
    let finished = match sys::pidfd_open(init) {
        Ok(fd) => sys::poll_readable(fd.as_fd(), spec.timeout).unwrap_or(true),
        // Without pidfds (Linux < 5.3) there is no time limit, only a wait.
        Err(_) => true,
    };
    if !finished {
        // Killing pid 1 kills every process of its pid namespace.
        let _ = sys::kill(init, Signal::SIGKILL);
        let _ = sys::wait_any(init);
        let _ = ch.tx.send(&FromHelper::TimedOut);
        return 0;
    }
    match sys::wait_any(init) {
        // 0: it reported Finished; 1: it reported a setup failure.
        Ok(Some((_, ChildExit::Exited(0 | 1)))) => 0,
        Ok(Some((_, exit))) => {
            let status = match exit {
                ChildExit::Exited(code) => Status::Exited { code },
                ChildExit::Signaled(signal) => Status::Signaled { signal },
            };
            let _ = ch.tx.send(&FromHelper::InitDied(status));
            0
        }
        Ok(None) | Err(_) => 1,
    }
}
