//! The users file: each user's SCRAM-SHA-256 credential (salt, iterations, StoredKey,
//! ServerKey: never the password) and topic permissions. `rill users add|passwd|remove|list`
//! manage it; permissions may also be edited by hand. The broker re-reads it when it changes.
//!
//! ```toml
//! [users.agent]
//! write = ["logs", "metrics"]
//! scram_sha_256 = { iterations = 4096, salt = "…", stored_key = "…", server_key = "…" }
//!
//! [users.dash]
//! read = ["logs", "metrics"]
//! ```
//!
//! Errors name the file, the line and the key, like the broker config's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use glob::Pattern;
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use super::acl::Permissions;
use super::scram::{ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

#[derive(Debug, Error)]
pub enum UsersFileError {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid users file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid users file {path}: line {line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("cannot write users file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user `{name}` already exists in {path}: use `rill users passwd` to change the password, or `rill users remove` first")]
    Exists { name: String, path: PathBuf },
    #[error("no user `{name}` in {path} (`rill users list --file {path}` shows who is there)")]
    NotFound { name: String, path: PathBuf },
    #[error("invalid user name `{0}`: use letters, digits and . _ @ - (at most 128 characters)")]
    BadName(String),
    #[error("invalid topic pattern `{pattern}`: {message}")]
    BadPattern { pattern: String, message: String },
}

/// One user, as the broker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub credential: ScramCredential,
    pub permissions: Permissions,
}

/// Every user in the file, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: BTreeMap<String, Arc<User>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: BTreeMap<Spanned<String>, RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    admin: Vec<Spanned<String>>,
    scram_sha_256: Option<Spanned<RawScram>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScram {
    iterations: Spanned<u32>,
    salt: Spanned<String>,
    stored_key: Spanned<String>,
    server_key: Spanned<String>,
}

/// Checks a user name: what `rill users add` accepts and the file may hold.
pub fn validate_name(name: &str) -> Result<(), UsersFileError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UsersFileError::BadName(name.to_string()))
    }
}

/// Parses a topic pattern (a name or a glob).
pub fn parse_pattern(pattern: &str) -> Result<Pattern, UsersFileError> {
    if pattern.is_empty() {
        return Err(UsersFileError::BadPattern {
            pattern: String::new(),
            message: "empty".into(),
        });
    }
    Pattern::new(pattern).map_err(|e| UsersFileError::BadPattern {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, UsersFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Parses users-file text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Users, UsersFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| UsersFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid =
            |span: std::ops::Range<usize>, key: String, message: String| UsersFileError::Invalid {
                path: path.to_path_buf(),
                line: line_of(text, span.start),
                key,
                message,
            };
        let mut users = BTreeMap::new();
        for (name, raw_user) in raw.users {
            let key = format!("users.{}", name.get_ref());
            validate_name(name.get_ref())
                .map_err(|e| invalid(name.span(), key.clone(), e.to_string()))?;
            let patterns = |field: &str, list: &[Spanned<String>]| {
                list.iter()
                    .map(|pattern| {
                        parse_pattern(pattern.get_ref()).map_err(|e| {
                            invalid(pattern.span(), format!("{key}.{field}"), e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let read = patterns("read", &raw_user.read)?;
            let write = patterns("write", &raw_user.write)?;
            let admin = patterns("admin", &raw_user.admin)?;
            let Some(scram) = raw_user.scram_sha_256 else {
                return Err(invalid(
                    name.span(),
                    format!("{key}.scram_sha_256"),
                    format!(
                        "missing: set the password with `rill users passwd {} --file {}`",
                        name.get_ref(),
                        path.display()
                    ),
                ));
            };
            let scram_key = format!("{key}.scram_sha_256");
            let scram = scram.into_inner();
            let iterations = *scram.iterations.get_ref();
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(invalid(
                    scram.iterations.span(),
                    format!("{scram_key}.iterations"),
                    format!("must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
                ));
            }
            let decode = |field: &str, value: &Spanned<String>| {
                BASE64.decode(value.get_ref()).map_err(|e| {
                    invalid(
                        value.span(),
                        format!("{scram_key}.{field}"),
                        format!("not valid base64: {e}"),
                    )
                })
            };
            let key32 =
                |field: &str, value: &Spanned<String>| -> Result<[u8; 32], UsersFileError> {
                    let bytes = decode(field, value)?;
                    bytes.try_into().map_err(|bytes: Vec<u8>| {
                        invalid(
                            value.span(),
                            format!("{scram_key}.{field}"),
                            format!("must be 32 bytes (SHA-256), not {}", bytes.len()),
                        )
                    })
                };
            let salt = decode("salt", &scram.salt)?;
            if salt.is_empty() {
                return Err(invalid(
                    scram.salt.span(),
                    format!("{scram_key}.salt"),
                    "must not be empty".into(),
                ));
            }
            let credential = ScramCredential {
                salt,
                iterations,
                stored_key: key32("stored_key", &scram.stored_key)?,
                server_key: key32("server_key", &scram.server_key)?,
            };
            let name = name.into_inner();
            users.insert(
                name.clone(),
                Arc::new(User {
                    name,
                    credential,
                    permissions: Permissions { read, write, admin },
                }),
            );
        }
        Ok(Users { users })
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.users.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

const NEW_FILE_HEADER: &str = "\
# rill users: SCRAM-SHA-256 credentials (never passwords) and topic permissions.
# Manage with `rill users add|passwd|remove|list --file THIS_FILE`; permissions (read, write,
# admin: topic names or globs) may be edited by hand. The broker re-reads this file when it
# changes. Keep it private: the keys do not reveal passwords but allow offline guessing.
";

/// The users file opened for editing; comments and hand-made layout survive edits.
pub struct UsersFile {
    path: PathBuf,
    doc: toml_edit::DocumentMut,
    /// The file does not exist yet: it gets an explanatory header.
    new: bool,
}

/// The permission lists given to `rill users add`.
#[derive(Debug, Clone, Default)]
pub struct PermissionLists {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
}

impl UsersFile {
    /// Opens `path`, or starts a new file if it does not exist. The file must parse.
    pub fn open(path: &Path) -> Result<UsersFile, UsersFileError> {
        let mut new = false;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                new = true;
                String::new()
            }
            Err(source) => {
                return Err(UsersFileError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Users::parse(&text, path)?;
        let doc = text
            .parse::<toml_edit::DocumentMut>()
            .map_err(|e| UsersFileError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(UsersFile {
            path: path.to_path_buf(),
            doc,
            new,
        })
    }

    fn users_table(&mut self) -> &mut toml_edit::Table {
        let users = self.doc.entry("users").or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        });
        if !users.is_table() {
            *users = toml_edit::Item::Table(toml_edit::Table::new());
        }
        users.as_table_mut().expect("just made a table")
    }

    pub fn contains(&self, name: &str) -> bool {
        self.doc.get("users").and_then(|u| u.get(name)).is_some()
    }

    /// Adds a new user; an existing one is an error.
    pub fn add(
        &mut self,
        name: &str,
        credential: &ScramCredential,
        permissions: &PermissionLists,
    ) -> Result<(), UsersFileError> {
        validate_name(name)?;
        for pattern in permissions
            .read
            .iter()
            .chain(&permissions.write)
            .chain(&permissions.admin)
        {
            parse_pattern(pattern)?;
        }
        if self.contains(name) {
            return Err(UsersFileError::Exists {
                name: name.to_string(),
                path: self.path.clone(),
            });
        }
        let mut user = toml_edit::Table::new();
        for (field, list) in [
            ("read", &permissions.read),
            ("write", &permissions.write),
            ("admin", &permissions.admin),
        ] {
            let array: toml_edit::Array = list.iter().map(String::as_str).collect();
            user.insert(field, toml_edit::value(array));
        }
        user.insert("scram_sha_256", credential_item(credential));
        self.users_table()
            .insert(name, toml_edit::Item::Table(user));
        Ok(())
    }

    /// Replaces a user's credential, keeping its permissions.
    pub fn set_credential(
        &mut self,
        name: &str,
        credential: &ScramCredential,
    ) -> Result<(), UsersFileError> {
        let path = self.path.clone();
        let user = self
            .users_table()
            .get_mut(name)
            .and_then(|u| u.as_table_like_mut())
            .ok_or(UsersFileError::NotFound {
                name: name.to_string(),
                path,
            })?;
        user.insert("scram_sha_256", credential_item(credential));
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), UsersFileError> {
        let path = self.path.clone();
        self.users_table()
            .remove(name)
            .map(|_| ())
            .ok_or(UsersFileError::NotFound {
                name: name.to_string(),
                path,
            })
    }

    /// Checks the result parses, then replaces the file atomically (write a temporary file
    /// with mode 0600 next to it, fsync, rename), so the broker never reads half a file.
    pub fn save(&self) -> Result<(), UsersFileError> {
        let mut text = self.doc.to_string();
        if self.new {
            text = format!("{NEW_FILE_HEADER}\n{text}");
        }
        Users::parse(&text, &self.path)?;
        let write_err = |source| UsersFileError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".rill-users-")
            .tempfile_in(&dir)
            .map_err(write_err)?;
        set_private(tmp.as_file()).map_err(write_err)?;
        tmp.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(&self.path).map_err(|e| write_err(e.error))?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

fn credential_item(credential: &ScramCredential) -> toml_edit::Item {
    let mut table = toml_edit::InlineTable::new();
    table.insert("iterations", i64::from(credential.iterations).into());
    table.insert("salt", credential.salt_base64().into());
    table.insert("stored_key", BASE64.encode(credential.stored_key).into());
    table.insert("server_key", BASE64.encode(credential.server_key).into());
    toml_edit::value(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential_toml() -> String {
        let c = ScramCredential::derive("pw", b"0123456789abcdef".to_vec(), 4096);
        format!(
            "{{ iterations = 4096, salt = \"{}\", stored_key = \"{}\", server_key = \"{}\" }}",
            c.salt_base64(),
            BASE64.encode(c.stored_key),
            BASE64.encode(c.server_key)
        )
    }

    fn parse(text: &str) -> Result<Users, UsersFileError> {
        Users::parse(text, Path::new("users.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_valid_file_parses() {
        let text = format!(
            "# comment\n[users.agent]\nwrite = [\"logs\", \"metrics\"]\nscram_sha_256 = {}\n\n[users.dash]\nread = [\"*\"]\nscram_sha_256 = {}\n",
            credential_toml(),
            credential_toml()
        );
        let users = parse(&text).expect("valid file");
        assert_eq!(users.len(), 2);
        let agent = users.get("agent").expect("agent");
        assert!(agent.credential.verify_password("pw"));
        assert!(agent
            .permissions
            .allows(super::super::acl::Operation::Write, "logs"));
        assert!(!agent
            .permissions
            .allows(super::super::acl::Operation::Read, "logs"));
        assert!(parse("").expect("empty file").is_empty());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cred = credential_toml();
        let bad_salt = cred.replacen("salt = \"", "salt = \"!!", 1);
        let err = error(&format!(
            "[users.a]\nread = []\nscram_sha_256 = {bad_salt}\n"
        ));
        assert!(err.contains("users.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("users.a.scram_sha_256.salt"), "{err}");

        let err = error(&format!(
            "[users.a]\nscram_sha_256 = {cred}\nread = [\"ok\", \"bad[\"]\n"
        ));
        assert!(
            err.contains("line 3") && err.contains("users.a.read"),
            "{err}"
        );

        let err = error("[users.a]\nread = []\n");
        assert!(
            err.contains("users.a.scram_sha_256") && err.contains("missing"),
            "{err}"
        );

        let err = error(&format!(
            "[users.a]\npassword = \"x\"\nscram_sha_256 = {cred}\n"
        ));
        assert!(err.contains("password") && err.contains("line 2"), "{err}");

        let err = error(&format!(
            "[users.a]\nscram_sha_256 = {}\n",
            cred.replace("iterations = 4096", "iterations = 10")
        ));
        assert!(
            err.contains("users.a.scram_sha_256.iterations") && err.contains("line 2"),
            "{err}"
        );

        let err = error(&format!("[users.\"a b\"]\nscram_sha_256 = {cred}\n"));
        assert!(
            err.contains("invalid user name") && err.contains("line 1"),
            "{err}"
        );

        let err = error("[users.a\n");
        assert!(
            err.contains("users.toml") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn edits_keep_comments_and_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        let mut file = UsersFile::open(&path).expect("new file");
        let cred = ScramCredential::new("secret", 4096).expect("random");
        file.add(
            "agent",
            &cred,
            &PermissionLists {
                write: vec!["logs".into()],
                ..Default::default()
            },
        )
        .expect("add");
        file.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# rill users"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        std::fs::write(&path, format!("{text}# my note\n")).expect("append comment");

        let mut file = UsersFile::open(&path).expect("reopen");
        assert!(matches!(
            file.add("agent", &cred, &PermissionLists::default()),
            Err(UsersFileError::Exists { .. })
        ));
        let other = ScramCredential::new("other", 4096).expect("random");
        file.set_credential("agent", &other).expect("passwd");
        file.add("dash", &cred, &PermissionLists::default())
            .expect("add dash");
        file.remove("dash").expect("remove");
        assert!(matches!(
            file.remove("dash"),
            Err(UsersFileError::NotFound { .. })
        ));
        file.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("# my note"), "{text}");
        let users = Users::load(&path).expect("load");
        let agent = users.get("agent").expect("agent");
        assert!(agent.credential.verify_password("other"));
        assert_eq!(agent.permissions.write[0].as_str(), "logs");
        assert!(users.get("dash").is_none());
    }
}
