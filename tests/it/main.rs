//! Integration tests: run the real `pkgcell` binary, as an unprivileged user.

mod publish;
mod util;
