//! Webhook signatures in the Stripe/GitHub style: the header
//! `X-Slate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
//! Several `v1=` values may be sent (one per secret during a rotation); any secret that
//! is active may match. Comparison is constant-time (`Mac::verify_slice`).

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How far a signature's time may be from ours, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Slate-Signature header")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's time is {0} s away from ours (more than {TOLERANCE_SECONDS} s)")]
    Stale(i64),
    #[error("no active secret matches the signature")]
    NoMatch,
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` signed with `secret` at time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

/// Checks `header` against `body` and the active `secrets` at time `now`; returns the
/// signed time.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Vec<u8>],
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => {
                candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            Some(_) => {} // other schemes: ignored, as Stripe does
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = (now - t).abs();
    if skew > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale(skew));
    }
    for secret in secrets {
        for candidate in &candidates {
            if mac(secret, t, body).verify_slice(candidate).is_ok() {
                return Ok(t);
            }
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_any_active_secret_and_nothing_else() {
        let (old, new) = (b"old-secret".to_vec(), b"new-secret".to_vec());
        let only_old = std::slice::from_ref(&old);
        let body = br#"{"event":"up"}"#;
        let now = 1_800_000_000;
        let header = sign(&old, now - 10, body);
        assert_eq!(
            verify(Some(&header), body, &[new.clone(), old.clone()], now),
            Ok(now - 10)
        );
        assert_eq!(
            verify(Some(&header), body, std::slice::from_ref(&new), now),
            Err(SignatureError::NoMatch)
        );
        // Another body, another time, a flipped digit: no.
        assert_eq!(
            verify(Some(&header), b"{}", only_old, now),
            Err(SignatureError::NoMatch)
        );
        let moved = header.replacen(&format!("t={}", now - 10), &format!("t={}", now - 11), 1);
        assert_eq!(
            verify(Some(&moved), body, only_old, now),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(Some(&sign(&old, now - 301, body)), body, only_old, now),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(Some(&sign(&old, now + 301, body)), body, only_old, now),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(None, body, only_old, now),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "t=abc,v1=00",
            "v1=00",
            &format!("t={now}"),
            &format!("t={now},v1=zz"),
            "garbage",
        ] {
            assert_eq!(
                verify(Some(bad), body, only_old, now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Two signatures in one header (the sender signs with both during a rotation).
        let both = format!(
            "{},v1={}",
            sign(&new, now, body),
            sign(&old, now, body).rsplit("v1=").next().unwrap()
        );
        assert_eq!(verify(Some(&both), body, only_old, now), Ok(now));
    }
}
