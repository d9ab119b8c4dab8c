//! Packed relative relocations (DT_RELR) for the release binary.
//!
//! A position-independent executable carries one relocation record per
//! pointer in its data; Rust's vtables and string tables make that about
//! 450 KiB of records, which the loader reads, and keeps resident, at every
//! start. Packed, they take a few KiB. Only glibc 2.36 and later load such a
//! binary, so the flag is passed only when building natively on one of those.
//! Both LLD (Rust's default linker on x86_64 Linux) and GNU ld 2.38 and later
//! know it.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("PROFILE").as_deref() == Ok("release")
        && env::var("HOST") == env::var("TARGET")
        && glibc_loads_packed_relocations()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc is 2.36 or later, the first to load packed
/// relative relocations.
fn glibc_loads_packed_relocations() -> bool {
    // getconf prints "glibc 2.36".
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let printed = String::from_utf8_lossy(&output.stdout);
    let Some(version) = printed.split_whitespace().nth(1) else {
        return false;
    };
    let mut numbers = version.split('.').map(str::parse::<u32>);
    matches!(
        (numbers.next(), numbers.next()),
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (2, 36)
    )
}
