//! Errors of the publish stage: one enum for "this package file is bad",
//! one for everything else. Each names the file and, where we know it, what
//! to do about it.

use std::{io, path::PathBuf};

use crate::alpm_file::ArchiveError;

/// What is wrong with one package file (see [`PublishError::Package`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The file does not start with the zstd magic number.
    #[error("not a zstd-compressed package (only .pkg.tar.zst is supported)")]
    NotZstd,
    /// The archive or its `.PKGINFO` cannot be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A required `.PKGINFO` field is absent or empty.
    #[error(".PKGINFO has no `{0}` field")]
    MissingField(&'static str),
    /// A `.PKGINFO` field holds a value pacman would not accept.
    #[error(".PKGINFO field `{field}` has an invalid value {value:?}: {reason}")]
    InvalidField {
        /// The `.PKGINFO` key.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A name that goes into the database (the file name, an archive
    /// member) and that a line of a `desc` or `files` entry cannot carry:
    /// a newline there would inject fields.
    #[error("{what} {name:?} cannot go into a pacman database: {reason}")]
    UnsafeName {
        /// "file name" or "archive member".
        what: &'static str,
        /// The name, lossily decoded (printed escaped).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The detached signature next to the package is unusable.
    #[error("signature {path} is {reason}")]
    BadSignature {
        /// The `.sig` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Errors of the publish stage and of `pkgcell repo add/remove`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A file system operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being attempted, e.g. "reading".
        action: &'static str,
        /// The path it was attempted on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A package file given as input is unusable; nothing was written.
    #[error("package {path} cannot be published; nothing was written")]
    Package {
        /// The package file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: PackageError,
    },
    /// An input path does not exist or is neither a package nor a directory.
    #[error("input {path} is not a package file (*.pkg.tar.zst) or a directory of them")]
    NotAnInput {
        /// The path given.
        path: PathBuf,
    },
    /// The database path does not look like `PATH/NAME.db.tar.zst`.
    #[error("database path {path} must look like PATH/NAME.db.tar.zst")]
    BadDbPath {
        /// The path given.
        path: PathBuf,
    },
    /// The repository name cannot be used in file names.
    #[error("repository name {name:?} is invalid: use letters, digits, '-', '_', '.', '@', '+' and no leading '.'")]
    BadRepoName {
        /// The name given.
        name: String,
    },
    /// The architecture name cannot be used as a directory name.
    #[error("architecture {arch:?} is invalid: use letters, digits and '_'")]
    BadArch {
        /// The name given.
        arch: String,
    },
    /// An existing database could not be read; it was left as it is.
    #[error("existing database {path} is unreadable ({reason}); move it away to start a new one")]
    CorruptDb {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A package asked to be removed is not in the database.
    #[error("package {name:?} is not in {db}")]
    NotInDb {
        /// The package name.
        name: String,
        /// The database file.
        db: PathBuf,
    },
    /// Two inputs carry the same package name.
    #[error("{first} and {second} are both package {name:?}; give only one")]
    DuplicateInput {
        /// The package name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The package's architecture does not belong in this repository.
    #[error("package {path} is for architecture {pkg_arch}, not {repo_arch} (or any)")]
    WrongArch {
        /// The package file.
        path: PathBuf,
        /// The architecture in its `.PKGINFO`.
        pkg_arch: String,
        /// The repository's architecture.
        repo_arch: String,
    },
    /// The publish directory already holds another repository.
    #[error("{dir} already holds repository {other:?}; publish each repository to its own directory")]
    ForeignRepo {
        /// The architecture directory.
        dir: PathBuf,
        /// The other repository's name.
        other: String,
    },
    /// gpg could not be started or failed.
    #[error("gpg --detach-sign of {path} failed ({status}); check the key and GNUPGHOME: {stderr}")]
    Sign {
        /// The file being signed.
        path: PathBuf,
        /// gpg's exit status, or why it could not start.
        status: String,
        /// The tail of gpg's stderr.
        stderr: String,
    },
}

impl PublishError {
    /// Wraps an I/O error with the action and path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PublishError::Io { action, path, source }
    }
}

/// Result alias for the publish stage.
pub type Result<T, E = PublishError> = std::result::Result<T, E>;

impl From<crate::ids::InvalidRepoName> for PublishError {
    fn from(e: crate::ids::InvalidRepoName) -> Self {
        PublishError::BadRepoName { name: e.name }
    }
}
