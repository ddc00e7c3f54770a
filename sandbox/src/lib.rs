//! pkgcell-sandbox: run a command in rootless Linux namespaces.
//!
//! Knows nothing of packages.

/// If this process was started as the sandbox helper, run it and never return.
pub fn helper_main_if_requested() {}
