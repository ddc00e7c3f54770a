//! Compile the payload's syscall filter (the list in src/seccomp.rs) into a
//! classic BPF program with libseccomp, once, at build time: the sandbox then
//! loads it with one seccomp(2) call instead of compiling it at every start
//! (a few hundred microseconds), and needs no libseccomp at run time.

use std::path::PathBuf;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare as Arg, ScmpCompareOp as Op, ScmpFilterContext, ScmpSyscall};

#[allow(dead_code)]
#[path = "src/seccomp.rs"]
mod seccomp;

/// The architectures the filter covers for the target: its own and the
/// other ABIs its kernel runs (i386 and x32 programs on x86_64, 32-bit ARM
/// on aarch64), with the same rules.
fn arches(target_arch: &str) -> Vec<ScmpArch> {
    match target_arch {
        "x86_64" => vec![ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32],
        "x86" => vec![ScmpArch::X86],
        "aarch64" => vec![ScmpArch::Aarch64, ScmpArch::Arm],
        "arm" => vec![ScmpArch::Arm],
        "riscv64" => vec![ScmpArch::Riscv64],
        "powerpc64" => vec![ScmpArch::Ppc64Le, ScmpArch::Ppc64],
        "s390x" => vec![ScmpArch::S390X, ScmpArch::S390],
        other => panic!("pkgcell-sandbox: no syscall filter architectures known for target_arch {other}"),
    }
}

fn main() {
    println!("cargo::rerun-if-changed=src/seccomp.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("seccomp.bpf");
    if let Err(e) = compile(&arches(&target_arch), &out) {
        panic!(
            "pkgcell-sandbox: cannot compile the syscall filter with libseccomp: {e}\n\
             (libseccomp 2.5 or newer is needed to build: apt install libseccomp-dev, pacman -S libseccomp)"
        );
    }
}

/// Default allow; every denied name, and socket(2) of every refused family
/// (and netlink of every refused protocol), return EPERM.
fn compile(arches: &[ScmpArch], out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let eperm = ScmpAction::Errno(libc::EPERM);
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    // The filter is built here for the target, not for the build machine.
    let native = ScmpArch::native();
    for arch in arches {
        ctx.add_arch(*arch)?;
    }
    if !arches.contains(&native) {
        ctx.remove_arch(native)?;
    }
    for group in seccomp::DENIED {
        for name in group.syscalls {
            let nr = ScmpSyscall::from_name(name).map_err(|e| format!("syscall {name}: {e}"))?;
            ctx.add_rule(eperm, nr).map_err(|e| format!("deny {name}: {e}"))?;
        }
    }
    let socket = ScmpSyscall::from_name("socket")?;
    for refused in seccomp::refused_socket_families() {
        use seccomp::RefusedFamily as R;
        let cond = match refused {
            R::Is(f) => Arg::new(0, Op::Equal, f),
            R::Block { first, size } => Arg::new(0, Op::MaskedEqual(!(size - 1)), first),
            R::AtLeast(f) => Arg::new(0, Op::GreaterEqual, f),
        };
        ctx.add_rule_conditional(eperm, socket, &[cond]).map_err(|e| format!("deny socket {refused:?}: {e}"))?;
    }
    // Netlink of another protocol than the allowed one.
    let conds = [
        Arg::new(0, Op::Equal, libc::AF_NETLINK as u64),
        Arg::new(2, Op::NotEqual, seccomp::NETLINK_PROTOCOL_ALLOWED as u64),
    ];
    ctx.add_rule_conditional(eperm, socket, &conds).map_err(|e| format!("deny netlink: {e}"))?;
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    ctx.export_bpf(&file)?;
    Ok(())
}
