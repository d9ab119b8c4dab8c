//! Per-user disk quotas, shared by every service that writes into homes.
//!
//! Each user with a quota has a ledger of bytes used in their home (one per
//! user and home, so a user moved to a new home starts a new count). While writes run, every
//! byte is charged to the ledger before it is written, and the services give
//! bytes back when a write is discarded, an upload replaces older content or
//! a file is deleted: two sessions of one user uploading at once share one
//! count and cannot pass the quota together.
//!
//! The ledger starts from a count of the home on disk (a walk, links not
//! followed), taken on the blocking pool when a write starts. It is taken
//! again when a write starts with no other write of that user running and
//! the last count is older than [`RECOUNT_AFTER`], so that changes made
//! outside sockit (files copied in or removed by hand) are picked up. Not on
//! every write: the walk costs about 2 µs a file, and a user uploading many
//! files one after another into a home of 100 000 would pay 0.2 s for each.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a count of a home is trusted before a write that starts alone
/// counts it again.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(60);

/// The quota would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("disk quota exceeded: {used} of {limit} bytes used")]
pub struct QuotaExceeded {
    pub used: u64,
    pub limit: u64,
}

/// One user's count.
#[derive(Debug, Default)]
struct Ledger {
    used: u64,
    writers: usize,
    /// When `used` was last taken from the disk.
    counted: Option<Instant>,
}

impl Ledger {
    fn needs_count(&self) -> bool {
        self.writers == 0 && self.counted.is_none_or(|at| at.elapsed() >= RECOUNT_AFTER)
    }
}

#[derive(Debug, Default)]
struct UserLedger {
    ledger: Mutex<Ledger>,
    /// Held while a write starts: writes start one at a time, so a count
    /// from the disk never overwrites the charges of a write running beside
    /// it.
    starting: tokio::sync::Mutex<()>,
}

impl UserLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("quota lock")
    }
}

/// The ledgers of every user, by name and home.
#[derive(Debug, Default)]
pub struct Quotas {
    ledgers: Mutex<HashMap<(String, PathBuf), Arc<UserLedger>>>,
}

/// One running write of one user; charges bytes against their quota.
#[derive(Debug)]
pub struct QuotaWriter {
    ledger: Option<Arc<UserLedger>>,
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
    /// Starts a write for `user` with `limit` (`None`: no quota) in `home`
    /// (canonical, as [`crate::vfs::Jail::root`] gives it), counting the
    /// home first when the ledger needs it (see the module docs).
    ///
    /// # Errors
    /// The home cannot be walked to count its usage.
    pub async fn writer(
        &self,
        user: &str,
        home: &Path,
        limit: Option<u64>,
    ) -> io::Result<QuotaWriter> {
        let key = (user.to_owned(), home.to_owned());
        let Some(limit) = limit else {
            // Writes without a quota are not counted: should a quota be set
            // again, its ledger must start from the disk.
            self.ledgers.lock().expect("quota lock").remove(&key);
            return Ok(QuotaWriter {
                ledger: None,
                limit: u64::MAX,
            });
        };
        let ledger = self
            .ledgers
            .lock()
            .expect("quota lock")
            .entry(key)
            .or_default()
            .clone();
        let starting = ledger.starting.lock().await;
        if ledger.lock().needs_count() {
            let home = home.to_owned();
            let used = tokio::task::spawn_blocking(move || usage(&home))
                .await
                .map_err(io::Error::other)??;
            let mut entry = ledger.lock();
            entry.used = used;
            entry.counted = Some(Instant::now());
        }
        ledger.lock().writers += 1;
        drop(starting);
        Ok(QuotaWriter {
            ledger: Some(ledger),
            limit,
        })
    }

    /// Records that `bytes` of `user`'s in `home` were freed outside a write
    /// (a delete).
    pub fn freed(&self, user: &str, home: &Path, bytes: u64) {
        let key = (user.to_owned(), home.to_owned());
        if let Some(ledger) = self.ledgers.lock().expect("quota lock").get(&key) {
            let mut entry = ledger.lock();
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
        let mut entry = ledger.lock();
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
            let mut entry = ledger.lock();
            entry.used = entry.used.saturating_sub(bytes);
        }
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> u64 {
        match &self.ledger {
            Some(ledger) => self.limit.saturating_sub(ledger.lock().used),
            None => u64::MAX,
        }
    }
}

impl Drop for QuotaWriter {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.lock().writers -= 1;
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

    #[tokio::test]
    async fn concurrent_writers_share_one_count() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("old"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        let first = quotas.writer("u", home.path(), Some(100)).await.unwrap();
        let second = quotas.writer("u", home.path(), Some(100)).await.unwrap();
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
        quotas.freed("u", home.path(), 40);
        assert_eq!(second.remaining(), 70);
    }

    #[tokio::test(start_paused = true)]
    async fn the_home_is_counted_again_only_when_a_count_has_grown_old() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("old"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        let writer = quotas.writer("u", home.path(), Some(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);
        drop(writer);

        // Copied in by hand: not seen while the count is fresh...
        std::fs::write(home.path().join("by-hand"), vec![0; 10]).unwrap();
        let writer = quotas.writer("u", home.path(), Some(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);

        // ...nor once it is old, while a write runs: its charges would be lost.
        tokio::time::advance(RECOUNT_AFTER).await;
        let beside = quotas.writer("u", home.path(), Some(100)).await.unwrap();
        assert_eq!(beside.remaining(), 60);
        drop((writer, beside));

        // The next write to start alone counts the disk again.
        let writer = quotas.writer("u", home.path(), Some(100)).await.unwrap();
        assert_eq!(writer.remaining(), 50);
    }

    #[tokio::test]
    async fn a_new_home_or_a_quota_set_again_starts_from_the_disk() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(old.path().join("a"), vec![0; 40]).unwrap();
        std::fs::write(new.path().join("b"), vec![0; 10]).unwrap();
        let quotas = Quotas::default();
        let writer = quotas.writer("u", old.path(), Some(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);
        drop(writer);
        let moved = quotas.writer("u", new.path(), Some(100)).await.unwrap();
        assert_eq!(moved.remaining(), 90);
        drop(moved);

        // Written while the user had no quota, then limited again at once.
        let unlimited = quotas.writer("u", old.path(), None).await.unwrap();
        assert_eq!(unlimited.charge(20), Ok(()));
        std::fs::write(old.path().join("c"), vec![0; 20]).unwrap();
        drop(unlimited);
        let limited = quotas.writer("u", old.path(), Some(100)).await.unwrap();
        assert_eq!(limited.remaining(), 40);
    }

    #[tokio::test]
    async fn no_quota_means_no_limit() {
        let home = tempfile::tempdir().unwrap();
        let writer = Quotas::default()
            .writer("u", home.path(), None)
            .await
            .unwrap();
        assert_eq!(writer.charge(u64::MAX), Ok(()));
    }
}
