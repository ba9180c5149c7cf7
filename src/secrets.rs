//! Secrets that a fresh install must share with nobody: the key that signs access tokens and
//! the first admin's password.
//!
//! - When `auth.jwt_secret` is not configured, a 256-bit random secret is made at first start
//!   and kept in `<data_dir>/jwt-secret` (mode 0600); later starts and `surge token` read the
//!   same file. A configured secret shorter than [`JWT_SECRET_LEN_MIN`] bytes, or equal to a
//!   value ever published in this repository, is refused: anyone who has read the repository
//!   could sign admin tokens with it.
//! - When `auth.bootstrap_admin_password` is not configured, the first admin's password is made
//!   the same way, in `<data_dir>/bootstrap-admin-password`. Only the file's path is logged,
//!   never the password.
//!
//! A file is made whole or not at all: written under a temporary name, synced, then linked to
//! its real name (a link never replaces an existing file), so two processes starting at once
//! agree on one value and a crash never leaves half a secret behind.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::rngs::OsRng;
use rand::RngCore;

use crate::config::AuthSettings;

/// Where the generated signing secret lives, under the data dir.
pub const JWT_SECRET_FILE: &str = "jwt-secret";
/// Where the generated first admin password lives, under the data dir.
pub const ADMIN_PASSWORD_FILE: &str = "bootstrap-admin-password";
/// HS256 wants a key at least as long as its hash (RFC 7518 section 3.2).
pub const JWT_SECRET_LEN_MIN: usize = 32;
/// 256 random bits, hex-encoded: 64 characters.
const JWT_SECRET_RANDOM_BYTES: usize = 32;
/// 128 random bits, hex-encoded: 32 characters.
const ADMIN_PASSWORD_RANDOM_BYTES: usize = 16;

/// Every secret this repository has ever shipped in a config file, a script or a test. Each is
/// public knowledge, so none may sign a real server's tokens or guard its admin.
const PUBLISHED: &[&str] = &[
    "surge-dev-secret-change-me-please-0123456789",
    "crash-test-secret-0123456789abcdef",
    "bench-hot-fixed-secret-not-for-production-0123456789",
    "bench-live-fixed-secret-not-for-production-0123456789",
    "bench-memory-fixed-secret-not-for-production-0123456789",
    "bench-tickets-fixed-secret-not-for-production-0123456789",
    "bench-admin-list-secret-not-for-production-0123",
    "fuzz-api-secret-not-for-production-0123456789",
    "another-secret-of-enough-length",
    "change-me-admin",
];

/// The first admin's password that the repository's default config once shipped.
pub const PUBLISHED_ADMIN_PASSWORD: &str = "change-me-admin";

/// Where a secret in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Set in the config file or the environment.
    Configured,
    /// Read from this file, made by an earlier start.
    File(PathBuf),
    /// Made just now and kept in this file.
    Generated(PathBuf),
}

impl SecretSource {
    /// The file the secret is kept in; `None` for a configured one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SecretSource::Configured => None,
            SecretSource::File(path) | SecretSource::Generated(path) => Some(path),
        }
    }
}

/// Why a configured signing secret is refused; `None` when it may be used.
pub fn jwt_secret_problem(secret: &str) -> Option<String> {
    if secret.len() < JWT_SECRET_LEN_MIN {
        return Some(format!(
            "auth.jwt_secret must be at least {JWT_SECRET_LEN_MIN} bytes (it has {}); leave it \
             unset to have one generated in the data dir",
            secret.len()
        ));
    }
    is_published(secret).then(|| {
        "auth.jwt_secret is a value published in the surge repository, so anyone could sign \
         tokens with it; set a secret of your own (openssl rand -hex 32) or leave it unset to \
         have one generated in the data dir"
            .to_string()
    })
}

/// True for a secret this repository has published.
pub fn is_published(secret: &str) -> bool {
    PUBLISHED.contains(&secret)
}

/// Fills `auth.jwt_secret` from `<data_dir>/jwt-secret` when none is configured, making the
/// file at first start. Fails for a weak or published secret, configured or in the file.
pub fn resolve_jwt_secret(
    auth: &mut AuthSettings,
    data_dir: &Path,
) -> anyhow::Result<SecretSource> {
    if !auth.jwt_secret.is_empty() {
        if let Some(problem) = jwt_secret_problem(&auth.jwt_secret) {
            anyhow::bail!(problem);
        }
        return Ok(SecretSource::Configured);
    }
    let path = data_dir.join(JWT_SECRET_FILE);
    let (secret, source) = read_or_create(&path, JWT_SECRET_RANDOM_BYTES)?;
    if let Some(problem) = jwt_secret_problem(&secret) {
        anyhow::bail!("{}: {problem}", path.display());
    }
    auth.jwt_secret = secret;
    Ok(source)
}

/// The first admin's password: the configured one, else the one in
/// `<data_dir>/bootstrap-admin-password`, made now if missing.
pub fn bootstrap_admin_password(
    auth: &AuthSettings,
    data_dir: &Path,
    len_min: usize,
) -> anyhow::Result<(String, SecretSource)> {
    let configured = &auth.bootstrap_admin_password;
    if configured.is_empty() {
        let path = data_dir.join(ADMIN_PASSWORD_FILE);
        return read_or_create(&path, ADMIN_PASSWORD_RANDOM_BYTES);
    }
    anyhow::ensure!(
        configured.chars().count() >= len_min,
        "auth.bootstrap_admin_password must be at least {len_min} characters; leave it unset \
         to have one generated in the data dir"
    );
    anyhow::ensure!(
        !is_published(configured),
        "auth.bootstrap_admin_password is a value published in the surge repository; set one \
         of your own or leave it unset to have one generated in the data dir"
    );
    Ok((configured.clone(), SecretSource::Configured))
}

/// The trimmed content of `path`, or `random_bytes` random bytes, hex-encoded, written there
/// with mode 0600 when the file does not exist yet.
fn read_or_create(path: &Path, random_bytes: usize) -> anyhow::Result<(String, SecretSource)> {
    if let Some(value) = read_secret(path)? {
        return Ok((value, SecretSource::File(path.to_path_buf())));
    }
    let mut bytes = vec![0u8; random_bytes];
    OsRng.fill_bytes(&mut bytes);
    let value = hex::encode(bytes);
    if create_whole(path, &value)? {
        return Ok((value, SecretSource::Generated(path.to_path_buf())));
    }
    // Another process made it first: its value is the one.
    let value = read_secret(path)?.context("a secret file vanished while it was being read")?;
    Ok((value, SecretSource::File(path.to_path_buf())))
}

/// `None` when the file does not exist. Warns when others may read it.
fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "a secret file can be read by other users; chmod 600 it"
        );
    }
    let value = text.trim().to_string();
    anyhow::ensure!(!value.is_empty(), "{} is empty", path.display());
    Ok(Some(value))
}

/// Writes `value` to `path` (mode 0600) unless it exists; false when it did.
fn create_whole(path: &Path, value: &str) -> anyhow::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A random name: several makers (processes or threads) may be at this step at once.
    let temporary = path.with_extension(format!("tmp-{:016x}", OsRng.next_u64()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    writeln!(file, "{value}")?;
    file.sync_all()?;
    drop(file);
    let linked = fs::hard_link(&temporary, path);
    fs::remove_file(&temporary)?;
    match linked {
        Ok(()) => {
            fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn a_fresh_data_dir_gets_a_private_random_secret_that_later_starts_reuse() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let mut auth = Settings::defaults().auth;
        auth.jwt_secret.clear();
        let source = resolve_jwt_secret(&mut auth, &data_dir).expect("generated");
        let path = data_dir.join(JWT_SECRET_FILE);
        assert_eq!(source, SecretSource::Generated(path.clone()));
        assert_eq!(auth.jwt_secret.len(), 64, "256 bits, hex");
        assert!(auth.jwt_secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(mode_of(&path), 0o600);
        let mut again = Settings::defaults().auth;
        again.jwt_secret.clear();
        let source = resolve_jwt_secret(&mut again, &data_dir).expect("read");
        assert_eq!(source, SecretSource::File(path));
        assert_eq!(again.jwt_secret, auth.jwt_secret);
        let other = tempfile::tempdir().expect("temp dir");
        let mut elsewhere = Settings::defaults().auth;
        elsewhere.jwt_secret.clear();
        resolve_jwt_secret(&mut elsewhere, other.path()).expect("generated");
        assert_ne!(elsewhere.jwt_secret, auth.jwt_secret, "random per install");
    }

    #[test]
    fn short_and_published_secrets_are_refused_wherever_they_come_from() {
        let dir = tempfile::tempdir().expect("temp dir");
        for secret in [
            "short",
            "surge-dev-secret-change-me-please-0123456789",
            "bench-hot-fixed-secret-not-for-production-0123456789",
        ] {
            let mut auth = Settings::defaults().auth;
            auth.jwt_secret = secret.to_string();
            let error = resolve_jwt_secret(&mut auth, dir.path()).expect_err(secret);
            assert!(error.to_string().contains("auth.jwt_secret"), "{error}");
        }
        fs::write(dir.path().join(JWT_SECRET_FILE), "too-short\n").expect("write");
        let mut auth = Settings::defaults().auth;
        auth.jwt_secret.clear();
        let error = resolve_jwt_secret(&mut auth, dir.path()).expect_err("short file");
        assert!(error.to_string().contains(JWT_SECRET_FILE), "{error}");
        let mut auth = Settings::defaults().auth;
        auth.jwt_secret = "x".repeat(JWT_SECRET_LEN_MIN);
        assert_eq!(
            resolve_jwt_secret(&mut auth, dir.path()).expect("long enough"),
            SecretSource::Configured
        );
    }

    #[test]
    fn the_admin_password_is_generated_once_or_taken_from_config_if_strong() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut auth = Settings::defaults().auth;
        auth.bootstrap_admin_password.clear();
        let (password, source) = bootstrap_admin_password(&auth, dir.path(), 8).expect("made");
        let path = dir.path().join(ADMIN_PASSWORD_FILE);
        assert_eq!(source, SecretSource::Generated(path.clone()));
        assert_eq!(password.len(), 32);
        assert_eq!(mode_of(&path), 0o600);
        let (again, source) = bootstrap_admin_password(&auth, dir.path(), 8).expect("read");
        assert_eq!((again, source), (password, SecretSource::File(path)));
        auth.bootstrap_admin_password = "change-me-admin".to_string();
        assert!(bootstrap_admin_password(&auth, dir.path(), 8).is_err());
        auth.bootstrap_admin_password = "short".to_string();
        assert!(bootstrap_admin_password(&auth, dir.path(), 8).is_err());
        auth.bootstrap_admin_password = "a long one of my own".to_string();
        let (password, source) = bootstrap_admin_password(&auth, dir.path(), 8).expect("ok");
        assert_eq!(password, "a long one of my own");
        assert_eq!(source, SecretSource::Configured);
    }

    #[test]
    fn two_makers_racing_agree_on_one_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("race");
        let values: Vec<String> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| read_or_create(&path, 16).expect("made or read").0))
                .collect();
            makers
                .into_iter()
                .map(|m| m.join().expect("joined"))
                .collect()
        });
        assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    }
}
