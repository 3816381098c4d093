//! The `rgsd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rgsd::cli::run(rgsd::cli::Cli::parse())
}
