//! Link settings for the release binary that keep a running server small.
//!
//! - `link/text-order.txt` lists the functions a server runs (written by
//!   `scripts/order-text` from profiled runs). The linker puts them next to
//!   each other at the start of the code, so the pages a server touches are
//!   few: the kernel maps code in 64 KiB windows, and scattered functions
//!   kept most of the binary resident (docs in BENCHMARKS.md, "FTP").
//! - Relative relocations are packed (DT_RELR): the loader reads a few KiB
//!   instead of ~450 KiB of relocation records at every start. Only glibc
//!   2.36 and later load such a binary (older ones would crash in it), so
//!   only when building natively on one of those.
//!
//! Both are flags of LLD, the linker Rust uses by default for
//! x86_64-unknown-linux-gnu since 1.90; with any other linker the binary is
//! linked as usual. Names in the order file that no longer exist (renamed or
//! inlined functions) are skipped by the linker.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/text-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") || !links_with_lld() {
        return;
    }
    let order = format!(
        "{}/link/text-order.txt",
        env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    if env::var("HOST") == env::var("TARGET") && glibc_loads_packed_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if Path::new(&order).exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the binary is linked by Rust's own LLD: the target where it is
/// the default, a compiler new enough to make it so, and no linker chosen
/// by the user (cargo's `target.*.linker`, or `-C linker` in the flags).
fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("RUSTC_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| flags.contains("linker"))
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    version_of(&rustc, "--version").is_some_and(|version| version >= (1, 90))
}

/// Whether this machine's glibc is 2.36 or later, the first to load packed
/// relative relocations (DT_RELR).
fn glibc_loads_packed_relocations() -> bool {
    // "glibc 2.36"
    version_of("getconf", "GNU_LIBC_VERSION").is_some_and(|version| version >= (2, 36))
}

/// The major and minor version in the second word `program argument`
/// prints, as in "rustc 1.95.0 (…)" or "glibc 2.36".
fn version_of(program: &str, argument: &str) -> Option<(u32, u32)> {
    let output = Command::new(program).arg(argument).output().ok()?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut numbers = printed.split_whitespace().nth(1)?.split('.');
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}
