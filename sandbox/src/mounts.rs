//! The mount plan: the spec turned into a list of mount operations, as data,
//! so that its order can be tested without privileges. `init.rs` applies it
//! in one loop (as bubblewrap's `setup_newroot` does over its `SetupOp`s).
//!
//! All paths are as seen after the first pivot_root into the staging tmpfs:
//! the host's root is at [`OLD_ROOT`], the sandbox's root is built at
//! [`NEW_ROOT`].

use std::path::{Path, PathBuf};

use crate::spec::{Access, Mount, Root, Spec, Upper};

/// Where the host's root is while the sandbox root is built.
pub(crate) const OLD_ROOT: &str = "/oldroot";
/// Where the sandbox root is built.
pub(crate) const NEW_ROOT: &str = "/newroot";
/// Where a tmpfs upper is mounted.
pub(crate) const UPPER_FS: &str = "/upperfs";

/// Devices bound from the host's /dev.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of /proc that would let the payload change the kernel (bubblewrap's list).
pub(crate) const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// One mount operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountOp {
    /// Bind a host directory as the root.
    BindRoot { src: PathBuf },
    /// A tmpfs that will hold the overlay upper and work dirs.
    UpperTmpfs { size: u64 },
    /// The overlay root.
    Overlay { lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A fresh /proc for the new pid namespace.
    Proc,
    /// Make /proc/<name> read-only.
    ProtectProc(&'static str),
    /// A tmpfs on /dev.
    DevTmpfs,
    /// Bind one host device node into /dev.
    Device(&'static str),
    /// A private devpts instance, and /dev/ptmx pointing into it.
    Devpts,
    /// /dev/fd, /dev/stdin, ... symlinks.
    DevSymlinks,
    /// A tmpfs with mode 1777 (/dev/shm, /tmp), of `size` bytes.
    StickyTmpfs { dst: PathBuf, size: u64 },
    /// A bind mount from the spec.
    Bind { src: PathBuf, dst: PathBuf, access: Access },
    /// A tmpfs from the spec.
    Tmpfs { dst: PathBuf, size: u64 },
    /// Give a path (a mount point) to ids inside.
    Chown { dst: PathBuf, uid: u32, gid: u32 },
}

/// `path` (absolute, host) as seen under [`OLD_ROOT`].
pub(crate) fn host(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// The mount operations for `spec`, in the order they must be applied.
pub(crate) fn plan(spec: &Spec) -> Vec<MountOp> {
    let mut ops = Vec::new();
    // The root first: everything else is mounted inside it.
    match &spec.root {
        Root::Dir { path } => ops.push(MountOp::BindRoot { src: host(path) }),
        Root::Overlay { lowers, upper } => {
            let lowers = lowers.iter().map(|l| host(l)).collect();
            let (upper, work) = match upper {
                Upper::Tmpfs { size } => {
                    ops.push(MountOp::UpperTmpfs { size: *size });
                    (Path::new(UPPER_FS).join("upper"), Path::new(UPPER_FS).join("work"))
                }
                Upper::Dir { upper, work } => (host(upper), host(work)),
            };
            ops.push(MountOp::Overlay { lowers, upper, work });
        }
    }
    // A /proc of the new pid namespace, with the knobs that change the
    // kernel made read-only.
    ops.push(MountOp::Proc);
    ops.extend(PROC_READ_ONLY.iter().map(|p| MountOp::ProtectProc(p)));
    // A minimal /dev: never the host's, which would expose its disks.
    ops.push(MountOp::DevTmpfs);
    ops.extend(DEVICES.iter().map(|d| MountOp::Device(d)));
    ops.push(MountOp::Devpts);
    ops.push(MountOp::DevSymlinks);
    // Every tmpfs has a size: the kernel's default (half of RAM each) would
    // let one sandbox fill the host's memory through /tmp or /dev/shm.
    let default_size = spec.default_tmp_size();
    ops.push(MountOp::StickyTmpfs { dst: "/dev/shm".into(), size: spec.shm_size.unwrap_or(default_size) });
    // A private /tmp, so nothing of the base's or host's /tmp is shared.
    ops.push(MountOp::StickyTmpfs { dst: "/tmp".into(), size: spec.tmp_size.unwrap_or(default_size) });
    // The caller's mounts last, so that they can go below /tmp or /dev.
    for m in &spec.mounts {
        ops.push(match m {
            Mount::Bind { src, dst, access } => MountOp::Bind { src: host(src), dst: dst.clone(), access: *access },
            Mount::Tmpfs { dst, size } => MountOp::Tmpfs { dst: dst.clone(), size: size.unwrap_or(default_size) },
        });
    }
    // Last: what they give away is the mounted directory, not what lies
    // beneath it.
    ops.extend(spec.owners.iter().map(|o| MountOp::Chown { dst: o.path.clone(), uid: o.uid, gid: o.gid }));
    ops
}

/// The overlayfs mount options. `userxattr` because we are not root outside:
/// the kernel refuses trusted.* xattrs in a user namespace.
pub(crate) fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    format!("lowerdir={},upperdir={},workdir={},userxattr", lowers.join(":"), upper.display(), work.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    #[test]
    fn the_root_comes_first_and_caller_mounts_last() {
        let mut spec = Spec::new(
            Root::Overlay { lowers: vec!["/b/top".into(), "/b/base".into()], upper: Upper::Tmpfs { size: 1 << 20 } },
            vec!["true".into()],
        );
        spec.mounts.push(Mount::Bind { src: "/src".into(), dst: "/tmp/src".into(), access: Access::ReadOnly });
        let ops = plan(&spec);
        assert_eq!(ops[0], MountOp::UpperTmpfs { size: 1 << 20 });
        assert_eq!(
            ops[1],
            MountOp::Overlay {
                lowers: vec!["/oldroot/b/top".into(), "/oldroot/b/base".into()],
                upper: "/upperfs/upper".into(),
                work: "/upperfs/work".into()
            }
        );
        let proc = ops.iter().position(|o| *o == MountOp::Proc).unwrap();
        let tmp = ops.iter().position(|o| *o == MountOp::StickyTmpfs { dst: "/tmp".into(), size: 1 << 20 }).unwrap();
        assert!(proc < tmp);
        assert_eq!(
            ops.last(),
            Some(&MountOp::Bind { src: "/oldroot/src".into(), dst: "/tmp/src".into(), access: Access::ReadOnly })
        );
    }

    #[test]
    fn tmp_and_shm_are_sized_by_the_spec_or_else_by_the_upper() {
        let mut spec = Spec::new(
            Root::Overlay { lowers: vec!["/b".into()], upper: Upper::Tmpfs { size: 64 << 20 } },
            vec!["true".into()],
        );
        spec.mounts.push(Mount::Tmpfs { dst: "/scratch".into(), size: None });
        let ops = plan(&spec);
        assert!(ops.contains(&MountOp::StickyTmpfs { dst: "/tmp".into(), size: 64 << 20 }));
        assert!(ops.contains(&MountOp::StickyTmpfs { dst: "/dev/shm".into(), size: 64 << 20 }));
        assert!(ops.contains(&MountOp::Tmpfs { dst: "/scratch".into(), size: 64 << 20 }));
        spec.tmp_size = Some(8 << 20);
        spec.shm_size = Some(4 << 20);
        let ops = plan(&spec);
        assert!(ops.contains(&MountOp::StickyTmpfs { dst: "/tmp".into(), size: 8 << 20 }));
        assert!(ops.contains(&MountOp::StickyTmpfs { dst: "/dev/shm".into(), size: 4 << 20 }));
        let on_disk = Spec::new(Root::Dir { path: "/r".into() }, vec!["true".into()]);
        let ops = plan(&on_disk);
        assert!(ops.contains(&MountOp::StickyTmpfs { dst: "/tmp".into(), size: crate::spec::DEFAULT_TMP_SIZE }));
    }

    #[test]
    fn overlay_options_name_every_layer_with_userxattr() {
        let o = overlay_options(&["/a".into(), "/b".into()], Path::new("/u"), Path::new("/w"));
        assert_eq!(o, "lowerdir=/a:/b,upperdir=/u,workdir=/w,userxattr");
    }
}
