//! The user store shared by FTP, the HTTP console and `sockit user`.
//!
//! Users live in `users.toml` in the data dir, mode 0600, one `[[user]]`
//! table each: a name, an argon2id password hash in PHC format, a home
//! directory, an optional byte quota and limit on files and directories
//! (entries), permissions, and whether the user may
//! see the admin dashboard. Every password check in sockit goes through
//! [`UserStore::verify`], so FTP and the console accept exactly the same
//! credentials.
//!
//! The file is rewritten atomically (a temporary file renamed over it), and a
//! running server notices when `sockit user` changed it: each lookup reloads
//! the file if its modification time moved.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, LazyLock, Mutex, RwLock};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

/// The file name in the data dir.
pub const FILE_NAME: &str = "users.toml";

/// What a user may do in their home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
    pub rename: bool,
}

impl Permissions {
    /// Everything.
    pub const FULL: Permissions = Permissions {
        read: true,
        write: true,
        delete: true,
        mkdir: true,
        rename: true,
    };

    /// Browse and download only.
    pub const READ_ONLY: Permissions = Permissions {
        read: true,
        write: false,
        delete: false,
        mkdir: false,
        rename: false,
    };
}

/// One user, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// argon2id hash in PHC string format.
    pub password: String,
    pub home: PathBuf,
    /// Bytes the user may store; `None` for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// Files and directories the user may have in their home, at any depth;
    /// `None` for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u64>,
    pub permissions: Permissions,
    #[serde(default)]
    pub admin: bool,
}

impl User {
    /// The user's limits, as [`crate::quota`] enforces them.
    pub fn limits(&self) -> crate::quota::Limits {
        crate::quota::Limits {
            bytes: self.quota,
            entries: self.max_files,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

/// A password that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the store could not do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("a user named {0:?} exists already")]
    Exists(String),
    #[error(
        "{0:?} is not a valid user name: use 1 to 32 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
    )]
    InvalidName(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the home directory must be an absolute path: {}", .0.display())]
    RelativeHome(PathBuf),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Why a sign-in was refused. Deliberately says nothing about which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("wrong user name or password")]
pub struct WrongCredentials;

/// What to create with [`UserStore::add`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password: Secret,
    /// `None`: `<data dir>/homes/<name>`.
    pub home: Option<PathBuf>,
    pub quota: Option<u64>,
    pub max_files: Option<u64>,
    pub permissions: Permissions,
    pub admin: bool,
}

/// What to change with [`UserStore::change`]; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub home: Option<PathBuf>,
    /// `Some(None)` removes the quota.
    pub quota: Option<Option<u64>>,
    /// `Some(None)` removes the limit.
    pub max_files: Option<Option<u64>>,
    pub permissions: Option<Permissions>,
    pub admin: Option<bool>,
}

/// The users of one data dir.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    homes: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    users: BTreeMap<String, User>,
    modified: Option<SystemTime>,
}

/// A hash to verify against when the user does not exist, so an unknown name
/// takes as long to refuse as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a real password").expect("hashing works"));

/// The argon2id cost for new hashes: 7 MiB of memory, 5 passes, one lane.
/// OWASP's password storage guidance lists this beside 19 MiB with 2 passes
/// as equal in strength (memory traded for passes); the smaller block keeps
/// a server's logins cheap in memory (see [`CONCURRENT_CHECKS`]). A stored
/// hash carries its own parameters, so hashes made with other costs still
/// verify.
fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).expect("valid argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password with argon2id ([`hasher`]'s cost) and a random salt.
///
/// # Errors
/// [`UserError::Hash`] if the hasher fails (it does not with valid input).
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|err| UserError::Hash(err.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| UserError::Hash(err.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| UserError::Hash(err.to_string()))
}

/// How many password checks may run at once. Each argon2id check holds its
/// memory cost (7 MiB for hashes made here) while it runs, so logins
/// arriving together (an attack, or just many clients) would otherwise take
/// memory without bound; the rest wait their turn, which costs them no more
/// than the CPU they would share.
const CONCURRENT_CHECKS: usize = 2;

/// The password check slots in use, and a wakeup for those waiting.
static CHECKS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One of the [`CONCURRENT_CHECKS`] slots, given back when dropped (also
/// when a check panics).
struct CheckSlot;

impl CheckSlot {
    /// Waits for a free slot.
    fn take() -> CheckSlot {
        let (in_use, freed) = &CHECKS;
        let mut busy = in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *busy >= CONCURRENT_CHECKS {
            busy = freed
                .wait(busy)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *busy += 1;
        CheckSlot
    }
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        let (in_use, freed) = &CHECKS;
        *in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        freed.notify_one();
    }
}

fn password_matches(password: &str, hash: &str) -> bool {
    let _slot = CheckSlot::take();
    // The parameters come from the stored hash, not from `hasher`.
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Checks a user name: 1 to 32 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random password of 20 letters and digits.
pub fn random_password() -> Secret {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    // 256 is not a multiple of the alphabet's length; the bias this leaves is
    // far below what matters for a 20-character password.
    Secret(
        bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect(),
    )
}

impl UserStore {
    /// Opens the store of `data_dir`; a missing file is an empty store.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn open(data_dir: &Path) -> Result<UserStore, UserError> {
        let store = UserStore {
            path: data_dir.join(FILE_NAME),
            homes: data_dir.join("homes"),
            loaded: RwLock::new(Loaded::default()),
        };
        store.reload_if_changed()?;
        Ok(store)
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    fn reload_if_changed(&self) -> Result<(), UserError> {
        let modified = self.modified();
        if self.loaded.read().expect("users lock").modified == modified && modified.is_some() {
            return Ok(());
        }
        let users = match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let file: UsersFile = toml::from_str(&text).map_err(|err| UserError::Parse {
                    path: self.path.clone(),
                    message: err.message().to_owned(),
                })?;
                file.users
                    .into_iter()
                    .map(|u| (u.name.clone(), u))
                    .collect()
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(UserError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        *self.loaded.write().expect("users lock") = Loaded { users, modified };
        Ok(())
    }

    fn save(&self, users: &BTreeMap<String, User>) -> Result<(), UserError> {
        let write_error = |source| UserError::Write {
            path: self.path.clone(),
            source,
        };
        let file = UsersFile {
            users: users.values().cloned().collect(),
        };
        let text = format!(
            "# sockit users: managed by `sockit user`; passwords are argon2id hashes.\n{}",
            toml::to_string(&file).expect("users serialise")
        );
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let temporary = self.path.with_extension("toml.tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(write_error)?;
        // The mode above applies only when the file is created.
        out.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_error)?;
        out.write_all(text.as_bytes()).map_err(write_error)?;
        out.sync_all().map_err(write_error)?;
        std::fs::rename(&temporary, &self.path).map_err(write_error)?;
        Ok(())
    }

    /// Applies `change` to the users as on disk now, then saves.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, User>) -> Result<T, UserError>,
    ) -> Result<T, UserError> {
        self.reload_if_changed()?;
        let mut loaded = self.loaded.write().expect("users lock");
        let mut users = loaded.users.clone();
        let result = change(&mut users)?;
        self.save(&users)?;
        loaded.users = users;
        loaded.modified = self.modified();
        Ok(result)
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// The file changed and cannot be read any more.
    pub fn list(&self) -> Result<Vec<User>, UserError> {
        self.reload_if_changed()?;
        Ok(self
            .loaded
            .read()
            .expect("users lock")
            .users
            .values()
            .cloned()
            .collect())
    }

    /// The user called `name`.
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`], or the file cannot be read.
    pub fn find(&self, name: &str) -> Result<User, UserError> {
        self.reload_if_changed()?;
        self.loaded
            .read()
            .expect("users lock")
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))
    }

    /// Checks a name and password; the one sign-in check of every service.
    ///
    /// Takes about as long for an unknown name as for a wrong password. This
    /// is CPU-heavy (argon2): call it from a blocking context.
    ///
    /// # Errors
    /// [`WrongCredentials`] for any mismatch, or when the file cannot be read.
    pub fn verify(&self, name: &str, password: &str) -> Result<User, WrongCredentials> {
        match self.find(name) {
            Ok(user) if password_matches(password, &user.password) => Ok(user),
            Ok(_) => Err(WrongCredentials),
            Err(_) => {
                let _ = password_matches(password, &DUMMY_HASH);
                Err(WrongCredentials)
            }
        }
    }

    /// Adds a user and creates their home directory.
    ///
    /// # Errors
    /// An invalid name, an empty password, a relative home, an existing name,
    /// or a file or directory that cannot be written.
    pub fn add(&self, new: NewUser) -> Result<User, UserError> {
        if !valid_name(&new.name) {
            return Err(UserError::InvalidName(new.name));
        }
        if new.password.expose().is_empty() {
            return Err(UserError::EmptyPassword);
        }
        let home = new.home.unwrap_or_else(|| self.homes.join(&new.name));
        if !home.is_absolute() {
            return Err(UserError::RelativeHome(home));
        }
        let user = User {
            name: new.name,
            password: hash_password(new.password.expose())?,
            home,
            quota: new.quota,
            max_files: new.max_files,
            permissions: new.permissions,
            admin: new.admin,
        };
        std::fs::create_dir_all(&user.home).map_err(|source| UserError::Write {
            path: user.home.clone(),
            source,
        })?;
        self.update(|users| {
            if users.contains_key(&user.name) {
                return Err(UserError::Exists(user.name.clone()));
            }
            users.insert(user.name.clone(), user.clone());
            Ok(user.clone())
        })
    }

    /// Changes a user's home, quota, permissions or admin flag; a new home
    /// is created if missing (the files in the old one stay there).
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`], a relative home, or the home or the file
    /// cannot be written.
    pub fn change(&self, name: &str, changes: UserChanges) -> Result<User, UserError> {
        if let Some(home) = &changes.home {
            if !home.is_absolute() {
                return Err(UserError::RelativeHome(home.clone()));
            }
            self.find(name)?;
            std::fs::create_dir_all(home).map_err(|source| UserError::Write {
                path: home.clone(),
                source,
            })?;
        }
        self.update(|users| {
            let user = users
                .get_mut(name)
                .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))?;
            if let Some(home) = changes.home {
                user.home = home;
            }
            if let Some(quota) = changes.quota {
                user.quota = quota;
            }
            if let Some(max_files) = changes.max_files {
                user.max_files = max_files;
            }
            if let Some(permissions) = changes.permissions {
                user.permissions = permissions;
            }
            if let Some(admin) = changes.admin {
                user.admin = admin;
            }
            Ok(user.clone())
        })
    }

    /// Removes a user (their files stay).
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`], or the file cannot be written.
    pub fn remove(&self, name: &str) -> Result<User, UserError> {
        self.update(|users| {
            users
                .remove(name)
                .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))
        })
    }

    /// Sets a new password.
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`], an empty password, or the file cannot be written.
    pub fn set_password(&self, name: &str, password: &Secret) -> Result<(), UserError> {
        if password.expose().is_empty() {
            return Err(UserError::EmptyPassword);
        }
        let hash = hash_password(password.expose())?;
        self.update(|users| {
            let user = users
                .get_mut(name)
                .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))?;
            user.password = hash;
            Ok(())
        })
    }

    /// On a store with no users, creates `admin` with a random password and
    /// returns that password (to be shown once); otherwise does nothing.
    ///
    /// # Errors
    /// The file or the home directory cannot be written.
    pub fn ensure_admin(&self) -> Result<Option<Secret>, UserError> {
        if !self.list()?.is_empty() {
            return Ok(None);
        }
        let password = random_password();
        self.add(NewUser {
            name: "admin".to_owned(),
            password: password.clone(),
            home: None,
            quota: None,
            max_files: None,
            permissions: Permissions::FULL,
            admin: true,
        })?;
        Ok(Some(password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(name: &str, password: &str) -> NewUser {
        NewUser {
            name: name.to_owned(),
            password: Secret::new(password),
            home: None,
            quota: Some(1000),
            max_files: None,
            permissions: Permissions::READ_ONLY,
            admin: false,
        }
    }

    #[test]
    fn an_added_user_signs_in_with_their_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let user = store.add(new_user("alice", "s3cret")).unwrap();
        assert!(user.password.starts_with("$argon2id$"));
        assert!(user.home.is_dir());
        assert_eq!(store.verify("alice", "s3cret").unwrap().name, "alice");
        assert_eq!(store.verify("alice", "S3cret"), Err(WrongCredentials));
        assert_eq!(store.verify("nobody", "s3cret"), Err(WrongCredentials));
    }

    #[test]
    fn a_change_keeps_the_password_and_what_it_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let before = store.add(new_user("alice", "s3cret")).unwrap();
        let home = dir.path().join("elsewhere");
        let after = store
            .change(
                "alice",
                UserChanges {
                    home: Some(home.clone()),
                    quota: Some(None),
                    ..UserChanges::default()
                },
            )
            .unwrap();
        assert_eq!((after.home.as_path(), after.quota), (home.as_path(), None));
        assert!(home.is_dir());
        assert_eq!(after.permissions, before.permissions);
        assert_eq!(after.password, before.password);
        assert_eq!(store.find("alice").unwrap(), after);
        let admin = UserChanges {
            permissions: Some(Permissions::FULL),
            admin: Some(true),
            ..UserChanges::default()
        };
        let promoted = store.change("alice", admin.clone()).unwrap();
        assert!(promoted.admin && promoted.permissions == Permissions::FULL);
        assert_eq!(promoted.home, home);
        assert!(matches!(
            store.change("bob", admin),
            Err(UserError::NoSuchUser(_))
        ));
        let relative = UserChanges {
            home: Some(PathBuf::from("rel")),
            ..UserChanges::default()
        };
        assert!(matches!(
            store.change("alice", relative),
            Err(UserError::RelativeHome(_))
        ));
    }

    #[test]
    fn new_hashes_cost_7_mib_and_hashes_of_other_costs_still_verify() {
        let hash = hash_password("pw").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(password_matches("pw", &hash));
        // A hash made with the crate's default cost (19 MiB, 2 passes), as
        // earlier versions stored them.
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let older = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(older.contains("m=19456,t=2"), "{older}");
        assert!(password_matches("pw", &older));
        assert!(!password_matches("pW", &older));
    }

    #[test]
    fn the_file_is_private_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        UserStore::open(dir.path())
            .unwrap()
            .add(new_user("bob", "pw"))
            .unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let reopened = UserStore::open(dir.path()).unwrap();
        let bob = reopened.find("bob").unwrap();
        assert_eq!(bob.quota, Some(1000));
        assert_eq!(bob.permissions, Permissions::READ_ONLY);
        assert!(
            !std::fs::read_to_string(dir.path().join(FILE_NAME))
                .unwrap()
                .contains("\"pw\"")
        );
    }

    #[test]
    fn a_running_store_sees_changes_made_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let server = UserStore::open(dir.path()).unwrap();
        assert!(server.find("carol").is_err());
        let cli = UserStore::open(dir.path()).unwrap();
        cli.add(new_user("carol", "pw")).unwrap();
        assert!(server.verify("carol", "pw").is_ok());
        cli.set_password("carol", &Secret::new("new")).unwrap();
        assert!(server.verify("carol", "pw").is_err());
        assert!(server.verify("carol", "new").is_ok());
        cli.remove("carol").unwrap();
        assert!(server.find("carol").is_err());
    }

    #[test]
    fn bad_names_duplicates_and_empty_passwords_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        for name in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-flag",
            "x y",
            "é",
            &"a".repeat(33),
        ] {
            assert!(
                matches!(
                    store.add(new_user(name, "pw")),
                    Err(UserError::InvalidName(_))
                ),
                "{name:?}"
            );
        }
        store.add(new_user("dave", "pw")).unwrap();
        assert!(matches!(
            store.add(new_user("dave", "pw")),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            store.add(new_user("erin", "")),
            Err(UserError::EmptyPassword)
        ));
    }

    #[test]
    fn the_first_admin_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let password = store.ensure_admin().unwrap().expect("a new admin");
        assert_eq!(password.expose().len(), 20);
        assert!(store.verify("admin", password.expose()).unwrap().admin);
        assert!(store.ensure_admin().unwrap().is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
