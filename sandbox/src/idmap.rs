//! Id maps of the sandbox's user namespace, written by the supervisor.
//!
//! Inside, uid/gid 0 is the calling user and 1..=N its subordinate range from
//! /etc/subuid and /etc/subgid, written with the setuid helpers
//! newuidmap/newgidmap (found on PATH). Without a range or the helpers, only
//! the caller's own id is mapped (to 0): we can write that map ourselves, and
//! everything but chown to other ids and a non-root user inside still works.

use std::path::{Path, PathBuf};
use std::process::Command;

use tracing::warn;

use crate::outcome::IdMapUsed;
use crate::spec::IdMapMode;
use crate::sys;

/// The largest id mapped inside (1..=65535 come from the subordinate range).
pub const MAX_INSIDE_ID: u32 = 65535;

/// Where the subordinate id files are (tests point these at a temp dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdFiles {
    /// /etc/subuid.
    pub subuid: PathBuf,
    /// /etc/subgid.
    pub subgid: PathBuf,
}

impl Default for SubIdFiles {
    fn default() -> Self {
        SubIdFiles { subuid: "/etc/subuid".into(), subgid: "/etc/subgid".into() }
    }
}

/// A range of subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    /// First id outside.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// Why only a single id is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SingleReason {
    Requested,
    NoRange { user: String, file: PathBuf },
    NoTool { tool: &'static str },
}

/// What the supervisor will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdMapPlan {
    Subordinate { uid: u32, gid: u32, uids: SubIdRange, gids: SubIdRange, newuidmap: PathBuf, newgidmap: PathBuf },
    Single { uid: u32, gid: u32, reason: SingleReason },
}

/// Writing an id map failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdMapError {
    /// Writing a map file ourselves failed.
    #[error("cannot write the single-id map")]
    Write(#[source] sys::SysError),
}

/// Read the first range of `user` (by name or numeric uid) from a subid file.
pub fn read_range(file: &Path, user: &str, uid: u32) -> Option<SubIdRange> {
    let text = std::fs::read_to_string(file).ok()?;
    let uid_s = uid.to_string();
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who != uid_s {
            return None;
        }
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (count > 0).then_some(SubIdRange { start, count })
    })
}

/// A range of `count` ids, from 100000 up (shadow's SUB_UID_MIN), that no
/// line of /etc/subuid or /etc/subgid (as `files` name them) uses yet: the
/// range to propose to a user who has none. Unreadable files count as empty.
///
/// ```
/// # let d = tempfile::tempdir().unwrap();
/// let files = pkgcell_sandbox::SubIdFiles { subuid: d.path().join("subuid"), subgid: d.path().join("subgid") };
/// std::fs::write(&files.subuid, "alice:100000:65536\n").unwrap();
/// std::fs::write(&files.subgid, "alice:100000:65536\nbob:165536:65536\n").unwrap();
/// let r = pkgcell_sandbox::free_range(&files, 65536);
/// assert_eq!((r.start, r.count), (231072, 65536));
/// ```
pub fn free_range(files: &SubIdFiles, count: u32) -> SubIdRange {
    const SUB_ID_MIN: u64 = 100_000;
    let mut used: Vec<(u64, u64)> = [&files.subuid, &files.subgid]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| {
                    let mut f = line.trim().split(':');
                    let (_, start, n) = (f.next()?, f.next()?.parse::<u64>().ok()?, f.next()?.parse::<u64>().ok()?);
                    Some((start, start + n))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    used.sort_unstable();
    let mut start = SUB_ID_MIN;
    for (a, b) in used {
        if a < start + u64::from(count) && b > start {
            start = b;
        }
    }
    SubIdRange { start: u32::try_from(start).unwrap_or(u32::MAX - count), count }
}

/// The command that gives `user` a free range of 65536 subordinate ids
/// ([`free_range`] of the default files).
pub fn usermod_hint(user: &str) -> String {
    let r = free_range(&SubIdFiles::default(), MAX_INSIDE_ID + 1);
    let range = format!("{}-{}", r.start, r.start + (r.count - 1));
    format!("sudo usermod --add-subuids {range} --add-subgids {range} {user}")
}

/// Check, before any long work, that a sandbox of the calling user can
/// have `id` as its uid and gid inside (a subordinate range in `files` and
/// newuidmap/newgidmap): the error [`crate::Sandbox::spawn`] would give.
pub fn check_id_mapped(id: u32, files: &SubIdFiles) -> Result<(), crate::Error> {
    let plan = IdMapPlan::for_caller(IdMapMode::Auto, files);
    let max = plan.max_inside_id();
    if id <= max {
        return Ok(());
    }
    let user = sys::user_name(sys::getuid()).unwrap_or_else(|| "$USER".into());
    let fix = match &plan {
        IdMapPlan::Single { reason: SingleReason::NoTool { tool }, .. } => {
            format!("install {tool} (Debian: uidmap, Arch: shadow)")
        }
        IdMapPlan::Single { .. } | IdMapPlan::Subordinate { .. } => usermod_hint(&user),
    };
    Err(crate::Error::UnmappedId { what: "uid", id, max, fix })
}

/// Find an executable on PATH.
pub(crate) fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| sys::is_executable(p))
}

impl IdMapPlan {
    /// Decide the map for the calling user.
    pub(crate) fn for_caller(mode: IdMapMode, files: &SubIdFiles) -> Self {
        let (uid, gid) = (sys::getuid(), sys::getgid());
        if mode == IdMapMode::Single {
            return IdMapPlan::Single { uid, gid, reason: SingleReason::Requested };
        }
        let user = sys::user_name(uid).unwrap_or_else(|| uid.to_string());
        let Some(uids) = read_range(&files.subuid, &user, uid) else {
            return IdMapPlan::Single { uid, gid, reason: SingleReason::NoRange { user, file: files.subuid.clone() } };
        };
        let Some(gids) = read_range(&files.subgid, &user, uid) else {
            return IdMapPlan::Single { uid, gid, reason: SingleReason::NoRange { user, file: files.subgid.clone() } };
        };
        let Some(newuidmap) = find_on_path("newuidmap") else {
            return IdMapPlan::Single { uid, gid, reason: SingleReason::NoTool { tool: "newuidmap" } };
        };
        let Some(newgidmap) = find_on_path("newgidmap") else {
            return IdMapPlan::Single { uid, gid, reason: SingleReason::NoTool { tool: "newgidmap" } };
        };
        IdMapPlan::Subordinate { uid, gid, uids, gids, newuidmap, newgidmap }
    }

    /// The highest uid/gid that will exist inside.
    pub(crate) fn max_inside_id(&self) -> u32 {
        match self {
            IdMapPlan::Subordinate { uids, gids, .. } => {
                uids.count.min(gids.count).min(MAX_INSIDE_ID)
            }
            IdMapPlan::Single { .. } => 0,
        }
    }

    /// Warn about a single-id map: what will not work and how to fix it.
    pub(crate) fn warn_if_single(&self) {
        let IdMapPlan::Single { reason, .. } = self else { return };
        let user = sys::user_name(sys::getuid()).unwrap_or_else(|| "$USER".into());
        let fix = match reason {
            SingleReason::Requested => return,
            SingleReason::NoRange { file, .. } => format!(
                "no subordinate id range for user {user} in {}; fix: `{}`",
                file.display(),
                usermod_hint(&user)
            ),
            SingleReason::NoTool { tool } => {
                format!("{tool} was not found on PATH; fix: install it (Debian: uidmap, Arch: shadow)")
            }
        };
        warn!(
            "sandbox falls back to a single-id map (only uid 0 inside): {fix}. \
             Until then chown to other ids and a non-root user inside (such as a build user) will not work"
        );
    }

    /// Write the maps for the process `pid` (which has just unshared its user
    /// namespace).
    pub(crate) fn apply(&self, pid: i32) -> Result<IdMapUsed, IdMapError> {
        match self {
            IdMapPlan::Subordinate { uid, gid, uids, gids, newuidmap, newgidmap } => {
                let n = self.max_inside_id();
                // Both setuid helpers at once: each is a few milliseconds of
                // exec, a good part of a sandbox's start.
                let u = spawn_map_tool(newuidmap, pid, *uid, uids.start, n);
                let g = spawn_map_tool(newgidmap, pid, *gid, gids.start, n);
                let (u, g) = (finish_map_tool(u), finish_map_tool(g));
                if u.is_ok() && g.is_ok() {
                    return Ok(IdMapUsed::Subordinate { count: n });
                }
                // For example when we are ourselves in a user namespace that
                // does not hold the range: write what is missing as a
                // single-id map, which needs no privilege.
                for why in [&u, &g].into_iter().filter_map(|r| r.as_ref().err()) {
                    warn!("{why}; falling back to a single-id map (only uid 0 inside)");
                }
                let proc = PathBuf::from(format!("/proc/{pid}"));
                if g.is_err() {
                    sys::write_proc_file(&proc.join("setgroups"), "deny").map_err(IdMapError::Write)?;
                    sys::write_proc_file(&proc.join("gid_map"), &format!("0 {gid} 1\n")).map_err(IdMapError::Write)?;
                }
                if u.is_err() {
                    sys::write_proc_file(&proc.join("uid_map"), &format!("0 {uid} 1\n")).map_err(IdMapError::Write)?;
                }
                Ok(IdMapUsed::Single)
            }
            IdMapPlan::Single { uid, gid, .. } => {
                write_single(pid, *uid, *gid)?;
                Ok(IdMapUsed::Single)
            }
        }
    }
}

type MapTool = (String, std::io::Result<std::process::Child>);

fn spawn_map_tool(tool: &Path, pid: i32, own: u32, start: u32, count: u32) -> MapTool {
    let args = [pid.to_string(), "0".into(), own.to_string(), "1".into(), "1".into(), start.to_string(), count.to_string()];
    let what = format!("{} {}", tool.display(), args.join(" "));
    let child = Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    (what, child)
}

fn finish_map_tool((what, child): MapTool) -> Result<(), String> {
    match child.and_then(|c| c.wait_with_output()) {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{what} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}

fn write_single(pid: i32, uid: u32, gid: u32) -> Result<(), IdMapError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // Without CAP_SETGID outside, the kernel only lets us write a gid map
    // after setgroups is denied for the namespace.
    sys::write_proc_file(&proc.join("setgroups"), "deny").map_err(IdMapError::Write)?;
    sys::write_proc_file(&proc.join("uid_map"), &format!("0 {uid} 1\n")).map_err(IdMapError::Write)?;
    sys::write_proc_file(&proc.join("gid_map"), &format!("0 {gid} 1\n")).map_err(IdMapError::Write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proposed_range_is_free_in_both_files() {
        let d = tempfile::tempdir().unwrap();
        let files = SubIdFiles { subuid: d.path().join("subuid"), subgid: d.path().join("subgid") };
        // No files: shadow's default.
        assert_eq!(free_range(&files, 65536), SubIdRange { start: 100000, count: 65536 });
        // A gap too small is skipped; one big enough (between ranges) is used.
        std::fs::write(&files.subuid, "a:100000:65536\nb:200000:65536\n# c\n").unwrap();
        std::fs::write(&files.subgid, "a:100000:65536\nx:1000:5\n").unwrap();
        assert_eq!(free_range(&files, 65536), SubIdRange { start: 265536, count: 65536 });
        assert_eq!(free_range(&files, 1000), SubIdRange { start: 165536, count: 1000 });
    }

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\n# x\n1002:300000:1000\nbob:200000:0\n").unwrap();
        assert_eq!(read_range(&f, "alice", 1001), Some(SubIdRange { start: 100000, count: 65536 }));
        assert_eq!(read_range(&f, "carol", 1002), Some(SubIdRange { start: 300000, count: 1000 }));
        assert_eq!(read_range(&f, "bob", 1003), None, "a zero-sized range is no range");
        assert_eq!(read_range(&d.path().join("missing"), "alice", 1), None);
    }

    #[test]
    fn a_missing_range_plans_a_single_map() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("subuid"), "").unwrap();
        std::fs::write(d.path().join("subgid"), "").unwrap();
        let files = SubIdFiles { subuid: d.path().join("subuid"), subgid: d.path().join("subgid") };
        let plan = IdMapPlan::for_caller(IdMapMode::Auto, &files);
        assert!(matches!(plan, IdMapPlan::Single { reason: SingleReason::NoRange { .. }, .. }), "{plan:?}");
        assert_eq!(plan.max_inside_id(), 0);
    }
}
