//! Tests of `Config::parse` as a whole: the documented examples, and the mistakes it refuses.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), text)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const GOOD: &str = r#"
sentinels = ["198.51.100.11:26379", "198.51.100.12:26379"]

[masters.mymaster]
vips = ["198.51.100.100/24", "2001:db8:51::100/64"]
interface = "eth0"
"#;

#[test]
fn reads_the_documented_example() {
    let c = parse(GOOD).unwrap();
    let m = c.master("mymaster").unwrap();
    assert_eq!(m.vips.len(), 2);
    assert_eq!(m.interface.as_deref(), Some("eth0"));
    assert_eq!(m.sentinels.len(), 2);
    assert_eq!(m.announce, Announce { rounds: 3, interval: Duration::from_millis(100) });
    assert_eq!(c.pick_master(None).unwrap().name, "mymaster");
}

#[test]
fn watch_settings() {
    let c = parse(
        "[watch]\nminority_timeout_ms = 3000\nhook_users = [\"redis\"]\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n",
    )
    .unwrap();
    assert_eq!(c.watch.minority_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.watch.hook_users, Some(vec!["redis".to_string()]));
    // Not set: the sentinel units' users (read by the daemon), not "nobody".
    let c = parse("[masters.a]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
    assert_eq!(c.watch.hook_users, None);
    assert_eq!(c.watch.reconcile_interval, Duration::from_millis(500));
    let e = err("[watch]\nreconcile_interval_ms = 1\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn packaged_example_is_valid() {
    let c = parse(include_str!("../../packaging/vipctl.toml")).unwrap();
    assert_eq!(c.masters["mymaster"].vips.len(), 2);
    assert_eq!(c.masters["mymaster"].sentinels.len(), 3);
}

#[test]
fn the_readme_reference_is_a_valid_config() {
    let readme = include_str!("../../README.md");
    let start = readme.find("## Configuration\n\n```toml\n").expect("README has a Configuration example")
        + "## Configuration\n\n```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let c = parse(&readme[start..end]).unwrap_or_else(|e| panic!("README's config example: {e}"));
    assert_eq!(c.masters["mymaster"].mode, Mode::L2);
}

#[test]
fn routed_masters_take_host_routes_on_lo_and_announce_nothing() {
    let c = parse("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/32\", \"2001:db8:ff::100/128\"]\n").unwrap();
    let m = c.master("r").unwrap();
    assert_eq!((m.mode, m.interface.as_deref(), m.announce.rounds), (Mode::Routed, Some("lo"), 0));
    let e = err("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/24\"]\n");
    assert!(e.contains("line 3") && e.contains("write 192.0.2.100/24 as 192.0.2.100/32"), "{e}");
    let e = err("[masters.r]\nmode = \"routed\"\nvips = [\"192.0.2.100/32\"]\n[masters.r.announce]\nrounds = 2\n");
    assert!(e.contains("remove [masters.r.announce]"), "{e}");
    let e = err("[masters.r]\nmode = \"bgp\"\nvips = [\"192.0.2.100/32\"]\n");
    assert!(e.contains("line 2") && e.contains("\"routed\""), "{e}");
    let l2 = parse(GOOD).unwrap();
    assert_eq!(l2.master("mymaster").unwrap().mode, Mode::L2);
}

#[test]
fn a_missing_config_names_its_cause_once() {
    let e = Config::load(Path::new("/nonexistent/vipctl.toml")).unwrap_err();
    let text = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
}

#[test]
fn unknown_key_names_line() {
    let e = err("[masters.m]\nvips = [\"198.51.100.100/24\"]\nvipz = 1\n");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("vipz"), "{e}");
}

#[test]
fn duplicate_vip_names_both() {
    let e = err("[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.b]\nvips = [\"198.51.100.100/24\"]\n");
    assert!(e.contains("line 4") && e.contains("line 2") && e.contains("twice"), "{e}");
}

#[test]
fn prefix_out_of_range() {
    let e = err("[masters.a]\nvips = [\"198.51.100.100/40\"]\n");
    assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
}

#[test]
fn vip_that_is_a_host_address() {
    let e = err("sentinels = [\"198.51.100.11:26379\"]\n[masters.a]\nvips = [\"198.51.100.11/24\"]\n");
    assert!(e.contains("line 3") && e.contains("own address"), "{e}");
}

#[test]
fn no_masters_and_empty_vips() {
    assert!(err("").contains("no masters"));
    assert!(err("[masters.a]\nvips = []\n").contains("no VIPs"));
}

#[test]
fn sentinel_address_forms() {
    assert_eq!(SentinelAddr::parse("[2001:db8::1]:26379").unwrap().host, "2001:db8::1");
    assert_eq!(SentinelAddr::parse("sentinel-1:26379").unwrap().port, 26379);
    assert!(SentinelAddr::parse("2001:db8::1:26379").is_err());
    assert!(SentinelAddr::parse("host").is_err());
    assert!(SentinelAddr::parse("host:0").is_err());
    let e = err("sentinels = [\"a:1\", \"a:1\"]\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn announce_bounds() {
    let e = err("[announce]\nrounds = 51\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n");
    assert!(e.contains("line 2"), "{e}");
    let e =
        err("[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.a.announce]\nrounds = 50\ninterval_ms = 10000\n");
    assert!(e.contains("20 s"), "{e}");
    let c = parse("[announce]\nrounds = 5\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
    assert_eq!(c.masters["a"].announce.rounds, 5);
}

#[test]
fn label_must_start_with_interface() {
    let e = err("[masters.a]\nvips = [\"198.51.100.100/24\"]\ninterface = \"eth0\"\nlabel = \"eth1:x\"\n");
    assert!(e.contains("line 4"), "{e}");
}

#[test]
fn several_masters_need_a_name() {
    let c =
        parse("[masters.a]\nvips = [\"198.51.100.100/24\"]\n[masters.b]\nvips = [\"198.51.100.101/24\"]\n").unwrap();
    assert!(c.pick_master(None).unwrap_err().contains("say which"));
    assert!(c.master("zz").unwrap_err().contains("not in config"));
}

#[test]
fn auth_is_redacted_in_debug() {
    let c = parse("[sentinel_auth]\npassword = \"hunter2\"\n[masters.a]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}
