//! The payload's syscall filter, as data: what it denies and why. build.rs
//! compiles it to BPF with libseccomp (the filter library of systemd, runc
//! and crun) when the crate is built; `init.rs` loads it last before exec.
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
    /// Why no build needs these, or what they would open (the README's
    /// sandbox section says the same; a test checks that it names every
    /// syscall).
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
pub(crate) const NETLINK_PROTOCOL_ALLOWED: i32 = libc::NETLINK_ROUTE;

/// A condition on socket(2)'s family (its first argument, all 64 bits of
/// the register) under which the filter refuses the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusedFamily {
    /// Exactly this family.
    Is(u64),
    /// The aligned block of `size` (a power of two) families from `first`:
    /// `family & !(size - 1) == first`, one masked compare.
    Block { first: u64, size: u64 },
    /// This family and every one above, which also catches a family with
    /// garbage in the upper 32 bits of the register (the kernel reads only
    /// the int, the filter sees all 64 bits).
    AtLeast(u64),
}

impl RefusedFamily {
    #[cfg(test)]
    fn matches(self, family: u64) -> bool {
        match self {
            RefusedFamily::Is(f) => family == f,
            RefusedFamily::Block { first, size } => family & !(size - 1) == first,
            RefusedFamily::AtLeast(f) => family >= f,
        }
    }
}

/// Every family but the allowed ones and netlink, as few conditions as
/// possible (each costs filter size and compile time at every sandbox
/// start): each gap between allowed families split into aligned
/// power-of-two blocks, and everything above the highest as one
/// [`RefusedFamily::AtLeast`].
pub(crate) fn refused_socket_families() -> Vec<RefusedFamily> {
    let mut open: Vec<u64> = SOCKET_FAMILIES_ALLOWED.iter().chain(&[libc::AF_NETLINK]).map(|f| *f as u64).collect();
    open.sort_unstable();
    let mut refused = Vec::new();
    let mut next = 0u64;
    for allowed in open {
        let mut first = next;
        while first < allowed {
            // The largest aligned block from `first` that stays below `allowed`.
            let mut size = if first == 0 { 1 << 62 } else { 1 << first.trailing_zeros() };
            while first + size > allowed {
                size /= 2;
            }
            refused.push(if size == 1 { RefusedFamily::Is(first) } else { RefusedFamily::Block { first, size } });
            first += size;
        }
        next = allowed + 1;
    }
    refused.push(RefusedFamily::AtLeast(next));
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_a_reason_and_the_readme_names_every_syscall() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for group in DENIED {
            assert!(!group.why.is_empty());
            for name in group.syscalls {
                assert!(readme.contains(&format!("`{name}`")), "README.md does not list {name}");
            }
        }
    }

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
    fn exactly_the_allowed_families_and_netlink_pass_the_socket_rules() {
        let refused = refused_socket_families();
        assert!(refused.len() <= 10, "{refused:?}");
        let high = [1u64 << 32 | libc::AF_PACKET as u64, 1 << 32 | libc::AF_INET as u64, u64::MAX, 46, 1000];
        for family in (0..128u64).chain(high) {
            let open = family == libc::AF_NETLINK as u64 || SOCKET_FAMILIES_ALLOWED.iter().any(|f| *f as u64 == family);
            let hit = refused.iter().filter(|r| r.matches(family)).count();
            assert_eq!(hit, usize::from(!open), "family {family:#x}: {refused:?}");
        }
    }
}
