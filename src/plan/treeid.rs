//! Tree-ids: the git tree object id of the directory holding a PKGBUILD.
//!
//! For a git source it is git's own answer (`git rev-parse <commit>:<subtree>`).
//! For a plain directory it is the id git would give the same files, computed
//! here with gix-object's tree encoding and object hashing (SHA-1), so that a
//! checkout and its commit agree. The rules are git's: regular files are
//! blobs with mode 100644, or 100755 when the owner may execute them;
//! symlinks are blobs of their target (120000); directories are trees, and
//! directories with no files in them anywhere are left out, as git cannot
//! track them. Entries named `.git` are skipped at every level. Nothing else
//! is ignored: `.gitignore` is not read, so build leftovers in a path source
//! (`src/`, `pkg/`, package files) change its tree-id. Other file types
//! (sockets, fifos, devices) are an error.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gix_object::bstr::BString;
use gix_object::tree::{Entry, EntryKind};
use gix_object::WriteTo;

use crate::ids::TreeId;

/// A tree-id that could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeIdError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file git cannot store.
    #[error("{} is neither a file, a symlink nor a directory; git cannot store it", .0.display())]
    FileType(PathBuf),
    /// git could not name the tree (for example: no such subtree).
    #[error("cannot find the tree {rev}")]
    Git {
        /// The revision asked for.
        rev: String,
        /// Why.
        #[source]
        source: crate::sync::SyncError,
    },
    /// The subtree names a file, not a directory.
    #[error("{rev} is not a directory")]
    NotATree {
        /// The revision asked for.
        rev: String,
    },
    /// Hashing failed (gix refuses, for example, a SHA-1 collision attack).
    #[error("cannot hash {}", path.display())]
    Hash {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: gix_error::Error,
    },
}

/// The tree-id of a plain directory, as `git add -A && git write-tree`
/// would compute it in a copy of it.
pub fn of_dir(dir: &Path) -> Result<TreeId, TreeIdError> {
    let oid = tree_of(dir)?.unwrap_or_else(|| gix_hash::ObjectId::empty_tree(gix_hash::Kind::Sha1));
    Ok(TreeId::from_bytes(oid.as_bytes()).expect("a SHA-1 object id has 20 bytes"))
}

/// The tree-id of `subtree` (the root when `None`) in `commit` of the bare
/// repository `repo`: git's own answer.
pub fn of_git(repo: &Path, commit: &str, subtree: Option<&Path>) -> Result<TreeId, TreeIdError> {
    // `<commit>:<path>` takes everything after the colon as the path, so
    // that the object is checked to be a tree in a second step.
    let rev = match subtree {
        Some(s) => format!("{commit}:{}", s.display()),
        None => commit.to_owned(),
    };
    let rev_parse = |r: &str| {
        crate::sync::git(Some(repo), ["rev-parse", "--verify", "--quiet", r])
            .map_err(|source| TreeIdError::Git { rev: rev.clone(), source })
    };
    let oid = rev_parse(&rev)?;
    let tree = rev_parse(&format!("{oid}^{{tree}}"))?;
    if subtree.is_some() && tree != oid {
        return Err(TreeIdError::NotATree { rev });
    }
    tree.parse().map_err(|_| TreeIdError::NotATree { rev })
}

/// The tree object id of `dir`, or `None` when it holds no file at all.
fn tree_of(dir: &Path) -> Result<Option<gix_hash::ObjectId>, TreeIdError> {
    let io = |source| TreeIdError::Io { path: dir.to_owned(), source };
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io)? {
        let item = item.map_err(io)?;
        let name = item.file_name();
        if name == ".git" {
            continue;
        }
        let path = item.path();
        let io = |source| TreeIdError::Io { path: path.clone(), source };
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let ft = meta.file_type();
        let (kind, oid) = if ft.is_dir() {
            match tree_of(&path)? {
                Some(oid) => (EntryKind::Tree, oid),
                None => continue,
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io)?;
            (EntryKind::Link, hash(&path, gix_object::Kind::Blob, target.as_os_str().as_bytes())?)
        } else if ft.is_file() {
            let data = std::fs::read(&path).map_err(io)?;
            // git looks at the owner's execute bit only.
            let kind = if meta.permissions().mode() & 0o100 != 0 { EntryKind::BlobExecutable } else { EntryKind::Blob };
            (kind, hash(&path, gix_object::Kind::Blob, &data)?)
        } else {
            return Err(TreeIdError::FileType(path));
        };
        entries.push(Entry { mode: kind.into(), filename: BString::from(name.as_bytes()), oid });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    // git's order: by name, with trees compared as if their name ended in '/'.
    entries.sort();
    let tree = gix_object::Tree { entries };
    let mut buf = Vec::new();
    tree.write_to(&mut buf).map_err(|source| TreeIdError::Io { path: dir.to_owned(), source })?;
    hash(dir, gix_object::Kind::Tree, &buf).map(Some)
}

fn hash(path: &Path, kind: gix_object::Kind, data: &[u8]) -> Result<gix_hash::ObjectId, TreeIdError> {
    gix_object::compute_hash(gix_hash::Kind::Sha1, kind, data)
        .map_err(|source| TreeIdError::Hash { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.fileMode=true"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_directory_hashes_like_git_write_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("PKGBUILD"), "pkgname=x\n").unwrap();
        std::fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        std::fs::write(d.join("sub/deeper/a b.patch"), "").unwrap();
        std::fs::write(d.join("sub.txt"), "sorts before sub/ in git").unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        std::os::unix::fs::symlink("sub/deeper", d.join("link")).unwrap();
        git(d, &["init", "-q"]);
        git(d, &["add", "-A"]);
        let expected = git(d, &["write-tree"]);
        assert_eq!(of_dir(d).unwrap().to_string(), expected);
    }

    #[test]
    fn an_empty_directory_is_the_empty_tree() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(of_dir(t.path()).unwrap().to_string(), "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
    }
}
