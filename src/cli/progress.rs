//! Progress on stderr: indicatif spinners on a terminal, plain `==>` lines
//! otherwise. One [`MultiProgress`] for the whole process, so that log lines
//! (tracing, through [`log_writer`]) and `==>` lines ([`line`]) are printed
//! above the spinners, never through them. indicatif fits lines to the
//! terminal's width; `NO_COLOR` turns colours off.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pkgcell::base::Phase;
use pkgcell::fetch::Download;

/// The process's progress area on stderr (hidden when stderr is not a terminal).
pub(crate) fn multi() -> &'static MultiProgress {
    static M: OnceLock<MultiProgress> = OnceLock::new();
    M.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Whether progress is drawn: stderr is a terminal that can move its cursor.
pub(crate) fn on_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether colours may be used on stderr (<https://no-color.org>: a
/// non-empty `NO_COLOR` says no).
pub(crate) fn colour() -> bool {
    on_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Print a line on stderr, above the spinners.
pub(crate) fn line(text: impl Display) {
    multi().suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    });
}

/// The tracing subscriber's writer: one event's text, written above the
/// spinners when it is complete.
pub(crate) struct LogWriter(Vec<u8>);

/// A [`LogWriter`] for one event (a `MakeWriter` for tracing-subscriber).
pub(crate) fn log_writer() -> LogWriter {
    LogWriter(Vec::new())
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            multi().suspend(|| {
                let _ = std::io::stderr().lock().write_all(&self.0);
            });
        }
    }
}

/// A spinner showing `prefix: message` and its running time, added to the
/// progress area (before `before`, when given, so that a summary line stays last).
pub(crate) fn spinner(prefix: String, before: Option<&ProgressBar>) -> ProgressBar {
    spinner_with(prefix, before, "{wide_msg} {elapsed}")
}

/// A spinner whose position counts bytes (a download of unknown size).
pub(crate) fn byte_counter(prefix: String) -> ProgressBar {
    spinner_with(prefix, None, "{bytes} ({binary_bytes_per_sec}) {wide_msg} {elapsed}")
}

fn spinner_with(prefix: String, before: Option<&ProgressBar>, rest: &str) -> ProgressBar {
    let template = if colour() {
        format!("{{spinner:.cyan}} {{prefix:.bold}}: {}", rest.replace("{elapsed}", "{elapsed:.dim}"))
    } else {
        format!("{{spinner}} {{prefix}}: {rest}")
    };
    let style = ProgressStyle::with_template(&template).expect("the templates are constant and valid");
    let bar = ProgressBar::new_spinner().with_style(style).with_prefix(prefix);
    let bar = match before {
        Some(b) => multi().insert_before(b, bar),
        None => multi().add(bar),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A line of plain text in the progress area (counts under the spinners).
pub(crate) fn text_line() -> ProgressBar {
    let style = ProgressStyle::with_template("{wide_msg}").expect("the template is constant and valid");
    multi().add(ProgressBar::new_spinner().with_style(style))
}

/// The phases of making a base: a spinner with the phase on a terminal,
/// `==> base: <phase>` lines otherwise.
pub(crate) struct BasePhases {
    tty: bool,
    current: Mutex<Option<(ProgressBar, Phase, Instant)>>,
}

impl BasePhases {
    pub(crate) fn new() -> BasePhases {
        BasePhases { tty: on_terminal(), current: Mutex::new(None) }
    }

    /// A phase started.
    pub(crate) fn phase(&self, p: Phase) {
        if !self.tty {
            line(format!("==> base: {p}"));
            return;
        }
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match cur.as_mut() {
            Some((bar, last, started)) => {
                line(format!("==> base: {last} ({:.0}s)", started.elapsed().as_secs_f64()));
                bar.reset_elapsed();
                bar.set_message(p.to_string());
                *last = p;
                *started = Instant::now();
            }
            None => {
                let bar = spinner("base".into(), None);
                bar.set_message(p.to_string());
                *cur = Some((bar, p, Instant::now()));
            }
        }
    }

    /// Remove the spinner (the base is made, or it failed).
    pub(crate) fn finish(&self) {
        if let Some((bar, last, started)) = self.current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
            multi().remove(&bar);
            line(format!("==> base: {last} ({:.0}s)", started.elapsed().as_secs_f64()));
        }
    }
}

/// Downloads of `pkgcell fetch` and `pkgcell build`: a byte counter per
/// download on a terminal; otherwise a line when one starts and one when
/// it ends.
pub(crate) struct Downloads {
    tty: bool,
    /// The entry whose sources `pkgcell fetch` fetches.
    entry: Mutex<String>,
    /// The running downloads' counters, by entry and file (the builds of
    /// a run download side by side).
    bars: Mutex<std::collections::HashMap<(String, String), ProgressBar>>,
}

impl Downloads {
    pub(crate) fn new() -> Downloads {
        Downloads { tty: on_terminal(), entry: Mutex::new(String::new()), bars: Mutex::default() }
    }

    /// Name the entry the next downloads are for.
    pub(crate) fn entry(&self, name: &str) {
        *self.entry.lock().unwrap_or_else(|e| e.into_inner()) = name.to_owned();
    }

    /// A download of the entry named by [`Downloads::entry`].
    pub(crate) fn event(&self, d: Download<'_>) {
        let entry = self.entry.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.event_of(&entry, d);
    }

    /// A download of `entry`.
    pub(crate) fn event_of(&self, entry: &str, d: Download<'_>) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match d {
            Download::Started { file, url } => {
                if self.tty {
                    bars.insert((entry.to_owned(), file.to_owned()), byte_counter(format!("{entry}: {file}")));
                } else {
                    line(format!("==> {entry}: downloading {file} from {url}"));
                }
            }
            Download::Bytes { file, bytes } => {
                if let Some(b) = bars.get(&(entry.to_owned(), file.to_owned())) {
                    b.set_position(bytes);
                }
            }
            Download::Finished { file, bytes, ok } => {
                if let Some(b) = bars.remove(&(entry.to_owned(), file.to_owned())) {
                    b.finish_and_clear();
                    multi().remove(&b);
                }
                let how = if ok { "downloaded" } else { "failed to download" };
                line(format!("==> {entry}: {how} {file} ({})", HumanBytes(bytes)));
            }
            _ => {}
        }
    }
}
