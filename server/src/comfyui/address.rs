//! What the notebook reports is untrusted text: turn it into a URL Slate may fetch, or
//! say why not. https only, a host on the allowlist (Cloudflare quick tunnels by
//! default), no userinfo, port, path beyond `/`, query or fragment. Addresses are
//! checked again after Slate resolves the name itself (see `probe`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// The hosts Slate accepts: quick-tunnel names plus configured exact hosts or suffixes
/// (`*.example.com`).
#[derive(Clone, Debug)]
pub struct HostRules {
    pub extra: Vec<String>,
    /// Test-only: accept `http://127.0.0.1:<port>` (never in production; logged loudly).
    pub allow_loopback: bool,
}

impl HostRules {
    pub fn parse(extra: &str, allow_loopback: bool) -> HostRules {
        HostRules {
            extra: extra
                .split(',')
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_loopback,
        }
    }

    pub fn allows(&self, host: &str) -> bool {
        is_quick_tunnel(host)
            || self.extra.iter().any(|rule| match rule.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => host == rule,
            })
    }
}

/// `^[a-z0-9]+(-[a-z0-9]+)*\.trycloudflare\.com$`
fn is_quick_tunnel(host: &str) -> bool {
    let Some(label) = host.strip_suffix(".trycloudflare.com") else {
        return false;
    };
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && !label.contains("--")
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no URL was given")]
    Empty,
    #[error("this is not a URL")]
    NotAUrl,
    #[error("only https URLs are accepted")]
    NotHttps,
    #[error("a user name or password in the URL is not accepted")]
    Userinfo,
    #[error("a port in the URL is not accepted")]
    Port,
    #[error("a path, query or fragment in the URL is not accepted")]
    Extra,
    #[error("the host {0} is not allowed (quick-tunnel hosts end in .trycloudflare.com; others must be in SLATE_COLAB_ALLOWED_HOSTS)")]
    Host(String),
    #[error("{0} is not a public address ({1})")]
    Private(IpAddr, &'static str),
}

/// Cleans what the notebook prints around the URL (spaces, `|` from cloudflared's
/// ASCII box, a trailing slash) and checks it.
pub fn normalise(raw: &str, rules: &HostRules) -> Result<Url, AddressError> {
    let cleaned = raw
        .trim_matches(|c: char| c.is_whitespace() || c == '|' || c == '"' || c == '\'')
        .trim();
    if cleaned.is_empty() {
        return Err(AddressError::Empty);
    }
    let url = Url::parse(cleaned).map_err(|_| AddressError::NotAUrl)?;
    let host = url
        .host_str()
        .ok_or(AddressError::NotAUrl)?
        .to_ascii_lowercase();
    let loopback_test = rules.allow_loopback
        && url.scheme() == "http"
        && host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if url.scheme() != "https" && !loopback_test {
        return Err(AddressError::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AddressError::Userinfo);
    }
    if url.port().is_some() && !loopback_test {
        return Err(AddressError::Port);
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(AddressError::Extra);
    }
    if loopback_test {
        return Ok(url);
    }
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        if let Some(why) = forbidden(ip) {
            return Err(AddressError::Private(ip, why));
        }
        return Err(AddressError::Host(host));
    }
    if !rules.allows(&host) {
        return Err(AddressError::Host(host));
    }
    Ok(url)
}

/// Why Slate must not connect to `ip`, if it must not. An IPv6 address that carries an
/// IPv4 address (mapped, compatible, NAT64, 6to4) is judged by the IPv4 address it
/// reaches; forms whose IPv4 part cannot be read reliably (local-use NAT64, Teredo)
/// are refused outright.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if a == 0 {
        Some("this network")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a >= 240
        // IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15).
        || (a, b, c) == (192, 0, 0)
        || (a == 198 && (b & 0xfe) == 18)
    {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let s = v6.segments();
    let o = v6.octets();
    let low_v4 = || Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if v6.is_loopback() || v6.is_unspecified() {
        Some("loopback")
    } else if let Some(v4) = v6.to_ipv4_mapped() {
        forbidden_v4(v4)
    } else if s[..6] == [0; 6] {
        // IPv4-compatible `::a.b.c.d` (deprecated; nothing public is reached this way).
        Some(forbidden_v4(low_v4()).unwrap_or("IPv4-compatible"))
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // IPv4-translated (SIIT) `::ffff:0:a.b.c.d`.
        forbidden_v4(low_v4())
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 with the well-known prefix reaches the IPv4 address in its last 32 bits.
        forbidden_v4(low_v4())
    } else if s[..3] == [0x64, 0xff9b, 1] {
        Some("local-use NAT64")
    } else if s[0] == 0x2002 {
        // 6to4 carries the IPv4 address of its relay in bits 16 to 48.
        forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else if s[..2] == [0x2001, 0] {
        Some("Teredo")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if v6.is_multicast()
        // Documentation (2001:db8::/32), discard-only (100::/64).
        || s[..2] == [0x2001, 0xdb8]
        || s[..4] == [0x100, 0, 0, 0]
    {
        Some("reserved")
    } else {
        None
    }
}

/// The host's first word, which is all the UI and logs show of an endpoint (the URL is
/// a credential: ComfyUI has no authentication).
pub fn redact(url: &str) -> String {
    let host = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let word = host.split(['-', '.']).next().unwrap_or_default();
    if word.is_empty() {
        "(hidden)".to_owned()
    } else {
        format!("https://{word}-…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> HostRules {
        HostRules::parse("comfy.studio.example, *.tunnels.example", false)
    }

    #[test]
    fn the_notebook_junk_is_stripped_and_the_rules_apply() {
        let ok = |raw: &str| normalise(raw, &rules()).map(|u| u.to_string());
        assert_eq!(
            ok("  |  https://quiet-river-cat.trycloudflare.com/   |  ").unwrap(),
            "https://quiet-river-cat.trycloudflare.com/"
        );
        assert_eq!(
            ok("https://Quiet-River.TryCloudflare.com").unwrap(),
            "https://quiet-river.trycloudflare.com/"
        );
        assert_eq!(
            ok("https://comfy.studio.example").unwrap(),
            "https://comfy.studio.example/"
        );
        assert_eq!(
            ok("https://a.tunnels.example").unwrap(),
            "https://a.tunnels.example/"
        );
        let err = |raw: &str| normalise(raw, &rules()).unwrap_err();
        assert_eq!(err("   | "), AddressError::Empty);
        assert_eq!(err("not a url"), AddressError::NotAUrl);
        assert_eq!(
            err("http://quiet-river.trycloudflare.com"),
            AddressError::NotHttps
        );
        assert_eq!(
            err("ftp://quiet-river.trycloudflare.com"),
            AddressError::NotHttps
        );
        assert_eq!(
            err("https://user:pw@quiet-river.trycloudflare.com"),
            AddressError::Userinfo
        );
        assert_eq!(
            err("https://quiet-river.trycloudflare.com:8443"),
            AddressError::Port
        );
        assert_eq!(
            err("https://quiet-river.trycloudflare.com/admin"),
            AddressError::Extra
        );
        assert_eq!(
            err("https://quiet-river.trycloudflare.com/?a=b"),
            AddressError::Extra
        );
        assert_eq!(
            err("https://quiet-river.trycloudflare.com/#x"),
            AddressError::Extra
        );
        assert!(matches!(
            err("https://trycloudflare.com"),
            AddressError::Host(_)
        ));
        assert!(matches!(
            err("https://evil.com/.trycloudflare.com"),
            AddressError::Extra
        ));
        assert!(matches!(
            err("https://quiet-river.trycloudflare.com.evil.com"),
            AddressError::Host(_)
        ));
        assert!(matches!(
            err("https://-bad.trycloudflare.com"),
            AddressError::Host(_)
        ));
        assert!(matches!(
            err("https://tunnels.example"),
            AddressError::Host(_)
        ));
        assert!(matches!(
            err("https://127.0.0.1"),
            AddressError::Private(_, "loopback")
        ));
        assert!(matches!(
            err("https://169.254.169.254"),
            AddressError::Private(_, "link-local")
        ));
        assert!(matches!(
            err("https://[::1]"),
            AddressError::Private(_, "loopback")
        ));
        assert!(matches!(err("https://8.8.8.8"), AddressError::Host(_)));
        // The loopback switch is for tests only, and only for http on loopback.
        assert!(matches!(
            err("http://127.0.0.1:8188"),
            AddressError::NotHttps
        ));
        let test = HostRules::parse("", true);
        assert!(normalise("http://127.0.0.1:8188/", &test).is_ok());
        assert!(normalise("http://10.0.0.1:8188/", &test).is_err());
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        let no = |s: &str| forbidden(s.parse().unwrap());
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "this network"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("::1", "loopback"),
            ("fd00::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("255.255.255.255", "reserved"),
        ] {
            assert_eq!(no(ip), Some(why), "{ip}");
        }
        for ip in ["104.16.0.1", "100.128.0.1", "2606:4700::1", "8.8.8.8"] {
            assert_eq!(no(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        let no = |s: &str| forbidden(s.parse().unwrap());
        for (ip, why) in [
            // IPv4-mapped.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            // IPv4-compatible: refused even when the IPv4 address is public.
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::169.254.169.254", "link-local"),
            ("::8.8.8.8", "IPv4-compatible"),
            // IPv4-translated.
            ("::ffff:0:10.0.0.1", "private"),
            ("::ffff:0:127.0.0.1", "loopback"),
            // NAT64, well-known prefix.
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::10.1.2.3", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::100.64.0.1", "carrier-grade NAT"),
            // NAT64, local-use prefix: where the IPv4 address sits is the operator's choice.
            ("64:ff9b:1::8.8.8.8", "local-use NAT64"),
            ("64:ff9b:1:a00:1::", "local-use NAT64"),
            // 6to4 around a private or loopback address.
            ("2002:7f00:1::", "loopback"),
            ("2002:a00:1::1", "private"),
            ("2002:c0a8:101::1", "private"),
            ("2002:a9fe:a9fe::", "link-local"),
            // Teredo hides its client address; refused whatever it holds.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001::", "Teredo"),
            // Other special ranges.
            ("fec0::1", "site-local"),
            ("2001:db8::1", "reserved"),
            ("100::1", "reserved"),
            ("ff02::1", "reserved"),
            ("192.0.0.8", "reserved"),
            ("198.18.0.1", "reserved"),
            ("198.19.255.255", "reserved"),
        ] {
            assert_eq!(no(ip), Some(why), "{ip}");
        }
        // The same forms around public addresses reach the internet and are fine.
        for ip in [
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "64:ff9b::6810:1",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2001:db9::1",
            "198.20.0.1",
            "192.0.1.1",
        ] {
            assert_eq!(no(ip), None, "{ip}");
        }
    }

    #[test]
    fn urls_are_redacted_to_their_first_word() {
        assert_eq!(
            redact("https://quiet-river-cat.trycloudflare.com/"),
            "https://quiet-…"
        );
        assert_eq!(redact("nonsense"), "(hidden)");
    }
}
