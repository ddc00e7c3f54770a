//! A sandbox's output streamed to its log file, with a cap.
//!
//! The sandbox writes into a pipe; a pump thread copies it to the log as it
//! comes, so pkgcell never holds a log in memory, however much a build
//! prints. Up to half the cap (the *head*) goes straight into the log, so a
//! killed pkgcell still leaves it. What follows goes into a side file
//! (`<log>.tail`) used as a ring of the other half: at the end it is
//! appended to the log, after a line saying how many bytes were cut.
//! pkgcell's memory for a log is one copy buffer, whatever the cap.

use std::fs::{self, File};
use std::io::{self, PipeWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::error::{IoPath, io_err};
use crate::ids::PkgId;

/// The bytes at the end of a log read back for its tail and for hints.
pub const WINDOW: u64 = 64 << 10;

const BUF: usize = 64 << 10;

/// A log being written by a pump thread.
#[derive(Debug)]
pub struct Pump {
    thread: JoinHandle<Result<Written, IoPath>>,
}

/// What a pump wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes the sandbox printed.
    pub printed: u64,
    /// Bytes of them left out of the log.
    pub cut: u64,
}

/// Where else a log goes as it comes, besides its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Echo {
    /// Nowhere: the log file only.
    #[default]
    Off,
    /// Also to pkgcell's stderr, whole (laptop mode shows the build, as
    /// makepkg and makechrootpkg do). A stderr that fails is given up on;
    /// the log goes on.
    Stderr,
}

/// Create `path` (and its directory), write `header`, and start a pump
/// that copies what is written into the returned pipe end to it, keeping
/// at most `limit` bytes of it, and to `echo`. The pump ends when every
/// copy of the write end is closed (the sandbox and everything in it are
/// gone).
pub fn start(path: &Path, header: &str, limit: u64, echo: Echo) -> Result<(PipeWriter, Pump), IoPath> {
    let dir = path.parent().expect("logs have a parent");
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut log = File::options().create(true).truncate(true).write(true).open(path).map_err(io_err("create", path))?;
    log.write_all(header.as_bytes()).map_err(io_err("write", path))?;
    let (reader, writer) = io::pipe().map_err(io_err("make a pipe for", path))?;
    let tail_path = tail_path(path);
    let path = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("log-pump".into())
        .spawn(move || pump(reader, log, &path, &tail_path, limit, echo))
        .map_err(io_err("start the log writer of", dir))?;
    Ok((writer, Pump { thread }))
}

impl Pump {
    /// Wait for the end of the output and finish the log.
    pub fn finish(self) -> Result<Written, IoPath> {
        match self.thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The side file of `log` that holds the ring of its tail.
pub fn tail_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_owned();
    name.push(".tail");
    log.with_file_name(name)
}

fn pump(mut input: impl Read, mut log: File, path: &Path, tail_path: &Path, limit: u64, echo: Echo) -> Result<Written, IoPath> {
    let mut echo = match echo {
        Echo::Off => None,
        Echo::Stderr => Some(io::stderr()),
    };
    let head_cap = limit / 2;
    let tail_cap = limit - head_cap;
    let mut buf = vec![0u8; BUF];
    let (mut printed, mut head) = (0u64, 0u64);
    let mut tail: Option<File> = None;
    let mut tail_written = 0u64;
    // The first write error; the pipe is drained all the same, so the
    // build never blocks on a full disk, and the error is returned at the end.
    let mut failed: Option<IoPath> = None;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoPath::new("read the output for", path, e)),
        };
        printed += n as u64;
        if let Some(e) = &mut echo
            && e.write_all(&buf[..n]).is_err()
        {
            echo = None;
        }
        if failed.is_some() {
            continue;
        }
        let mut chunk = &buf[..n];
        let to_head = (head_cap - head).min(chunk.len() as u64) as usize;
        if to_head > 0 {
            if let Err(e) = log.write_all(&chunk[..to_head]) {
                failed = Some(IoPath::new("write", path, e));
                continue;
            }
            head += to_head as u64;
            chunk = &chunk[to_head..];
        }
        if chunk.is_empty() {
            continue;
        }
        let file = match &mut tail {
            Some(f) => f,
            None => match File::options().create(true).truncate(true).read(true).write(true).open(tail_path) {
                Ok(f) => tail.insert(f),
                Err(e) => {
                    failed = Some(IoPath::new("create", tail_path, e));
                    continue;
                }
            },
        };
        if let Err(e) = ring_write(file, tail_cap, tail_written, chunk) {
            failed = Some(IoPath::new("write", tail_path, e));
            continue;
        }
        tail_written += chunk.len() as u64;
    }
    if let Some(e) = failed {
        let _ = fs::remove_file(tail_path);
        return Err(e);
    }
    let cut = tail_written.saturating_sub(tail_cap);
    if let Some(mut file) = tail {
        let copy = |log: &mut File, file: &mut File, from: u64, len: u64| -> io::Result<()> {
            file.seek(SeekFrom::Start(from))?;
            let copied = io::copy(&mut Read::by_ref(file).take(len), log)?;
            if copied == len { Ok(()) } else { Err(io::ErrorKind::UnexpectedEof.into()) }
        };
        let result = if cut == 0 {
            copy(&mut log, &mut file, 0, tail_written)
        } else {
            // The ring's oldest byte is where the next write would go.
            let start = tail_written % tail_cap;
            write!(
                log,
                "\n==> pkgcell: {cut} bytes cut here (the log keeps the first {head} and the last {tail_cap} bytes of {printed}: [build] log_limit, --log-limit)\n"
            )
            .and_then(|()| copy(&mut log, &mut file, start, tail_cap - start))
            .and_then(|()| copy(&mut log, &mut file, 0, start))
        };
        drop(file);
        let _ = fs::remove_file(tail_path);
        result.map_err(io_err("write", path))?;
    }
    // No fsync: the store's copy of a build's log is the one that must
    // survive a crash, and the store syncs it.
    Ok(Written { printed, cut })
}

/// Write `data` at ring position `written` of a ring of `cap` bytes.
fn ring_write(file: &File, cap: u64, written: u64, mut data: &[u8]) -> io::Result<()> {
    let mut pos = written % cap;
    if data.len() as u64 > cap {
        // Only the last `cap` bytes survive; keep their ring positions.
        let skip = data.len() - cap as usize;
        pos = (pos + skip as u64) % cap;
        data = &data[skip..];
    }
    while !data.is_empty() {
        let room = (cap - pos).min(data.len() as u64) as usize;
        file.write_all_at(&data[..room], pos)?;
        data = &data[room..];
        pos = (pos + room as u64) % cap;
    }
    Ok(())
}

/// The last [`WINDOW`] bytes of the log at `path` after its first `skip`
/// bytes (the header), as text.
pub fn window(path: &Path, skip: u64) -> String {
    let Ok(mut f) = File::open(path) else { return String::new() };
    window_of(&mut f, skip)
}

/// [`window`] of an open file.
pub fn window_of(f: &mut File, skip: u64) -> String {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(WINDOW).max(skip.min(len));
    let mut data = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_ok() {
        let _ = f.take(WINDOW).read_to_end(&mut data);
    }
    // Cut in the middle of a line: start at the next whole one.
    // (A window that is one long line is kept whole.)
    let data = match data[..data.len().saturating_sub(1)].iter().position(|&b| b == b'\n') {
        Some(nl) if from > skip.min(len) => &data[nl + 1..],
        _ => &data[..],
    };
    String::from_utf8_lossy(data).into_owned()
}

/// The newest log of `pkgbase` under `logs` (by modification time): of a
/// build, a dependency layer or a repro rebuild alike. `None` when it has
/// none. The `.tail` rings of running builds are not logs.
pub fn newest(logs: &Path, pkgbase: &str) -> Result<Option<PathBuf>, IoPath> {
    let dir = logs.join(pkgbase);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoPath::new("read", dir, e)),
    };
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let Ok(mtime) = meta.modified() else { continue };
        if meta.is_file() && best.as_ref().is_none_or(|(t, p)| (mtime, &path) > (*t, p)) {
            best = Some((mtime, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Copy the log at `path` to `out`, then, while `running()` says its build
/// goes on, what is added to it, as `tail -f` does; the end once it is
/// over. The pump writes the cut middle and the tail ring only at the end,
/// which comes out then too.
pub fn follow(path: &Path, out: &mut dyn Write, running: &dyn Fn() -> bool) -> Result<(), IoPath> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut buf = vec![0u8; BUF];
    loop {
        // Asked before reading: whatever was written before the build
        // ended is read after, so nothing at the end is missed.
        let live = running();
        loop {
            let n = f.read(&mut buf).map_err(io_err("read", path))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).and_then(|()| out.flush()).map_err(io_err("write the log of", path))?;
        }
        if !live {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Which run of a build a log is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind<'a> {
    /// makepkg.
    Build,
    /// The installation of its dependency layer.
    Deps,
    /// A rebuild by `pkgcell repro`, with its tag.
    Repro(&'a str),
}

/// Where the log of `kind` of the build of `pkgid` goes:
/// `<logs>/<pkgbase>/<pkgbase>-<version>-<tree12>-<deps12><suffix>`, e.g.
/// `logs/hello/hello-1.0-1-4b825dc642cb-0123456789ab.log`: the version the
/// PKGBUILD states (from `srcinfo`) and the two short hashes of
/// [`PkgId::short`], which is what `pkgcell plan` and `store ls` show.
/// Suffixes: `.log`, `.deps.log`, `.repro-<tag>.log`. [`LogKey::of_name`]
/// reads the hashes back; the full pkgid is in the log's first line.
pub fn log_path(logs: &Path, pkgid: &PkgId, srcinfo: &str, kind: LogKind<'_>) -> PathBuf {
    let suffix = match kind {
        LogKind::Build => ".log".to_owned(),
        LogKind::Deps => ".deps.log".to_owned(),
        LogKind::Repro(tag) => format!(".repro-{tag}.log"),
    };
    let base = pkgid.pkgbase().to_string();
    let version = stated_version(srcinfo).map(|v| format!("-{v}")).unwrap_or_default();
    let name = format!("{base}{version}-{}-{}{suffix}", pkgid.tree_id().short(), pkgid.dephash().short());
    logs.join(base).join(name)
}

/// `[epoch:]pkgver-pkgrel` of the pkgbase section of a .SRCINFO, when it
/// has one made only of the characters a version may hold (so the log's
/// name stays a plain file name whatever the text says).
fn stated_version(srcinfo: &str) -> Option<String> {
    let (mut epoch, mut pkgver, mut pkgrel) = (None, None, None);
    for line in srcinfo.lines() {
        let Some((k, v)) = line.trim().split_once(" = ") else { continue };
        match k {
            // The pkgbase section ends where the first package's begins.
            "pkgname" => break,
            "epoch" => epoch = Some(v),
            "pkgver" => pkgver = Some(v),
            "pkgrel" => pkgrel = Some(v),
            _ => {}
        }
    }
    let v = match epoch {
        Some(e) => format!("{e}:{}-{}", pkgver?, pkgrel?),
        None => format!("{}-{}", pkgver?, pkgrel?),
    };
    let plain = v.len() <= 100 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+:~-".contains(&b));
    plain.then_some(v)
}

/// What a log's name tells of its build: the short tree-id and dephash
/// (12 hex digits each, as [`PkgId::short`]). Logs named by the whole
/// pkgid (before short names) give the same key, so old and new logs of
/// one build count together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogKey {
    tree: String,
    deps: String,
}

impl LogKey {
    /// The key of the logs of `pkgid`.
    pub fn of(pkgid: &PkgId) -> LogKey {
        LogKey { tree: pkgid.tree_id().short(), deps: pkgid.dephash().short() }
    }

    /// The key of a log file's name (`*.log`), short or old; `None` for a
    /// name that is neither.
    pub fn of_name(name: &str) -> Option<LogKey> {
        if let Some(id) = pkgid_of_long_name(name) {
            return Some(LogKey::of(&id));
        }
        let hex12 = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        // The first dot after which a log suffix follows ends the id part
        // (a version holds dots too, the hashes do not).
        name.match_indices('.').find_map(|(i, _)| {
            let rest = &name[i..];
            let suffix = rest == ".log" || rest == ".deps.log" || (rest.starts_with(".repro-") && rest.ends_with(".log"));
            if !suffix {
                return None;
            }
            let mut parts = name[..i].rsplitn(3, '-');
            let (deps, tree, _) = (parts.next()?, parts.next()?, parts.next()?);
            (hex12(tree) && hex12(deps)).then(|| LogKey { tree: tree.to_owned(), deps: deps.to_owned() })
        })
    }
}

/// The pkgid an old log file is named after: `<pkgid>.log`,
/// `<pkgid>.deps.log`, `<pkgid>.repro-<tag>.log`. A pkgbase may hold
/// dots: the first prefix ending at a dot that reads as a pkgid is it.
fn pkgid_of_long_name(name: &str) -> Option<PkgId> {
    if !name.ends_with(".log") {
        return None;
    }
    name.match_indices('.').find_map(|(i, _)| name[..i].parse().ok())
}

/// The pkgid of the build a log file at `path` is of: from its name when
/// it is an old one, else from its first line, which pkgcell writes
/// (`pkgcell …: building <pkgid> on base …`, `… dependency layer … for
/// <pkgid>, …`) and which must agree with the name's short hashes.
pub fn pkgid_of_log(path: &Path) -> Option<PkgId> {
    let name = path.file_name()?.to_str()?;
    if let Some(id) = pkgid_of_long_name(name) {
        return Some(id);
    }
    let key = LogKey::of_name(name)?;
    let mut head = [0u8; 1024];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let first = head[..n].split(|b| *b == b'\n').next()?;
    std::str::from_utf8(first)
        .ok()?
        .split([' ', ','])
        .filter_map(|w| w.parse::<PkgId>().ok())
        .find(|id| LogKey::of(id) == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limit: u64, chunks: &[&[u8]]) -> (Vec<u8>, Written) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/x.log");
        let (mut w, pump) = start(&path, "H\n", limit, Echo::Off).unwrap();
        for c in chunks {
            w.write_all(c).unwrap();
        }
        drop(w);
        let written = pump.finish().unwrap();
        assert!(!tail_path(&path).exists(), "the side file is removed");
        (fs::read(&path).unwrap(), written)
    }

    #[test]
    fn a_log_under_the_limit_is_kept_whole() {
        let (log, w) = run(100, &[b"0123456789", b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop"]);
        assert_eq!(log, b"H\n0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop");
        assert_eq!(w, Written { printed: 62, cut: 0 });
    }

    #[test]
    fn a_log_over_the_limit_keeps_its_head_and_its_tail_and_says_what_was_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        // Odd chunk sizes, one larger than the ring, so every path of the ring is taken.
        let chunks: Vec<&[u8]> = vec![&data[..7], &data[7..300], &data[300..301], &data[301..]];
        let (log, w) = run(100, &chunks);
        assert_eq!(w, Written { printed: 1000, cut: 900 });
        let text = String::from_utf8(log).unwrap();
        let (head, rest) = text.split_once("\n==> pkgcell: 900 bytes cut here").unwrap();
        assert_eq!(head.as_bytes(), [b"H\n".as_slice(), &data[..50]].concat());
        let tail = rest.split_once('\n').unwrap().1;
        assert_eq!(tail.as_bytes(), &data[950..]);
    }

    #[test]
    fn the_window_is_the_end_of_the_log_without_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::write(&p, "HEADER\nout of memory\n").unwrap();
        assert_eq!(window(&p, 7), "out of memory\n");
        let big = "x".repeat(2 * WINDOW as usize) + "end\n";
        fs::write(&p, &big).unwrap();
        let w = window(&p, 7);
        assert_eq!(w.len() as u64, WINDOW, "one long line is kept");
        assert!(w.ends_with("xend\n"));
        let big = "x\n".repeat(WINDOW as usize) + "end\n";
        fs::write(&p, &big).unwrap();
        let w = window(&p, 7);
        assert!(w.len() as u64 > WINDOW - 4 && w.starts_with("x\n") && w.ends_with("x\nend\n"), "{}", w.len());
    }
}
