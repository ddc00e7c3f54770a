//! Sizes and time limits as people write them: one parser and one printer
//! for each, shared by the spec, `pkgcell run`'s flags and `pkgcell.toml`,
//! so that "4G" or "90s" means the same everywhere and no number, however
//! absurd, gets past them unchecked (or makes anything panic).
//!
//! The bounds are ours, not the kernel's: tmpfs takes any `size=` up to
//! 2^64-1, and reads 0 as "no limit", so a limit of 0 or of an exabyte is an
//! unlimited mount in disguise. Both are refused here with the value named.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A size limit in bytes: more than 0 and at most [`Size::MAX`].
///
/// Written as `"4G"`, `"512M"`, `"64K"`, `"1T"`, `"1P"` (binary multiples;
/// an optional `B` or `iB` after the unit, any case) or plain bytes, and
/// printed in the largest unit that divides it exactly, so that printing
/// and parsing give back the same value.
///
/// ```
/// use pkgcell_sandbox::Size;
/// let s: Size = "1536MiB".parse().unwrap();
/// assert_eq!(s.bytes(), 1536 << 20);
/// assert_eq!(s.to_string(), "1536M");
/// assert!("0".parse::<Size>().is_err());
/// assert!("18446744073709551615".parse::<Size>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

impl Size {
    /// The largest size taken: 1 PiB, beyond the memory and disks of any
    /// host this runs on, so a bigger value can only be a slip of a unit
    /// (or a way to ask for no limit, which a size must not be).
    pub const MAX: Size = Size(1 << 50);

    /// A size of `bytes`, checked against the bounds.
    pub fn new(bytes: u64) -> Result<Size, UnitError> {
        match bytes {
            0 => Err(UnitError::ZeroSize),
            b if b > Size::MAX.0 => Err(UnitError::SizeTooLarge { bytes: b.to_string() }),
            b => Ok(Size(b)),
        }
    }

    /// A size of `n` MiB (for constants; panics at compile time in a
    /// `const` if out of bounds).
    pub const fn mib(n: u64) -> Size {
        assert!(n > 0 && n <= Size::MAX.0 >> 20, "size out of bounds");
        Size(n << 20)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Size, UnitError> {
        let bad = || UnitError::NotASize { value: s.to_owned() };
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        let shift: u32 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            "p" | "pb" | "pib" => 50,
            _ => return Err(bad()),
        };
        if num.is_empty() {
            return Err(bad());
        }
        // Any run of digits is a number; one too long for u64 is too large,
        // not malformed.
        let too_large = || UnitError::SizeTooLarge { bytes: t.to_owned() };
        let n: u64 = num.parse().map_err(|_| too_large())?;
        let bytes = n.checked_mul(1 << shift).ok_or_else(too_large)?;
        match Size::new(bytes) {
            Err(UnitError::SizeTooLarge { .. }) => Err(too_large()),
            other => other,
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A time limit: more than 0 and at most [`Timeout::MAX`].
///
/// Written as seconds (`"90"`, `"1.5"`) or as whole numbers with units
/// (`"90s"`, `"30m"`, `"2h"`, `"1d"`, `"1h30m"`); printed in seconds.
///
/// ```
/// use std::time::Duration;
/// use pkgcell_sandbox::Timeout;
/// let t: Timeout = "1h30m".parse().unwrap();
/// assert_eq!(t.duration(), Duration::from_secs(5400));
/// assert!("1e300".parse::<Timeout>().is_err());
/// assert!(Timeout::from_secs_f64(f64::NAN).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeout(Duration);

impl Timeout {
    /// The longest time limit taken: 365 days. Longer is no limit in
    /// practice, and keeps deadlines (now + limit) far from overflowing.
    pub const MAX: Timeout = Timeout(Duration::from_secs(365 * 86400));

    /// A limit of `d`, checked against the bounds.
    pub fn new(d: Duration) -> Result<Timeout, UnitError> {
        if d.is_zero() {
            Err(UnitError::ZeroTimeout)
        } else if d > Timeout::MAX.0 {
            Err(UnitError::TimeoutTooLong { value: format!("{}s", d.as_secs()) })
        } else {
            Ok(Timeout(d))
        }
    }

    /// A limit of `secs` seconds (as JSON and `--timeout` give it); NaN,
    /// infinities, negative numbers and 0 are refused.
    pub fn from_secs_f64(secs: f64) -> Result<Timeout, UnitError> {
        if !secs.is_finite() || secs <= 0.0 {
            return Err(UnitError::NotPositive { value: secs_text(secs) });
        }
        if secs > Timeout::MAX.0.as_secs_f64() {
            return Err(UnitError::TimeoutTooLong { value: secs_text(secs) });
        }
        // In range, so the conversion cannot panic; a positive value that
        // rounds to 0 ns is still 0.
        Timeout::new(Duration::from_secs_f64(secs))
    }

    /// The limit.
    pub const fn duration(self) -> Duration {
        self.0
    }
}

/// Seconds as a person would write them: 1e300 as "1e300", not as its 301
/// digits.
pub(crate) fn secs_text(secs: f64) -> String {
    if secs.abs() < 1e12 { secs.to_string() } else { format!("{secs:e}") }
}

impl FromStr for Timeout {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Timeout, UnitError> {
        let t = s.trim();
        let bad = || UnitError::NotADuration { value: s.to_owned() };
        // Plain seconds, fractions included, but not the words f64 reads
        // ("inf", "nan"), which are no time.
        if t.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
            && let Ok(secs) = t.parse::<f64>()
        {
            return Timeout::from_secs_f64(secs);
        }
        let too_long = || UnitError::TimeoutTooLong { value: t.to_owned() };
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                _ => return Err(bad()),
            };
            if num.is_empty() {
                return Err(bad());
            }
            let n: u64 = num.parse().map_err(|_| too_long())?;
            num.clear();
            total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(too_long)?;
        }
        if !num.is_empty() || t.is_empty() {
            return Err(bad());
        }
        match Timeout::new(Duration::from_secs(total)) {
            Err(UnitError::TimeoutTooLong { .. }) => Err(too_long()),
            other => other,
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 { write!(f, "{}s", d.as_secs()) } else { write!(f, "{}", d.as_secs_f64()) }
    }
}

/// A size or time limit that cannot be taken. The message leaves out the
/// value and the field: the caller names both (`memory "lots": not a size
/// like ...`), so they are not printed twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Not a size at all.
    #[error("not a size like \"4G\", \"512M\" or \"65536K\"")]
    NotASize {
        /// The text given.
        value: String,
    },
    /// A size of 0, which tmpfs would read as "no limit".
    #[error("a size of 0 is not taken (tmpfs would read it as no limit); give a size like \"1G\"")]
    ZeroSize,
    /// A size beyond [`Size::MAX`].
    #[error("larger than the largest size taken, 1P")]
    SizeTooLarge {
        /// The value given.
        bytes: String,
    },
    /// Not a duration at all.
    #[error("not a duration like \"90s\", \"30m\", \"2h\", \"1h30m\" or seconds")]
    NotADuration {
        /// The text given.
        value: String,
    },
    /// Zero, negative or not a number.
    #[error("not a positive number of seconds")]
    NotPositive {
        /// The value given.
        value: String,
    },
    /// A limit of 0.
    #[error("a time limit of 0 is not taken")]
    ZeroTimeout,
    /// Beyond [`Timeout::MAX`].
    #[error("longer than the longest time limit taken, 365 days")]
    TimeoutTooLong {
        /// The value given.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_in_any_case() {
        for (text, bytes) in [
            ("512M", 512 << 20),
            ("4GiB", 4 << 30),
            ("4gb", 4 << 30),
            ("65536k", 64 << 20),
            ("1t", 1 << 40),
            ("33554432", 32 << 20),
            (" 1000 ", 1000),
            ("1000B", 1000),
            ("1P", 1 << 50),
        ] {
            assert_eq!(text.parse::<Size>().map(Size::bytes), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        for bad in ["", "G", "4X", "-1", "1.5G", "4 G", "lots"] {
            assert!(matches!(bad.parse::<Size>(), Err(UnitError::NotASize { .. })), "{bad:?}");
        }
        assert_eq!("0".parse::<Size>(), Err(UnitError::ZeroSize));
        assert_eq!("0G".parse::<Size>(), Err(UnitError::ZeroSize));
        for big in ["18446744073709551615", "99999999999999999999999", "2P", "16777216T", "1125899906842625"] {
            assert!(matches!(big.parse::<Size>(), Err(UnitError::SizeTooLarge { .. })), "{big:?}");
        }
        assert_eq!(Size::new(0), Err(UnitError::ZeroSize));
        assert!(Size::new(u64::MAX).is_err());
    }

    #[test]
    fn sizes_print_as_they_parse() {
        assert_eq!(Size::new(4 << 30).unwrap().to_string(), "4G");
        assert_eq!(Size::new(1536 << 20).unwrap().to_string(), "1536M");
        assert_eq!(Size::new(1000).unwrap().to_string(), "1000");
        for b in [1, 1000, 1024, 3 << 20, (1 << 50) - 1, 1 << 50] {
            let s = Size::new(b).unwrap();
            assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        }
    }

    #[test]
    fn durations_take_seconds_and_units() {
        let secs = |s: &str| s.parse::<Timeout>().map(|t| t.duration());
        assert_eq!(secs("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(secs("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(secs("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(secs("600"), Ok(Duration::from_secs(600)));
        assert_eq!(secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(secs("365d"), Ok(Timeout::MAX.duration()));
    }

    #[test]
    fn bad_durations_are_refused_without_panicking() {
        for bad in ["", "soon", "1x", "h", "1h30", "inf", "nan", "1.5h"] {
            assert!(matches!(bad.parse::<Timeout>(), Err(UnitError::NotADuration { .. })), "{bad:?}");
        }
        for bad in ["0", "0s", "-1", "-0.5", "0.0"] {
            assert!(bad.parse::<Timeout>().is_err(), "{bad:?}");
        }
        for long in ["1e300", "366d", "18446744073709551615", "99999999999999999999999s", "18446744073709551615d"] {
            assert!(matches!(long.parse::<Timeout>(), Err(UnitError::TimeoutTooLong { .. })), "{long:?}");
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0, 1e300, f64::MAX, 1e-12] {
            assert!(Timeout::from_secs_f64(bad).is_err(), "{bad}");
        }
        assert!(Timeout::new(Duration::MAX).is_err());
    }

    #[test]
    fn durations_print_as_they_parse() {
        for d in [Duration::from_secs(1), Duration::from_millis(1500), Duration::from_secs(7200)] {
            let t = Timeout::new(d).unwrap();
            assert_eq!(t.to_string().parse::<Timeout>(), Ok(t), "{t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_size_in_bounds_prints_and_parses_back(bytes in 1..=Size::MAX.bytes()) {
            let s = Size::new(bytes).unwrap();
            proptest::prop_assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        }

        #[test]
        fn any_text_parses_to_a_size_in_bounds_or_an_error(text in "\\PC{0,30}") {
            if let Ok(s) = text.parse::<Size>() {
                proptest::prop_assert!(s.bytes() > 0 && s <= Size::MAX);
            }
        }

        #[test]
        fn any_whole_second_limit_prints_and_parses_back(secs in 1..=Timeout::MAX.duration().as_secs()) {
            let t = Timeout::new(Duration::from_secs(secs)).unwrap();
            proptest::prop_assert_eq!(t.to_string().parse::<Timeout>(), Ok(t));
        }

        #[test]
        fn any_text_or_float_gives_a_limit_in_bounds_or_an_error(text in "\\PC{0,30}", secs in proptest::num::f64::ANY) {
            for t in [text.parse::<Timeout>(), Timeout::from_secs_f64(secs)].into_iter().flatten() {
                proptest::prop_assert!(!t.duration().is_zero() && t <= Timeout::MAX);
            }
        }
    }
}
