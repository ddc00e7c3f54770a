//! Shared typed ids: [`TreeId`], [`DepHash`], [`PkgId`], [`Blake3`], [`BaseId`],
//! [`RepoName`].
//!
//! Every stage names PKGBUILD trees, dependency sets, builds and stored files
//! with these types instead of strings. Each has a private inner value, a
//! validating [`FromStr`], a [`Display`] that `FromStr` reads back, and serde
//! through that string form. This module imports no stage.

use std::fmt::{self, Display};
use std::str::FromStr;

use alpm_types::Name;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A repository name: what pacman.conf calls `[NAME]` and the prefix of
/// the db's file names, checked where it enters (config, command line, db
/// path).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RepoName(String);

/// A repository name that cannot be used in file names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("repository name {name:?} is invalid: use letters, digits, '-', '_', '.', '@', '+' and no leading '.'")]
pub struct InvalidRepoName {
    /// The name given.
    pub name: String,
}

impl RepoName {
    /// Validates a repository name: it becomes part of file names, so no
    /// `/`, no leading `.` and nothing a shell or URL would mangle.
    ///
    /// ```
    /// use pkgcell::publish::RepoName;
    /// assert!(RepoName::new("myrepo").is_ok());
    /// assert!(RepoName::new("../x").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, InvalidRepoName> {
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
        if ok { Ok(RepoName(name.to_owned())) } else { Err(InvalidRepoName { name: name.to_owned() }) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id that could not be read from its string form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not lowercase hex of an accepted length.
    #[error("{what} {value:?} is not valid: expected {expected}")]
    Hex {
        /// Which id.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A pkgid without its three `-`-separated parts.
    #[error("pkgid {0:?} is not valid: expected <pkgbase>-<tree-id>-<dephash>")]
    PkgIdShape(String),
    /// The pkgbase part of a pkgid is not an alpm package name.
    #[error("pkgid {value:?} has an invalid pkgbase")]
    PkgIdName {
        /// The rejected pkgid.
        value: String,
        /// Why the name was rejected.
        #[source]
        source: alpm_types::Error,
    },
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Lowercase hex only: ids have exactly one spelling, so that a pkgid
/// printed and read back names the same store entry.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Implements serde for a type through its `Display`/`FromStr` pair.
macro_rules! serde_via_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The git tree object id of a PKGBUILD's directory: SHA-1 (20 bytes) or,
/// in SHA-256 repositories, 32 bytes. Shown as lowercase hex, as `git
/// rev-parse HEAD:<dir>` prints it.
///
/// ```
/// use pkgcell::ids::TreeId;
/// let id: TreeId = "4b825dc642cb6eb9a060e54bf8d69288fbee4904".parse().unwrap();
/// assert_eq!(id.to_string(), "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
/// assert_eq!(id.short(), "4b825dc642cb");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeId(TreeBytes);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TreeBytes {
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

impl TreeId {
    /// A tree id from its raw bytes (20 or 32 of them).
    pub fn from_bytes(bytes: &[u8]) -> Option<TreeId> {
        match bytes.len() {
            20 => Some(TreeId(TreeBytes::Sha1(bytes.try_into().ok()?))),
            32 => Some(TreeId(TreeBytes::Sha256(bytes.try_into().ok()?))),
            _ => None,
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            TreeBytes::Sha1(b) => b,
            TreeBytes::Sha256(b) => b,
        }
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> String {
        to_hex(&self.as_bytes()[..6])
    }
}

impl Display for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(self.as_bytes()))
    }
}

impl FromStr for TreeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex(s).and_then(|b| TreeId::from_bytes(&b)).ok_or_else(|| IdError::Hex {
            what: "tree-id",
            value: s.to_owned(),
            expected: "40 or 64 lowercase hex digits",
        })
    }
}
serde_via_string!(TreeId);

/// The hash of the dependency versions a build would install: BLAKE3 of a
/// canonical list, cut to 16 bytes (32 hex digits), which keeps pkgids short
/// while collisions stay out of reach.
///
/// ```
/// use pkgcell::ids::DepHash;
/// let h = DepHash::of(b"");
/// assert_eq!(h.to_string().len(), 32);
/// assert_eq!(h.to_string().parse::<DepHash>().unwrap(), h);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DepHash([u8; 16]);

impl DepHash {
    /// The dephash of a canonical dependency list.
    pub fn of(canonical: &[u8]) -> DepHash {
        let full = blake3::hash(canonical);
        let mut b = [0; 16];
        b.copy_from_slice(&full.as_bytes()[..16]);
        DepHash(b)
    }

    /// The first 12 hex digits.
    pub fn short(&self) -> String {
        to_hex(&self.0[..6])
    }
}

impl Display for DepHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl FromStr for DepHash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex(s)
            .and_then(|b| b.try_into().ok())
            .map(DepHash)
            .ok_or_else(|| IdError::Hex {
                what: "dephash",
                value: s.to_owned(),
                expected: "32 lowercase hex digits",
            })
    }
}
serde_via_string!(DepHash);

/// A BLAKE3 hash (32 bytes), naming stored files by content.
///
/// ```
/// use pkgcell::ids::Blake3;
/// let h = Blake3::of(b"abc");
/// assert_eq!(h.to_string(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blake3([u8; 32]);

impl Blake3 {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Blake3 {
        Blake3(*blake3::hash(data).as_bytes())
    }

    /// A hash from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Blake3 {
        Blake3(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Display for Blake3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl FromStr for Blake3 {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex(s)
            .and_then(|b| b.try_into().ok())
            .map(Blake3)
            .ok_or_else(|| IdError::Hex {
                what: "blake3 hash",
                value: s.to_owned(),
                expected: "64 lowercase hex digits",
            })
    }
}
serde_via_string!(Blake3);

/// The id of a base chroot: BLAKE3 (first 16 bytes, 32 hex digits) of what
/// is in it: its source, the packages installed with their versions, and
/// the version of pkgcell's preparation. Bases live in
/// `$PKGCELL_HOME/bases/<id>/`.
///
/// ```
/// use pkgcell::ids::BaseId;
/// let id = BaseId::of(b"source tarball ...");
/// assert_eq!(id.to_string().len(), 32);
/// assert_eq!(id.to_string().parse::<BaseId>().unwrap(), id);
/// assert!("nothex".parse::<BaseId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BaseId([u8; 16]);

impl BaseId {
    /// The base id of a canonical description of a base.
    pub fn of(canonical: &[u8]) -> BaseId {
        let full = blake3::hash(canonical);
        let mut b = [0; 16];
        b.copy_from_slice(&full.as_bytes()[..16]);
        BaseId(b)
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> String {
        to_hex(&self.0[..6])
    }
}

impl Display for BaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl FromStr for BaseId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex(s)
            .and_then(|b| b.try_into().ok())
            .map(BaseId)
            .ok_or_else(|| IdError::Hex {
                what: "base id",
                value: s.to_owned(),
                expected: "32 lowercase hex digits",
            })
    }
}
serde_via_string!(BaseId);

/// The id of one build: `<pkgbase>-<tree-id>-<dephash>`. Read from the
/// right, since a pkgbase may itself contain `-` but the two hashes do not.
///
/// ```
/// use pkgcell::ids::PkgId;
/// let s = "my-pkg-4b825dc642cb6eb9a060e54bf8d69288fbee4904-0123456789abcdef0123456789abcdef";
/// let id: PkgId = s.parse().unwrap();
/// assert_eq!(id.pkgbase().as_ref(), "my-pkg");
/// assert_eq!(id.to_string(), s);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PkgId {
    pkgbase: Name,
    tree: TreeId,
    deps: DepHash,
}

impl PkgId {
    /// The pkgid of a pkgbase at a tree with a dependency set.
    pub fn new(pkgbase: Name, tree: TreeId, deps: DepHash) -> PkgId {
        PkgId { pkgbase, tree, deps }
    }

    /// The pkgbase.
    pub fn pkgbase(&self) -> &Name {
        &self.pkgbase
    }

    /// The tree-id.
    pub fn tree_id(&self) -> TreeId {
        self.tree
    }

    /// The dephash.
    pub fn dephash(&self) -> DepHash {
        self.deps
    }

    /// `<pkgbase>-<tree-id short>-<dephash short>`, for tables meant for people.
    pub fn short(&self) -> String {
        format!("{}-{}-{}", self.pkgbase, self.tree.short(), self.deps.short())
    }
}

impl Display for PkgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.pkgbase, self.tree, self.deps)
    }
}

impl FromStr for PkgId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.rsplitn(3, '-');
        let (Some(deps), Some(tree), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IdError::PkgIdShape(s.to_owned()));
        };
        let pkgbase = Name::new(name)
            .map_err(|source| IdError::PkgIdName { value: s.to_owned(), source })?;
        Ok(PkgId { pkgbase, tree: tree.parse()?, deps: deps.parse()? })
    }
}
serde_via_string!(PkgId);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SHA1: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    const SHA256: &str = "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321";
    const DEP: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tree_ids_accept_sha1_and_sha256_hex_only() {
        for good in [SHA1, SHA256] {
            assert_eq!(good.parse::<TreeId>().unwrap().to_string(), good);
        }
        for bad in ["", "4b82", &SHA1.to_uppercase(), &format!("{SHA1}00"), "zz25dc642cb6eb9a060e54bf8d69288fbee4904a"] {
            assert!(
                matches!(bad.parse::<TreeId>(), Err(IdError::Hex { what: "tree-id", .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn base_ids_are_32_hex_digits() {
        assert_eq!(DEP.parse::<BaseId>().unwrap().to_string(), DEP);
        for bad in ["", SHA1, SHA256, &DEP.to_uppercase(), "0123456789abcdef0123456789abcdeg"] {
            assert!(
                matches!(bad.parse::<BaseId>(), Err(IdError::Hex { what: "base id", .. })),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(serde_json::to_string(&DEP.parse::<BaseId>().unwrap()).unwrap(), format!("\"{DEP}\""));
    }

    #[test]
    fn dephash_and_blake3_have_fixed_lengths() {
        assert!(DEP.parse::<DepHash>().is_ok());
        assert!(SHA1.parse::<DepHash>().is_err());
        assert!(SHA256.parse::<Blake3>().is_ok());
        assert!(DEP.parse::<Blake3>().is_err());
    }

    #[test]
    fn pkgids_are_read_from_the_right() {
        let s = format!("foo-bar-git-{SHA1}-{DEP}");
        let id: PkgId = s.parse().unwrap();
        assert_eq!(id.pkgbase().as_ref(), "foo-bar-git");
        assert_eq!(id.tree_id().to_string(), SHA1);
        assert_eq!(id.dephash().to_string(), DEP);
        assert_eq!(id.short(), "foo-bar-git-4b825dc642cb-0123456789ab");
    }

    #[test]
    fn bad_pkgids_say_what_is_wrong() {
        assert!(matches!("foo".parse::<PkgId>(), Err(IdError::PkgIdShape(s)) if s == "foo"));
        assert!(matches!(format!("-x-{SHA1}-{DEP}").parse::<PkgId>(), Err(IdError::PkgIdName { .. })));
        assert!(matches!(format!("foo-{SHA1}-{SHA1}").parse::<PkgId>(), Err(IdError::Hex { what: "dephash", .. })));
        assert!(matches!(format!("foo-{DEP}-{DEP}").parse::<PkgId>(), Err(IdError::Hex { what: "tree-id", .. })));
    }

    #[test]
    fn ids_serialize_as_their_string_form() {
        let id: PkgId = format!("foo-{SHA1}-{DEP}").parse().unwrap();
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, format!("\"foo-{SHA1}-{DEP}\""));
        assert_eq!(serde_json::from_str::<PkgId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<TreeId>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn pkgid_display_parses_back(
            name in "[a-z0-9@_+][a-z0-9@._+-]{0,30}",
            tree in prop::collection::vec(any::<u8>(), 20..=20),
            long in any::<bool>(),
            deps in any::<[u8; 16]>(),
        ) {
            let tree = if long { [tree.clone(), tree[..12].to_vec()].concat() } else { tree };
            let id = PkgId::new(Name::new(&name).unwrap(), TreeId::from_bytes(&tree).unwrap(), DepHash(deps));
            let back: PkgId = id.to_string().parse().unwrap();
            prop_assert_eq!(back, id);
        }

        #[test]
        fn base_id_display_parses_back(bytes in any::<[u8; 16]>()) {
            let id = BaseId(bytes);
            prop_assert_eq!(id.to_string().parse::<BaseId>().unwrap(), id);
        }

        #[test]
        fn blake3_display_parses_back(bytes in any::<[u8; 32]>()) {
            let h = Blake3::from_bytes(bytes);
            prop_assert_eq!(h.to_string().parse::<Blake3>().unwrap(), h);
        }
    }
}
