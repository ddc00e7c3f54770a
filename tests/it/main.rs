//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod util;
mod makepkg;
mod plan;
mod sandbox;
