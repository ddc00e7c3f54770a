//! The `pkgcell` binary: parse the command line, run one subcommand, map the
//! result to an exit code (0 ok, 1 payload/check failed, 2 usage or setup error).

mod cli;

fn main() -> std::process::ExitCode {
    // The sandbox helper is this same binary re-executed; it must take over
    // before anything else runs (no threads, no logging set up yet).
    pkgcell_sandbox::helper_main_if_requested();
    cli::main()
}
