//! The `slate` binary; everything lives in the `server` library so tests can run it in-process.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
