//! Builds the bash loadable builtin of the .SRCINFO driver
//! (src/plan/srcinfo-dropids.rs) with the same rustc, as a `no_std` cdylib
//! that links only libc: no C compiler beyond the linker rustc always uses.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/plan/srcinfo-dropids.rs";
    println!("cargo::rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition=2024", "--crate-type=cdylib", "--crate-name=pkgcell_dropids", "--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=2", "-C", "strip=symbols", "-C", "debuginfo=0"])
        .arg("-o")
        .arg(out.join("pkgcell_dropids.so"))
        .arg(src);
    if let Ok(linker) = std::env::var(format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"))) {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run rustc for {src}: {e}"));
    assert!(status.success(), "rustc failed on {src} ({status})");
}
