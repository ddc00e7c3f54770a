//! Typed messages between the supervisor, the helper and the sandbox's pid 1,
//! sent as JSON lines over pipes, with named send and wait methods, so that
//! no side ever reads raw flag bytes.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SetupError;
use crate::outcome::{IdMapUsed, Status};
use crate::spec::Spec;

/// What the helper is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Job {
    /// Run a sandbox.
    Run(Box<Spec>),
    /// Remove a directory tree whose files may belong to subordinate ids.
    RemoveTree(PathBuf),
}

/// Supervisor → helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToHelper {
    /// The first message: what to do, and whether to join the user
    /// namespace (whose maps are written) on this fd number instead of
    /// making one.
    Start { job: Job, join_user_ns: Option<i32> },
    /// The id maps of the helper's user namespace are written.
    IdMapWritten(IdMapUsed),
    /// Writing the id maps failed; the helper must give up.
    IdMapFailed,
}

/// Helper (or pid 1) → supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromHelper {
    /// The user namespace exists; please write its id maps.
    UserNsReady,
    /// A setup step failed; nothing was run.
    Failed(SetupError),
    /// The payload ended (sent by pid 1).
    Finished {
        status: Status,
        #[serde(with = "micros")]
        user: Duration,
        #[serde(with = "micros")]
        sys: Duration,
        peak_memory_kib: u64,
        /// Wall time from the payload's fork to its exit.
        #[serde(with = "micros")]
        payload: Duration,
    },
    /// The time limit was reached; the helper killed the sandbox.
    TimedOut,
    /// pid 1 of the sandbox died without reporting (killed from outside).
    InitDied(Status),
    /// A RemoveTree job is done.
    Removed,
    /// One of the spec's cleanup steps failed (after the sandbox ended).
    CleanupFailed(SetupError),
}

/// Between pid 1 and the payload's process, while the payload moves into a
/// nested user and mount namespace that locks every mount flag.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LockMsg {
    /// Payload → pid 1: the nested namespaces exist; write the id maps.
    NestedUserNsReady,
    /// pid 1 → payload: the maps are written.
    NestedMapsWritten,
}

/// The sending end of a message pipe.
pub(crate) struct Sender<T> {
    file: std::fs::File,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Serialize> Sender<T> {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Sender { file: fd.into(), _t: std::marker::PhantomData }
    }

    /// Send one message. A closed pipe means the other side is gone; the
    /// error is returned and the caller decides.
    pub(crate) fn send(&mut self, msg: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write per message, so that messages from pid 1 and the helper,
        // which share the pipe, never interleave (PIPE_BUF is 4096 bytes; our
        // messages are far smaller).
        self.file.write_all(&line)
    }
}

/// The receiving end of a message pipe.
pub(crate) struct Receiver<T> {
    reader: BufReader<std::fs::File>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: for<'de> Deserialize<'de>> Receiver<T> {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Receiver { reader: BufReader::new(fd.into()), _t: std::marker::PhantomData }
    }

    /// The next message, or `None` when every writer has closed the pipe.
    pub(crate) fn recv(&mut self) -> std::io::Result<Option<T>> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map(Some).map_err(std::io::Error::other);
        }
    }
}

/// The helper's side of the handshake with the supervisor.
pub(crate) struct HelperChannel {
    pub(crate) rx: Receiver<ToHelper>,
    pub(crate) tx: Sender<FromHelper>,
}

impl HelperChannel {
    pub(crate) fn wait_for_job(&mut self) -> std::io::Result<Option<(Job, Option<i32>)>> {
        match self.rx.recv()? {
            Some(ToHelper::Start { job, join_user_ns }) => Ok(Some((job, join_user_ns))),
            Some(other) => Err(std::io::Error::other(format!("expected a job, got {other:?}"))),
            None => Ok(None),
        }
    }

    pub(crate) fn user_ns_ready(&mut self) -> std::io::Result<()> {
        self.tx.send(&FromHelper::UserNsReady)
    }

    /// Wait for the supervisor to write our id maps. `None`: it could not.
    pub(crate) fn wait_for_id_map(&mut self) -> std::io::Result<Option<IdMapUsed>> {
        match self.rx.recv()? {
            Some(ToHelper::IdMapWritten(used)) => Ok(Some(used)),
            Some(ToHelper::IdMapFailed) | None => Ok(None),
            Some(other) => Err(std::io::Error::other(format!("expected the id map, got {other:?}"))),
        }
    }

    pub(crate) fn failed(&mut self, e: SetupError) {
        // If the supervisor is gone there is nobody left to tell.
        let _ = self.tx.send(&FromHelper::Failed(e));
    }
}

mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
