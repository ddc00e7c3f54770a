//! The payload's syscall filter, as data: what it denies and why. `sys.rs`
//! compiles it with libseccomp (the filter library of systemd, runc and
//! crun); `init.rs` loads it last before exec.
//!
//! A deny list, not an allow list: builds run arbitrary tools, and a syscall
//! some compiler or test suite needs tomorrow must not break them. Denied
//! calls return EPERM (never kill), as if the kernel refused them in a user
//! namespace, so that build systems which probe for a feature see "not
//! available" and carry on.
//!
//! Architectures: the filter covers the native one and, on x86_64, the i386
//! and x32 ABIs too (the same names, translated by libseccomp), since a
//! 64-bit kernel runs all three and a 32-bit (multilib) build must keep
//! working. A syscall of any other architecture kills the process
//! (libseccomp's default for a foreign architecture; none can occur on
//! these kernels).

/// One group of denied syscalls, with the reason.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denied {
    /// Why no build needs these, or what they would open (docs/sandbox.md
    /// says the same; a test checks that it names every syscall).
    #[cfg_attr(not(test), allow(dead_code))]
    pub why: &'static str,
    /// Syscall names (libseccomp resolves them per architecture; a name an
    /// architecture lacks is skipped for it).
    pub syscalls: &'static [&'static str],
}

/// Every syscall the filter denies with EPERM.
pub(crate) const DENIED: &[Denied] = &[
    Denied {
        why: "kernel keyrings: per-user kernel state shared with the host (the session keyring is \
              already a fresh one; this keeps the payload off the user and persistent keyrings too)",
        syscalls: &["keyctl", "add_key", "request_key"],
    },
    Denied {
        why: "eBPF programs and perf events: large, often-exploited kernel interfaces no build needs",
        syscalls: &["bpf", "perf_event_open"],
    },
    Denied {
        why: "userfaultfd lets an exploit stall the kernel mid-copy at a chosen moment",
        syscalls: &["userfaultfd"],
    },
    Denied {
        why: "io_uring: a large, frequently-exploited attack surface reachable from an unprivileged \
              user namespace, and its operations bypass the seccomp checks of the syscalls they stand for",
        syscalls: &["io_uring_setup", "io_uring_enter", "io_uring_register"],
    },
    Denied {
        why: "loading kernels and modules (refused in a user namespace anyway)",
        syscalls: &["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module"],
    },
    Denied {
        why: "host-wide switches: process accounting, swap, reboot",
        syscalls: &["acct", "swapon", "swapoff", "reboot"],
    },
    Denied {
        why: "the system clock is shared with the host",
        syscalls: &["settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"],
    },
    Denied {
        why: "raw I/O port access and the i386 virtual 8086 mode",
        syscalls: &["iopl", "ioperm", "vm86", "vm86old"],
    },
    Denied {
        why: "open_by_handle_at opens any file of a mounted file system by its handle, past the \
              mount the sandbox sees (the \"shocker\" container escape)",
        syscalls: &["open_by_handle_at"],
    },
    Denied {
        why: "obsolete interfaces with a history of bugs",
        syscalls: &["uselib", "_sysctl", "lookup_dcookie", "nfsservctl"],
    },
];

/// Socket families the payload may create; `socket(2)` of any other family
/// gets EPERM. Unix, IPv4 and IPv6 are what builds and test suites use; the
/// rest (packet sockets, most netlink families, AF_ALG, Bluetooth, ...) are
/// kernel attack surface reachable from a user namespace. (The numbers are
/// the same on every Linux architecture.)
pub(crate) const SOCKET_FAMILIES_ALLOWED: &[i32] = &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// Netlink is allowed only for NETLINK_ROUTE: getifaddrs(3), getaddrinfo's
/// AI_ADDRCONFIG and `ip` use it; the other netlink protocols (audit,
/// netfilter, uevents, crypto, ...) are refused.
pub(crate) const NETLINK_PROTOCOLS_ALLOWED: &[i32] = &[libc::NETLINK_ROUTE];

/// One past the highest socket family number of Linux 6.x (AF_MCTP = 45);
/// anything from here up (a family added later, or a value with garbage in
/// the upper bits of the register) is refused too.
pub(crate) const AF_MAX: i32 = 46;

/// The socket families the filter refuses outright (below [`AF_MAX`]).
pub(crate) fn refused_socket_families() -> impl Iterator<Item = i32> {
    (0..AF_MAX).filter(|f| !SOCKET_FAMILIES_ALLOWED.contains(f) && *f != libc::AF_NETLINK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyring_calls_and_io_uring_are_denied() {
        let all: Vec<&str> = DENIED.iter().flat_map(|g| g.syscalls.iter().copied()).collect();
        for must in ["keyctl", "add_key", "request_key", "io_uring_setup", "bpf", "userfaultfd", "perf_event_open"] {
            assert!(all.contains(&must), "{must} is not denied");
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a syscall is listed twice");
    }

    #[test]
    fn packet_and_netlink_are_refused_but_unix_and_inet_are_not() {
        let refused: Vec<i32> = refused_socket_families().collect();
        assert!(refused.contains(&libc::AF_PACKET) && refused.contains(&libc::AF_ALG));
        for ok in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK] {
            assert!(!refused.contains(&ok));
        }
    }
}
