//! The storage layer: the only code that touches users' homes, for FTP, the
//! console and any later file protocol (SFTP).
//!
//! A [`Home`] is a directory file descriptor, opened once per session or
//! request. Every client path ([`VirtualPath`], already normalised) is
//! resolved from it with `openat2(2)` and `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS`, so that no `..`, absolute link or `/proc` link can
//! lead out, whatever another process renames or swaps in the home while we
//! work: the kernel checks each step as it walks. An operation then acts on
//! the descriptor it got, or with a `*at` call on the final name relative to
//! the parent's descriptor, without following a link there (`fstatat` with
//! `AT_SYMLINK_NOFOLLOW`, `unlinkat`, `mkdirat`, `renameat2`, `openat` with
//! `O_NOFOLLOW`). A path is never checked by name and then used by name.
//!
//! Links that stay inside the home are followed on the way to a parent
//! directory; a final name that is a link is described as a link (listings,
//! `stat`), removed or renamed as a link, and never opened for writing or
//! changed in mode.
//!
//! Uploads write hidden partial files (names starting with
//! [`UPLOAD_PREFIX`], which clients cannot name), made with `O_CREAT |
//! O_EXCL | O_NOFOLLOW` and reopened only with `O_NOFOLLOW`, refused unless
//! they are plain files with one link, so a link or hard link planted at
//! the predictable name is never written through.
//!
//! **Blocking policy.** The API is synchronous: any call may block on a slow
//! disk or a network file system. Async callers run each whole operation in
//! one `tokio::task::spawn_blocking` hop (never a single call on a runtime
//! worker), and move file contents in large chunks, so a stalled disk holds
//! a blocking-pool thread and the session that asked, never a worker that
//! serves other sessions.
//!
//! The kernel must have `openat2` (Linux 5.6): [`check_support`] says so at
//! start, and the file services refuse to start without it.

mod error;
mod sys;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use error::StorageError;

pub use crate::vfs::VirtualPath;

/// Names of the files uploads write before renaming them into place start
/// with this; listings hide them and clients cannot name them.
pub const UPLOAD_PREFIX: &str = ".sockit-upload-";

/// Permission bits `SITE CHMOD` (and any later protocol) may not grant:
/// write for group and others, which would let other local accounts change
/// a user's files.
pub const FORBIDDEN_MODE_BITS: u32 = 0o022;

pub type Result<T> = std::result::Result<T, StorageError>;

/// What an entry is, from its own `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Link,
    /// A device, a named pipe or a socket: listed, never opened.
    Other,
}

/// One entry as its own `lstat` describes it (a link as a link).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Bytes for a file; for a link, the length of the path it holds.
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// The permission bits (the low nine of `st_mode`).
    pub mode: u32,
}

impl Entry {
    fn from_stat(name: String, stat: &libc::stat) -> Entry {
        let kind = match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Link,
            _ => Kind::Other,
        };
        let modified = u64::try_from(stat.st_mtime)
            .ok()
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .and_then(|at| {
                at.checked_add(Duration::from_nanos(
                    u64::try_from(stat.st_mtime_nsec).unwrap_or(0),
                ))
            });
        Entry {
            name,
            kind,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified,
            mode: stat.st_mode & 0o777,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

/// What a removal freed, as the quotas count it: regular files' bytes and
/// entries of every kind.
pub type Freed = crate::quota::Usage;

/// Says whether this kernel can confine paths (`openat2`, Linux 5.6+).
///
/// # Errors
/// [`StorageError::Unsupported`] without it.
pub fn check_support() -> Result<()> {
    let root = File::open("/")?;
    match sys::openat2(root.as_fd(), c".", libc::O_PATH, 0, sys::BENEATH) {
        Ok(_) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => Err(StorageError::Unsupported),
        Err(err) => Err(err.into()),
    }
}

/// A user's home, held open: every path resolves from this descriptor.
/// Cheap to clone (one descriptor shared).
#[derive(Debug, Clone)]
pub struct Home {
    dir: Arc<OwnedFd>,
}

/// The parent directory of a client path, held open, and the final name.
struct Parent {
    dir: OwnedFd,
    name: CString,
}

/// Refuses names no client may use: empty, `.`/`..` (a normalised path has
/// none, this is a second line), the layer's own upload names.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.starts_with(UPLOAD_PREFIX) {
        return Err(StorageError::InvalidName);
    }
    Ok(())
}

/// The path below the home of `path`, `.` for the home itself, with every
/// component checked.
fn relative(path: &VirtualPath) -> Result<CString> {
    let mut parts = Vec::new();
    for part in path.components() {
        check_name(part)?;
        parts.push(part);
    }
    if parts.is_empty() {
        return Ok(c".".to_owned());
    }
    Ok(sys::c_name(&parts.join("/"))?)
}

/// The hidden name of the kept partial upload of the file `name`: one per
/// target, so an interrupted upload can be found again and resumed.
pub fn partial_name(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    format!("{UPLOAD_PREFIX}{}", crate::hex::encode(&digest[..16]))
}

/// Refuses a descriptor that is not a plain file with exactly one name: a
/// partial upload is ours alone, so a hard link planted at its name (to a
/// file elsewhere) is never written through.
fn own_plain_file(fd: &OwnedFd) -> Result<libc::stat> {
    let stat = sys::fstat(fd.as_fd())?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_nlink != 1 {
        return Err(StorageError::NotPermitted(
            "the upload's partial file is not a plain file of its own",
        ));
    }
    Ok(stat)
}

impl Home {
    /// Opens the home at `path` (the server's configuration names it, not a
    /// client). A link at `path` itself is refused.
    ///
    /// # Errors
    /// The home cannot be opened as a directory.
    pub fn open(path: &Path) -> Result<Home> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Home {
            dir: Arc::new(dir.into()),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Opens `path`, below the home, as a directory.
    fn open_dir(&self, path: &VirtualPath) -> Result<OwnedFd> {
        Ok(sys::openat2(
            self.fd(),
            &relative(path)?,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::BENEATH,
        )?)
    }

    /// The parent of `path`, open, and its final name; the home itself has
    /// no parent and cannot be the subject of a change.
    fn parent(&self, path: &VirtualPath) -> Result<Parent> {
        let name = path.file_name().ok_or(StorageError::NotPermitted(
            "the home itself cannot be changed",
        ))?;
        check_name(name)?;
        let parent = path.parent().expect("a path with a name has a parent");
        Ok(Parent {
            dir: self.open_dir(&parent)?,
            name: sys::c_name(name)?,
        })
    }

    /// What `path` is, from its own `lstat` (a link as a link). The home
    /// itself is `/`.
    ///
    /// # Errors
    /// The path does not exist, or cannot be reached inside the home.
    pub fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        match path.file_name() {
            None => Ok(Entry::from_stat("/".to_owned(), &sys::fstat(self.fd())?)),
            Some(name) => {
                let parent = self.parent(path)?;
                let stat = sys::lstat_at(parent.dir.as_fd(), &parent.name)?;
                Ok(Entry::from_stat(name.to_owned(), &stat))
            }
        }
    }

    /// Checks that `path` is a directory one may enter (links inside the
    /// home followed).
    ///
    /// # Errors
    /// It is not a directory, or cannot be reached inside the home.
    pub fn enter(&self, path: &VirtualPath) -> Result<()> {
        self.open_dir(path).map(drop)
    }

    /// The entries of the directory `path`, sorted by name, each from its
    /// own `lstat`; partial uploads hidden.
    ///
    /// # Errors
    /// It is not a directory, or cannot be reached or read.
    pub fn list(&self, path: &VirtualPath) -> Result<Vec<Entry>> {
        let dir = self.open_dir(path)?;
        let mut entries = Vec::new();
        for name in sys::read_dir(dir.as_fd())? {
            let Ok(text) = name.to_str() else {
                continue;
            };
            if text.starts_with(UPLOAD_PREFIX) {
                continue;
            }
            // Gone between the read and the stat: not listed.
            let Ok(stat) = sys::lstat_at(dir.as_fd(), &name) else {
                continue;
            };
            entries.push(Entry::from_stat(text.to_owned(), &stat));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Opens the plain file `path` for reading (links inside the home
    /// followed). The open does not block on a named pipe.
    ///
    /// # Errors
    /// It is not a plain file, or cannot be reached inside the home.
    pub fn open_read(&self, path: &VirtualPath) -> Result<(File, Entry)> {
        let fd = sys::openat2(
            self.fd(),
            &relative(path)?,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
            sys::BENEATH,
        )?;
        let stat = sys::fstat(fd.as_fd())?;
        let entry = Entry::from_stat(path.file_name().unwrap_or("/").to_owned(), &stat);
        match entry.kind {
            Kind::File => Ok((File::from(fd), entry)),
            Kind::Dir => Err(StorageError::IsADirectory),
            _ => Err(StorageError::NotPermitted("not a plain file")),
        }
    }

    /// Opens the final entry of `path` itself, never through a link, for
    /// changes to its inode (mode, time).
    fn open_entry(&self, path: &VirtualPath) -> Result<OwnedFd> {
        let parent = self.parent(path)?;
        Ok(sys::openat(
            parent.dir.as_fd(),
            &parent.name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )?)
    }

    /// Sets the permission bits of `path` (a file or directory, never a
    /// link's target). The home's own mode cannot change, and no mode may
    /// give group or others write ([`FORBIDDEN_MODE_BITS`]).
    ///
    /// # Errors
    /// A rule refuses, or the entry cannot be reached.
    pub fn set_mode(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        if path.is_root() {
            return Err(StorageError::NotPermitted(
                "the home directory's own mode cannot be changed",
            ));
        }
        if mode & !0o777 != 0 {
            return Err(StorageError::NotPermitted(
                "only the permission bits (0-777) can be set",
            ));
        }
        if mode & FORBIDDEN_MODE_BITS != 0 {
            return Err(StorageError::NotPermitted(
                "group and others may not be given write permission",
            ));
        }
        let fd = self.open_entry(path)?;
        Ok(sys::fchmod(fd.as_fd(), mode)?)
    }

    /// Sets the modification time of the file or directory `path` (never a
    /// link's target), in seconds since the epoch.
    ///
    /// # Errors
    /// The entry cannot be reached or changed.
    pub fn set_modified(&self, path: &VirtualPath, seconds: i64) -> Result<()> {
        let fd = self.open_entry(path)?;
        Ok(sys::set_modified(fd.as_fd(), seconds)?)
    }

    /// Makes the directory `path`.
    ///
    /// # Errors
    /// The name is taken, or the parent cannot be reached.
    pub fn make_dir(&self, path: &VirtualPath) -> Result<()> {
        let parent = self.parent(path)?;
        Ok(sys::mkdirat(parent.dir.as_fd(), &parent.name, 0o755)?)
    }

    /// Removes the file or link `path`, and the kept partial upload of it if
    /// there is one. Returns what went.
    ///
    /// # Errors
    /// It is a directory, or cannot be reached or removed.
    pub fn remove_file(&self, path: &VirtualPath) -> Result<Freed> {
        let parent = self.parent(path)?;
        let stat = sys::lstat_at(parent.dir.as_fd(), &parent.name)?;
        let entry = Entry::from_stat(String::new(), &stat);
        if entry.is_dir() {
            return Err(StorageError::IsADirectory);
        }
        sys::unlinkat(parent.dir.as_fd(), &parent.name, 0)?;
        let mut freed = usage_of(&entry);
        let name = path.file_name().expect("checked by parent()");
        freed = add(freed, remove_partial(&parent.dir, name));
        Ok(freed)
    }

    /// Removes the directory `path` when it holds nothing but kept partial
    /// uploads, which go with it. Returns what went.
    ///
    /// # Errors
    /// It is not empty, not a directory, or cannot be reached or removed.
    pub fn remove_dir(&self, path: &VirtualPath) -> Result<Freed> {
        let parent = self.parent(path)?;
        let stat = sys::lstat_at(parent.dir.as_fd(), &parent.name)?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(StorageError::NotADirectory);
        }
        let dir = sys::openat(
            parent.dir.as_fd(),
            &parent.name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        let mut partials = Vec::new();
        for name in sys::read_dir(dir.as_fd())? {
            let stat = sys::lstat_at(dir.as_fd(), &name)?;
            let is_partial = name.to_bytes().starts_with(UPLOAD_PREFIX.as_bytes())
                && stat.st_mode & libc::S_IFMT == libc::S_IFREG;
            if !is_partial {
                return Err(StorageError::NotEmpty);
            }
            partials.push((name, stat));
        }
        let mut freed = Freed {
            bytes: 0,
            entries: 1,
        };
        for (name, stat) in partials {
            sys::unlinkat(dir.as_fd(), &name, 0)?;
            freed = add(freed, usage_of(&Entry::from_stat(String::new(), &stat)));
        }
        sys::unlinkat(parent.dir.as_fd(), &parent.name, libc::AT_REMOVEDIR)?;
        Ok(freed)
    }

    /// Renames `from` to `to`. With `replace`, an existing file at `to`
    /// (never a directory) is replaced atomically and described in the
    /// result (from its own `lstat`, as the rename found it), so the caller
    /// can give back exactly what went; without, a taken name is refused.
    ///
    /// # Errors
    /// Either path cannot be reached, `to` is taken (without `replace`) or
    /// is a directory.
    pub fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<Option<Entry>> {
        let source = self.parent(from)?;
        let target = self.parent(to)?;
        if !replace {
            sys::renameat2(
                source.dir.as_fd(),
                &source.name,
                target.dir.as_fd(),
                &target.name,
                libc::RENAME_NOREPLACE,
            )?;
            return Ok(None);
        }
        rename_replacing(&source.dir, &source.name, &target.dir, &target.name)
    }

    /// Opens the kept partial upload of the file `target` for writing,
    /// creating it (empty) when there is none. Returns the file, its length
    /// and whether it was made now.
    ///
    /// # Errors
    /// The parent cannot be reached; something other than a plain file of
    /// its own (a link, a hard link, a directory) holds the partial's name.
    pub fn open_partial(&self, target: &VirtualPath) -> Result<Partial> {
        let parent = self.parent(target)?;
        let name = sys::c_name(&partial_name(
            target.file_name().expect("checked by parent()"),
        ))?;
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
        let (fd, created) = match sys::openat(
            parent.dir.as_fd(),
            &name,
            flags | libc::O_CREAT | libc::O_EXCL,
            0o644,
        ) {
            Ok(fd) => (fd, true),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                (sys::openat(parent.dir.as_fd(), &name, flags, 0)?, false)
            }
            Err(err) => return Err(err.into()),
        };
        let stat = own_plain_file(&fd)?;
        Ok(Partial {
            file: File::from(fd),
            len: u64::try_from(stat.st_size).unwrap_or(0),
            created,
            dir: parent.dir,
            name,
            target: parent.name,
        })
    }

    /// The length of the kept partial upload of `target`, if there is one
    /// (read from its own `lstat`, a link at its name counting as none).
    ///
    /// # Errors
    /// The parent cannot be reached.
    pub fn partial_len(&self, target: &VirtualPath) -> Result<Option<u64>> {
        let parent = self.parent(target)?;
        let name = sys::c_name(&partial_name(
            target.file_name().expect("checked by parent()"),
        ))?;
        match sys::lstat_at(parent.dir.as_fd(), &name) {
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFREG => {
                Ok(Some(u64::try_from(stat.st_size).unwrap_or(0)))
            }
            Ok(_) => Ok(None),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

/// A partial upload, open for writing, and where it lands.
#[derive(Debug)]
pub struct Partial {
    pub file: File,
    /// Its length when opened.
    pub len: u64,
    /// Made by this open (nothing to resume).
    pub created: bool,
    dir: OwnedFd,
    name: CString,
    target: CString,
}

impl Partial {
    /// Puts the partial file in its target's place. With `replace`, an
    /// existing plain file there is replaced and described in the result;
    /// without, a taken name is refused.
    ///
    /// # Errors
    /// The target is a directory, or taken (without `replace`).
    pub fn land(self, replace: bool) -> Result<Option<Entry>> {
        if !replace {
            sys::renameat2(
                self.dir.as_fd(),
                &self.name,
                self.dir.as_fd(),
                &self.target,
                libc::RENAME_NOREPLACE,
            )?;
            return Ok(None);
        }
        rename_replacing(&self.dir, &self.name, &self.dir, &self.target)
    }

    /// Removes the partial file (a discarded upload). Returns its length.
    ///
    /// # Errors
    /// It cannot be removed.
    pub fn discard(self) -> Result<u64> {
        let len = self.file.metadata()?.len();
        sys::unlinkat(self.dir.as_fd(), &self.name, 0)?;
        Ok(len)
    }
}

/// Moves `from` over `to`, giving back what was replaced. When `to` exists,
/// the two are exchanged (`RENAME_EXCHANGE`) and then the old entry, now at
/// `from`, is described and removed: what is counted as replaced is exactly
/// what the rename took out of place, whatever changed `to` before.
fn rename_replacing(
    from_dir: &OwnedFd,
    from: &CStr,
    to_dir: &OwnedFd,
    to: &CStr,
) -> Result<Option<Entry>> {
    match sys::renameat2(
        from_dir.as_fd(),
        from,
        to_dir.as_fd(),
        to,
        libc::RENAME_NOREPLACE,
    ) {
        Ok(()) => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
        Err(err) => return Err(err.into()),
    }
    let victim = sys::lstat_at(to_dir.as_fd(), to)?;
    if victim.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(StorageError::IsADirectory);
    }
    sys::renameat2(
        from_dir.as_fd(),
        from,
        to_dir.as_fd(),
        to,
        libc::RENAME_EXCHANGE,
    )?;
    // The old entry is at `from` now: describe what is there, not what was
    // seen at `to` a moment ago.
    let old = sys::lstat_at(from_dir.as_fd(), from)?;
    if old.st_mode & libc::S_IFMT == libc::S_IFDIR {
        // A directory swapped in between the check and the exchange: put it back.
        sys::renameat2(
            from_dir.as_fd(),
            from,
            to_dir.as_fd(),
            to,
            libc::RENAME_EXCHANGE,
        )?;
        return Err(StorageError::IsADirectory);
    }
    sys::unlinkat(from_dir.as_fd(), from, 0)?;
    Ok(Some(Entry::from_stat(String::new(), &old)))
}

/// Removes the kept partial upload of `name` in `dir`, if any; what it held.
fn remove_partial(dir: &OwnedFd, name: &str) -> Freed {
    let Ok(partial) = sys::c_name(&partial_name(name)) else {
        return Freed::default();
    };
    match sys::lstat_at(dir.as_fd(), &partial) {
        Ok(stat) if sys::unlinkat(dir.as_fd(), &partial, 0).is_ok() => {
            usage_of(&Entry::from_stat(String::new(), &stat))
        }
        _ => Freed::default(),
    }
}

/// What an entry counts for in the quotas: one entry, and its bytes if it
/// is a plain file (a link's own size is not counted).
fn usage_of(entry: &Entry) -> Freed {
    Freed {
        bytes: if entry.is_file() { entry.size } else { 0 },
        entries: 1,
    }
}

fn add(a: Freed, b: Freed) -> Freed {
    Freed {
        bytes: a.bytes + b.bytes,
        entries: a.entries + b.entries,
    }
}

#[cfg(test)]
mod tests;
