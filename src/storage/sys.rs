//! Thin, safe wrappers of the Linux calls the storage layer is built on:
//! `openat2(2)` and the `*at` family, each acting relative to a directory
//! file descriptor. Nothing here takes a whole path from the caller's
//! current directory.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Path resolution that stays below the starting directory and never
/// passes through `/proc/self/fd`-style links.
pub const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// How many times an `openat2` that met a concurrent rename (`EAGAIN`) is
/// tried again before giving up.
const RENAME_RETRIES: usize = 64;

fn check(done: libc::c_int) -> io::Result<()> {
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `name` as a C string; a NUL inside is refused.
pub fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(dir, path, flags, mode, resolve)`, close-on-exec always.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of
        // the size passed; both outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            let fd = libc::c_int::try_from(fd).expect("file descriptors fit in an int");
            // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if tries < RENAME_RETRIES => tries += 1,
            _ => return Err(err),
        }
    }
}

/// `openat(dir, name, flags, mode)` of one component, close-on-exec.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and lives through the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, a link as a link.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain data; the kernel fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated; `stat` is a valid out pointer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &raw mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(stat)
}

/// `fstat(fd)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain data; the kernel fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &raw mut stat) })?;
    Ok(stat)
}

/// `mkdirat(dir, name, mode)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and lives through the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

/// `unlinkat(dir, name, flags)`: a file (or link) with 0, a directory with
/// `AT_REMOVEDIR`. Neither follows a link.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and lives through the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

/// `renameat2(from_dir, from, to_dir, to, flags)`.
pub fn renameat2(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated and live through the call.
    check(unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    })
}

/// `fchmod(fd, mode)`.
pub fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain call on a descriptor we hold.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

/// `futimens(fd, [now-unchanged, modified])`: sets the modification time only.
pub fn set_modified(fd: BorrowedFd<'_>, seconds: i64) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
    ];
    // SAFETY: `times` is an array of two timespecs, as futimens wants.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
}

/// The names in the directory open as `dir` (`.` and `..` left out), read
/// through a duplicate of the descriptor so that `dir` stays usable.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let copy = dir.try_clone_to_owned()?;
    // Read from the start whatever an earlier listing left the offset at.
    // SAFETY: plain call on a descriptor we hold.
    if unsafe { libc::lseek(copy.as_raw_fd(), 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = std::os::fd::IntoRawFd::into_raw_fd(copy);
    // SAFETY: `raw` is an open directory descriptor; on success the stream
    // owns it and closedir closes it.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so the descriptor is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(err);
    }
    let mut names = Vec::new();
    let outcome = loop {
        // SAFETY: errno is thread-local; clearing it tells end from error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid open directory stream.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(err)
            };
        }
        // SAFETY: readdir returned a valid entry whose name is NUL-terminated
        // and stays valid until the next readdir on this stream.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: `stream` is valid and not used after this.
    unsafe { libc::closedir(stream) };
    outcome.map(|()| names)
}
