//! pkgcell-sandbox: run a command in rootless Linux namespaces.
//!
//! A [`Spec`] describes the sandbox (root directory or overlay, mounts,
//! network, ids inside, environment, command, limits); [`Sandbox`] runs it and
//! returns an [`Outcome`]. No root, no setuid helper beyond the distribution's
//! newuidmap/newgidmap. The crate knows nothing of packages.
//!
//! Processes: the *supervisor* (the caller, any thread) spawns the *helper*
//! (this same binary re-executed, single-threaded), which creates the
//! namespaces and forks the sandbox's *pid 1*, which builds the root and runs
//! the *payload*. Any binary that runs sandboxes must call
//! [`helper_main_if_requested`] first thing in `main`.
//!
//! ```no_run
//! use pkgcell_sandbox::{Root, Spec};
//!
//! pkgcell_sandbox::helper_main_if_requested();
//! let spec = Spec::new(Root::Dir { path: "/srv/root".into() }, vec!["true".into()]);
//! let outcome = pkgcell_sandbox::run(&spec).unwrap();
//! assert!(outcome.status.success());
//! ```

mod error;
mod helper;
mod idmap;
mod init;
mod message;
mod mounts;
mod outcome;
// The filter's list: build.rs compiles it into the BPF that `sys` loads;
// the library itself only tests it.
#[cfg(test)]
#[allow(dead_code)]
mod seccomp;
mod spec;
mod supervisor;
mod sys;
mod units;

pub use error::{Error, SetupError, Step};
pub use helper::helper_main_if_requested;
pub use init::DEFAULT_PATH;
pub use idmap::{IdMapError, MAX_INSIDE_ID, SubIdFiles, SubIdRange, check_id_mapped, free_range, read_range, usermod_hint};
pub use outcome::{IdMapUsed, Outcome, Status};
pub use spec::{
    Access, Cleanup, CleanupAction, DEFAULT_TMP_SIZE, IdMapMode, Mount, Network, Owner, Rlimit, RlimitResource, Root, SPEC_VERSION, Seccomp, Spec,
    SpecError, Upper,
};
pub use units::{Size, Timeout, UnitError};
pub use sys::SysError;
pub use supervisor::{Child, Sandbox, remove_tree, remove_tree_with, run};
