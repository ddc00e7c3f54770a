//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod base;
mod build;
mod deps;
mod fetch;
mod makepkg;
mod parse_isolation;
mod pkgutil;
mod plan;
mod publish;
mod rebuilderd;
mod repro;
mod s3;
mod sandbox;
mod shard;
mod store;
mod util;
