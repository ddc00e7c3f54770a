//! The supervisor side: validate the spec, spawn the helper, write its id
//! maps, and wait for the outcome. Safe to use from any thread of a
//! multi-threaded program: it never forks itself, it only spawns the helper.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::error::Error;
use crate::helper::HELPER_ARG;
use crate::idmap::{IdMapPlan, SubIdFiles};
use crate::message::{FromHelper, Job, Receiver, Sender, ToHelper};
use crate::outcome::{IdMapUsed, Outcome, Status};
use crate::spec::{Root, SPEC_VERSION, Spec, Upper};
use crate::sys;

/// A sandbox ready to start, shaped like [`std::process::Command`].
///
/// ```no_run
/// use pkgcell_sandbox::{Root, Sandbox, Spec, Upper};
///
/// // In main(), before anything else: the helper is this binary re-executed.
/// pkgcell_sandbox::helper_main_if_requested();
///
/// let spec = Spec::new(
///     Root::Overlay { lowers: vec!["/srv/base".into()], upper: Upper::Tmpfs { size: 1 << 30 } },
///     vec!["makepkg".into(), "--version".into()],
/// );
/// let outcome = Sandbox::new(spec).run().unwrap();
/// assert!(outcome.status.success());
/// ```
#[derive(Debug)]
pub struct Sandbox {
    spec: Spec,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    helper: PathBuf,
    subid: SubIdFiles,
}

impl Sandbox {
    /// A sandbox for `spec`, with stdio inherited and this binary as the helper.
    pub fn new(spec: Spec) -> Self {
        Sandbox {
            spec,
            stdin: None,
            stdout: None,
            stderr: None,
            // /proc/self/exe resolves to the running binary even when the
            // file was replaced or deleted since it started.
            helper: PathBuf::from("/proc/self/exe"),
            subid: SubIdFiles::default(),
        }
    }

    /// The payload's standard input.
    pub fn stdin(mut self, s: Stdio) -> Self {
        self.stdin = Some(s);
        self
    }

    /// The payload's standard output.
    pub fn stdout(mut self, s: Stdio) -> Self {
        self.stdout = Some(s);
        self
    }

    /// The payload's standard error.
    pub fn stderr(mut self, s: Stdio) -> Self {
        self.stderr = Some(s);
        self
    }

    /// Use another executable as the helper; it must call
    /// [`crate::helper_main_if_requested`] first thing in `main`.
    pub fn helper_exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.helper = exe.into();
        self
    }

    /// Read subordinate ids from other files than /etc/subuid and /etc/subgid.
    pub fn subid_files(mut self, files: SubIdFiles) -> Self {
        self.subid = files;
        self
    }

    /// Start the sandbox.
    ///
    /// The helper gets a parent-death signal, which the kernel sends when the
    /// *thread* that spawned it exits: keep that thread alive until [`Child::wait`].
    pub fn spawn(self) -> Result<Child, Error> {
        let Sandbox { spec, stdin, stdout, stderr, helper, subid } = self;
        // Everything that can be checked is checked here, before any process
        // exists, so the helper never fails halfway on bad input.
        spec.validate()?;
        let plan = IdMapPlan::for_caller(spec.id_map, &subid);
        let max = plan.max_inside_id();
        for (what, id) in [("uid", spec.uid), ("gid", spec.gid)] {
            if id > max {
                plan.warn_if_single();
                let user = crate::sys::user_name(crate::sys::getuid()).unwrap_or_else(|| "$USER".into());
                return Err(Error::UnmappedId { what, id, max, fix: crate::idmap::usermod_hint(&user) });
            }
        }
        plan.warn_if_single();
        if let Root::Overlay { upper: Upper::Dir { upper, work }, .. } = &spec.root {
            for d in [upper, work] {
                std::fs::create_dir_all(d).map_err(|source| Error::Prepare { path: d.clone(), source })?;
            }
        }
        let stdio = [stdin, stdout, stderr];
        let cgroup = spec.cgroup.clone();
        let (helper, rx, id_map) = start_helper(&helper, Job::Run(Box::new(spec)), &plan, stdio, cgroup.as_deref())?;
        Ok(Child { helper: Some(helper), rx, start: Instant::now(), id_map })
    }

    /// Start the sandbox and wait for it.
    pub fn run(self) -> Result<Outcome, Error> {
        self.spawn()?.wait()
    }
}

/// Run `spec` with stdio inherited and wait for the outcome.
pub fn run(spec: &Spec) -> Result<Outcome, Error> {
    Sandbox::new(spec.clone()).run()
}

/// Remove a directory tree that may hold files owned by subordinate ids
/// (left by a sandbox with an upper dir on disk), from inside a user
/// namespace that maps them.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    remove_tree_with(path, Path::new("/proc/self/exe"), &SubIdFiles::default())
}

/// [`remove_tree`] with another helper executable and subid files.
pub fn remove_tree_with(path: &Path, helper: &Path, subid: &SubIdFiles) -> Result<(), Error> {
    if !path.is_absolute() {
        return Err(crate::spec::SpecError::NotAbsolute { what: "tree to remove", path: path.to_owned() }.into());
    }
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let plan = IdMapPlan::for_caller(crate::spec::IdMapMode::Auto, subid);
    let (mut helper, mut rx, _) =
        start_helper(helper, Job::RemoveTree(path.to_owned()), &plan, [None, None, Some(Stdio::null())], None)?;
    let mut result = Err(Error::HelperDied { during: "removing a tree", status: String::new() });
    while let Some(msg) = rx.recv().map_err(|source| Error::Helper { during: "removing a tree", source })? {
        match msg {
            FromHelper::Removed => result = Ok(()),
            FromHelper::Failed(e) => result = Err(e.into()),
            _ => {}
        }
    }
    let status = helper.wait().map_err(|source| Error::Helper { during: "removing a tree", source })?;
    if let Err(Error::HelperDied { status: s, .. }) = &mut result {
        *s = status;
    }
    result
}

type StdioTriple = [Option<Stdio>; 3];

/// The user namespace the first sandbox of this process made, with its id
/// maps written, which later sandboxes join: they then need no newuidmap
/// and newgidmap of their own. One per id map plan (mode and subid files
/// decide it).
struct SharedUserNs {
    plan: IdMapPlan,
    fd: std::os::fd::OwnedFd,
    used: IdMapUsed,
}

static SHARED_USER_NS: std::sync::Mutex<Vec<SharedUserNs>> = std::sync::Mutex::new(Vec::new());

/// The fd number (ours) and map of the shared user namespace for `plan`, if
/// one was made. The fd stays open for the life of the process (it is
/// close-on-exec, and never closed), so the number stays valid.
fn shared_user_ns(plan: &IdMapPlan) -> Option<(std::os::fd::RawFd, IdMapUsed)> {
    use std::os::fd::AsRawFd;
    let shared = SHARED_USER_NS.lock().unwrap_or_else(|e| e.into_inner());
    shared.iter().find(|s| &s.plan == plan).map(|s| (s.fd.as_raw_fd(), s.used))
}

/// Keep the user namespace of `helper` (maps just written) for later sandboxes.
fn share_user_ns(plan: &IdMapPlan, helper: i32, used: IdMapUsed) {
    let mut shared = SHARED_USER_NS.lock().unwrap_or_else(|e| e.into_inner());
    if shared.iter().any(|s| &s.plan == plan) {
        return;
    }
    match sys::open_user_ns(helper) {
        Ok(fd) => shared.push(SharedUserNs { plan: plan.clone(), fd, used }),
        Err(e) => tracing::debug!(error = %e, "cannot keep the user namespace for later sandboxes"),
    }
}

/// Spawn the helper, hand it the job, move it into `cgroup`, write its id maps.
fn start_helper(
    exe: &Path,
    job: Job,
    plan: &IdMapPlan,
    stdio: StdioTriple,
    cgroup: Option<&Path>,
) -> Result<(HelperProcess, Receiver<FromHelper>, IdMapUsed), Error> {
    let pipe = |during| move |e: sys::SysError| Error::Helper { during, source: std::io::Error::from(e.errno) };
    let (to_r, to_w) = sys::pipe_high(10).map_err(pipe("making pipes"))?;
    let (from_r, from_w) = sys::pipe_high(10).map_err(pipe("making pipes"))?;

    let [stdin, stdout, stderr] = stdio;
    let inherit_stdio = stdin.is_none() && stdout.is_none() && stderr.is_none();
    let shared = shared_user_ns(plan);
    // The helper's number for the shared namespace: ours when it is a fork,
    // 5 (after its two pipes) when it is exec'd.
    let mut join_user_ns = shared.map(|(fd, _)| fd);
    let mut helper = if inherit_stdio && sys::is_single_threaded() {
        // A single-threaded supervisor (the `pkgcell run` command) may fork
        // the helper directly: no other thread can hold a lock the child
        // would need, and it saves the exec and start-up of the binary.
        // SAFETY: checked just above that this process has one thread.
        #[allow(unsafe_code)]
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => {
                drop((to_w, from_r));
                sys::exit(crate::helper::helper_main(sys::getppid(), to_r, from_w));
            }
            Ok(sys::Forked::Parent(pid)) => HelperProcess::Forked(pid),
            Err(e) => return Err(Error::SpawnHelper { exe: exe.to_owned(), source: std::io::Error::from(e.errno) }),
        }
    } else {
        let mut cmd = std::process::Command::new(exe);
        {
            use std::os::unix::process::CommandExt;
            cmd.arg0("pkgcell-sandbox");
        }
        cmd.arg(HELPER_ARG).arg(sys::getpid().to_string());
        // The helper needs nothing from our environment, and the payload gets
        // only the spec's.
        cmd.env_clear();
        if let Some(s) = stdin {
            cmd.stdin(s);
        }
        if let Some(s) = stdout {
            cmd.stdout(s);
        }
        if let Some(s) = stderr {
            cmd.stderr(s);
        }
        match shared {
            Some((fd, _)) => {
                sys::pass_fds_raw(&mut cmd, &[to_r.as_raw_fd(), from_w.as_raw_fd(), fd]);
                join_user_ns = Some(5);
            }
            None => sys::pass_fds(&mut cmd, &[&to_r, &from_w]),
        }
        HelperProcess::Spawned(cmd.spawn().map_err(|source| Error::SpawnHelper { exe: exe.to_owned(), source })?)
    };
    // Close the helper's ends at once: EOF must mean "the helper and
    // everything it started are gone".
    drop(to_r);
    drop(from_w);
    let mut tx: Sender<ToHelper> = Sender::new(to_w);
    let mut rx: Receiver<FromHelper> = Receiver::new(from_r);

    let died = |helper: &mut HelperProcess, during| {
        let _ = helper.kill();
        let status = helper.wait().unwrap_or_default();
        Error::HelperDied { during, status }
    };
    if tx.send(&ToHelper::Start { job, join_user_ns }).is_err() {
        return Err(died(&mut helper, "sending the job"));
    }
    match rx.recv() {
        Ok(Some(FromHelper::UserNsReady)) => {}
        Ok(Some(FromHelper::Failed(e))) => {
            let _ = helper.wait();
            return Err(e.into());
        }
        Ok(_) | Err(_) => return Err(died(&mut helper, "creating the user namespace")),
    }
    // The helper waits for its id maps before it forks pid 1: moved now,
    // every process of the sandbox starts inside the cgroup.
    if let Some(dir) = cgroup {
        let procs = dir.join("cgroup.procs");
        // Never created: in a directory that is no cgroup the file is missing.
        let joined = std::fs::File::options()
            .write(true)
            .open(&procs)
            .and_then(|mut f| std::io::Write::write_all(&mut f, helper.id().to_string().as_bytes()));
        if let Err(source) = joined {
            let _ = tx.send(&ToHelper::IdMapFailed);
            let _ = helper.kill();
            let _ = helper.wait();
            return Err(Error::JoinCgroup { path: dir.to_owned(), source });
        }
    }
    // The supervisor always answers, even on error, so the helper never hangs.
    let written = match shared {
        Some((_, used)) => Ok(used),
        None => plan.apply(helper.id() as i32).inspect(|used| share_user_ns(plan, helper.id() as i32, *used)),
    };
    let id_map = match written {
        Ok(used) => {
            let _ = tx.send(&ToHelper::IdMapWritten(used));
            used
        }
        Err(e) => {
            let _ = tx.send(&ToHelper::IdMapFailed);
            let _ = helper.wait();
            return Err(e.into());
        }
    };
    Ok((helper, rx, id_map))
}

/// The helper process: spawned (exec'd) or forked.
#[derive(Debug)]
enum HelperProcess {
    Spawned(std::process::Child),
    Forked(i32),
}

impl HelperProcess {
    fn id(&self) -> u32 {
        match self {
            HelperProcess::Spawned(c) => c.id(),
            HelperProcess::Forked(pid) => *pid as u32,
        }
    }

    fn kill(&mut self) -> std::io::Result<()> {
        match self {
            HelperProcess::Spawned(c) => c.kill(),
            HelperProcess::Forked(pid) => {
                sys::kill(*pid, nix::sys::signal::Signal::SIGKILL).map_err(|e| std::io::Error::from(e.errno))
            }
        }
    }

    /// Wait for it; the status as text, for messages.
    fn wait(&mut self) -> std::io::Result<String> {
        match self {
            HelperProcess::Spawned(c) => c.wait().map(|s| s.to_string()),
            HelperProcess::Forked(pid) => match sys::wait_any(*pid) {
                Ok(Some((_, sys::ChildExit::Exited(code)))) => Ok(format!("exit status: {code}")),
                Ok(Some((_, sys::ChildExit::Signaled(sig)))) => Ok(format!("signal: {sig}")),
                Ok(None) => Ok("already reaped".into()),
                Err(e) => Err(std::io::Error::from(e.errno)),
            },
        }
    }
}

/// A running sandbox. Dropping it without [`Child::wait`] kills it.
#[derive(Debug)]
pub struct Child {
    helper: Option<HelperProcess>,
    rx: Receiver<FromHelper>,
    start: Instant,
    id_map: IdMapUsed,
}

impl std::fmt::Debug for Receiver<FromHelper> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver")
    }
}

impl Child {
    /// The helper's pid (outside): killing it kills the whole sandbox.
    pub fn id(&self) -> u32 {
        self.helper.as_ref().map_or(0, |h| h.id())
    }

    /// The id map the sandbox got.
    pub fn id_map(&self) -> IdMapUsed {
        self.id_map
    }

    /// Kill the sandbox and everything in it.
    pub fn kill(&mut self) {
        if let Some(h) = self.helper.as_mut() {
            // The helper's death kills pid 1 (its death signal), and pid 1's
            // death kills every process of the pid namespace.
            let _ = h.kill();
        }
    }

    /// Wait for the payload to end.
    pub fn wait(mut self) -> Result<Outcome, Error> {
        let during = "waiting for the payload";
        let mut end: Option<FromHelper> = None;
        let mut failure = None;
        // EOF comes once the helper, pid 1 and the payload's exec are all gone.
        loop {
            match self.rx.recv() {
                Ok(Some(FromHelper::Failed(e))) => {
                    failure.get_or_insert(e);
                }
                Ok(Some(FromHelper::CleanupFailed(e))) => {
                    // The tree stays; the caller can still remove it another way.
                    tracing::warn!(error = %e, "cleanup after the sandbox failed");
                }
                Ok(Some(msg)) => {
                    end.get_or_insert(msg);
                }
                Ok(None) => break,
                Err(source) => {
                    self.kill();
                    return Err(Error::Helper { during, source });
                }
            }
        }
        let mut helper = self.helper.take().expect("helper present until waited");
        let helper_status = helper.wait().map_err(|source| Error::Helper { during, source })?;
        let wall = self.start.elapsed();
        if let Some(e) = failure {
            return Err(e.into());
        }
        let outcome = |status, user, sys, peak_memory_kib, payload| Outcome {
            version: SPEC_VERSION,
            status,
            wall,
            payload,
            user,
            sys,
            peak_memory_kib,
            id_map: self.id_map,
        };
        let zero = std::time::Duration::ZERO;
        match end {
            Some(FromHelper::Finished { status, user, sys, peak_memory_kib, payload }) => {
                Ok(outcome(status, user, sys, peak_memory_kib, payload))
            }
            Some(FromHelper::TimedOut) => Ok(outcome(Status::TimedOut, zero, zero, 0, zero)),
            Some(FromHelper::InitDied(status)) => Ok(outcome(status, zero, zero, 0, zero)),
            Some(FromHelper::UserNsReady | FromHelper::Removed | FromHelper::Failed(_) | FromHelper::CleanupFailed(_))
            | None => {
                Err(Error::HelperDied { during, status: helper_status })
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}
