//! Who the client is when Gatehouse sits behind a reverse proxy: the trusted proxies
//! (`[http] trusted_proxies`, typed CIDR blocks) and what only they may tell, the client's
//! address (`X-Forwarded-For`) and its country (`[http] country_header`). A request from any
//! other peer is taken at its peer address, whatever headers it sends.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or an address block like 10.0.0.0/8")]
    Address(String),
    #[error("{0:?}: the prefix length must be 0-32 for IPv4 and 0-128 for IPv6")]
    Prefix(String),
    #[error("{0:?} has bits set past its prefix length (the block starts at {1})")]
    HostBits(String, IpAddr),
}

/// The address with every bit past `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| CidrError::Prefix(s.to_owned()))?
            }
            Some(_) => return Err(CidrError::Prefix(s.to_owned())),
        };
        // A block written with host bits (10.1.2.3/8) is most likely a typo for something
        // narrower; refused rather than widened silently.
        if masked(network, prefix) != network {
            return Err(CidrError::HostBits(s.to_owned(), masked(network, prefix)));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) as
/// the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.network.is_ipv4() && masked(addr, self.prefix) == self.network
    }
}

/// A country as two letters of ISO 3166-1 alpha-2, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters (either case); anything else is no country. `XX`, which proxies
    /// send for "unknown", is none either.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.trim().as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let code = [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()];
        (code != *b"XX").then_some(Self(code))
    }
    pub fn as_str(&self) -> &str {
        // Two ASCII letters, by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What the trusted proxies may tell (`[http]`).
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    pub trusted: Vec<Cidr>,
    /// The header, lower case, that carries the client's country (e.g. `cf-ipcountry`).
    pub country_header: Option<String>,
}

/// Who sent a request: its address, and its country when a trusted proxy said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub country: Option<CountryCode>,
}

impl Proxies {
    pub fn trusts(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(addr))
    }

    /// The client behind `peer`. Only a trusted peer's headers count: the address is the
    /// rightmost `X-Forwarded-For` hop that is not itself a trusted proxy (each proxy appends
    /// the address it saw; hops left of an untrusted one could be anything the client
    /// wrote). A malformed list is ignored as a whole, and the peer is the client.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
        country: Option<&str>,
    ) -> Client {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return Client { ip: peer, country: None };
        }
        let hops: Option<Vec<IpAddr>> =
            forwarded_for.flat_map(|v| v.split(',')).map(|h| h.trim().parse::<IpAddr>().ok().map(canonical)).collect();
        let ip = match hops {
            Some(hops) => hops.into_iter().rev().find(|h| !self.trusts(*h)).unwrap_or(peer),
            None => peer,
        };
        Client { ip, country: country.and_then(CountryCode::parse) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let ten: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains(ip("10.255.0.1")) && !ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.0.0.1")), "an IPv4-mapped address is its IPv4 address");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")) && !v6.contains(ip("10.0.0.1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "ten", "10.1.2.3/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap_err(), CidrError::HostBits("10.1.2.3/8".into(), ip("10.0.0.0")));
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let p = Proxies {
            trusted: vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            country_header: None,
        };
        let client = |peer: &str, xff: &[&str], country: Option<&str>| p.client(ip(peer), xff.iter().copied(), country);
        // Rightmost untrusted hop: the proxies' own hops are skipped, the client's claims left of it are not believed.
        assert_eq!(client("127.0.0.1", &["6.6.6.6, 203.0.113.7, 10.1.1.1"], Some("de")).ip, ip("203.0.113.7"));
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6", "203.0.113.7"], None).ip,
            ip("203.0.113.7"),
            "two headers are one list"
        );
        assert_eq!(client("127.0.0.1", &["203.0.113.7"], Some("de")).country.unwrap().as_str(), "DE");
        assert_eq!(client("127.0.0.1", &["10.0.0.2"], None).ip, ip("127.0.0.1"), "only proxies: the peer");
        assert_eq!(client("127.0.0.1", &[], None).ip, ip("127.0.0.1"));
        assert_eq!(client("127.0.0.1", &["203.0.113.7, nonsense"], None).ip, ip("127.0.0.1"), "malformed: ignored");
        for bad in ["USA", "1A", "", "X", "xx", "D\u{e9}"] {
            assert_eq!(client("127.0.0.1", &[], Some(bad)).country, None, "{bad}");
        }
        let untrusted = client("192.0.2.1", &["203.0.113.7"], Some("DE"));
        assert_eq!(untrusted, Client { ip: ip("192.0.2.1"), country: None }, "an untrusted peer's headers are ignored");
        let nobody = Proxies::default();
        assert_eq!(nobody.client(ip("127.0.0.1"), ["203.0.113.7"].into_iter(), Some("DE")).ip, ip("127.0.0.1"));
    }
}
