//! What a sandbox run gives back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The result of running a payload in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Version of this JSON form ([`crate::SPEC_VERSION`]).
    pub version: u32,
    /// How the payload ended.
    pub status: Status,
    /// Wall-clock time from spawn to the end of the sandbox.
    #[serde(with = "secs")]
    pub wall: Duration,
    /// Wall-clock time of the payload alone: from its fork by pid 1 (its
    /// last setup steps and exec included) to its exit. `wall` minus this
    /// is what the sandbox itself cost (0 when the payload did not end by
    /// itself: time limit, pid 1 killed).
    #[serde(with = "secs", default)]
    pub payload: Duration,
    /// User CPU time of the payload and all its descendants.
    #[serde(with = "secs")]
    pub user: Duration,
    /// System CPU time of the payload and all its descendants.
    #[serde(with = "secs")]
    pub sys: Duration,
    /// Peak resident memory of the largest process, in KiB.
    pub peak_memory_kib: u64,
    /// The id map that was used.
    pub id_map: IdMapUsed,
}

/// How the payload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Status {
    /// It exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// It was killed by this signal.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The time limit was reached and the whole tree was killed.
    TimedOut,
}

impl Status {
    /// The exit code a shell would report: the code, 128+signal, or 124 for
    /// a time-out (as timeout(1) does).
    pub fn exit_code(&self) -> u8 {
        match *self {
            Status::Exited { code } => (code & 0xff) as u8,
            Status::Signaled { signal } => (128 + signal).clamp(0, 255) as u8,
            Status::TimedOut => 124,
        }
    }

    /// True when the payload exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, Status::Exited { code: 0 })
    }
}

/// Which id map the sandbox got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IdMapUsed {
    /// 0 = the caller, 1..=count = the caller's subordinate range.
    Subordinate {
        /// How many subordinate ids are mapped.
        count: u32,
    },
    /// Only 0 = the caller.
    Single,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_shell_conventions() {
        assert_eq!(Status::Exited { code: 3 }.exit_code(), 3);
        assert_eq!(Status::Signaled { signal: 9 }.exit_code(), 137);
        assert_eq!(Status::TimedOut.exit_code(), 124);
        assert!(Status::Exited { code: 0 }.success());
        assert!(!Status::Signaled { signal: 15 }.success());
    }
}
