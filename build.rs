//! Link settings for the release binary that keep a running server small.
//!
//! - `link/text-order.txt` lists the functions a server runs (written by
//!   `scripts/order-text` from profiled runs). The linker puts them next to
//!   each other at the start of the code, so the pages a server touches are
//!   few: the kernel maps code in 64 KiB windows, and scattered functions
//!   kept most of the binary resident (docs in BENCHMARKS.md, "FTP"). The
//!   list becomes a linker script that puts each listed function's section
//!   first in `.text`, matching names with any copy number: whole-program
//!   LTO numbers the copies of a generic function made in several crates
//!   (`name.12345`) in link order, so the numbers shift with every edit,
//!   and an exact list (LLD's `--symbol-ordering-file`) lost 90 of 1 518
//!   names to one small change. The output section keeps the name `.text`:
//!   valgrind names only the functions in a section of that name.
//! - `link/rodata-order.txt` does the same for read-only data (string
//!   bytes, constant tables, jump tables), which the kernel maps in the
//!   same 64 KiB windows: it lists the input sections, by name, that lie
//!   on the pages a profiled server touched; they go first in `.rodata`.
//!   Most have no symbol (`.rodata..Lanon.<hash>.<n>`, numbered per
//!   module), so an edit renumbers some of them; stale names match nothing.
//! - Relative relocations are packed (DT_RELR): the loader reads a few KiB
//!   instead of ~450 KiB of relocation records at every start. Only glibc
//!   2.36 and later load such a binary (older ones would crash in it), so
//!   only when building natively on one of those.
//!
//! Both are written for LLD, the linker Rust uses by default for
//! x86_64-unknown-linux-gnu since 1.90; with any other linker the binary is
//! linked as usual. Names in the order file that no longer exist (renamed or
//! inlined functions) match nothing and are skipped.

use std::env;
use std::fs;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/text-order.txt");
    println!("cargo:rerun-if-changed=link/rodata-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") || !links_with_lld() {
        return;
    }
    let link = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("link");
    if env::var("HOST") == env::var("TARGET") && glibc_loads_packed_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    if let Ok(functions) = fs::read_to_string(link.join("text-order.txt")) {
        let script = Path::new(&out_dir).join("text-order.ld");
        fs::write(&script, hot_text_script(&functions)).expect("OUT_DIR is writable");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
    if let Ok(sections) = fs::read_to_string(link.join("rodata-order.txt")) {
        let script = Path::new(&out_dir).join("rodata-order.ld");
        fs::write(&script, hot_rodata_script(&sections)).expect("OUT_DIR is writable");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}

/// A linker script for the output section `.text`: first the sections of
/// `functions` (one mangled name a line), in that order, each name with or
/// without a copy number, then every other code section as LLD would
/// place it. Functions get a section each, named `.text.` and the symbol,
/// sometimes with a prefix LLVM adds (`.text.unlikely.`): those are matched
/// too. `INSERT` keeps the rest of LLD's own layout.
fn hot_text_script(functions: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut script = String::from("SECTIONS\n{\n  .text : {\n");
    for name in names(functions) {
        let name = without_copy_number(name);
        if seen.insert(name) {
            script.push_str(&format!(
                "    *(.text.{name} .text.{name}.* .text.*.{name} .text.*.{name}.*)\n"
            ));
        }
    }
    script.push_str("    *(.text .text.*)\n  }\n}\nINSERT BEFORE .init;\n");
    script
}

/// A linker script for the output section `.rodata`: first the input
/// sections named in `sections` (one a line), in that order, then the
/// rest. It stays where LLD puts `.rodata`, ahead of the exception tables.
fn hot_rodata_script(sections: &str) -> String {
    let mut script = String::from("SECTIONS\n{\n  .rodata : {\n");
    for name in names(sections) {
        script.push_str(&format!("    *({name})\n"));
    }
    script.push_str("    *(.rodata .rodata.*)\n  }\n}\nINSERT BEFORE .gcc_except_table;\n");
    script
}

/// The names in a list file, one a line, blank lines skipped.
fn names(list: &str) -> impl Iterator<Item = &str> {
    list.lines().map(str::trim).filter(|name| !name.is_empty())
}

/// `name.12345` without `.12345`; other names as they are.
fn without_copy_number(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, number))
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            stem
        }
        _ => name,
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
