//! `vggcache` binary: runs the command line ([`commands::cli::run`]) and exits with its code.

#![deny(clippy::undocumented_unsafe_blocks)]

mod commands;

// The command layer names the library's modules as `crate::…`, as it did inside the library.
#[allow(unused_imports)]
use vggcache::*;

fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`vggcache models list | head -1`)
    // panics; restore the default so the command ends quietly, as other Unix tools do.
    #[cfg(unix)]
    // SAFETY: called first thing on the main thread, before any other thread exists; SIG_DFL is
    // a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(commands::cli::run(std::env::args_os().collect()));
}
