//! Per-user disk quotas, shared by every service that writes into homes: a
//! limit on the bytes a user stores, and one on the files and directories
//! (entries) they have, since a byte quota alone lets a user fill the disk's
//! inodes with empty files.
//!
//! Each user with a limit has a ledger of what their home holds (one per user
//! and home, so a user moved to a new home starts a new count). While writes
//! run, every byte is charged to the ledger before it is written and every
//! entry before it is made, and the services give back what a discarded
//! write, a replaced file or a delete freed: two sessions of one user
//! uploading at once share one count and cannot pass the limits together.
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

/// What a user may store; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    /// Files, directories and links, at any depth.
    pub entries: Option<u64>,
}

/// A limit would be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("disk quota exceeded: {used} of {limit} bytes used")]
    Bytes { used: u64, limit: u64 },
    #[error("file limit reached: {limit} files and directories")]
    Entries { limit: u64 },
}

/// What a home holds, as the quotas count it: regular files' bytes, and
/// entries of every kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

/// One user's count.
#[derive(Debug, Default)]
struct Ledger {
    used: Usage,
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

/// One running write of one user; charges bytes and entries against their
/// limits. Anything that makes entries in a home (an upload, a new
/// directory) runs as one.
#[derive(Debug)]
pub struct QuotaWriter {
    ledger: Option<Arc<UserLedger>>,
    max_bytes: u64,
    max_entries: u64,
}

/// What `home` holds: regular files' sizes and every entry; links are not
/// followed.
///
/// # Errors
/// The home cannot be read.
pub fn usage(home: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    crate::vfs::for_each_entry(home, |_, meta| {
        usage.entries += 1;
        if meta.is_file() {
            usage.bytes += meta.len();
        }
    })?;
    Ok(usage)
}

/// A user's limits in words, one phrase each, with how much of each is used
/// when `used` is known: "1.5 KiB of 1.0 MiB used", "7 of 100 files and
/// directories"; without it "quota 1.0 MiB", "at most 100 files and
/// directories".
pub fn describe(limits: Limits, used: Option<Usage>) -> Vec<String> {
    let mut phrases = Vec::new();
    if let Some(limit) = limits.bytes {
        phrases.push(match used {
            Some(used) => format!(
                "{} of {} used",
                crate::size::format(used.bytes),
                crate::size::format(limit)
            ),
            None => format!("quota {}", crate::size::format(limit)),
        });
    }
    if let Some(limit) = limits.entries {
        phrases.push(match used {
            Some(used) => format!("{} of {limit} files and directories", used.entries),
            None => format!("at most {limit} files and directories"),
        });
    }
    phrases
}

/// Counts `home` from the disk into `ledger` when the ledger needs it (see
/// the module docs); the caller holds the ledger's `starting` lock.
async fn count_if_needed(ledger: &UserLedger, home: &Path) -> io::Result<()> {
    if !ledger.lock().needs_count() {
        return Ok(());
    }
    let home = home.to_owned();
    let used = tokio::task::spawn_blocking(move || usage(&home))
        .await
        .map_err(io::Error::other)??;
    let mut entry = ledger.lock();
    entry.used = used;
    entry.counted = Some(Instant::now());
    Ok(())
}

impl Quotas {
    /// Starts a write for `user` with `limits` in `home` (canonical, as
    /// [`crate::vfs::Jail::root`] gives it), counting the home first when
    /// the ledger needs it (see the module docs).
    ///
    /// # Errors
    /// The home cannot be walked to count its usage.
    pub async fn writer(&self, user: &str, home: &Path, limits: Limits) -> io::Result<QuotaWriter> {
        let key = (user.to_owned(), home.to_owned());
        if limits == Limits::default() {
            // Writes without limits are not counted: should a limit be set
            // again, its ledger must start from the disk.
            self.ledgers.lock().expect("quota lock").remove(&key);
            return Ok(QuotaWriter {
                ledger: None,
                max_bytes: u64::MAX,
                max_entries: u64::MAX,
            });
        }
        let ledger = self.ledger(key);
        let starting = ledger.starting.lock().await;
        count_if_needed(&ledger, home).await?;
        ledger.lock().writers += 1;
        drop(starting);
        Ok(QuotaWriter {
            ledger: Some(ledger),
            max_bytes: limits.bytes.unwrap_or(u64::MAX),
            max_entries: limits.entries.unwrap_or(u64::MAX),
        })
    }

    /// What `user`'s `home` holds as their ledger counts it, the home
    /// counted first when the ledger needs it (as a write would); `None`
    /// for a user without limits, for whom nothing is counted.
    ///
    /// # Errors
    /// The home cannot be walked to count its usage.
    pub async fn used(&self, user: &str, home: &Path, limits: Limits) -> io::Result<Option<Usage>> {
        if limits == Limits::default() {
            return Ok(None);
        }
        let ledger = self.ledger((user.to_owned(), home.to_owned()));
        let _starting = ledger.starting.lock().await;
        count_if_needed(&ledger, home).await?;
        let used = ledger.lock().used;
        Ok(Some(used))
    }

    fn ledger(&self, key: (String, PathBuf)) -> Arc<UserLedger> {
        self.ledgers
            .lock()
            .expect("quota lock")
            .entry(key)
            .or_default()
            .clone()
    }

    /// Records what a delete of `user`'s in `home` freed, outside a write.
    pub fn freed(&self, user: &str, home: &Path, freed: Usage) {
        let key = (user.to_owned(), home.to_owned());
        if let Some(ledger) = self.ledgers.lock().expect("quota lock").get(&key) {
            let mut entry = ledger.lock();
            entry.used.bytes = entry.used.bytes.saturating_sub(freed.bytes);
            entry.used.entries = entry.used.entries.saturating_sub(freed.entries);
        }
    }
}

impl QuotaWriter {
    /// Charges `bytes` about to be written.
    ///
    /// # Errors
    /// [`QuotaExceeded::Bytes`] when they do not fit; nothing is charged then.
    pub fn charge(&self, bytes: u64) -> Result<(), QuotaExceeded> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let mut entry = ledger.lock();
        match entry.used.bytes.checked_add(bytes) {
            Some(total) if total <= self.max_bytes => {
                entry.used.bytes = total;
                Ok(())
            }
            _ => Err(QuotaExceeded::Bytes {
                used: entry.used.bytes,
                limit: self.max_bytes,
            }),
        }
    }

    /// Gives back `bytes`: a write that was discarded, or the old content a
    /// completed upload replaced.
    pub fn refund(&self, bytes: u64) {
        if let Some(ledger) = &self.ledger {
            let mut entry = ledger.lock();
            entry.used.bytes = entry.used.bytes.saturating_sub(bytes);
        }
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> u64 {
        match &self.ledger {
            Some(ledger) => self.max_bytes.saturating_sub(ledger.lock().used.bytes),
            None => u64::MAX,
        }
    }

    /// Counts an entry about to be made. With `replacing`, the entry is an
    /// upload's partial file that will take an existing file's place, and
    /// may pass the limit by one: once it lands, the count is back where it
    /// was, and a user at their limit can still replace their files.
    ///
    /// # Errors
    /// [`QuotaExceeded::Entries`] when it does not fit; nothing is counted then.
    pub fn add_entry(&self, replacing: bool) -> Result<(), QuotaExceeded> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let allowed = self.max_entries.saturating_add(u64::from(replacing));
        let mut entry = ledger.lock();
        if entry.used.entries < allowed {
            entry.used.entries += 1;
            Ok(())
        } else {
            Err(QuotaExceeded::Entries {
                limit: self.max_entries,
            })
        }
    }

    /// Gives back an entry: one that could not be made, a discarded partial
    /// file, or the file a completed upload replaced.
    pub fn remove_entry(&self) {
        if let Some(ledger) = &self.ledger {
            let mut entry = ledger.lock();
            entry.used.entries = entry.used.entries.saturating_sub(1);
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

    fn bytes(limit: u64) -> Limits {
        Limits {
            bytes: Some(limit),
            entries: None,
        }
    }

    #[test]
    fn usage_counts_bytes_of_files_and_entries_of_every_kind() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("a/b")).unwrap();
        std::fs::write(home.path().join("x"), vec![0; 10]).unwrap();
        std::fs::write(home.path().join("a/b/y"), vec![0; 32]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.path().join("link")).unwrap();
        assert_eq!(
            usage(home.path()).unwrap(),
            Usage {
                bytes: 42,
                entries: 5
            }
        );
    }

    #[tokio::test]
    async fn concurrent_writers_share_one_count() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("old"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        let first = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        let second = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        assert_eq!(first.charge(30), Ok(()));
        assert_eq!(second.charge(30), Ok(()));
        assert_eq!(
            first.charge(1),
            Err(QuotaExceeded::Bytes {
                used: 100,
                limit: 100
            })
        );
        second.refund(30);
        assert_eq!(first.remaining(), 30);
        quotas.freed(
            "u",
            home.path(),
            Usage {
                bytes: 40,
                entries: 1,
            },
        );
        assert_eq!(second.remaining(), 70);
    }

    #[tokio::test(start_paused = true)]
    async fn the_home_is_counted_again_only_when_a_count_has_grown_old() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("old"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        let writer = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);
        drop(writer);

        // Copied in by hand: not seen while the count is fresh...
        std::fs::write(home.path().join("by-hand"), vec![0; 10]).unwrap();
        let writer = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);

        // ...nor once it is old, while a write runs: its charges would be lost.
        tokio::time::advance(RECOUNT_AFTER).await;
        let beside = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        assert_eq!(beside.remaining(), 60);
        drop((writer, beside));

        // The next write to start alone counts the disk again.
        let writer = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        assert_eq!(writer.remaining(), 50);
    }

    #[tokio::test]
    async fn a_new_home_or_a_quota_set_again_starts_from_the_disk() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(old.path().join("a"), vec![0; 40]).unwrap();
        std::fs::write(new.path().join("b"), vec![0; 10]).unwrap();
        let quotas = Quotas::default();
        let writer = quotas.writer("u", old.path(), bytes(100)).await.unwrap();
        assert_eq!(writer.remaining(), 60);
        drop(writer);
        let moved = quotas.writer("u", new.path(), bytes(100)).await.unwrap();
        assert_eq!(moved.remaining(), 90);
        drop(moved);

        // Written while the user had no quota, then limited again at once.
        let unlimited = quotas
            .writer("u", old.path(), Limits::default())
            .await
            .unwrap();
        assert_eq!(unlimited.charge(20), Ok(()));
        std::fs::write(old.path().join("c"), vec![0; 20]).unwrap();
        drop(unlimited);
        let limited = quotas.writer("u", old.path(), bytes(100)).await.unwrap();
        assert_eq!(limited.remaining(), 40);
    }

    #[tokio::test]
    async fn entries_stop_at_the_limit_but_one_may_replace_a_file_there() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("dir")).unwrap();
        std::fs::write(home.path().join("dir/file"), b"x").unwrap();
        let limits = Limits {
            bytes: None,
            entries: Some(3),
        };
        let quotas = Quotas::default();
        let first = quotas.writer("u", home.path(), limits).await.unwrap();
        let second = quotas.writer("u", home.path(), limits).await.unwrap();
        assert_eq!(first.add_entry(false), Ok(()));
        let full = Err(QuotaExceeded::Entries { limit: 3 });
        assert_eq!(second.add_entry(false), full);
        // A partial file that will replace a file: one over, not two.
        assert_eq!(second.add_entry(true), Ok(()));
        assert_eq!(first.add_entry(true), full);
        second.remove_entry();
        quotas.freed(
            "u",
            home.path(),
            Usage {
                bytes: 1,
                entries: 1,
            },
        );
        assert_eq!(first.add_entry(false), Ok(()));
        assert_eq!(second.add_entry(false), full);
        // Bytes are not limited here.
        assert_eq!(first.charge(u64::MAX / 2), Ok(()));
    }

    #[tokio::test]
    async fn used_counts_a_home_once_and_then_follows_the_writes() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("a"), vec![0; 40]).unwrap();
        let quotas = Quotas::default();
        assert_eq!(
            quotas
                .used("u", home.path(), Limits::default())
                .await
                .unwrap(),
            None
        );
        let expected = |bytes, entries| Some(Usage { bytes, entries });
        assert_eq!(
            quotas.used("u", home.path(), bytes(100)).await.unwrap(),
            expected(40, 1)
        );
        let writer = quotas.writer("u", home.path(), bytes(100)).await.unwrap();
        writer.charge(10).unwrap();
        writer.add_entry(false).unwrap();
        assert_eq!(
            quotas.used("u", home.path(), bytes(100)).await.unwrap(),
            expected(50, 2)
        );
    }

    #[test]
    fn limits_are_described_with_their_use_when_it_is_known() {
        let both = Limits {
            bytes: Some(1 << 20),
            entries: Some(100),
        };
        let used = Usage {
            bytes: 1536,
            entries: 7,
        };
        assert_eq!(
            describe(both, Some(used)),
            ["1.5 KiB of 1.0 MiB used", "7 of 100 files and directories"]
        );
        assert_eq!(
            describe(both, None),
            ["quota 1.0 MiB", "at most 100 files and directories"]
        );
        assert!(describe(Limits::default(), None).is_empty());
    }

    #[tokio::test]
    async fn no_quota_means_no_limit() {
        let home = tempfile::tempdir().unwrap();
        let writer = Quotas::default()
            .writer("u", home.path(), Limits::default())
            .await
            .unwrap();
        assert_eq!(writer.charge(u64::MAX), Ok(()));
    }
}
