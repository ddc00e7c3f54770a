//! `pkgcell_dropids UID DIR` and `pkgcell_lockdirs DIR...`: bash loadable
//! builtins for srcinfo-driver.sh.
//!
//! Compiled by build.rs on its own (`rustc --crate-type cdylib`, no std, only
//! libc) and loaded by the driver with `enable -f`. The driver runs as root
//! inside the parse sandbox and forks one subshell per PKGBUILD; bash cannot
//! change its uid without an exec, which would reload makepkg (slow). So the
//! forked subshell calls this builtin before it sources the PKGBUILD: it
//! makes DIR (the job's private directory) owned by UID and mode 0700, then
//! drops to UID/GID = UID with no supplementary groups. It fails (status 1,
//! a message on stderr) if any step fails, and the driver then refuses to
//! source the PKGBUILD.
//!
//! `pkgcell_lockdirs` makes each DIR that exists mode 0755 (following a
//! symlink, as chmod(1) does: all of it is the sandbox's own): the
//! world-writable directories stop being shared between jobs. It spares the
//! driver an exec of chmod (about 1.5 ms, a fifth of one PKGBUILD's job).
//!
//! The builtin ABI (bash >= 4, unchanged since): bash dlsym's
//! `<name>_struct`, a `struct builtin`, and writes its `handle` field.
#![no_std]

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr::null;

#[repr(C)]
pub struct WordDesc {
    word: *const c_char,
    flags: c_int,
}

#[repr(C)]
pub struct WordList {
    next: *const WordList,
    word: *const WordDesc,
}

#[repr(C)]
pub struct Builtin {
    name: *const c_char,
    function: unsafe extern "C" fn(*const WordList) -> c_int,
    flags: c_int,
    long_doc: *const *const c_char,
    short_doc: *const c_char,
    handle: *mut c_char,
}

#[repr(transparent)]
pub struct Doc([*const c_char; 2]);
// SAFETY: constant C strings, never written.
unsafe impl Sync for Doc {}

const BUILTIN_ENABLED: c_int = 1;
const EXECUTION_FAILURE: c_int = 1;
const EX_USAGE: c_int = 258;

static LONG_DOC: Doc = Doc([
    c"Make DIR owned by UID (mode 0700), then set every uid and gid to UID and drop supplementary groups.".as_ptr(),
    null(),
]);

static LOCKDIRS_DOC: Doc = Doc([c"Make each DIR that exists mode 0755, following symlinks; fail on any other error.".as_ptr(), null()]);

/// `static mut`: bash writes the `handle` field after dlopen.
#[unsafe(no_mangle)]
pub static mut pkgcell_lockdirs_struct: Builtin = Builtin {
    name: c"pkgcell_lockdirs".as_ptr(),
    function: pkgcell_lockdirs,
    flags: BUILTIN_ENABLED,
    long_doc: &LOCKDIRS_DOC as *const Doc as *const *const c_char,
    short_doc: c"pkgcell_lockdirs DIR...".as_ptr(),
    handle: core::ptr::null_mut(),
};

/// `static mut`: bash writes the `handle` field after dlopen.
#[unsafe(no_mangle)]
pub static mut pkgcell_dropids_struct: Builtin = Builtin {
    name: c"pkgcell_dropids".as_ptr(),
    function: pkgcell_dropids,
    flags: BUILTIN_ENABLED,
    long_doc: &LONG_DOC as *const Doc as *const *const c_char,
    short_doc: c"pkgcell_dropids UID DIR".as_ptr(),
    handle: core::ptr::null_mut(),
};

const O_RDONLY: c_int = 0;
const O_NOFOLLOW: c_int = 0o400000;
const O_DIRECTORY: c_int = 0o200000;
const O_CLOEXEC: c_int = 0o2000000;
const ENOENT: c_int = 2;
const ENOTDIR: c_int = 20;

#[link(name = "c")]
unsafe extern "C" {
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn fchown(fd: c_int, uid: c_uint, gid: c_uint) -> c_int;
    fn fchmod(fd: c_int, mode: c_uint) -> c_int;
    fn setgroups(n: usize, list: *const c_uint) -> c_int;
    fn setresgid(r: c_uint, e: c_uint, s: c_uint) -> c_int;
    fn setresuid(r: c_uint, e: c_uint, s: c_uint) -> c_int;
    fn getresuid(r: *mut c_uint, e: *mut c_uint, s: *mut c_uint) -> c_int;
    fn getresgid(r: *mut c_uint, e: *mut c_uint, s: *mut c_uint) -> c_int;
    fn getgroups(n: c_int, list: *mut c_uint) -> c_int;
    fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    fn __errno_location() -> *mut c_int;
}

// core is built with unwinding and refers to this; nothing here unwinds
// (panic=abort), but an undefined symbol would make dlopen fail.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

fn say(bytes: &[u8]) {
    // SAFETY: a valid buffer; a failed write to stderr has no remedy here.
    unsafe { write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// Print "pkgcell_dropids: <what> failed (errno N)" and return failure.
fn fail(what: &[u8]) -> c_int {
    fail_in(b"pkgcell_dropids: ", what)
}

/// Print "<builtin><what> failed (errno N)" and return failure.
fn fail_in(builtin: &[u8], what: &[u8]) -> c_int {
    // SAFETY: errno is thread-local and always valid.
    let errno = unsafe { *__errno_location() };
    let mut num = [0u8; 12];
    let mut i = num.len();
    let mut n = errno.unsigned_abs();
    loop {
        i -= 1;
        num[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    say(builtin);
    say(what);
    say(b" failed (errno ");
    say(&num[i..]);
    say(b")\n");
    EXECUTION_FAILURE
}

/// The bytes of the NUL-terminated `s`, without the NUL.
unsafe fn c_bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: the caller passes a NUL-terminated word from bash.
    unsafe { core::ffi::CStr::from_ptr(s) }.to_bytes()
}

/// The words of `list` as C strings, at most `N`; `None` if not exactly `N`.
unsafe fn words<const N: usize>(mut list: *const WordList) -> Option<[*const c_char; N]> {
    let mut out = [null(); N];
    for slot in &mut out {
        // SAFETY: bash passes a valid, null-terminated list.
        let w = unsafe { list.as_ref()? };
        *slot = unsafe { (*w.word).word };
        list = w.next;
    }
    list.is_null().then_some(out)
}

/// A decimal id from 1 to 2^31 - 1 (never 0: dropping to root is no drop).
unsafe fn parse_id(s: *const c_char) -> Option<c_uint> {
    let mut v: u64 = 0;
    let mut p = s;
    loop {
        // SAFETY: a NUL-terminated word from bash.
        let c = unsafe { *p } as u8;
        if c == 0 {
            break;
        }
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
        if v > i32::MAX as u64 {
            return None;
        }
        p = unsafe { p.add(1) };
    }
    (p != s && v != 0).then_some(v as c_uint)
}

unsafe extern "C" fn pkgcell_dropids(list: *const WordList) -> c_int {
    let Some([uid, dir]) = (unsafe { words::<2>(list) }) else {
        say(b"usage: pkgcell_dropids UID DIR\n");
        return EX_USAGE;
    };
    let Some(id) = (unsafe { parse_id(uid) }) else {
        say(b"pkgcell_dropids: UID must be a positive decimal number\n");
        return EX_USAGE;
    };
    // SAFETY: plain syscalls on a NUL-terminated path and our own fd.
    unsafe {
        // Opened without following a symlink, changed through the fd.
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if fd < 0 {
            return fail(b"open DIR");
        }
        let ok = fchown(fd, id, id) == 0 && fchmod(fd, 0o700) == 0;
        let r = if ok { 0 } else { fail(b"chown/chmod DIR") };
        close(fd);
        if r != 0 {
            return r;
        }
        if setgroups(0, null()) != 0 {
            return fail(b"setgroups");
        }
        if setresgid(id, id, id) != 0 {
            return fail(b"setresgid");
        }
        if setresuid(id, id, id) != 0 {
            return fail(b"setresuid");
        }
        // Check: every id is the new one and no group is left.
        let (mut r, mut e, mut s) = (0, 0, 0);
        let uids = getresuid(&mut r, &mut e, &mut s) == 0 && r == id && e == id && s == id;
        let gids = getresgid(&mut r, &mut e, &mut s) == 0 && r == id && e == id && s == id;
        if !uids || !gids || getgroups(0, core::ptr::null_mut()) != 0 {
            say(b"pkgcell_dropids: the ids did not change\n");
            return EXECUTION_FAILURE;
        }
    }
    0
}

unsafe extern "C" fn pkgcell_lockdirs(mut list: *const WordList) -> c_int {
    let mut status = 0;
    // SAFETY: bash passes a valid, null-terminated list of NUL-terminated
    // words; plain syscalls on them and our own fd.
    while let Some(w) = unsafe { list.as_ref() } {
        let dir = unsafe { (*w.word).word };
        list = w.next;
        let fd = unsafe { open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
        if fd < 0 {
            // SAFETY: errno is thread-local and always valid.
            let errno = unsafe { *__errno_location() };
            // Nothing there, or not a directory: nothing shared to lock.
            if errno != ENOENT && errno != ENOTDIR {
                status = fail_in(b"pkgcell_lockdirs: open ", unsafe { c_bytes(dir) });
            }
            continue;
        }
        if unsafe { fchmod(fd, 0o755) } != 0 {
            status = fail_in(b"pkgcell_lockdirs: chmod ", unsafe { c_bytes(dir) });
        }
        unsafe { close(fd) };
    }
    status
}
