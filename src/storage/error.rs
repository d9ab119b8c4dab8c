//! The one error type of the storage layer: the cases a client must be able
//! to tell apart. Each protocol maps it to its wire in one place (FTP reply
//! codes in `crate::ftp`, HTTP statuses in `crate::http::error`).

use std::io;

/// Why a storage operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such file or directory")]
    NotFound,
    #[error("the name is already taken")]
    Exists,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("the directory is not empty")]
    NotEmpty,
    /// Refused by a rule of the layer or by the file system; the text says which.
    #[error("permission denied: {0}")]
    NotPermitted(&'static str),
    #[error("disk quota exceeded: {used} of {limit} bytes used")]
    ByteQuota { used: u64, limit: u64 },
    #[error("file limit reached: {limit} files and directories")]
    FileQuota { limit: u64 },
    /// The path, or a link on it, leads out of the home.
    #[error("the path leads outside the home directory")]
    OutsideHome,
    /// A name no client may use (control characters, the layer's own
    /// temporary names, `.` or `..` as a final name).
    #[error("file name not allowed")]
    InvalidName,
    /// The kernel lacks `openat2(2)` (Linux before 5.6): homes cannot be
    /// confined, so the file services must not start.
    #[error(
        "this kernel has no openat2(2) (Linux 5.6 or later is needed): the file services \
         cannot confine paths to a home and will not start"
    )]
    Unsupported,
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> StorageError {
        match err.raw_os_error() {
            Some(libc::ENOENT) => StorageError::NotFound,
            Some(libc::EEXIST) => StorageError::Exists,
            Some(libc::ENOTDIR) => StorageError::NotADirectory,
            Some(libc::EISDIR) => StorageError::IsADirectory,
            Some(libc::ENOTEMPTY) => StorageError::NotEmpty,
            Some(libc::EPERM | libc::EACCES | libc::EROFS) => {
                StorageError::NotPermitted("the file system refused")
            }
            // openat2 with RESOLVE_BENEATH: a `..` or an absolute link climbs out.
            Some(libc::EXDEV) => StorageError::OutsideHome,
            // O_NOFOLLOW met a link, or RESOLVE_NO_MAGICLINKS a magic link.
            Some(libc::ELOOP) => StorageError::NotPermitted("a symbolic link is not followed here"),
            Some(libc::ENOSYS) => StorageError::Unsupported,
            Some(libc::ENAMETOOLONG | libc::EINVAL) => StorageError::InvalidName,
            _ => StorageError::Io(err),
        }
    }
}

impl From<crate::quota::QuotaExceeded> for StorageError {
    fn from(exceeded: crate::quota::QuotaExceeded) -> StorageError {
        match exceeded {
            crate::quota::QuotaExceeded::Bytes { used, limit } => {
                StorageError::ByteQuota { used, limit }
            }
            crate::quota::QuotaExceeded::Entries { limit } => StorageError::FileQuota { limit },
        }
    }
}

impl From<crate::vfs::VfsError> for StorageError {
    fn from(err: crate::vfs::VfsError) -> StorageError {
        match err {
            crate::vfs::VfsError::InvalidCharacter => StorageError::InvalidName,
            crate::vfs::VfsError::OutsideJail | crate::vfs::VfsError::EscapingLink => {
                StorageError::OutsideHome
            }
            crate::vfs::VfsError::Io(err) => err.into(),
        }
    }
}
