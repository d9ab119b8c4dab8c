use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;

/// A home inside a base directory that also holds an outside tree: a
/// root-only `secret` file and an `outside` directory with a file in it.
struct Fixture {
    base: tempfile::TempDir,
    home: Home,
}

impl Fixture {
    fn new() -> Fixture {
        let base = tempfile::tempdir().unwrap();
        let home_path = base.path().join("home");
        std::fs::create_dir_all(home_path.join("inner")).unwrap();
        std::fs::write(home_path.join("inner/file"), b"inside").unwrap();
        std::fs::create_dir(base.path().join("outside")).unwrap();
        std::fs::write(base.path().join("outside/secret"), b"not yours").unwrap();
        std::fs::set_permissions(
            base.path().join("outside/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let home = Home::open(&home_path).unwrap();
        Fixture { base, home }
    }

    fn home_path(&self) -> std::path::PathBuf {
        self.base.path().join("home")
    }

    fn outside(&self) -> std::path::PathBuf {
        self.base.path().join("outside")
    }

    fn secret_unchanged(&self) {
        let path = self.outside().join("secret");
        assert_eq!(std::fs::read(&path).unwrap(), b"not yours");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }
}

fn at(path: &str) -> VirtualPath {
    VirtualPath::root().join(path).unwrap()
}

#[test]
fn the_kernel_can_confine_paths() {
    check_support().unwrap();
}

#[test]
fn links_inside_the_home_are_followed_and_links_out_are_refused() {
    let fixture = Fixture::new();
    let home = fixture.home_path();
    symlink("inner", home.join("inner-link")).unwrap();
    symlink(fixture.outside(), home.join("absolute-out")).unwrap();
    symlink("../outside", home.join("relative-out")).unwrap();
    symlink("/proc/self/root/etc", home.join("magic")).unwrap();

    let (mut file, entry) = fixture.home.open_read(&at("/inner-link/file")).unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!((text.as_str(), entry.size), ("inside", 6));

    for escape in [
        "/absolute-out/secret",
        "/relative-out/secret",
        "/magic/passwd",
    ] {
        let refused = fixture.home.open_read(&at(escape));
        assert!(
            matches!(refused, Err(StorageError::OutsideHome)),
            "{escape}: {refused:?}"
        );
        assert!(
            matches!(
                fixture.home.list(&at(escape).parent().unwrap()),
                Err(StorageError::OutsideHome)
            ),
            "{escape}"
        );
    }
    assert!(matches!(
        fixture.home.make_dir(&at("/relative-out/new")),
        Err(StorageError::OutsideHome)
    ));
    assert!(!fixture.outside().join("new").exists());
}

#[test]
fn a_link_is_described_as_a_link_never_as_its_target() {
    let fixture = Fixture::new();
    let target = fixture.outside().join("secret");
    symlink(&target, fixture.home_path().join("link")).unwrap();
    let entry = fixture.home.stat(&at("/link")).unwrap();
    assert_eq!(entry.kind, Kind::Link);
    assert_eq!(entry.size, target.as_os_str().len() as u64);
    let listed = fixture.home.list(&VirtualPath::root()).unwrap();
    let names: Vec<_> = listed.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(names, [("inner", Kind::Dir), ("link", Kind::Link)]);
    assert_eq!(listed[1], entry);
}

#[test]
fn partial_uploads_never_write_through_a_planted_link() {
    let fixture = Fixture::new();
    let partial = fixture.home_path().join(partial_name("up.bin"));
    symlink(fixture.outside().join("secret"), &partial).unwrap();
    assert!(matches!(
        fixture.home.open_partial(&at("/up.bin")),
        Err(StorageError::NotPermitted(_))
    ));
    assert_eq!(fixture.home.partial_len(&at("/up.bin")).unwrap(), None);
    std::fs::remove_file(&partial).unwrap();

    // A hard link to a file elsewhere is refused as well.
    std::fs::hard_link(fixture.outside().join("secret"), &partial).unwrap();
    assert!(matches!(
        fixture.home.open_partial(&at("/up.bin")),
        Err(StorageError::NotPermitted(_))
    ));
    std::fs::remove_file(&partial).unwrap();
    fixture.secret_unchanged();

    // And a fresh one is made, written, resumed and landed.
    let mut fresh = fixture.home.open_partial(&at("/up.bin")).unwrap();
    assert!(fresh.created && fresh.len == 0);
    fresh.file.write_all(b"half").unwrap();
    drop(fresh);
    assert_eq!(fixture.home.partial_len(&at("/up.bin")).unwrap(), Some(4));
    let resumed = fixture.home.open_partial(&at("/up.bin")).unwrap();
    assert!(!resumed.created && resumed.len == 4);
    assert_eq!(resumed.land(true).unwrap(), None);
    assert_eq!(
        std::fs::read(fixture.home_path().join("up.bin")).unwrap(),
        b"half"
    );
    // Clients cannot name the partial files.
    assert!(matches!(
        fixture
            .home
            .open_read(&at(&format!("/{}", partial_name("x")))),
        Err(StorageError::InvalidName)
    ));
}

#[test]
fn modes_change_only_on_the_entry_itself_and_within_the_rule() {
    let fixture = Fixture::new();
    symlink(
        fixture.outside().join("secret"),
        fixture.home_path().join("link"),
    )
    .unwrap();
    assert!(matches!(
        fixture.home.set_mode(&VirtualPath::root(), 0o755),
        Err(StorageError::NotPermitted(_))
    ));
    for mode in [0o777, 0o666, 0o620, 0o602, 0o1755] {
        assert!(matches!(
            fixture.home.set_mode(&at("/inner/file"), mode),
            Err(StorageError::NotPermitted(_))
        ));
    }
    assert!(matches!(
        fixture.home.set_mode(&at("/link"), 0o644),
        Err(StorageError::NotPermitted(_))
    ));
    fixture.secret_unchanged();
    fixture.home.set_mode(&at("/inner/file"), 0o640).unwrap();
    let mode = std::fs::metadata(fixture.home_path().join("inner/file"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn a_replacing_rename_reports_what_it_replaced() {
    let fixture = Fixture::new();
    let home = fixture.home_path();
    std::fs::write(home.join("new"), b"12").unwrap();
    std::fs::write(home.join("old"), b"12345").unwrap();
    let replaced = fixture
        .home
        .rename(&at("/new"), &at("/old"), true)
        .unwrap()
        .unwrap();
    assert_eq!((replaced.kind, replaced.size), (Kind::File, 5));
    assert_eq!(std::fs::read(home.join("old")).unwrap(), b"12");
    assert!(!home.join("new").exists());
    assert!(matches!(
        fixture.home.rename(&at("/old"), &at("/inner"), true),
        Err(StorageError::IsADirectory)
    ));
    assert!(home.join("old").exists() && home.join("inner/file").exists());
    std::fs::write(home.join("other"), b"x").unwrap();
    assert!(matches!(
        fixture.home.rename(&at("/other"), &at("/old"), false),
        Err(StorageError::Exists)
    ));
}

#[test]
fn removals_report_what_went_with_kept_partials() {
    let fixture = Fixture::new();
    let home = fixture.home_path();
    std::fs::write(home.join("inner").join(partial_name("file")), b"abc").unwrap();
    assert!(matches!(
        fixture.home.remove_dir(&at("/inner")),
        Err(StorageError::NotEmpty)
    ));
    let freed = fixture.home.remove_file(&at("/inner/file")).unwrap();
    assert_eq!((freed.bytes, freed.entries), (9, 2));
    std::fs::write(home.join("inner").join(partial_name("gone")), b"abcd").unwrap();
    let freed = fixture.home.remove_dir(&at("/inner")).unwrap();
    assert_eq!((freed.bytes, freed.entries), (4, 2));
    assert!(!home.join("inner").exists());
    assert!(matches!(
        fixture.home.remove_file(&VirtualPath::root()),
        Err(StorageError::NotPermitted(_))
    ));
}

/// The attack that beat the path-based jail: another process keeps
/// exchanging a directory of the home with a link to an outside directory.
/// Reads, mode changes and listings must never reach outside.
#[test]
fn a_directory_swapped_for_a_link_never_leads_out() {
    let fixture = Fixture::new();
    let home = fixture.home_path();
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("d/secret"), b"mine").unwrap();
    symlink(fixture.outside(), home.join("swap")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (d, swap) = (home.join("d"), home.join("swap"));
        std::thread::spawn(move || {
            let dir = File::open(d.parent().unwrap()).unwrap();
            let (d, swap) = (
                sys::c_name(d.file_name().unwrap().to_str().unwrap()).unwrap(),
                sys::c_name(swap.file_name().unwrap().to_str().unwrap()).unwrap(),
            );
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sys::renameat2(dir.as_fd(), &d, dir.as_fd(), &swap, libc::RENAME_EXCHANGE).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let (mut reads, mut refused) = (0u64, 0u64);
    while std::time::Instant::now() < deadline {
        match fixture.home.open_read(&at("/d/secret")) {
            Ok((mut file, _)) => {
                let mut content = Vec::new();
                file.read_to_end(&mut content).unwrap();
                assert_eq!(content, b"mine");
                reads += 1;
            }
            Err(_) => refused += 1,
        }
        let _ = fixture.home.set_mode(&at("/d/secret"), 0o644);
        if let Ok(entries) = fixture.home.list(&at("/d")) {
            assert!(entries.iter().all(|e| e.size == 4), "{entries:?}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 100 && reads > 0 && refused > 0,
        "{swaps} {reads} {refused}"
    );
    fixture.secret_unchanged();
}
