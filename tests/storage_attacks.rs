//! Attacks on the storage under FTP and the console, as a hostile user of a
//! server running as root would make them (issue 24): links planted at the
//! names uploads use, a directory swapped for a link to the outside while
//! requests are in flight, `SITE CHMOD` on the home itself, a console
//! upload racing an FTP delete against the quota ledger. Outside the home
//! a canary tree owned by root must come out of each attack untouched:
//! not a byte of it read or written, no mode, name or time changed.

mod support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use support::console_client::ConsoleClient;
use support::ftp_client::FtpClient;
use support::{ServeProcess, run_sockit};

/// FTP and the console in one process, nothing else.
const FTP_AND_CONSOLE: &str = "[echo]\nenabled = false\n\n[bot]\nenabled = false\n\n[exec]\nenabled = false\n\n[http]\nport = 0\n\n[ftp]\nport = 0\n";

/// A running server with one user, `mallory`, whose password is `pw`.
struct Target {
    server: ServeProcess,
    endpoints: Endpoints,
}

/// Where to reach the server's FTP and console, to log in as `mallory`.
struct Endpoints {
    ftp: String,
    console: String,
}

impl Endpoints {
    fn ftp(&self) -> FtpClient {
        FtpClient::login(&self.ftp, "mallory", "pw")
    }

    fn console(&self) -> ConsoleClient {
        ConsoleClient::sign_in(&self.console, "mallory", "pw")
    }
}

impl Target {
    /// Starts FTP and the console and adds `mallory` with `user_options`.
    fn start(user_options: &[&str]) -> Target {
        let server = ServeProcess::with_config(FTP_AND_CONSOLE, 2);
        let mut args = vec![
            "user",
            "--data-dir",
            server.data_dir().to_str().unwrap(),
            "add",
            "mallory",
            "--password-stdin",
        ];
        args.extend_from_slice(user_options);
        let added = run_sockit(&args, b"pw\n");
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        Target {
            endpoints: Endpoints {
                ftp: server.address("ftp", "tcp"),
                console: server.address("http", "tcp"),
            },
            server,
        }
    }

    fn home(&self) -> PathBuf {
        self.server.data_dir().join("homes/mallory")
    }

    /// The owner of the home, as (uid, gid).
    fn home_owner(&self) -> (u32, u32) {
        let meta = std::fs::metadata(self.home()).unwrap();
        (meta.uid(), meta.gid())
    }

    /// Gives `path`, made in the home by the test (as root), to the home's
    /// owner, as if the user had made it: a server that does its file work
    /// as an unprivileged account must be able to use it.
    fn hand_to_user(&self, path: &Path) {
        let (uid, gid) = self.home_owner();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// The name FTP keeps an interrupted upload of `name` under, in the same
/// directory: `.sockit-upload-` and the hex of the first 16 bytes of the
/// SHA-256 of the name. Links planted here are the attack of test 1.
fn partial_name(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(".sockit-upload-{hex}")
}

/// The modification time every canary entry carries: 2001-02-03 04:05:06
/// UTC, which nothing the tests do could produce.
fn canary_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(981_173_106)
}

/// The same time as `MDTM` prints it.
const CANARY_MDTM: &str = "20010203040506";

/// A tree outside every home, owned by root, with files of mode 0600 whose
/// content is a marker found nowhere else, and known names and times.
struct Canary {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Found in any reply or download, it proves a read outside the home.
    marker: String,
    /// A file name only the canary has: a listing that shows it listed the
    /// canary.
    own_name: String,
    /// The length of every canary file, chosen to match nothing in a home.
    length: u64,
    before: BTreeMap<PathBuf, Snapshot>,
}

/// What is kept of one canary entry to see that it did not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
}

impl Canary {
    /// A canary directory holding a file for each of `files` and an empty
    /// directory for each of `dirs`, besides a file named only here.
    fn new(files: &[&str], dirs: &[&str]) -> Canary {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("canary");
        std::fs::create_dir(&root).unwrap();
        let marker = format!(
            "CANARY-{}-{}-never-outside",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let own_name = format!("only-in-the-canary-{}", std::process::id());
        let length = 3001;
        let content: Vec<u8> = marker.bytes().cycle().take(length).collect();
        for name in files.iter().copied().chain([own_name.as_str()]) {
            let path = root.join(name);
            std::fs::write(&path, &content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            set_time(&path);
        }
        for name in dirs {
            let path = root.join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
            set_time(&path);
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        set_time(&root);
        let mut canary = Canary {
            _dir: dir,
            root,
            marker,
            own_name,
            length: length as u64,
            before: BTreeMap::new(),
        };
        canary.before = canary.snapshot();
        assert!(
            canary.before.values().all(|entry| entry.uid == 0),
            "the canary is owned by root: run the tests as root"
        );
        canary
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Every entry of the tree, by path, from `lstat` (links not followed).
    fn snapshot(&self) -> BTreeMap<PathBuf, Snapshot> {
        let mut entries = BTreeMap::new();
        let mut pending = vec![self.root.clone()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
                Vec::new()
            } else if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                std::fs::read_link(&path)
                    .map(|target| target.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default()
            };
            entries.insert(
                path,
                Snapshot {
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    content,
                },
            );
        }
        entries
    }

    /// Fails the test, naming every difference, if the tree changed.
    fn assert_untouched(&self) {
        let changes = self.changes();
        assert!(
            changes.is_empty(),
            "the canary outside the home changed:\n{}",
            changes.join("\n")
        );
    }

    /// Every difference between the tree now and as it was made.
    fn changes(&self) -> Vec<String> {
        let after = self.snapshot();
        let mut changes = Vec::new();
        for (path, before) in &self.before {
            match after.get(path) {
                None => changes.push(format!("{} is gone", path.display())),
                Some(now) if now != before => changes.push(format!(
                    "{}: mode {:o} -> {:o}, owner {}:{} -> {}:{}, mtime {:?} -> {:?}, {} -> {} bytes{}",
                    path.display(),
                    before.mode,
                    now.mode,
                    before.uid,
                    before.gid,
                    now.uid,
                    now.gid,
                    before.mtime,
                    now.mtime,
                    before.content.len(),
                    now.content.len(),
                    if now.content == before.content {
                        ""
                    } else {
                        ", content changed"
                    }
                )),
                Some(_) => {}
            }
        }
        for path in after.keys().filter(|path| !self.before.contains_key(*path)) {
            changes.push(format!("{} is new", path.display()));
        }
        changes
    }

    /// True when `bytes` hold any piece of the canary: its marker, or its
    /// own file name (a listing of the canary directory).
    fn seen_in(&self, bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        text.contains(&self.marker) || text.contains(&self.own_name)
    }
}

/// Sets `path`'s modification time to [`canary_time`].
fn set_time(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(canary_time())
            .set_accessed(canary_time()),
    )
    .unwrap();
}

/// True when an FTP reply is a positive completion (2xx).
fn succeeded(reply: &str) -> bool {
    reply.starts_with('2')
}

/// An upload into `name` over a link planted at its partial-upload name
/// must not write, read or measure the link's target.
#[test]
fn a_link_at_the_partial_upload_name_is_not_followed() {
    let target = Target::start(&[]);
    let home = target.home();
    // One canary file per step, so that each step is judged on its own.
    let canary = Canary::new(&["for-size", "for-stor", "for-appe", "for-rest"], &[]);
    let plant = |name: &str, canary_file: &str| {
        let partial = home.join(partial_name(name));
        let _ = std::fs::remove_file(&partial);
        std::os::unix::fs::symlink(canary.file(canary_file), &partial).unwrap();
        target.hand_to_user(&partial);
    };
    let mut ftp = target.endpoints.ftp();
    let upload: &[u8] = b"the user's own bytes";
    let mut findings = Vec::new();

    // SIZE of a file not there yet reports a partial upload's length, for
    // resuming; a link's target is not one.
    plant("sized.bin", "for-size");
    let reply = ftp.command("SIZE sized.bin");
    if reply == format!("213 {}", canary.length) {
        findings.push(format!("SIZE reported the canary's length: {reply}"));
    }

    for (step, name, canary_file, commands) in [
        ("STOR", "stored.bin", "for-stor", &["STOR stored.bin"][..]),
        (
            "APPE",
            "appended.bin",
            "for-appe",
            &["APPE appended.bin"][..],
        ),
        (
            "REST+STOR",
            "resumed.bin",
            "for-rest",
            &["REST 5", "STOR resumed.bin"][..],
        ),
    ] {
        plant(name, canary_file);
        let (last, first) = commands.split_last().unwrap();
        for command in first {
            ftp.command(command);
        }
        let reply = ftp.upload(last, upload);
        let stored = home.join(name);
        let kind = match std::fs::symlink_metadata(&stored) {
            Ok(meta) if meta.is_file() => "a file",
            Ok(meta) if meta.is_symlink() => "a link",
            Ok(_) => "neither file nor link",
            Err(_) => "missing",
        };
        // A success must have stored the user's bytes in a file of their
        // own in the home, not through the link.
        if succeeded(&reply)
            && !(kind == "a file" && std::fs::read(&stored).unwrap().ends_with(upload))
        {
            findings.push(format!(
                "{step}: {reply}, but {name} is {kind} without the uploaded bytes"
            ));
        }
        let canary_path = canary.file(canary_file);
        if std::fs::read(&canary_path).unwrap() != canary.before[&canary_path].content {
            findings.push(format!("{step} ({reply}) wrote into the canary"));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    canary.assert_untouched();
}

/// `SITE CHMOD` cannot open the home itself to other accounts, nor give
/// group or others write on anything.
#[test]
fn site_chmod_cannot_change_the_home_or_give_group_or_others_write() {
    let target = Target::start(&[]);
    let home = target.home();
    std::fs::write(home.join("file.txt"), b"mine").unwrap();
    std::fs::set_permissions(
        home.join("file.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(home.join("sub")).unwrap();
    for made in ["file.txt", "sub"] {
        target.hand_to_user(&home.join(made));
    }
    std::fs::set_permissions(home.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o7777;
    let home_mode = mode(&home);
    let mut ftp = target.endpoints.ftp();
    let mut findings = Vec::new();
    for command in ["SITE CHMOD 777 /", "SITE CHMOD 777 .", "SITE CHMOD 755 /"] {
        let reply = ftp.command(command);
        if !reply.starts_with('5') {
            findings.push(format!("{command}: {reply}"));
        }
        if mode(&home) != home_mode {
            findings.push(format!(
                "{command} changed the home from {home_mode:o} to {:o}",
                mode(&home)
            ));
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(home_mode)).unwrap();
        }
    }
    for (command, path) in [
        ("SITE CHMOD 666 file.txt", home.join("file.txt")),
        ("SITE CHMOD 662 file.txt", home.join("file.txt")),
        ("SITE CHMOD 777 sub", home.join("sub")),
        ("SITE CHMOD 770 sub", home.join("sub")),
    ] {
        let reply = ftp.command(command);
        if mode(&path) & 0o022 != 0 {
            findings.push(format!(
                "{command} ({reply}) gave group or others write: {:o}",
                mode(&path)
            ));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Bytes and entries (files and directories) in `home`, from the disk.
fn walk(home: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0, 0);
    let mut pending = vec![home.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            entries += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    (bytes, entries)
}

/// The ledger as FTP `STAT` shows it (`Limit: 879.0 KiB of 1.0 MiB used`,
/// `Limit: 3 of 100 files and directories`): the bytes used, as the lowest
/// and highest figure the rounded text allows, and the entries used.
fn ledger(ftp: &mut FtpClient) -> ((u64, u64), u64) {
    let status = ftp.command("STAT");
    let phrases: Vec<&str> = status
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Limit: "))
        .collect();
    let used_bytes = phrases
        .iter()
        .find_map(|phrase| phrase.strip_suffix(" used")?.split(" of ").next())
        .unwrap_or_else(|| panic!("no byte quota in STAT:\n{status}"));
    let entries = phrases
        .iter()
        .find_map(|phrase| {
            phrase
                .strip_suffix(" files and directories")?
                .split(" of ")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no file limit in STAT:\n{status}"));
    let (number, unit) = used_bytes.split_once(' ').unwrap();
    let value: f64 = number.parse().unwrap();
    let (scale, half_step) = match unit {
        "B" => (1.0, 0.0),
        "KiB" => (1024.0, 0.05),
        "MiB" => (1024.0 * 1024.0, 0.05),
        _ => panic!("unit {unit:?} in STAT:\n{status}"),
    };
    let bytes = (
        ((value - half_step) * scale).floor().max(0.0) as u64,
        ((value + half_step) * scale).ceil() as u64,
    );
    (bytes, entries)
}

/// A console upload replacing a file while FTP deletes that file: the
/// ledger must still equal the disk, and the quota must still hold.
#[test]
#[ignore = "fails until uploads, deletes and renames reserve from one ledger (issue 24, open)"]
fn a_console_upload_racing_an_ftp_delete_keeps_the_ledger_equal_to_the_disk() {
    const QUOTA: u64 = 1 << 20;
    let target = Target::start(&["--quota", "1M", "--max-files", "100"]);
    let home = target.home();
    let old: Vec<u8> = (0..900u32 << 10).map(|i| (i % 251) as u8).collect();
    let new: Vec<u8> = (0..900u32 << 10).map(|i| (i % 241) as u8).collect();
    let mut ftp = target.endpoints.ftp();
    let reply = ftp.upload("STOR big.bin", &old);
    assert!(reply.starts_with("226"), "STOR big.bin: {reply}");
    let console = target.endpoints.console();

    let mut upload = console.start_upload("/", "big.bin", new.len());
    let (first, rest) = new.split_at(64 << 10);
    upload.send(first);
    // Wait until the server is writing the upload: it has then looked at
    // the file it will replace. It shows as a hidden temporary file with
    // bytes in it, or (for one written unnamed, `O_TMPFILE`) as the ledger
    // growing past the old file.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hidden_with_bytes = std::fs::read_dir(&home).unwrap().any(|entry| {
            let entry = entry.unwrap();
            entry.file_name().to_string_lossy().starts_with('.')
                && entry.metadata().is_ok_and(|m| m.len() > 0)
        });
        if hidden_with_bytes || ledger(&mut ftp).0.0 > old.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the console upload never showed it was writing"
        );
        std::thread::yield_now();
    }
    let reply = ftp.command("DELE big.bin");
    assert!(reply.starts_with("250"), "DELE big.bin: {reply}");
    // The rest in paced pieces: the upload stays in flight a while.
    for piece in rest.chunks(64 << 10) {
        upload.send(piece);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let through or refused, the upload must leave the ledger equal to
    // the disk.
    let response = upload.finish();
    let outcome = format!(
        "the console upload: {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );

    let mut findings = Vec::new();
    let (disk_bytes, disk_entries) = walk(&home);
    let ((low, high), entries) = ledger(&mut ftp);
    if !(low..=high).contains(&disk_bytes) {
        findings.push(format!(
            "STAT shows {low}..={high} bytes used, the disk holds {disk_bytes}"
        ));
    }
    if entries != disk_entries {
        findings.push(format!(
            "STAT shows {entries} entries used, the disk holds {disk_entries}"
        ));
    }
    // What a wrong ledger lets through: 400 KiB more on 900 KiB stored.
    let more = vec![7u8; 400 << 10];
    let reply = ftp.upload("STOR more.bin", &more);
    let (stored, _) = walk(&home);
    if stored > QUOTA {
        findings.push(format!(
            "{stored} bytes stored under a quota of {QUOTA} (STOR more.bin: {reply})"
        ));
    }
    assert!(findings.is_empty(), "{}\n({outcome})", findings.join("\n"));
}

/// How long each client of the race test keeps attacking.
const RACE_RUN: Duration = Duration::from_secs(10);

/// FTP sessions and console sessions of each kind in the race test.
const RACE_CLIENTS: usize = 2;

/// The least number of times each operation must have run in the race for
/// its verdict to mean something.
const RACE_MIN_ATTEMPTS: u64 = 50;

/// The content of `d/secret` in the home during the race.
const USER_SECRET: &[u8] = b"the user's own secret";

/// What one client of the race did: attempts per operation, successes of
/// those that must succeed now and then (when `d` is the real directory),
/// and what it saw of the canary.
#[derive(Default)]
struct Tally {
    attempts: BTreeMap<&'static str, u64>,
    successes: BTreeMap<&'static str, u64>,
    findings: Vec<String>,
}

impl Tally {
    fn attempt(&mut self, operation: &'static str) {
        *self.attempts.entry(operation).or_default() += 1;
    }

    fn success(&mut self, operation: &'static str) {
        *self.successes.entry(operation).or_default() += 1;
    }

    /// Keeps the first few findings; the count says how many there were.
    fn found(&mut self, finding: String) {
        if self.findings.len() < 5 {
            self.findings.push(finding);
        }
    }

    /// True while the client should keep going: before `until`, and within
    /// a bound on rounds should the clock misbehave.
    fn going(&self, until: Instant, rounds: &mut u32) -> bool {
        *rounds += 1;
        Instant::now() < until && *rounds < 200_000
    }
}

/// The attacker's other process: keeps swapping `home/d` with `home/d.link`
/// (a link to the canary directory) with `renameat2(RENAME_EXCHANGE)`, and
/// keeps planting links at the partial-upload name of each of `names` in
/// the real directory, each to the canary file of that name. Returns the
/// number of swaps.
/// The links belong to `owner` (uid, gid), as the user's own would.
fn swap_and_plant(
    home: &Path,
    owner: (u32, u32),
    canary: &Canary,
    names: &[String],
    stop: &AtomicBool,
) -> u64 {
    let path = |p: PathBuf| CString::new(p.as_os_str().as_bytes()).unwrap();
    let d = path(home.join("d"));
    let link = path(home.join("d.link"));
    // Held by descriptor: the real directory, wherever the swaps put it.
    let real = std::fs::File::open(home.join("d")).unwrap();
    let plants: Vec<(CString, CString)> = names
        .iter()
        .map(|name| {
            (
                CString::new(partial_name(name)).unwrap(),
                path(canary.file(name)),
            )
        })
        .collect();
    let deadline = Instant::now() + 3 * RACE_RUN;
    let mut swaps = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && swaps < 100_000_000 {
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                d.as_ptr(),
                libc::AT_FDCWD,
                link.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
        swaps += 1;
        if swaps % 8 == 0 {
            for (name, target) in &plants {
                // SAFETY: as above; `real` stays open for the whole loop.
                // An existing entry (EEXIST) is the usual, ignored answer.
                let planted =
                    unsafe { libc::symlinkat(target.as_ptr(), real.as_raw_fd(), name.as_ptr()) };
                if planted == 0 {
                    // SAFETY: as above.
                    unsafe {
                        libc::fchownat(
                            real.as_raw_fd(),
                            name.as_ptr(),
                            owner.0,
                            owner.1,
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    };
                }
            }
        }
        // Let the server's threads run on a small machine.
        std::thread::yield_now();
    }
    swaps
}

/// An FTP client that reads under `d/` and changes its modes.
fn ftp_reader(endpoints: &Endpoints, canary: &Canary, until: Instant) -> Tally {
    let mut ftp = endpoints.ftp();
    let mut tally = Tally::default();
    let canary_size = format!(" {} ", canary.length);
    let canary_size_reply = format!("213 {}", canary.length);
    let mut rounds = 0;
    while tally.going(until, &mut rounds) {
        tally.attempt("RETR");
        let (reply, data) = ftp.download("RETR d/secret");
        if canary.seen_in(&data) {
            tally.found(format!("RETR d/secret sent the canary ({reply})"));
        } else if reply.starts_with("226") && data == USER_SECRET {
            tally.success("RETR");
        }
        for (operation, command) in [
            ("SIZE", "SIZE d/secret"),
            ("MDTM", "MDTM d/secret"),
            ("STAT", "STAT d/secret"),
            ("STAT", "STAT d"),
        ] {
            tally.attempt(operation);
            let reply = ftp.command(command);
            if canary.seen_in(reply.as_bytes())
                || reply == canary_size_reply
                || reply.contains(CANARY_MDTM)
                || reply.contains(&canary_size)
            {
                tally.found(format!("{command} told of the canary: {reply}"));
            }
        }
        for (operation, command) in [("LIST", "LIST d"), ("MLSD", "MLSD d")] {
            tally.attempt(operation);
            let (reply, data) = ftp.download(command);
            if canary.seen_in(&data) {
                tally.found(format!("{command} listed the canary ({reply})"));
            }
        }
        // Its effect, if it reached the canary, shows in the canary's modes.
        tally.attempt("SITE CHMOD");
        ftp.command("SITE CHMOD 640 d/secret");
    }
    tally
}

/// An FTP client that uploads, renames, deletes and makes directories
/// under `d/`, on names of its own (`f<n>-...`). Where its bytes went is
/// judged on the canary afterwards: a reply says nothing about that.
fn ftp_writer(endpoints: &Endpoints, n: usize, until: Instant) -> Tally {
    let mut ftp = endpoints.ftp();
    let mut tally = Tally::default();
    let up = format!("d/f{n}-up.bin");
    let appended = format!("d/f{n}-app.bin");
    let moved = format!("d/f{n}-moved.bin");
    let dir = format!("d/f{n}-dir");
    let mut rounds = 0;
    while tally.going(until, &mut rounds) {
        tally.attempt("STOR");
        if ftp
            .upload(&format!("STOR {up}"), b"the user's upload")
            .starts_with("226")
        {
            tally.success("STOR");
        }
        tally.attempt("APPE");
        ftp.upload(&format!("APPE {appended}"), b"the user's append");
        tally.attempt("RNFR/RNTO");
        if ftp.command(&format!("RNFR {appended}")).starts_with("350") {
            ftp.command(&format!("RNTO {moved}"));
        }
        for name in [&up, &moved] {
            tally.attempt("DELE");
            ftp.command(&format!("DELE {name}"));
        }
        tally.attempt("MKD");
        ftp.command(&format!("MKD {dir}"));
        tally.attempt("RMD");
        ftp.command(&format!("RMD {dir}"));
    }
    tally
}

/// A console session that downloads, lists, uploads, renames, deletes and
/// makes directories under `d/`, on names of its own (`c<n>...`).
fn console_client(endpoints: &Endpoints, canary: &Canary, n: usize, until: Instant) -> Tally {
    let console = endpoints.console();
    let mut tally = Tally::default();
    let name = format!("c{n}.bin");
    let rename = format!(r#"{{"from":"/d/c{n}.bin","to":"/d/c{n}-moved.bin"}}"#);
    let delete_moved = format!(r#"{{"path":"/d/c{n}-moved.bin"}}"#);
    let mkdir = format!(r#"{{"dir":"/d","name":"c{n}-dir"}}"#);
    let delete_dir = format!(r#"{{"path":"/d/c{n}-dir"}}"#);
    let mut rounds = 0;
    while tally.going(until, &mut rounds) {
        for (operation, path) in [
            ("console download", "/files/d/secret"),
            ("console list", "/files/d/"),
        ] {
            tally.attempt(operation);
            let response = console.get(path);
            if canary.seen_in(&response.body) {
                tally.found(format!("GET {path} sent the canary ({})", response.status));
            } else if response.status == 200 && response.body == USER_SECRET {
                tally.success(operation);
            }
        }
        tally.attempt("console upload");
        if console
            .upload("/d", &name, b"the user's console upload")
            .status
            == 200
        {
            tally.success("console upload");
        }
        tally.attempt("console rename");
        console.post_json("/api/rename", &rename);
        tally.attempt("console delete");
        console.post_json("/api/delete", &delete_moved);
        tally.attempt("console mkdir");
        console.post_json("/api/mkdir", &mkdir);
        tally.attempt("console delete");
        console.post_json("/api/delete", &delete_dir);
    }
    tally
}

/// The race of issue 24: while another process swaps a directory of the
/// home with a link to a directory outside and plants links at the
/// partial-upload names, FTP and console clients work under that directory
/// for ten seconds. Outside the home nothing may be read, written,
/// renamed, created or have its mode or time changed.
#[test]
#[ignore = "fails until FTP's and the console's write paths go through src/storage (issue 24, open)"]
fn swapping_a_directory_for_a_link_out_never_reaches_outside_the_home() {
    let target = Target::start(&[]);
    let home = target.home();
    let mut files = vec!["secret".to_owned()];
    let mut dirs = Vec::new();
    for n in 0..RACE_CLIENTS {
        files.extend(
            ["up.bin", "app.bin", "moved.bin"]
                .iter()
                .map(|name| format!("f{n}-{name}")),
        );
        files.extend([format!("c{n}.bin"), format!("c{n}-moved.bin")]);
        dirs.extend([format!("f{n}-dir"), format!("c{n}-dir")]);
    }
    let canary = Canary::new(
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
        &dirs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("d/secret"), USER_SECRET).unwrap();
    std::os::unix::fs::symlink(&canary.root, home.join("d.link")).unwrap();
    for made in ["d", "d/secret", "d.link"] {
        target.hand_to_user(&home.join(made));
    }
    let owner = target.home_owner();

    let stop = AtomicBool::new(false);
    let until = Instant::now() + RACE_RUN;
    let (swaps, tallies) = std::thread::scope(|scope| {
        let swapper = scope.spawn(|| swap_and_plant(&home, owner, &canary, &files, &stop));
        let mut clients = Vec::new();
        for n in 0..RACE_CLIENTS {
            let (endpoints, canary) = (&target.endpoints, &canary);
            clients.push(scope.spawn(move || ftp_reader(endpoints, canary, until)));
            clients.push(scope.spawn(move || ftp_writer(endpoints, n, until)));
            clients.push(scope.spawn(move || console_client(endpoints, canary, n, until)));
        }
        let tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        (swapper.join().unwrap(), tallies)
    });

    let mut attempts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut successes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut findings = Vec::new();
    for tally in tallies {
        for (operation, count) in tally.attempts {
            *attempts.entry(operation).or_default() += count;
        }
        for (operation, count) in tally.successes {
            *successes.entry(operation).or_default() += count;
        }
        findings.extend(tally.findings);
    }
    println!("{swaps} swaps; attempts: {attempts:?}; successes: {successes:?}");
    // Not a test of refusals alone: inside the real directory the work
    // gets done. (Not STOR: a server may refuse an upload for good while
    // a link sits at its partial name, and the swapper keeps planting one.)
    for operation in ["RETR", "console download", "console upload"] {
        assert!(
            successes.get(operation).is_some_and(|n| *n > 0),
            "{operation} never succeeded: {successes:?}"
        );
    }
    assert!(swaps >= 1000, "only {swaps} swaps");
    for (operation, count) in &attempts {
        assert!(
            *count >= RACE_MIN_ATTEMPTS,
            "{operation} ran only {count} times: {attempts:?}"
        );
    }
    let changes = canary.changes();
    assert!(
        findings.is_empty() && changes.is_empty(),
        "read outside the home:\n{}\n{} changes outside the home, the first:\n{}",
        findings.join("\n"),
        changes.len(),
        changes[..changes.len().min(30)].join("\n")
    );
}

/// Percent-encodes every byte of `text` but letters, digits and `-._~`.
fn percent_encode_all(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Running as root, a root-only file outside the home stays unreadable,
/// unmeasured and unchanged whichever way a path reaches for it: a link in
/// the home to it or to its directory, `..` plain or encoded, an absolute
/// path, NUL, CR or LF in a name.
#[test]
fn a_root_only_file_outside_the_home_stays_unreadable_through_any_path() {
    let target = Target::start(&[]);
    let home = target.home();
    let canary = Canary::new(&["secret"], &[]);
    std::os::unix::fs::symlink(canary.file("secret"), home.join("link")).unwrap();
    std::os::unix::fs::symlink(&canary.root, home.join("linkdir")).unwrap();
    std::fs::write(home.join("mine.txt"), b"mine").unwrap();
    for made in ["link", "linkdir", "mine.txt"] {
        target.hand_to_user(&home.join(made));
    }
    let absolute = canary.file("secret").to_str().unwrap().to_owned();
    let climb = "../".repeat(16);
    let canary_size = format!(" {} ", canary.length);
    let mut findings = Vec::new();

    let mut ftp = target.endpoints.ftp();
    for command in [
        "RETR link".to_owned(),
        "RETR linkdir/secret".to_owned(),
        format!("RETR {climb}{absolute}"),
        format!("RETR {absolute}"),
        format!("RETR /..{absolute}"),
        format!("RETR {}", absolute.replace('/', "%2F")),
        "RETR link\0".to_owned(),
        "LIST linkdir".to_owned(),
        "MLSD linkdir".to_owned(),
        "NLST linkdir".to_owned(),
    ] {
        let (reply, data) = ftp.download(&command);
        if canary.seen_in(&data) || canary.seen_in(reply.as_bytes()) {
            findings.push(format!("{command:?} read the canary ({reply})"));
        }
    }
    for command in [
        "SIZE link",
        "SIZE linkdir/secret",
        "MDTM link",
        "MDTM linkdir/secret",
        "STAT link",
        "STAT linkdir",
        "STAT linkdir/secret",
    ] {
        let reply = ftp.command(command);
        if canary.seen_in(reply.as_bytes())
            || reply.contains(CANARY_MDTM)
            || reply == format!("213 {}", canary.length)
            || reply.contains(&canary_size)
        {
            findings.push(format!("{command} told of the canary: {reply}"));
        }
    }
    // Listings show the link as a link, from its own metadata.
    let (_, listing) = ftp.download("LIST");
    let listing = String::from_utf8_lossy(&listing).into_owned();
    match listing
        .lines()
        .find(|line| line.ends_with(" link") || line.contains(" link -> "))
    {
        Some(line) if line.starts_with('l') && !line.contains(&canary_size) => {}
        other => findings.push(format!("LIST shows the link as {other:?}:\n{listing}")),
    }
    let (_, facts) = ftp.download("MLSD");
    let facts = String::from_utf8_lossy(&facts).into_owned();
    if let Some(line) = facts.lines().find(|line| line.ends_with(" link")) {
        let line = line.to_ascii_lowercase();
        if line.contains(&format!("size={};", canary.length))
            || line.contains("type=file;")
            || line.contains("unix.mode=600;")
        {
            findings.push(format!("MLSD describes the link by its target: {line}"));
        }
    }

    let console = target.endpoints.console();
    let encoded_climb = "%2e%2e/".repeat(16);
    let slash_climb = "..%2F".repeat(16);
    for path in [
        "/files/link".to_owned(),
        "/files/link?download".to_owned(),
        "/files/linkdir/secret".to_owned(),
        "/files/linkdir/".to_owned(),
        format!("/files/{climb}{}", &absolute[1..]),
        format!("/files/{encoded_climb}{}", &absolute[1..]),
        format!("/files/{slash_climb}{}", absolute[1..].replace('/', "%2F")),
        format!("/files/{}", percent_encode_all(&absolute)),
        format!("/files/{absolute}"),
        "/files/mine.txt%00/../link".to_owned(),
        "/files/link%00".to_owned(),
        "/files/mine.txt%0D%0A/../link".to_owned(),
        "/files/".to_owned(),
    ] {
        let response = console.get(&path);
        if canary.seen_in(&response.body) {
            findings.push(format!("GET {path} read the canary ({})", response.status));
        }
    }
    // The console's listing gives the link's own size, not the target's.
    let page = String::from_utf8_lossy(&console.get("/files/").body).into_owned();
    if page.contains("2.9 KiB") {
        findings.push("the console lists the link with its target's size".to_owned());
    }

    // Names that would climb out or carry control characters create
    // nothing outside the home, and no name with a control character in it
    // (`..%2Fescaped.txt` is a plain name: it may land in the home).
    for name in [
        "../escaped.txt",
        "..%2Fescaped.txt",
        "/escaped.txt",
        "a\0b.txt",
    ] {
        console.upload("/", name, b"escape attempt");
    }
    console.upload(&"%2e%2e%2F".repeat(4), "escaped.txt", b"escape");
    for name in ["../escaped-dir", "a\\nb", "a\\rb", "a\\u0000b", "a/b"] {
        console.post_json("/api/mkdir", &format!(r#"{{"dir":"/","name":"{name}"}}"#));
    }
    for command in ["MKD a\0b", "MKD ../escaped-dir", "STOR ../escaped.txt"] {
        ftp.command(command);
    }
    let data_dir = target.server.data_dir();
    for dir in [
        data_dir.to_owned(),
        data_dir.join("homes"),
        canary.root.clone(),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name();
            if name.to_string_lossy().contains("escaped") {
                findings.push(format!(
                    "{} was created in {}",
                    name.to_string_lossy(),
                    dir.display()
                ));
            }
        }
    }
    for entry in std::fs::read_dir(&home).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains(['\0', '\r', '\n']) {
            findings.push(format!("{name:?} was created in the home"));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    canary.assert_untouched();
}
