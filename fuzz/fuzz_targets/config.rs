//! The config parser: any text gives a config or an error naming a line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = vipctl::config::Config::parse(std::path::Path::new("fuzz.toml"), text) {
        let _ = e.to_string();
    }
    let _ = vipctl::sentinel::conf::parse(text);
    let mut unit = vipctl::sentinel::conf::UnitSandbox::default();
    unit.apply(text);
    let _ = unit.may_exec(std::path::Path::new("/usr/bin/vipctl"));
});
