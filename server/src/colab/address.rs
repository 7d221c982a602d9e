//! What the notebook reports is untrusted text: turn it into a URL Slate may fetch, or
//! say why not. https only, a host on the allowlist (Cloudflare quick tunnels by
//! default), no userinfo, port, path beyond `/`, query or fragment. Addresses are
//! checked again after Slate resolves the name itself (see `probe`).

use std::net::IpAddr;

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

/// Why Slate must not connect to `ip`, if it must not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
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
            } else if v4.is_broadcast() || v4.is_multicast() || v4.is_documentation() || a >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() || v6.is_unspecified() {
                Some("loopback")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("reserved")
            } else {
                None
            }
        }
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
    fn urls_are_redacted_to_their_first_word() {
        assert_eq!(
            redact("https://quiet-river-cat.trycloudflare.com/"),
            "https://quiet-…"
        );
        assert_eq!(redact("nonsense"), "(hidden)");
    }
}
