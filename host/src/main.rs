//! The `larder` binary: the process around [`larder::cli`] (allocator, logging, runtime, exit
//! code). The commands themselves live in the library.

use clap::Parser;
use larder::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: a hit allocates a few dozen small objects on one thread
/// and frees them on another, and glibc's arenas showed as a tenth of the gateway's CPU under
/// load (malloc, free and their consolidation); with mimalloc the same load runs faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
