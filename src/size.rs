//! Byte sizes as people write and read them: `500M`, `2G` in, `1.5 KiB` out.
//! Powers of 1024 throughout, as quotas and file listings use.

/// Parses `1024`, `10K`, `500M`, `2G`, `1T`; `KiB`/`KB`-style and lower-case
/// suffixes too.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1024, 500M or 2G"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown size unit {unit:?}: use K, M, G or T")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn format(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse("1024"), Ok(1024));
        assert_eq!(parse("10K"), Ok(10 << 10));
        assert_eq!(parse("500M"), Ok(500 << 20));
        assert_eq!(parse("2g"), Ok(2 << 30));
        assert_eq!(parse("3GiB"), Ok(3 << 30));
        assert_eq!(parse("1T"), Ok(1 << 40));
        assert!(parse("").is_err());
        assert!(parse("12X").is_err());
        assert!(parse("99999999999T").is_err());
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format(0), "0 B");
        assert_eq!(format(512), "512 B");
        assert_eq!(format(1536), "1.5 KiB");
        assert_eq!(format(2 << 30), "2.0 GiB");
    }
}
