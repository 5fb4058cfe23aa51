//! The vipctl binary: see the library (src/lib.rs) and README.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    vipctl::run(std::env::args_os().collect())
}
