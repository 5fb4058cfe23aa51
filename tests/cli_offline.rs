//! The command line without a lab: what needs no root, no namespaces and no Redis.

use std::path::PathBuf;
use std::process::Command;

fn vipctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vipctl"))
}

#[test]
fn the_log_file_is_never_written_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vipctl.toml");
    std::fs::write(&config, "[masters.mymaster]\nvips = [\"198.51.100.100/24\"]\n").unwrap();
    // Someone made the log path a link to a file of theirs (or one they want clobbered).
    let target = dir.path().join("precious");
    std::fs::write(&target, "untouched\n").unwrap();
    let log = dir.path().join("vipctl.log");
    std::os::unix::fs::symlink(&target, &log).unwrap();
    // A dry-run hook: it decides (and records the decision) without changing anything.
    let out = Command::new(vipctl())
        .args(["--dry-run", "--config"])
        .arg(&config)
        .args(["mymaster", "leader", "start", "198.51.100.11", "6379", "198.51.100.12", "6379"])
        .env("VIPCTL_LOG_FILE", &log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n", "the record went through the link");
    assert!(stderr.contains("cannot append to log file"), "{stderr}");
}

#[test]
fn a_missing_config_is_one_clear_line_and_exit_2() {
    let out = Command::new(vipctl()).args(["--config", "/nonexistent/vipctl.toml", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("vipctl: error:")).expect("an error line");
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
}

#[test]
fn status_says_not_running_only_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipctl.sock");
    let config = dir.path().join("vipctl.toml");
    let body =
        format!("[masters.mymaster]\nvips = [\"198.51.100.100/24\"]\n[watch]\nsocket = \"{}\"\n", socket.display());
    std::fs::write(&config, body).unwrap();
    let status = || Command::new(vipctl()).arg("--config").arg(&config).arg("status").output().unwrap();

    let out = status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("daemon: not running ("), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}");

    // A daemon over its connection caps used to close without a word; `status` then said "not
    // running (Broken pipe)". Something listens: it is busy or stuck, and worth asking again.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let out = status();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("daemon: busy or not answering (") && stdout.contains("try again)"), "{stdout}");
    assert!(!stdout.contains("not running"), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
}
