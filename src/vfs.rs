//! The jail: every path a client names is resolved here, for FTP, the HTTP
//! console and anything else that serves a user's home.
//!
//! Resolution has two steps. [`VirtualPath::join`] is pure: it turns what the
//! client typed (absolute, or relative to the current directory) into a
//! normalised path inside the jail, such as `/docs/report.txt`. A `..` that
//! would climb above the jail's root is an error, not clamped; so are NUL, CR
//! and LF, which no protocol can carry safely. [`Jail::resolve`] then maps it to
//! the real file and checks the file system: the path, or for a new entry its
//! parent, is canonicalised (following every symbolic link) and must still lie
//! inside the jail, so a link that points out of the home is refused, and so is
//! a dangling link that a write would follow out.
//!
//! Clients of sockit cannot create symbolic links; only someone with a shell
//! on the server can, which is why the check at resolution time is enough.

use std::io;
use std::path::{Path, PathBuf};

/// Names of the files uploads write before renaming them into place start
/// with this (random temporaries for the console, one partial file per
/// target for FTP); listings hide them and clients cannot name them.
pub const UPLOAD_PREFIX: &str = ".sockit-upload-";

/// The hidden path in the real directory `dir` where an FTP upload of the
/// file `name` is kept until it completes: one per target, so an
/// interrupted upload can be found again and resumed.
pub fn upload_partial(dir: &Path, name: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    dir.join(format!(
        "{UPLOAD_PREFIX}{}",
        crate::hex::encode(&digest[..16])
    ))
}

/// A fresh, hidden temporary path in the real directory `dir` for an upload
/// that will be renamed into place when complete.
pub fn upload_temporary(dir: &Path) -> PathBuf {
    dir.join(format!("{UPLOAD_PREFIX}{}", crate::hex::random(8)))
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirEntry {
    pub name: String,
    pub dir: bool,
    /// A symbolic link, described by its own metadata.
    pub link: bool,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
    /// The permission bits (`rwxrwxrwx`, the low nine of `st_mode`).
    pub mode: u32,
}

impl DirEntry {
    /// The entry `name` with what `meta` says of it.
    pub fn new(name: String, meta: &std::fs::Metadata) -> DirEntry {
        DirEntry {
            name,
            dir: meta.is_dir(),
            link: meta.file_type().is_symlink(),
            size: meta.len(),
            modified: meta.modified().ok(),
            mode: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        }
    }
}

impl From<crate::storage::Entry> for DirEntry {
    /// A listing entry from the storage layer's own `lstat` of it: a link
    /// is listed as a link (never a directory), with the link's own size.
    fn from(entry: crate::storage::Entry) -> DirEntry {
        DirEntry {
            dir: entry.is_dir(),
            link: entry.kind == crate::storage::Kind::Link,
            name: entry.name,
            size: entry.size,
            modified: entry.modified,
            mode: entry.mode,
        }
    }
}

/// The kept partial upload's path for the target `real`, whose client path
/// is `virtual_path`, if the target can have one (the home itself cannot).
pub fn partial_of(virtual_path: &VirtualPath, real: &Path) -> Option<PathBuf> {
    Some(upload_partial(real.parent()?, virtual_path.file_name()?))
}

/// Lists the real directory `dir` (already resolved through a [`Jail`]),
/// sorted by name. Temporary upload files are hidden; entries whose
/// metadata cannot be read (dangling links) are left out. Links are shown
/// as what they point to; following one still goes through the jail.
///
/// # Errors
/// The directory cannot be read.
pub fn list_dir(dir: &Path) -> io::Result<Vec<DirEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(UPLOAD_PREFIX) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        entries.push(DirEntry::new(name, &meta));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Removes the real directory `dir` when it is empty but for hidden upload
/// files (kept partial uploads), which go with it. Returns how many of those
/// there were and the bytes they held.
///
/// # Errors
/// The directory holds anything else, or cannot be removed.
pub fn remove_dir(dir: &Path) -> io::Result<(usize, u64)> {
    let mut uploads = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !(meta.is_file()
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(UPLOAD_PREFIX))
        {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "the directory is not empty",
            ));
        }
        uploads.push((entry.path(), meta.len()));
    }
    let (mut removed, mut freed) = (0, 0);
    for (path, len) in uploads {
        std::fs::remove_file(path)?;
        removed += 1;
        freed += len;
    }
    std::fs::remove_dir(dir)?;
    Ok((removed, freed))
}

/// Removes the hidden upload files under `root` (every directory, links not
/// followed) last written before `cutoff`: kept partial uploads nobody
/// resumed. Returns how many went and the bytes they held.
///
/// # Errors
/// A directory cannot be read.
pub fn remove_stale_uploads(
    root: &Path,
    cutoff: std::time::SystemTime,
) -> io::Result<(usize, u64)> {
    let (mut removed, mut freed) = (0, 0);
    for_each_file(root, |entry, meta| {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(UPLOAD_PREFIX)
            && meta.modified().is_ok_and(|written| written < cutoff)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
            freed += meta.len();
        }
    })?;
    Ok((removed, freed))
}

/// Calls `visit` with every entry under `root` (files, directories, links
/// and the rest), in every directory; symbolic links are not followed.
///
/// # Errors
/// A directory cannot be read.
pub fn for_each_entry(
    root: &Path,
    mut visit: impl FnMut(&std::fs::DirEntry, &std::fs::Metadata),
) -> io::Result<()> {
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            }
            visit(&entry, &meta);
        }
    }
    Ok(())
}

/// Calls `visit` with every regular file under `root`, in every directory;
/// symbolic links are not followed.
///
/// # Errors
/// A directory cannot be read.
pub fn for_each_file(
    root: &Path,
    mut visit: impl FnMut(&std::fs::DirEntry, &std::fs::Metadata),
) -> io::Result<()> {
    for_each_entry(root, |entry, meta| {
        if meta.is_file() {
            visit(entry, meta);
        }
    })
}

/// Renames `from` to `to` unless `to` exists (renameat2 with
/// RENAME_NOREPLACE): the check and the rename are one step.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = |path: &Path| {
        std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))
    };
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are NUL-terminated paths that live through the call.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Why a client path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// The name contains NUL, CR or LF.
    #[error("the path contains a NUL, CR or LF character")]
    InvalidCharacter,
    /// `..` would climb above the root.
    #[error("the path leads outside the home directory")]
    OutsideJail,
    /// A symbolic link leads outside the jail.
    #[error("a symbolic link in the path leads outside the home directory")]
    EscapingLink,
    /// The file system said no.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A normalised path inside a jail: starts with `/`, no `.`, `..` or empty
/// components, no trailing `/` except for the root itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualPath(String);

impl VirtualPath {
    /// The jail's root, `/`.
    pub fn root() -> VirtualPath {
        VirtualPath("/".to_owned())
    }

    /// Resolves `client` against `self` (the current directory): an absolute
    /// `client` starts from the root.
    ///
    /// # Errors
    /// [`VfsError::InvalidCharacter`] or [`VfsError::OutsideJail`].
    pub fn join(&self, client: &str) -> Result<VirtualPath, VfsError> {
        if client.contains(['\0', '\r', '\n']) {
            return Err(VfsError::InvalidCharacter);
        }
        let mut parts: Vec<&str> = if client.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for part in client.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(VfsError::OutsideJail);
                    }
                }
                name => parts.push(name),
            }
        }
        Ok(VirtualPath(format!("/{}", parts.join("/"))))
    }

    /// The components, root first (none for the root).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|part| !part.is_empty())
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("virtual paths start with /");
        Some(VirtualPath(if cut == 0 {
            "/".to_owned()
        } else {
            self.0[..cut].to_owned()
        }))
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A directory that client paths cannot leave.
#[derive(Debug, Clone)]
pub struct Jail {
    root: PathBuf,
}

impl Jail {
    /// A jail rooted at `root`, which must exist.
    ///
    /// # Errors
    /// `root` cannot be canonicalised (it does not exist, say).
    pub fn new(root: &Path) -> io::Result<Jail> {
        Ok(Jail {
            root: root.canonicalize()?,
        })
    }

    /// The real, canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `path`, checked to stay inside the jail. `path` need
    /// not exist (a file about to be created), but its parent must.
    ///
    /// # Errors
    /// [`VfsError::EscapingLink`] when a symbolic link leads out, or the I/O
    /// error met while checking (such as a missing parent directory).
    pub fn resolve(&self, path: &VirtualPath) -> Result<PathBuf, VfsError> {
        let mut real = self.root.clone();
        real.extend(path.components());
        match real.canonicalize() {
            Ok(canonical) => self.inside(canonical),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&real).is_ok() {
                    // A dangling link: whatever it points at is not ours to create.
                    return Err(VfsError::EscapingLink);
                }
                let parent = path.parent().ok_or(VfsError::Io(err))?;
                let mut parent_real = self.root.clone();
                parent_real.extend(parent.components());
                let canonical_parent = self.inside(parent_real.canonicalize()?)?;
                Ok(canonical_parent.join(path.file_name().expect("not the root")))
            }
            Err(err) => Err(err.into()),
        }
    }

    fn inside(&self, canonical: PathBuf) -> Result<PathBuf, VfsError> {
        if canonical.starts_with(&self.root) {
            Ok(canonical)
        } else {
            Err(VfsError::EscapingLink)
        }
    }

    /// The virtual path of a real path inside the jail (for listings).
    pub fn virtual_of(&self, real: &Path) -> Option<VirtualPath> {
        let relative = real.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        Some(VirtualPath(format!("/{}", parts?.join("/"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_uploads_go_and_everything_else_stays() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("deep/er");
        std::fs::create_dir_all(&dir).unwrap();
        let stale = upload_partial(&dir, "big.iso");
        std::fs::write(&stale, [1u8; 100]).unwrap();
        std::fs::write(dir.join("big.iso"), b"kept").unwrap();
        let fresh = upload_partial(home.path(), "other");
        // A cutoff between the two writes: only the first is older.
        let cutoff = std::fs::metadata(&stale).unwrap().modified().unwrap()
            + std::time::Duration::from_nanos(1);
        std::fs::write(&fresh, [2u8; 10]).unwrap();
        let filetime = std::fs::File::options().write(true).open(&fresh).unwrap();
        filetime
            .set_modified(cutoff + std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(remove_stale_uploads(home.path(), cutoff).unwrap(), (1, 100));
        assert!(!stale.exists() && fresh.exists());
        assert_eq!(std::fs::read(dir.join("big.iso")).unwrap(), b"kept");
    }

    fn at(path: &str) -> VirtualPath {
        VirtualPath::root().join(path).unwrap()
    }

    #[test]
    fn paths_are_normalised_against_the_current_directory() {
        let cwd = at("/docs/2026");
        assert_eq!(
            cwd.join("report.txt").unwrap().as_str(),
            "/docs/2026/report.txt"
        );
        assert_eq!(cwd.join("../old/./x").unwrap().as_str(), "/docs/old/x");
        assert_eq!(cwd.join("/top//y/").unwrap().as_str(), "/top/y");
        assert_eq!(cwd.join("..").unwrap().join("..").unwrap().as_str(), "/");
        assert_eq!(cwd.join("").unwrap(), cwd);
    }

    #[test]
    fn climbing_above_the_root_is_refused_not_clamped() {
        for attempt in ["..", "../../etc/passwd", "/..", "a/../../b", "/../etc"] {
            assert!(
                matches!(
                    VirtualPath::root().join(attempt),
                    Err(VfsError::OutsideJail)
                ),
                "{attempt}"
            );
        }
        // Absolute paths name the jail's root, never the server's.
        assert_eq!(at("/etc/passwd").as_str(), "/etc/passwd");
    }

    #[test]
    fn control_characters_are_refused() {
        for name in ["a\0b", "evil\r\nDELE x", "line\n"] {
            assert!(matches!(
                VirtualPath::root().join(name),
                Err(VfsError::InvalidCharacter)
            ));
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(at("/a/b").parent().unwrap().as_str(), "/a");
        assert_eq!(at("/a").parent().unwrap().as_str(), "/");
        assert_eq!(VirtualPath::root().parent(), None);
        assert_eq!(at("/a/報告.txt").file_name(), Some("報告.txt"));
    }

    #[test]
    fn resolution_stays_in_the_jail_and_refuses_escaping_links() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        std::fs::create_dir_all(home.join("inner")).unwrap();
        std::fs::write(base.path().join("secret"), b"not yours").unwrap();
        std::os::unix::fs::symlink("/etc", home.join("etc-link")).unwrap();
        std::os::unix::fs::symlink(base.path().join("secret"), home.join("secret-link")).unwrap();
        std::os::unix::fs::symlink("inner", home.join("inner-link")).unwrap();
        std::os::unix::fs::symlink(base.path().join("nowhere"), home.join("dangling")).unwrap();
        let jail = Jail::new(&home).unwrap();

        assert_eq!(
            jail.resolve(&at("/inner")).unwrap(),
            jail.root().join("inner")
        );
        assert_eq!(
            jail.resolve(&at("/new.txt")).unwrap(),
            jail.root().join("new.txt")
        );
        // A link that stays inside is fine.
        assert_eq!(
            jail.resolve(&at("/inner-link")).unwrap(),
            jail.root().join("inner")
        );
        for escape in [
            "/etc-link",
            "/etc-link/passwd",
            "/secret-link",
            "/dangling",
            "/etc-link/new",
        ] {
            assert!(
                matches!(jail.resolve(&at(escape)), Err(VfsError::EscapingLink)),
                "{escape}"
            );
        }
        // A missing parent is an I/O error, not a path outside.
        assert!(matches!(
            jail.resolve(&at("/no/such/file")),
            Err(VfsError::Io(_))
        ));
        assert_eq!(
            jail.virtual_of(&jail.root().join("inner/x"))
                .unwrap()
                .as_str(),
            "/inner/x"
        );
    }
}
