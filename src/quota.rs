//! Per-user disk quotas, shared by every service that writes into homes.
//!
//! Each user with a quota has a ledger of bytes used. It is computed from the
//! disk (a walk of the home, links not followed) when a write starts and no
//! other write of that user is running, so changes made outside sockit are
//! picked up; while writes run, every byte is charged to the ledger before it
//! is written. Two sessions of one user uploading at once therefore share one
//! count and cannot pass the quota together.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The quota would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("disk quota exceeded: {used} of {limit} bytes used")]
pub struct QuotaExceeded {
    pub used: u64,
    pub limit: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    used: u64,
    writers: usize,
}

/// The ledgers of every user, by name.
#[derive(Debug, Default)]
pub struct Quotas {
    ledgers: Mutex<HashMap<String, Arc<Mutex<Ledger>>>>,
}

/// One running write of one user; charges bytes against their quota.
#[derive(Debug)]
pub struct QuotaWriter {
    ledger: Option<Arc<Mutex<Ledger>>>,
    limit: u64,
}

/// Bytes used under `home`: regular files' sizes; links are not followed.
///
/// # Errors
/// The home cannot be read.
pub fn usage(home: &Path) -> io::Result<u64> {
    let mut total = 0;
    crate::vfs::for_each_file(home, |_, meta| total += meta.len())?;
    Ok(total)
}

impl Quotas {
    /// Starts a write for `user` with `limit` (`None`: no quota) in `home`.
    ///
    /// # Errors
    /// The home cannot be walked to count its usage.
    pub fn writer(&self, user: &str, home: &Path, limit: Option<u64>) -> io::Result<QuotaWriter> {
        let Some(limit) = limit else {
            return Ok(QuotaWriter {
                ledger: None,
                limit: u64::MAX,
            });
        };
        let ledger = self
            .ledgers
            .lock()
            .expect("quota lock")
            .entry(user.to_owned())
            .or_default()
            .clone();
        {
            let mut entry = ledger.lock().expect("quota lock");
            if entry.writers == 0 {
                entry.used = usage(home)?;
            }
            entry.writers += 1;
        }
        Ok(QuotaWriter {
            ledger: Some(ledger),
            limit,
        })
    }

    /// Records that `bytes` of `user`'s were freed outside a write (a delete).
    pub fn freed(&self, user: &str, bytes: u64) {
        if let Some(ledger) = self.ledgers.lock().expect("quota lock").get(user) {
            let mut entry = ledger.lock().expect("quota lock");
            entry.used = entry.used.saturating_sub(bytes);
        }
    }
}

impl QuotaWriter {
    /// Charges `bytes` about to be written.
    ///
    /// # Errors
    /// [`QuotaExceeded`] when they do not fit; nothing is charged then.
    pub fn charge(&self, bytes: u64) -> Result<(), QuotaExceeded> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let mut entry = ledger.lock().expect("quota lock");
        match entry.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                entry.used = total;
                Ok(())
            }
            _ => Err(QuotaExceeded {
                used: entry.used,
                limit: self.limit,
            }),
        }
    }

    /// Gives back `bytes`: a write that was discarded, or the old content a
    /// completed upload replaced.
    pub fn refund(&self, bytes: u64) {
        if let Some(ledger) = &self.ledger {
            let mut entry = ledger.lock().expect("quota lock");
            entry.used = entry.used.saturating_sub(bytes);
        }
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> u64 {
        match &self.ledger {
            Some(ledger) => self
                .limit
                .saturating_sub(ledger.lock().expect("quota lock").used),
            None => u64::MAX,
        }
    }
}

impl Drop for QuotaWriter {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.lock().expect("quota lock").writers -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_in_every_directory() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("a/b")).unwrap();
        std::fs::write(home.path().join("x"), vec![0; 10]).unwrap();
        std::fs::write(home.path().join("a/b/y"), vec![0; 32]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.path().join("link")).unwrap();
        assert_eq!(usage(home.path()).unwrap(), 42);
    }

    #[test]
    fn concurrent_writers_share_one_count() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("old"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        let first = quotas.writer("u", home.path(), Some(100)).unwrap();
        let second = quotas.writer("u", home.path(), Some(100)).unwrap();
        assert_eq!(first.charge(30), Ok(()));
        assert_eq!(second.charge(30), Ok(()));
        assert_eq!(
            first.charge(1),
            Err(QuotaExceeded {
                used: 100,
                limit: 100
            })
        );
        second.refund(30);
        assert_eq!(first.remaining(), 30);
        quotas.freed("u", 40);
        assert_eq!(second.remaining(), 70);
    }

    #[test]
    fn no_quota_means_no_limit() {
        let home = tempfile::tempdir().unwrap();
        let writer = Quotas::default().writer("u", home.path(), None).unwrap();
        assert_eq!(writer.charge(u64::MAX), Ok(()));
    }
}
