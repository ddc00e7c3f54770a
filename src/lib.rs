//! pkgcell: build Arch Linux packages in rootless sandboxes and publish them
//! as a pacman repository.
//!
//! One module per pipeline stage (see ARCHITECTURE.md). The sandbox itself lives
//! in the `pkgcell-sandbox` crate; this crate only describes sandboxes and
//! hands them over.

pub mod alpm_file;
pub mod base;
pub mod build;
pub mod buildlog;
pub mod cgroup;
pub mod config;
pub mod confined;
pub mod error;
pub mod fetch;
pub mod gc;
pub mod home;
pub mod ids;
pub mod kept;
pub mod leftovers;
pub mod lent;
pub mod local;
pub mod plan;
pub mod publish;
pub mod remote;
pub mod repro;
pub mod s3;
pub mod store;
pub mod sync;
pub mod userconf;
