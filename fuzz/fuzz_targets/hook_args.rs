//! Sentinel's seven hook arguments, and the bare-call detection in front of clap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|args: Vec<String>| {
    let _ = vipctl::commands::hook::HookArgs::parse(&args);
    let mut argv: Vec<std::ffi::OsString> = vec!["vipctl".into()];
    argv.extend(args.iter().map(Into::into));
    let _ = vipctl::cli::normalize(argv);
    for a in &args {
        let _ = vipctl::resolve::check_syntax(a);
        let _ = vipctl::config::SentinelAddr::parse(a);
        let _ = a.parse::<vipctl::network::vip::Vip>();
    }
});
