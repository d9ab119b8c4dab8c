//! Name and address lookups, and the address conversions the course's notes
//! show (`inet_aton` and friends), for `sockit resolve`.
//!
//! Lookups go through the system resolver (`getaddrinfo`, `getnameinfo`), so
//! they see `/etc/hosts` and whatever the system is configured to ask.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use super::ports::{self, PortEntry, Query};

/// What `sockit resolve` found for one query.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// This machine's host name.
    pub host_name: String,
    pub query: String,
    /// `"name"`, `"service"`, `"address"`, `"number"` or `"packed"`.
    pub kind: &'static str,
    /// The canonical name of a looked-up name.
    pub canonical_name: Option<String>,
    /// Every address of a name (A and AAAA), or the address itself.
    pub addresses: Vec<IpAddr>,
    /// Why a name lookup failed, when it did.
    pub lookup_error: Option<String>,
    /// The name of an address, by reverse lookup.
    pub reverse_name: Option<String>,
    /// Ports of a service of that name.
    pub services: Vec<PortEntry>,
    /// The address in the notations the course shows.
    pub conversions: Option<Conversions>,
}

/// One address in several notations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversions {
    /// Dotted quad, or RFC 5952 text for IPv6.
    pub address: String,
    /// The address as one unsigned integer, in decimal.
    pub integer: String,
    /// The same integer in hexadecimal, `0x`-prefixed.
    pub hex: String,
    /// Network-order bytes as Python prints them, `b'\xc0\xa8\x01\x01'`.
    pub packed: String,
    pub bytes: Vec<u8>,
}

/// Why a query could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {query:?}: {reason}")]
    NotFound { query: String, reason: String },
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
}

/// The address in every notation.
pub fn conversions(address: IpAddr) -> Conversions {
    let (integer, hex, bytes) = match address {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            (n.to_string(), format!("0x{n:08x}"), v4.octets().to_vec())
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            (n.to_string(), format!("0x{n:032x}"), v6.octets().to_vec())
        }
    };
    let packed = format!(
        "b'{}'",
        bytes
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect::<String>()
    );
    Conversions {
        address: address.to_string(),
        integer,
        hex,
        packed,
        bytes,
    }
}

/// Reads packed network-order bytes written as Python prints them,
/// `b'\x7f\x00\x00\x01'` (or just `\x7f\x00\x00\x01`): 4 bytes are an IPv4
/// address, 16 an IPv6 one.
pub fn address_from_packed(text: &str) -> Option<IpAddr> {
    let inner = text
        .strip_prefix("b'")
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(text);
    let bytes: Option<Vec<u8>> = inner
        .split("\\x")
        .skip(1)
        .map(|hex| {
            (hex.len() == 2)
                .then(|| u8::from_str_radix(hex, 16).ok())
                .flatten()
        })
        .collect();
    let bytes = bytes.filter(|_| inner.starts_with("\\x"))?;
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// Reads `3232235777` or `0xc0a80101` as an IPv4 address (a 32-bit integer)
/// or, when larger, an IPv6 address.
pub fn address_from_number(text: &str) -> Option<IpAddr> {
    let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16).ok()?,
        None if text.bytes().all(|b| b.is_ascii_digit()) => text.parse::<u128>().ok()?,
        None => return None,
    };
    Some(match u32::try_from(number) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(number)),
    })
}

/// This machine's host name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (we pass one byte less to be sure).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    CStr::from_bytes_until_nul(&buf)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Forward lookup: (canonical name, addresses) or the resolver's reason.
pub fn lookup_name(name: &str) -> Result<(Option<String>, Vec<IpAddr>), String> {
    let c_name = CString::new(name).map_err(|_| "the name contains a NUL byte".to_owned())?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we set what we need.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = libc::AI_CANONNAME;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, valid hints, out-pointer to a local.
    let rc = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string for any code.
        let reason = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(reason.to_string_lossy().into_owned());
    }
    let mut canonical = None;
    let mut addresses = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getaddrinfo returned, until NULL.
        let info = unsafe { &*cursor };
        if canonical.is_none() && !info.ai_canonname.is_null() {
            // SAFETY: ai_canonname is a NUL-terminated string owned by the list.
            canonical = Some(
                unsafe { CStr::from_ptr(info.ai_canonname) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        // SAFETY: ai_addr points at ai_addrlen bytes of a sockaddr of ai_family.
        if let Some(addr) = unsafe { socket_addr(info.ai_addr, info.ai_family) }
            && !addresses.contains(&addr.ip())
        {
            addresses.push(addr.ip());
        }
        cursor = info.ai_next;
    }
    // SAFETY: freeing the list getaddrinfo allocated, once.
    unsafe { libc::freeaddrinfo(list) };
    Ok((canonical, addresses))
}

/// Reads a `sockaddr` of family `family`.
///
/// # Safety
/// `addr` must point at a valid `sockaddr_in` or `sockaddr_in6` when `family`
/// says so.
unsafe fn socket_addr(addr: *const libc::sockaddr, family: i32) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    match family {
        libc::AF_INET => {
            // SAFETY: the caller guarantees the type for AF_INET.
            let v4 = unsafe { &*(addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the caller guarantees the type for AF_INET6.
            let v6 = unsafe { &*(addr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}

/// Reverse lookup of an address; `None` when it has no name.
pub fn reverse(address: IpAddr) -> Option<String> {
    let socket = socket2::SockAddr::from(SocketAddr::new(address, 0));
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: a valid sockaddr with its length, and an output buffer with its length.
    let rc = unsafe {
        libc::getnameinfo(
            socket.as_ptr().cast(),
            socket.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo NUL-terminates the host buffer on success.
    Some(
        unsafe { CStr::from_ptr(host.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Answers one query: a host name, a service name, an IP address, or an
/// address as a number. With `numeric`, an address is not looked up by
/// name (no reverse lookup, which may ask a DNS server), as `-n` does for
/// ping, ss and traceroute.
///
/// # Errors
/// [`ResolveError::NotFound`] when a name is neither a host nor a service.
pub fn resolve(query: &str, numeric: bool) -> Result<Resolution, ResolveError> {
    if query.contains('\0') {
        return Err(ResolveError::Nul(query.to_owned()));
    }
    let mut resolution = Resolution {
        host_name: host_name(),
        query: query.to_owned(),
        kind: "name",
        canonical_name: None,
        addresses: Vec::new(),
        lookup_error: None,
        reverse_name: None,
        services: Vec::new(),
        conversions: None,
    };
    let address = query
        .parse::<IpAddr>()
        .ok()
        .map(|a| ("address", a))
        .or_else(|| address_from_number(query).map(|a| ("number", a)))
        .or_else(|| address_from_packed(query).map(|a| ("packed", a)));
    if let Some((kind, address)) = address {
        resolution.kind = kind;
        resolution.addresses = vec![address];
        if !numeric {
            resolution.reverse_name = reverse(address);
        }
        resolution.conversions = Some(conversions(address));
        return Ok(resolution);
    }
    // A known service name answers with its ports and is not looked up as a
    // host (a host of that name is still reachable as an FQDN: `ssh.`).
    let table = ports::table();
    let name = query.to_lowercase();
    resolution.services = ports::lookup(&table, &Query::Name(name.clone()))
        .into_iter()
        .filter(|e| e.name == name || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(&name)))
        .cloned()
        .collect();
    if !resolution.services.is_empty() {
        resolution.kind = "service";
        return Ok(resolution);
    }
    match lookup_name(query) {
        Ok((canonical, addresses)) => {
            resolution.canonical_name = canonical;
            resolution.addresses = addresses;
        }
        Err(reason) => resolution.lookup_error = Some(reason),
    }
    if resolution.addresses.is_empty() && resolution.services.is_empty() {
        return Err(ResolveError::NotFound {
            query: query.to_owned(),
            reason: resolution
                .lookup_error
                .unwrap_or_else(|| "no address".to_owned()),
        });
    }
    Ok(resolution)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_conversions_match_the_notes() {
        let c = conversions("192.168.1.1".parse().unwrap());
        assert_eq!(c.integer, "3232235777");
        assert_eq!(c.hex, "0xc0a80101");
        assert_eq!(c.packed, r"b'\xc0\xa8\x01\x01'");
        assert_eq!(c.bytes, vec![192, 168, 1, 1]);
    }

    #[test]
    fn ipv6_conversions() {
        let c = conversions("::1".parse().unwrap());
        assert_eq!(c.integer, "1");
        assert_eq!(c.hex, format!("0x{}1", "0".repeat(31)));
        assert_eq!(c.bytes.len(), 16);
    }

    #[test]
    fn packed_bytes_read_back_as_addresses() {
        assert_eq!(
            address_from_packed(r"b'\x7f\x00\x00\x01'"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            address_from_packed(r"\xc0\xa8\x01\x01"),
            Some("192.168.1.1".parse().unwrap())
        );
        let six = format!("b'{}\\x01'", r"\x00".repeat(15));
        assert_eq!(address_from_packed(&six), Some("::1".parse().unwrap()));
        for bad in [
            r"b'\x7f\x00'",
            r"\x7g\x00\x00\x01",
            "x7f",
            r"b'\x7f\x00\x00\x001'",
        ] {
            assert_eq!(address_from_packed(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_read_back_as_addresses() {
        assert_eq!(
            address_from_number("3232235777"),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(
            address_from_number("0xC0A80101"),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(
            address_from_number("4294967296"),
            Some("::1:0:0".parse().unwrap())
        );
        assert_eq!(address_from_number("localhost"), None);
        assert_eq!(address_from_number("0xZZ"), None);
    }
}
