use std::process::ExitCode;

fn main() -> ExitCode {
    harden::cli::main()
}
