//! A PKGBUILD's sources as its .SRCINFO lists them: the entries, their
//! checksums, and the names makepkg gives them.

use std::collections::{BTreeMap, BTreeSet};

/// A checksum algorithm of PKGBUILD(5), strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algo {
    /// `b2sums`.
    B2,
    /// `sha512sums`.
    Sha512,
    /// `sha384sums`.
    Sha384,
    /// `sha256sums`.
    Sha256,
    /// `sha224sums`.
    Sha224,
    /// `sha1sums`.
    Sha1,
    /// `md5sums`.
    Md5,
    /// `cksums` (CRC, not a hash: never used as a cache key alone if another is given).
    Ck,
}

impl Algo {
    pub(super) const ALL: [Algo; 8] = [Algo::B2, Algo::Sha512, Algo::Sha384, Algo::Sha256, Algo::Sha224, Algo::Sha1, Algo::Md5, Algo::Ck];

    /// The name used in PKGBUILDs (`sha256` of `sha256sums`).
    pub fn name(self) -> &'static str {
        match self {
            Algo::B2 => "b2",
            Algo::Sha512 => "sha512",
            Algo::Sha384 => "sha384",
            Algo::Sha256 => "sha256",
            Algo::Sha224 => "sha224",
            Algo::Sha1 => "sha1",
            Algo::Md5 => "md5",
            Algo::Ck => "ck",
        }
    }

    /// The command that computes it (coreutils).
    pub(super) fn command(self) -> &'static str {
        match self {
            Algo::B2 => "b2sum",
            Algo::Sha512 => "sha512sum",
            Algo::Sha384 => "sha384sum",
            Algo::Sha256 => "sha256sum",
            Algo::Sha224 => "sha224sum",
            Algo::Sha1 => "sha1sum",
            Algo::Md5 => "md5sum",
            Algo::Ck => "cksum",
        }
    }
}

/// What a source entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A file in the PKGBUILD's directory.
    Local,
    /// A file to download.
    File {
        /// The URL as curl takes it.
        url: String,
    },
    /// A git repository to mirror.
    Git {
        /// The repository URL (without `git+`, fragment or query).
        url: String,
    },
}

/// One entry of `source=()` with its checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The name makepkg looks for in SRCDEST.
    pub filename: String,
    /// What it is.
    pub kind: SourceKind,
    /// Its checksums, by algorithm (`SKIP` left out).
    pub sums: BTreeMap<Algo, String>,
}

/// The sources of a .SRCINFO for `arch`: the pkgbase section's `source`
/// and `source_<arch>` entries, each with its checksums (SRCINFO(5)).
pub fn sources_of(srcinfo: &str, arch: &str) -> Vec<SourceEntry> {
    let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in srcinfo.lines() {
        let line = line.trim();
        if line.starts_with("pkgname =") {
            break;
        }
        if let Some((k, v)) = line.split_once(" = ") {
            lists.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    let mut out = Vec::new();
    for suffix in [String::new(), format!("_{arch}")] {
        let Some(sources) = lists.get(&format!("source{suffix}")) else { continue };
        for (i, s) in sources.iter().enumerate() {
            let mut sums = BTreeMap::new();
            for a in Algo::ALL {
                if let Some(v) = lists.get(&format!("{}sums{suffix}", a.name())).and_then(|l| l.get(i))
                    && v != "SKIP"
                {
                    sums.insert(a, v.to_lowercase());
                }
            }
            out.push(parse_source(s, sums));
        }
    }
    out
}

/// One source entry, named as makepkg's `get_filename` names it.
pub(super) fn parse_source(entry: &str, sums: BTreeMap<Algo, String>) -> SourceEntry {
    let (name, url) = match entry.split_once("::") {
        Some((n, u)) => (Some(n.to_owned()), u),
        None => (None, entry),
    };
    let Some((proto, _)) = url.split_once("://") else {
        return SourceEntry { filename: name.unwrap_or_else(|| last_component(url)), kind: SourceKind::Local, sums };
    };
    let proto = proto.split('+').next().unwrap_or(proto);
    if proto == "git" {
        let bare = url.strip_prefix("git+").unwrap_or(url);
        let bare = bare.split('#').next().unwrap_or(bare);
        let bare = bare.split('?').next().unwrap_or(bare).to_owned();
        let filename = name.unwrap_or_else(|| {
            let f = last_component(&bare);
            f.strip_suffix(".git").map(str::to_owned).unwrap_or(f)
        });
        return SourceEntry { filename, kind: SourceKind::Git { url: bare }, sums };
    }
    SourceEntry { filename: name.unwrap_or_else(|| last_component(url)), kind: SourceKind::File { url: url.to_owned() }, sums }
}

fn last_component(s: &str) -> String {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s).to_owned()
}

/// The sources of a .SRCINFO for every architecture it names: `source`
/// and every `source_<arch>` (for a caller that does not know the
/// architecture a build used, and must not miss a source).
pub fn sources_of_every_arch(srcinfo: &str) -> Vec<SourceEntry> {
    let arches: BTreeSet<&str> = srcinfo
        .lines()
        .take_while(|l| !l.trim().starts_with("pkgname ="))
        .filter_map(|l| l.trim().split_once(" = ")?.0.strip_prefix("source_"))
        .collect();
    let mut out = sources_of(srcinfo, "");
    let general = out.len();
    for arch in arches {
        // sources_of lists the general entries first.
        out.extend(sources_of(srcinfo, arch).into_iter().skip(general));
    }
    out
}
