//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod base;
mod build;
mod deps;
mod makepkg;
mod pkgutil;
mod plan;
mod publish;
mod repro;
mod sandbox;
mod store;
mod util;
