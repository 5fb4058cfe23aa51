//! Where API credentials come from besides instance metadata: a root-only file named in the
//! config, or the provider's environment variable. Never the command line; and a process with
//! raised privileges takes nothing from its environment, which its caller controls.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `key = value` lines of a credentials file (`#`/`;` comments and `[section]` lines are skipped,
/// so an AWS shared-credentials file with one `[default]` profile reads as it is).
pub type Fields = BTreeMap<String, String>;

/// Reads `path`, which must be a regular file owned by root, writable by root only and not
/// readable by others (`chown root:vipctl F; chmod 640 F`): a secret anyone could replace or read
/// is no credential.
pub fn read_file(path: &Path) -> Result<Fields, String> {
    read_text(path).map(|t| parse(&t))
}

/// The whole text of `path`, under the same rule as [`read_file`] (a GCP service-account key is
/// JSON, not `key = value` lines).
pub fn read_text(path: &Path) -> Result<String, String> {
    let p = path.display();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read cloud credentials_file {p}: {e}; fix the path, or make it readable by the user vipctl runs as"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read cloud credentials_file {p}: {e}"))?;
    check_owner(path, meta.is_file(), meta.uid(), meta.mode())?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| format!("cannot read cloud credentials_file {p}: {e}"))?;
    Ok(text)
}

/// The ownership rule of [`read_file`], apart for tests.
pub fn check_owner(path: &Path, regular: bool, uid: u32, mode: u32) -> Result<(), String> {
    if !regular || uid != 0 || mode & 0o022 != 0 || mode & 0o004 != 0 {
        return Err(format!(
            "cloud credentials_file {p} must be a regular file owned by root, writable by root only and not readable \
             by others (owner uid {uid}, mode {:o}): `chown root:vipctl {p}; chmod 640 {p}`",
            mode & 0o7777,
            p = path.display()
        ));
    }
    Ok(())
}

/// The fields of a credentials file's text.
pub fn parse(text: &str) -> Fields {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// The environment variable `name`, unless this process runs with raised privileges (then its
/// caller chose the environment, and a secret from it could point vipctl at any account).
pub fn from_env(name: &str) -> Result<Option<String>, String> {
    let Some(v) = std::env::var_os(name) else { return Ok(None) };
    if crate::privilege::raised() {
        return Err(format!(
            "this vipctl runs with raised privileges and takes no credentials from the environment ({name}): \
             use the instance's metadata credentials or a root-only credentials_file"
        ));
    }
    Ok(Some(v.to_string_lossy().into_owned()).filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_shared_credentials_file_reads_as_it_is() {
        let f = parse("[default]\naws_access_key_id = AKID\n# note\naws_secret_access_key=SECRET\n\n");
        assert_eq!(f["aws_access_key_id"], "AKID");
        assert_eq!(f["aws_secret_access_key"], "SECRET");
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn only_a_root_owned_file_that_others_cannot_read_or_write_is_taken() {
        let p = Path::new("/etc/vipctl/aws");
        assert!(check_owner(p, true, 0, 0o100640).is_ok());
        assert!(check_owner(p, true, 0, 0o100600).is_ok());
        for (regular, uid, mode) in
            [(true, 1000, 0o600), (true, 0, 0o644), (true, 0, 0o660), (true, 0, 0o602), (false, 0, 0o600)]
        {
            let e = check_owner(p, regular, uid, mode).unwrap_err();
            assert!(e.contains("chown root:vipctl /etc/vipctl/aws"), "{e}");
        }
    }

    #[test]
    fn a_planted_file_is_refused_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        std::fs::write(&f, "token = x\n").unwrap();
        // Whoever runs the tests, the file is theirs with mode 644: never root-only.
        let e = read_file(&f).unwrap_err();
        assert!(e.contains("must be a regular file owned by root"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = read_file(&link).unwrap_err();
        assert!(e.contains("cannot read cloud credentials_file"), "{e}");
    }
}
