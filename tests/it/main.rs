//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod util;
mod build;
mod makepkg;
mod plan;
mod sandbox;
mod store;
