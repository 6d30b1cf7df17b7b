//! The `gkl-gpu` command line.

mod cli;

fn main() {
    // Behave like other Unix tools when piped into `head`: exit quietly instead of panicking.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
