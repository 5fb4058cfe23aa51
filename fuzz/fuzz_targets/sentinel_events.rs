//! Sentinel pub/sub payloads: the channel name and payload come from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (channel, payload) = input;
    let _ = vipctl::sentinel::events::parse(channel, payload);
    for c in vipctl::sentinel::events::TRIGGERS {
        let _ = vipctl::sentinel::events::parse(c, payload);
    }
});
