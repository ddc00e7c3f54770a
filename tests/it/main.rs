//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod base;
mod bounds;
mod build;
mod cli;
mod deps;
mod fetch;
mod hostile;
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
