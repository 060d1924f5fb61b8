//! `vggcache` binary: runs the command line ([`commands::cli::run`]) and exits with its code.

#![deny(clippy::undocumented_unsafe_blocks)]

mod commands;

// The command layer names the library's modules as `crate::…`, as it did inside the library.
#[allow(unused_imports)]
use vggcache::*;

fn main() {
    std::process::exit(commands::cli::run(std::env::args_os().collect()));
}
