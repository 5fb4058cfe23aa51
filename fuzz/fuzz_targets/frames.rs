//! Frames received by the conflict watcher: anything on the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = vipctl::network::defend::claim_in(frame);
});
