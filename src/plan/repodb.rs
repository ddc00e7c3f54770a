//! Repository databases as dependency providers: the base's sync
//! repositories (its pacman.conf and `var/lib/pacman/sync/<repo>.db`) and
//! pkgcell's own published repository (`<publish>/<arch>/<name>.db`).
//!
//! A database is a tar archive (plain, gzip or zstd, as repo-add writes it)
//! of `<name>-<version>/desc` entries (alpm-repo-db(7)). Only the fields
//! planning and fetching need are read: name, version, provides, depends,
//! file name and SHA-256. Nothing here downloads: the files are fetched by
//! [`crate::fetch`] and installed by [`crate::build`].

use std::io::Read;
use std::path::{Path, PathBuf};

use super::deps::{Origin, PackageFile, Provider, parse_desc};

/// A database could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoDbError {
    /// The file could not be read.
    #[error("cannot read the repository database {}", path.display())]
    Io {
        /// The database.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is no tar archive in a compression we read.
    #[error("cannot read the repository database {}: {message}", path.display())]
    Format {
        /// The database.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Decompressing it failed part way.
    #[error("cannot read the repository database {}: {compression}", path.display())]
    Decompress {
        /// The database.
        path: PathBuf,
        /// "gzip" or "zstd".
        compression: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its tar archive is damaged.
    #[error("cannot read the repository database {}", path.display())]
    Tar {
        /// The database.
        path: PathBuf,
        /// tar's error.
        #[source]
        source: std::io::Error,
    },
}

/// One sync repository of the base, in pacman.conf order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRepo {
    /// Its name (`[extra]`).
    pub name: String,
    /// Its `Server` URLs with `$repo` and `$arch` filled in.
    pub servers: Vec<String>,
}

/// The sync repositories named in the base's `/etc/pacman.conf` (not
/// `[options]`, not pkgcell's own `[pkgcell]`), with their servers.
/// `Include` files are read inside the base root, as pacman in the base
/// would read them.
pub fn sync_repos(base: &Path, arch: &str, skip: &str) -> Vec<SyncRepo> {
    let Ok(text) = std::fs::read_to_string(base.join("etc/pacman.conf")) else { return Vec::new() };
    let mut repos: Vec<SyncRepo> = Vec::new();
    scan(base, &text, arch, skip, &mut repos, 0);
    repos
}

fn scan(base: &Path, text: &str, arch: &str, skip: &str, repos: &mut Vec<SyncRepo>, depth: u32) {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if name != "options" && name != skip {
                repos.push(SyncRepo { name: name.to_owned(), servers: Vec::new() });
            } else {
                // Servers below belong to no sync repository.
                repos.push(SyncRepo { name: String::new(), servers: Vec::new() });
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        match key.trim() {
            "Server" => {
                if let Some(r) = repos.last_mut()
                    && !r.name.is_empty()
                {
                    let url = value.replace("$repo", &r.name).replace("$arch", arch);
                    r.servers.push(url.trim_end_matches('/').to_owned());
                }
            }
            "Include" if depth < 4 => {
                let inner = base.join(value.trim_start_matches('/'));
                if let Ok(t) = std::fs::read_to_string(inner) {
                    // An included mirror list has no sections of its own.
                    let mut sub = Vec::new();
                    if let Some(r) = repos.last() {
                        sub.push(r.clone());
                    }
                    scan(base, &t, arch, skip, &mut sub, depth + 1);
                    if let (Some(r), Some(s)) = (repos.last_mut(), sub.into_iter().next()) {
                        *r = s;
                    }
                }
            }
            _ => {}
        }
    }
    repos.retain(|r| !r.name.is_empty());
}

/// The packages of the base's sync repositories as providers
/// ([`Origin::Sync`] with the repository's index in `repos`), from the
/// databases pacman synced into the base. A repository without a synced
/// database provides nothing (with a warning).
pub fn read_sync(base: &Path, repos: &[SyncRepo]) -> Result<Vec<Provider>, RepoDbError> {
    let mut out = Vec::new();
    for (i, r) in repos.iter().enumerate() {
        let db = base.join("var/lib/pacman/sync").join(format!("{}.db", r.name));
        if !db.exists() {
            tracing::warn!(repo = %r.name, path = %db.display(), "the base has no synced database for this repository; it provides nothing");
            continue;
        }
        out.extend(read_db(&db, &r.name, Origin::Sync(i))?);
    }
    Ok(out)
}

/// The packages of pkgcell's published repository `<dir>/<name>.db` as
/// providers ([`Origin::Repo`]); none when it was never published.
pub fn read_own(dir: &Path, name: &str) -> Result<Vec<Provider>, RepoDbError> {
    let db = dir.join(format!("{name}.db"));
    if !db.exists() {
        return Ok(Vec::new());
    }
    read_db(&db, name, Origin::Repo)
}

/// Every package of the database at `path`, with `origin`; entries without
/// a file name or SHA-256 cannot be fetched and are skipped with a warning.
pub fn read_db(path: &Path, repo: &str, origin: Origin) -> Result<Vec<Provider>, RepoDbError> {
    let data = std::fs::read(path).map_err(|source| RepoDbError::Io { path: path.to_owned(), source })?;
    let decompress = |compression| move |source| RepoDbError::Decompress { path: path.to_owned(), compression, source };
    let damaged = |source| RepoDbError::Tar { path: path.to_owned(), source };
    let plain: Vec<u8> = match data.get(..4) {
        Some([0x1f, 0x8b, ..]) => {
            let mut v = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut v).map_err(decompress("gzip"))?;
            v
        }
        Some([0x28, 0xb5, 0x2f, 0xfd]) => zstd::decode_all(&data[..]).map_err(decompress("zstd"))?,
        _ if data.len() >= 262 && &data[257..262] == b"ustar" => data,
        _ if data.is_empty() => return Ok(Vec::new()),
        _ => return Err(RepoDbError::Format { path: path.to_owned(), message: "not a tar archive (plain, gzip or zstd)".into() }),
    };
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(&plain[..]);
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let name = entry.path().map_err(damaged)?.to_string_lossy().into_owned();
        if !name.ends_with("/desc") {
            continue;
        }
        let mut text = String::new();
        if entry.read_to_string(&mut text).is_err() {
            tracing::warn!(db = %path.display(), entry = name, "skipping an entry that is not text");
            continue;
        }
        let Some((mut p, file)) = parse_desc(&text) else {
            tracing::warn!(db = %path.display(), entry = name, "skipping an entry without a valid name and version");
            continue;
        };
        match file {
            Some((filename, sha256)) => {
                p.origin = origin;
                p.file = Some(PackageFile { repo: repo.to_owned(), filename, sha256 });
                out.push(p);
            }
            None => tracing::warn!(db = %path.display(), entry = name, "skipping an entry without %FILENAME% and %SHA256SUM%"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, text) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn gzip_zstd_and_plain_databases_are_read() {
        let desc = "%FILENAME%\ncm-3.1-1-x86_64.pkg.tar.zst\n\n%NAME%\ncm\n\n%VERSION%\n3.1-1\n\n\
                    %SHA256SUM%\nABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n\n%DEPENDS%\nlibx>=2\n\n%PROVIDES%\ncmake-ish=3\n";
        let tar = db_with(&[("cm-3.1-1/desc", desc), ("nofile-1-1/desc", "%NAME%\nnofile\n%VERSION%\n1-1\n")]);
        let d = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        for (name, bytes) in [("p.db", tar.clone()), ("g.db", gz.finish().unwrap()), ("z.db", zstd::encode_all(&tar[..], 3).unwrap())] {
            let path = d.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let ps = read_db(&path, "extra", Origin::Sync(0)).unwrap();
            assert_eq!(ps.len(), 1, "{name}: the entry without a file is skipped");
            let p = &ps[0];
            assert_eq!((p.name.as_ref(), p.version.to_string().as_str()), ("cm", "3.1-1"));
            assert_eq!(p.file.as_ref().unwrap().sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
            assert_eq!(p.depends.len(), 1);
            assert_eq!(p.origin, Origin::Sync(0));
        }
        std::fs::write(d.path().join("bad.db"), b"garbage").unwrap();
        assert!(matches!(read_db(&d.path().join("bad.db"), "x", Origin::Repo), Err(RepoDbError::Format { .. })));
        // Cut short: the decompressor's error is kept as the cause.
        let gz = std::fs::read(d.path().join("g.db")).unwrap();
        std::fs::write(d.path().join("cut.db"), &gz[..gz.len() / 2]).unwrap();
        let e = read_db(&d.path().join("cut.db"), "x", Origin::Repo).unwrap_err();
        assert!(matches!(&e, RepoDbError::Decompress { compression: "gzip", .. }), "{e:?}");
        let chain = crate::error::error_chain(&e);
        assert!(chain.starts_with(&format!("cannot read the repository database {}: gzip: ", d.path().join("cut.db").display())), "{chain}");
    }

    #[test]
    fn sync_repos_follow_pacman_conf_order_and_skip_options_and_pkgcell() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/pacman.d")).unwrap();
        std::fs::write(d.path().join("etc/pacman.d/mirrorlist"), "# m\nServer = https://m.example/$repo/os/$arch\n").unwrap();
        std::fs::write(
            d.path().join("etc/pacman.conf"),
            "[options]\nArchitecture = auto\n#[commented]\n[mine]\nServer = file:///srv/mine/\n\
             [core]\nInclude = /etc/pacman.d/mirrorlist\n[pkgcell]\nServer = file:///pkgcell-repo\n",
        )
        .unwrap();
        let repos = sync_repos(d.path(), "x86_64", "pkgcell");
        assert_eq!(
            repos,
            [
                SyncRepo { name: "mine".into(), servers: vec!["file:///srv/mine".into()] },
                SyncRepo { name: "core".into(), servers: vec!["https://m.example/core/os/x86_64".into()] },
            ]
        );
    }
}
