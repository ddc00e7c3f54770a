//! A sandbox run with its output streamed to a build log, and what the
//! log's end says about it.

use std::path::Path;
use std::process::Stdio;

use pkgcell_sandbox::{Sandbox, Spec};

use crate::buildlog;
use crate::error::io_err;
use crate::cgroup::BuildCgroup;

use super::BuildError;
use super::options::BuildOptions;

/// How a sandbox run with its output to a log went.
pub(super) struct Ran {
    /// It exited with 0.
    pub(super) ok: bool,
    /// Its exit status, and a hint when the log shows a limit was hit.
    pub(super) status: String,
    /// The log's last lines.
    pub(super) tail: String,
    /// Peak resident memory of its largest process, in KiB.
    pub(super) peak_memory_kib: u64,
    /// Wall time of the command alone (the rest of the sandbox's time is
    /// its setup and cleanup).
    pub(super) payload_secs: f64,
}

/// Run a sandbox with its stdout and stderr streamed to `log`, keeping at
/// most `opts.log_limit` bytes of them and echoing them as `opts.echo`
/// says (see [`crate::buildlog`]); `opts.limits` name a limit it hit.
pub(super) fn run_logged(
    spec: Spec,
    log: &Path,
    what: &'static str,
    header: &str,
    opts: &BuildOptions,
    cgroup: Option<&BuildCgroup>,
) -> Result<Ran, BuildError> {
    let limits = &opts.limits;
    let (out, pump) = buildlog::start(log, header, opts.log_limit, opts.echo)?;
    let err = out.try_clone().map_err(io_err("make a pipe for", log))?;
    let outcome = Sandbox::new(spec).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)).run();
    // The pipe's write ends went with the sandbox: the pump sees its end.
    let written = pump.finish()?;
    let outcome = outcome.map_err(|source| BuildError::Sandbox { what, source })?;
    if written.cut > 0 {
        tracing::warn!(log = %log.display(), cut = written.cut, printed = written.printed, "log over its limit: its middle was cut");
    }
    let mut status = match outcome.status {
        pkgcell_sandbox::Status::TimedOut => "timed out".to_owned(),
        s => format!("exit status {}", s.exit_code()),
    };
    // Only the end of the log is read back: that is where a failure shows.
    let text = buildlog::window(log, header.len() as u64);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    let ok = outcome.status.success();
    let hint = match cgroup {
        // The kernel counted: its events say which limit was hit.
        Some(cg) => limits.cgroup_hint(cg.limits_hit()),
        None => limits.hint(&text),
    };
    if !ok && let Some(hint) = hint {
        status.push_str(", ");
        status.push_str(&hint);
    }
    Ok(Ran { ok, status, tail, peak_memory_kib: outcome.peak_memory_kib, payload_secs: outcome.payload.as_secs_f64() })
}
