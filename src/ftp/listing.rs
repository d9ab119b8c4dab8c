//! Directory listings in the `ls -l` form FTP clients parse (LIST), bare
//! names (NLST) and RFC 3659 facts (MLSD). Pure formatting: the session
//! gathers the entries.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, ReadBuf};

use crate::vfs::DirEntry;

/// How a directory listing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: names only, each after the path the client gave.
    Names,
    /// MLSD: RFC 3659 facts.
    Facts,
}

/// A listing's text, written a batch of lines at a time as the data
/// connection takes it: a directory of a million entries is never one
/// string of some 70 MB beside its entries.
pub struct ListingText {
    entries: std::vec::IntoIter<DirEntry>,
    format: Format,
    /// What NLST names start with (the path the client listed).
    prefix: String,
    now: SystemTime,
    batch: Vec<u8>,
    /// How much of `batch` has been read.
    taken: usize,
}

/// About how many bytes of lines are written at a time.
const BATCH: usize = 64 * 1024;

impl ListingText {
    pub fn new(entries: Vec<DirEntry>, format: Format, prefix: String) -> ListingText {
        ListingText {
            entries: entries.into_iter(),
            format,
            prefix,
            now: SystemTime::now(),
            batch: Vec::new(),
            taken: 0,
        }
    }

    /// Writes the next lines into the emptied batch.
    fn refill(&mut self) {
        self.batch.clear();
        self.taken = 0;
        while self.batch.len() < BATCH {
            let Some(entry) = self.entries.next() else {
                break;
            };
            let line = match self.format {
                Format::Long => long_line(&entry, self.now),
                Format::Names => format!("{}{}", self.prefix, entry.name),
                Format::Facts => facts(&entry),
            };
            self.batch.extend_from_slice(line.as_bytes());
            self.batch.extend_from_slice(b"\r\n");
        }
    }
}

impl AsyncRead for ListingText {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.taken == this.batch.len() {
            this.refill();
        }
        let count = buf.remaining().min(this.batch.len() - this.taken);
        buf.put_slice(&this.batch[this.taken..this.taken + count]);
        this.taken += count;
        Poll::Ready(Ok(()))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Nov 23 05:39`, or `Nov 23  2025` for dates more than six months from now,
/// as `ls -l` writes them (UTC).
fn ls_date(modified: SystemTime, now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(modified).to_string();
    // YYYY-MM-DDTHH:MM:SSZ
    let (year, month, day, time) = (&stamp[0..4], &stamp[5..7], &stamp[8..10], &stamp[11..16]);
    let month = MONTHS[month.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    let day = day.trim_start_matches('0');
    let half_year = std::time::Duration::from_secs(183 * 24 * 3600);
    let recent = match now.duration_since(modified) {
        Ok(age) => age < half_year,
        Err(ahead) => ahead.duration() < half_year,
    };
    if recent {
        format!("{month} {day:>2} {time}")
    } else {
        format!("{month} {day:>2}  {year}")
    }
}

/// `drwxr-x---`: the entry's type and permission bits as `ls -l` shows them.
fn mode_string(entry: &DirEntry) -> String {
    let kind = match (entry.dir, entry.link) {
        (true, _) => 'd',
        (false, true) => 'l',
        (false, false) => '-',
    };
    let bits = (0..9).rev().map(|bit| {
        if entry.mode & (1 << bit) == 0 {
            '-'
        } else {
            ['x', 'w', 'r'][bit % 3]
        }
    });
    std::iter::once(kind).chain(bits).collect()
}

/// One `LIST` line, without the CRLF.
pub fn long_line(entry: &DirEntry, now: SystemTime) -> String {
    let mode = mode_string(entry);
    format!(
        "{mode} 1 ftp ftp {:>12} {} {}",
        entry.size,
        ls_date(entry.modified.unwrap_or(SystemTime::UNIX_EPOCH), now),
        entry.name
    )
}

/// RFC 3659 time-val: `YYYYMMDDHHMMSS` in UTC.
pub fn time_val(modified: SystemTime) -> String {
    humantime::format_rfc3339_seconds(modified)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// One MLSD/MLST fact line (RFC 3659 section 7):
/// `type=file;size=N;modify=T;UNIX.mode=644; name`. `UNIX.mode` is the
/// permission bits in octal, a fact ProFTPD sends too; in three digits,
/// the only length the suppaftp crate's parser takes.
pub fn facts(entry: &DirEntry) -> String {
    let kind = match (entry.dir, entry.link) {
        (true, _) => "dir",
        (false, true) => "OS.unix=symlink",
        (false, false) => "file",
    };
    let modified = time_val(entry.modified.unwrap_or(SystemTime::UNIX_EPOCH));
    format!(
        "type={kind};size={};modify={modified};UNIX.mode={:03o}; {}",
        entry.size, entry.mode, entry.name
    )
}

/// A wildcard pattern of LIST and NLST: `*` stands for any run of
/// characters and `?` for any one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard(Vec<char>);

/// The longest file name, in bytes (Linux's NAME_MAX).
const NAME_MAX: usize = 255;

impl Wildcard {
    /// The pattern with each run of `*` made one (the same matches, and
    /// matching stays quick however many a client sends); `None` when no
    /// file name can match, having more than [`NAME_MAX`] characters
    /// besides `*`.
    pub fn new(pattern: &str) -> Option<Wildcard> {
        let mut chars: Vec<char> = Vec::new();
        for c in pattern.chars() {
            if !(c == '*' && chars.last() == Some(&'*')) {
                chars.push(c);
            }
        }
        (chars.iter().filter(|&&c| c != '*').count() <= NAME_MAX).then_some(Wildcard(chars))
    }

    /// Whether `name` matches, in at most pattern length × name length
    /// steps.
    pub fn matches(&self, name: &str) -> bool {
        let (pattern, name): (&[char], Vec<char>) = (&self.0, name.chars().collect());
        let (mut p, mut n) = (0, 0);
        // Where the last `*` was, and where in `name` its run now ends.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    // Let the last `*` take one more character and try again.
                    Some((star_p, star_n)) => {
                        star = Some((star_p, star_n + 1));
                        p = star_p + 1;
                        n = star_n + 1;
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_look_like_ls() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let entry = DirEntry {
            name: "报告 final.txt".into(),
            dir: false,
            link: false,
            size: 1234,
            modified: Some(now - Duration::from_secs(3600)),
            mode: 0o644,
        };
        let line = long_line(&entry, now);
        assert!(
            line.starts_with("-rw-r--r-- 1 ftp ftp         1234 "),
            "{line}"
        );
        assert!(line.ends_with(" 报告 final.txt"), "{line}");
        let old = DirEntry {
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)),
            dir: true,
            link: false,
            mode: 0o750,
            ..entry
        };
        let line = long_line(&old, now);
        assert!(line.starts_with("drwxr-x--- 1 "), "{line}");
        assert!(line.contains("Sep 13  2020"), "{line}");
        assert_eq!(
            facts(&old),
            "type=dir;size=1234;modify=20200913122640;UNIX.mode=750; 报告 final.txt"
        );
        for (mode, shown) in [
            (0o600, "-rw-------"),
            (0o777, "-rwxrwxrwx"),
            (0, "----------"),
        ] {
            let line = long_line(
                &DirEntry {
                    mode,
                    dir: false,
                    link: false,
                    ..old.clone()
                },
                now,
            );
            assert!(line.starts_with(shown), "{mode:o}: {line}");
        }
    }

    #[tokio::test]
    async fn a_listing_read_in_small_pieces_is_every_line_once_in_order() {
        use tokio::io::AsyncReadExt;
        let entries: Vec<DirEntry> = (0..20_000)
            .map(|n| DirEntry {
                name: format!("file-{n:05}.txt"),
                dir: false,
                link: false,
                size: n,
                modified: Some(SystemTime::UNIX_EPOCH),
                mode: 0o644,
            })
            .collect();
        let mut text = ListingText::new(entries, Format::Names, "sub/".to_owned());
        let mut all = Vec::new();
        let mut piece = [0u8; 1000];
        loop {
            let read = text.read(&mut piece).await.unwrap();
            if read == 0 {
                break;
            }
            all.extend_from_slice(&piece[..read]);
        }
        let expected: String = (0..20_000)
            .map(|n| format!("sub/file-{n:05}.txt\r\n"))
            .collect();
        assert!(expected.len() > 2 * BATCH, "spans several batches");
        assert_eq!(String::from_utf8(all).unwrap(), expected);
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        for (pattern, name) in [
            ("*.txt", "a.txt"),
            ("*.txt", ".txt"),
            ("*", "anything"),
            ("a?c", "abc"),
            ("报告*", "报告 final.txt"),
            ("*a*b*", "xaxxbx"),
            ("**", ""),
            ("a*", "a"),
        ] {
            let wildcard = Wildcard::new(pattern).unwrap();
            assert!(wildcard.matches(name), "{pattern} ~ {name}");
        }
        for (pattern, name) in [
            ("*.txt", "a.txt.bak"),
            ("a?c", "ac"),
            ("a?c", "abbc"),
            ("*a*b", "xaxbx"),
            ("?", ""),
            ("abc", "abd"),
        ] {
            let wildcard = Wildcard::new(pattern).unwrap();
            assert!(!wildcard.matches(name), "{pattern} !~ {name}");
        }
    }

    #[test]
    fn runs_of_stars_are_one_and_overlong_patterns_match_nothing() {
        assert_eq!(Wildcard::new("a***b**"), Wildcard::new("a*b*"));
        let stars = "*".repeat(4000);
        assert!(Wildcard::new(&stars).unwrap().matches(&"x".repeat(255)));
        assert_eq!(Wildcard::new(&"a".repeat(256)), None);
        assert!(Wildcard::new(&format!("{}*", "a".repeat(255))).is_some());
    }
}
