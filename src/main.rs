//! The `rgsd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under call load (2,000 calls/s) glibc's allocator took
/// about 20 % of rgsd's CPU, a third of it waiting on its arena locks when one tokio worker
/// frees what another allocated (`perf`, see README "Calls per second").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rgsd::cli::run(rgsd::cli::Cli::parse())
}
