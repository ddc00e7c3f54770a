//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod base;
mod makepkg;
mod pkgutil;
mod plan;
mod publish;
mod sandbox;
mod util;
