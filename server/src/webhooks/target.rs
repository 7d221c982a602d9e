//! Where a delivery may go: the URL rules and SSRF guard of the Colab probe
//! (`comfyui::address::forbidden`) applied to a subscription's URL when it is made and
//! again before every try, since a name's addresses can change. http(s) only, no user
//! name or password, and no private, loopback, link-local or metadata address unless the
//! host (or `host:port`) is on the allow-list (`SLATE_WEBHOOK_ALLOW`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

use crate::comfyui::address::forbidden;

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// How long a name may take to resolve.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("this is not a URL")]
    NotAUrl,
    #[error("the URL is longer than {MAX_URL} characters")]
    TooLong,
    #[error("only http and https URLs are accepted")]
    Scheme,
    #[error("a user name or password in the URL is not accepted")]
    Userinfo,
    #[error("a fragment (#...) in the URL is not accepted: it is never sent")]
    Fragment,
    #[error("the host {host} does not resolve: {why}")]
    Dns { host: String, why: String },
    #[error("{host} is {ip}, which is not a public address ({why}); add {host} to SLATE_WEBHOOK_ALLOW if it is an in-cluster service Slate may call")]
    Private {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
}

/// A URL that passed the rules that need no network.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: Url,
    /// Lower case, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// On the allow-list: its addresses are not judged.
    pub allowed: bool,
}

/// Checks the URL's form and whether the allow-list names it.
pub fn parse(raw: &str, allow: &[String]) -> Result<Target, TargetError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Userinfo);
    }
    if url.fragment().is_some() {
        return Err(TargetError::Fragment);
    }
    let host = url
        .host_str()
        .ok_or(TargetError::NotAUrl)?
        .trim_matches(|c| c == '[' || c == ']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(TargetError::NotAUrl);
    }
    let port = url.port_or_known_default().ok_or(TargetError::NotAUrl)?;
    let allowed = is_allowed(&host, port, allow);
    Ok(Target {
        url,
        host,
        port,
        allowed,
    })
}

/// Whether `host` (or `host:port`) is on the allow-list. IPv6 hosts are written in
/// brackets with a port (`[fd00::1]:8080`) or bare without one.
pub fn is_allowed(host: &str, port: u16, allow: &[String]) -> bool {
    let with_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    allow.iter().any(|rule| {
        let rule = rule.trim_end_matches('.');
        rule == host || rule == with_port || rule.trim_matches(|c| c == '[' || c == ']') == host
    })
}

impl Target {
    /// The addresses to connect to, every one checked (unless the host is allowed).
    pub async fn addresses(&self) -> Result<Vec<SocketAddr>, TargetError> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::time::timeout(
                DNS_TIMEOUT,
                tokio::net::lookup_host((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| TargetError::Dns {
                host: self.host.clone(),
                why: format!("no answer within {} s", DNS_TIMEOUT.as_secs()),
            })?
            .map_err(|e| TargetError::Dns {
                host: self.host.clone(),
                why: e.to_string(),
            })?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(TargetError::Dns {
                host: self.host.clone(),
                why: "no addresses".into(),
            });
        }
        if !self.allowed {
            if let Some((ip, why)) = addrs
                .iter()
                .find_map(|a| forbidden(a.ip()).map(|w| (a.ip(), w)))
            {
                return Err(TargetError::Private {
                    host: self.host.clone(),
                    ip,
                    why,
                });
            }
        }
        Ok(addrs)
    }

    /// What logs and the audit log show: the scheme, host and port, never the path (an
    /// incoming-webhook URL's path is its credential).
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

pub fn redact(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(rules: &[&str]) -> Vec<String> {
        rules.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_form_of_the_url_is_checked() {
        let err = |raw: &str| parse(raw, &[]).unwrap_err();
        assert_eq!(err("not a url"), TargetError::NotAUrl);
        assert_eq!(err("ftp://example.com/x"), TargetError::Scheme);
        assert_eq!(err("file:///etc/passwd"), TargetError::Scheme);
        assert_eq!(err("https://u:p@example.com/x"), TargetError::Userinfo);
        assert_eq!(err("https://u@example.com/x"), TargetError::Userinfo);
        assert_eq!(err("https://example.com/x#frag"), TargetError::Fragment);
        assert_eq!(
            err(&format!("https://example.com/{}", "a".repeat(3000))),
            TargetError::TooLong
        );
        let ok = parse("HTTPS://Hooks.Example.COM./in?x=1", &[]).unwrap();
        assert_eq!(ok.host, "hooks.example.com");
        assert_eq!(ok.port, 443);
        assert!(!ok.allowed);
        assert_eq!(ok.redacted(), "https://hooks.example.com.");
    }

    #[test]
    fn the_allow_list_names_hosts_or_host_and_port() {
        let list = allow(&["dagster-webserver.film.svc", "127.0.0.1:9000", "[::1]:8080"]);
        assert!(
            parse("http://dagster-webserver.film.svc:3000/hook", &list)
                .unwrap()
                .allowed
        );
        assert!(parse("http://127.0.0.1:9000/", &list).unwrap().allowed);
        assert!(!parse("http://127.0.0.1:9001/", &list).unwrap().allowed);
        assert!(parse("http://[::1]:8080/", &list).unwrap().allowed);
        assert!(!parse("http://[::1]:8081/", &list).unwrap().allowed);
        // A suffix is not the host.
        assert!(
            !parse("http://evil-dagster-webserver.film.svc/", &list)
                .unwrap()
                .allowed
        );
        assert!(
            !parse("http://dagster-webserver.film.svc.evil.com/", &list)
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        for raw in [
            "http://127.0.0.1:9000/",
            "http://10.0.0.5/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://localhost:8080/",
        ] {
            let target = parse(raw, &[]).unwrap();
            let err = target.addresses().await.unwrap_err();
            assert!(matches!(err, TargetError::Private { .. }), "{raw}: {err:?}");
            assert!(err.to_string().contains("SLATE_WEBHOOK_ALLOW"), "{err}");
        }
        let target = parse("http://127.0.0.1:9000/", &allow(&["127.0.0.1:9000"])).unwrap();
        assert_eq!(target.addresses().await.unwrap().len(), 1);
        // A public literal needs no lookup and passes.
        let target = parse("https://8.8.8.8/hook", &[]).unwrap();
        assert!(target.addresses().await.is_ok());
    }
}
