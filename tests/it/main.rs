//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod util;
mod base;
mod makepkg;
mod plan;
mod sandbox;
