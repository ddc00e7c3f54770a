//! Dependency resolution: which package satisfies a `depends` entry, with
//! pacman's rules for versions (vercmp, from alpm-types) and `provides`.
//!
//! Providers come from the base's installed packages (its pacman local
//! database), from the PKGBUILDs of the config, from pkgcell's own
//! published repository and from the base's sync repositories (see
//! [`super::repodb`]). Precedence, tier by tier ([`resolve`]): installed in
//! the base (as `makepkg -s` does: nothing to install); a package file given
//! with `-I` (the user asked for exactly that file); a PKGBUILD of the
//! config (it is what the repository will hold next, so it wins over a
//! published copy); pkgcell's own repository (as a custom repository
//! listed first in a user's pacman.conf); the sync repositories in
//! pacman.conf order. Within a tier, a package of that name wins over one
//! that only provides it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use alpm_types::{FullVersion, Name, RelationOrSoname, Version, VersionComparison};

/// A package that can satisfy dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Its name.
    pub name: Name,
    /// Its version.
    pub version: FullVersion,
    /// What it provides besides its name.
    pub provides: Vec<RelationOrSoname>,
    /// Its run-time dependencies (installed along with it).
    pub depends: Vec<RelationOrSoname>,
    /// Where it comes from.
    pub origin: Origin,
    /// Its package file, for providers from a repository database.
    pub file: Option<PackageFile>,
}

/// The package file of a provider from a repository database, pinned by
/// the database's `%SHA256SUM%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// The repository (`[extra]`, or the published repository's name).
    pub repo: String,
    /// `%FILENAME%`.
    pub filename: String,
    /// `%SHA256SUM%`, lowercase hex.
    pub sha256: String,
}

/// Where a provider comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Installed in the base.
    Base,
    /// Built from the config's PKGBUILD with this index.
    Pkgbuild(usize),
    /// In pkgcell's own published repository.
    Repo,
    /// A package file given with `-I`, by its index.
    Local(usize),
    /// In the base's sync repository with this index (pacman.conf order).
    Sync(usize),
}

impl Origin {
    /// The precedence tier: lower wins (see the module docs).
    fn tier(self) -> usize {
        match self {
            Origin::Base => 0,
            Origin::Local(_) => 1,
            Origin::Pkgbuild(_) => 2,
            Origin::Repo => 3,
            Origin::Sync(i) => 4 + i,
        }
    }
}

/// The base's package database could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The local database directory is missing or unreadable.
    #[error("cannot read the base's package database {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The packages installed in the base: `<base>/var/lib/pacman/local/*/desc`.
///
/// Only %NAME%, %VERSION%, %PROVIDES% and %DEPENDS% are read. The alpm-db
/// crate parses whole desc files and refuses one whose other fields (a
/// packager without an e-mail address, say) do not validate; here such a
/// field must not stop the plan. Entries that cannot be read are skipped
/// with a warning.
pub fn read_base_db(base: &Path) -> Result<Vec<Provider>, DbError> {
    let dir = base.join("var/lib/pacman/local");
    let io = |source| DbError::Io { path: dir.clone(), source };
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).map_err(io)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let desc = e.path().join("desc");
        let Ok(text) = std::fs::read_to_string(&desc) else { continue };
        match parse_desc(&text) {
            Some((p, _)) => out.push(p),
            None => tracing::warn!(path = %desc.display(), "skipping a package database entry without a valid name and version"),
        }
    }
    Ok(out)
}

/// A `desc` file (local or sync database) as a provider with
/// [`Origin::Base`], and its `%FILENAME%` and `%SHA256SUM%` when both are there.
pub(crate) fn parse_desc(text: &str) -> Option<(Provider, Option<(String, String)>)> {
    let mut name = None;
    let mut filename = None;
    let mut sha256 = None;
    let mut version = None;
    let mut provides = Vec::new();
    let mut depends = Vec::new();
    for (section, line) in crate::alpm_file::desc_entries(text) {
        match section {
            "%NAME%" => name = Name::new(line).ok(),
            "%VERSION%" => version = FullVersion::from_str(line).ok(),
            "%FILENAME%" => filename = Some(line.to_owned()),
            "%SHA256SUM%" => sha256 = Some(line.to_ascii_lowercase()),
            "%PROVIDES%" | "%DEPENDS%" => match RelationOrSoname::from_str(line) {
                Ok(r) if section == "%PROVIDES%" => provides.push(r),
                Ok(r) => depends.push(r),
                Err(e) => tracing::warn!(entry = line, error = %e, "skipping an unreadable relation"),
            },
            _ => {}
        }
    }
    let p = Provider { name: name?, version: version?, provides, depends, origin: Origin::Base, file: None };
    // A file name that is not a plain name could send a download or an
    // install outside its directory.
    let file = match (filename, sha256) {
        (Some(f), Some(s)) if !f.contains('/') && !f.starts_with('.') && s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Some((f, s)),
        _ => None,
    };
    Some((p, file))
}

/// Whether `p` satisfies the dependency `dep`, by pacman's rules: its own
/// name and version, or one of its `provides`. A versioned dependency is
/// only satisfied by a provision that carries a version (`foo=1.2`).
pub fn satisfies(p: &Provider, dep: &RelationOrSoname) -> bool {
    match dep {
        RelationOrSoname::Relation(rel) => {
            let version_ok = |v: &Version| rel.version_requirement.as_ref().is_none_or(|r| r.is_satisfied_by(v));
            if p.name == rel.name && version_ok(&Version::from(&p.version)) {
                return true;
            }
            p.provides.iter().any(|prov| match prov {
                RelationOrSoname::Relation(pr) if pr.name == rel.name => {
                    match (&rel.version_requirement, &pr.version_requirement) {
                        (None, _) => true,
                        (Some(_), Some(pv)) if pv.comparison == VersionComparison::Equal => version_ok(&pv.version),
                        (Some(_), _) => false,
                    }
                }
                _ => false,
            })
        }
        // Sonames: by their written form; `libfoo.so` is met by `libfoo.so=1-64`.
        soname => {
            let want = soname.to_string();
            p.provides.iter().any(|prov| {
                let have = prov.to_string();
                have == want || have.strip_prefix(&want).is_some_and(|rest| rest.starts_with('='))
            })
        }
    }
}

/// The provider of `dep` among `providers`: the best tier (base, config
/// PKGBUILDs, own repository, sync repositories in order) that has one;
/// within it, a package of that name before one that provides it.
pub fn resolve<'a>(providers: &'a [Provider], dep: &RelationOrSoname) -> Option<&'a Provider> {
    let by_name = |p: &Provider| matches!(dep, RelationOrSoname::Relation(r) if r.name == p.name);
    providers
        .iter()
        .enumerate()
        .filter(|(_, p)| satisfies(p, dep))
        .min_by_key(|(i, p)| (p.origin.tier(), !by_name(p), *i))
        .map(|(_, p)| p)
}

/// [`resolve`] over an index of `providers` by the names they answer to:
/// a dependency is checked against its candidates only, not against every
/// provider (a distribution's worth of PKGBUILDs plus the sync repositories
/// is tens of thousands of providers, looked up for every dependency of
/// every entry).
#[derive(Debug)]
pub struct Resolver<'a> {
    providers: &'a [Provider],
    /// Key ([`dep_key`]) → indices into `providers`, ascending.
    by_key: HashMap<String, Vec<usize>>,
}

/// The name a dependency is looked up by: a relation's name, or a soname's
/// written form up to its first `=` (`libfoo.so=1-64` is found as
/// `libfoo.so`, so both `libfoo.so` and `libfoo.so=1-64` find it).
fn dep_key(dep: &RelationOrSoname) -> String {
    match dep {
        RelationOrSoname::Relation(r) => r.name.to_string(),
        s => {
            let s = s.to_string();
            s.split('=').next().unwrap_or_default().to_owned()
        }
    }
}

impl<'a> Resolver<'a> {
    /// Index `providers`.
    pub fn new(providers: &'a [Provider]) -> Resolver<'a> {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            // Every key under which `satisfies` could accept `p`: its name,
            // and each provide as a relation name and as written (sonames
            // are compared by their written form).
            let mut keys = vec![p.name.to_string()];
            for prov in &p.provides {
                keys.push(dep_key(prov));
                let written = prov.to_string();
                keys.push(written.split('=').next().unwrap_or_default().to_owned());
            }
            keys.sort();
            keys.dedup();
            for k in keys {
                by_key.entry(k).or_default().push(i);
            }
        }
        Resolver { providers, by_key }
    }

    /// The provider of `dep`: the same answer as [`resolve`].
    pub fn resolve(&self, dep: &RelationOrSoname) -> Option<&'a Provider> {
        let by_name = |p: &Provider| matches!(dep, RelationOrSoname::Relation(r) if r.name == p.name);
        self.by_key
            .get(&dep_key(dep))?
            .iter()
            .map(|&i| (i, &self.providers[i]))
            .filter(|(_, p)| satisfies(p, dep))
            .min_by_key(|(i, p)| (p.origin.tier(), !by_name(p), *i))
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexed_resolver_answers_as_the_scan_of_every_provider() {
        let ps = vec![
            prov("x-alt", "1-1", &["x=1", "libx.so=1-64"], Origin::Pkgbuild(1)),
            prov("x", "1-1", &["liby.so=2-64"], Origin::Pkgbuild(0)),
            prov("cm", "3-1", &[], Origin::Sync(1)),
            prov("cm", "2-1", &["libx.so"], Origin::Sync(0)),
            prov("cm-alt", "1-1", &["cm=9", "iface=2.0"], Origin::Sync(0)),
            prov("toolchain", "1-1", &["x=1", "plain"], Origin::Base),
            prov("cm", "0.5-1", &[], Origin::Pkgbuild(3)),
        ];
        let r = Resolver::new(&ps);
        for d in [
            "x", "x>1", "x=1", "x-alt", "cm", "cm>5", "cm<1", "iface", "iface>=1.5", "iface>2.0", "plain", "plain>=1",
            "libx.so", "libx.so=1-64", "liby.so", "liby.so=2-64", "libz.so", "nothing",
        ] {
            let d = dep(d);
            let want = resolve(&ps, &d).map(std::ptr::from_ref);
            assert_eq!(r.resolve(&d).map(std::ptr::from_ref), want, "{d}");
        }
    }

    fn prov(name: &str, version: &str, provides: &[&str], origin: Origin) -> Provider {
        Provider {
            name: Name::new(name).unwrap(),
            version: version.parse().unwrap(),
            provides: provides.iter().map(|p| p.parse().unwrap()).collect(),
            depends: Vec::new(),
            origin,
            file: None,
        }
    }

    fn dep(s: &str) -> RelationOrSoname {
        s.parse().unwrap()
    }

    #[test]
    fn versions_compare_with_vercmp() {
        let p = prov("foo", "1:2.10-1", &[], Origin::Base);
        for yes in ["foo", "foo>=1:2.9", "foo>2.11", "foo=1:2.10", "foo<2:0"] {
            assert!(satisfies(&p, &dep(yes)), "{yes}");
        }
        for no in ["foo<1:2.10", "foo=2.10", "bar", "foo>=1:2.10.1"] {
            assert!(!satisfies(&p, &dep(no)), "{no}");
        }
        let q = prov("bar", "1.0rc1-1", &[], Origin::Base);
        assert!(satisfies(&q, &dep("bar<1.0")), "rc sorts before the release");
    }

    #[test]
    fn provides_need_a_version_for_versioned_deps() {
        let p = prov("impl", "5-1", &["iface=2.0", "plain"], Origin::Pkgbuild(0));
        assert!(satisfies(&p, &dep("iface")));
        assert!(satisfies(&p, &dep("iface>=1.5")));
        assert!(!satisfies(&p, &dep("iface>2.0")));
        assert!(satisfies(&p, &dep("iface>2")), "vercmp: 2.0 is newer than 2");
        assert!(satisfies(&p, &dep("plain")));
        assert!(!satisfies(&p, &dep("plain>=1")));
    }

    #[test]
    fn the_base_wins_then_names_then_provides() {
        let ps = vec![
            prov("x-alt", "1-1", &["x=1"], Origin::Pkgbuild(1)),
            prov("x", "1-1", &[], Origin::Pkgbuild(0)),
        ];
        assert_eq!(resolve(&ps, &dep("x")).unwrap().name.as_ref(), "x");
        let mut with_base = ps.clone();
        with_base.push(prov("toolchain", "1-1", &["x=1"], Origin::Base));
        assert_eq!(resolve(&with_base, &dep("x")).unwrap().origin, Origin::Base);
        assert!(resolve(&ps, &dep("x>1")).is_none());
    }

    #[test]
    fn pkgbuilds_win_over_the_own_repo_which_wins_over_sync_repos_in_order() {
        let mut ps = vec![
            prov("cm", "3-1", &[], Origin::Sync(1)),
            prov("cm", "2-1", &[], Origin::Sync(0)),
            prov("cm-alt", "1-1", &["cm=9"], Origin::Sync(0)),
        ];
        let pick = |ps: &[Provider]| resolve(ps, &dep("cm")).map(|p| (p.version.to_string(), p.origin));
        assert_eq!(pick(&ps), Some(("2-1".into(), Origin::Sync(0))), "the first sync repo, by name");
        assert_eq!(resolve(&ps, &dep("cm>5")).unwrap().name.as_ref(), "cm-alt");
        ps.push(prov("cm", "1-1", &[], Origin::Repo));
        assert_eq!(pick(&ps), Some(("1-1".into(), Origin::Repo)));
        ps.push(prov("cm", "0.5-1", &[], Origin::Pkgbuild(3)));
        assert_eq!(pick(&ps), Some(("0.5-1".into(), Origin::Pkgbuild(3))));
        ps.push(prov("tool", "1-1", &["cm"], Origin::Base));
        assert_eq!(pick(&ps).unwrap().1, Origin::Base);
    }

    #[test]
    fn desc_files_are_read_leniently() {
        let p = parse_desc(
            "%NAME%\ndebian-toolchain\n\n%VERSION%\n12-1\n\n%PACKAGER%\nno email\n\n%PROVIDES%\nglibc=2.36\nmake=4.3\n\n",
        )
        .unwrap()
        .0;
        assert_eq!(p.name.as_ref(), "debian-toolchain");
        assert!(satisfies(&p, &dep("glibc>=2.17")));
        assert!(parse_desc("%NAME%\nx\n").is_none());
    }
}
