//! The console's errors and the one place they become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::quota::QuotaExceeded;
use crate::storage::StorageError;
use crate::users::UserError;
use crate::vfs::VfsError;

/// Why a file request failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file or directory")]
    NotFound,
    #[error("you may not {0} here")]
    NotPermitted(&'static str),
    #[error(transparent)]
    Path(#[from] VfsError),
    #[error("{0:?} is not a usable file name")]
    BadName(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("the upload is malformed: {0}")]
    BadUpload(String),
    #[error("your account is no longer valid")]
    Account(#[from] UserError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the server could not do it: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for FileError {
    fn from(err: std::io::Error) -> FileError {
        match err.kind() {
            std::io::ErrorKind::NotFound => FileError::NotFound,
            std::io::ErrorKind::AlreadyExists => {
                FileError::Conflict("it exists already".to_owned())
            }
            std::io::ErrorKind::DirectoryNotEmpty => {
                FileError::Conflict("the directory is not empty".to_owned())
            }
            _ => FileError::Io(err),
        }
    }
}

impl IntoResponse for FileError {
    fn into_response(self) -> Response {
        let status = match &self {
            FileError::NotFound => StatusCode::NOT_FOUND,
            FileError::NotPermitted(_) | FileError::Account(_) => StatusCode::FORBIDDEN,
            FileError::Path(VfsError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                StatusCode::NOT_FOUND
            }
            FileError::Path(VfsError::Io(_)) | FileError::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            FileError::Path(_) => StatusCode::FORBIDDEN,
            FileError::BadName(_) | FileError::BadUpload(_) => StatusCode::BAD_REQUEST,
            FileError::Conflict(_) => StatusCode::CONFLICT,
            FileError::Quota(_) => StatusCode::INSUFFICIENT_STORAGE,
            FileError::Storage(err) => match err {
                StorageError::NotFound => StatusCode::NOT_FOUND,
                StorageError::Exists
                | StorageError::NotADirectory
                | StorageError::IsADirectory
                | StorageError::NotEmpty => StatusCode::CONFLICT,
                StorageError::NotPermitted(_) | StorageError::OutsideHome => StatusCode::FORBIDDEN,
                StorageError::ByteQuota { .. } | StorageError::FileQuota { .. } => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                StorageError::InvalidName => StatusCode::BAD_REQUEST,
                StorageError::Unsupported | StorageError::Io(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self, "file request failed");
        }
        (status, self.to_string()).into_response()
    }
}
