//! Subscription secrets and signatures, as Standard Webhooks defines them: a secret is
//! `whsec_` and the base64 of its bytes; a delivery is signed with HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` and sent as `v1,<base64 signature>`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";
/// Shortest and longest secrets accepted, in bytes once decoded.
pub const MIN_BYTES: usize = 24;
pub const MAX_BYTES: usize = 64;
/// The size of the secrets Slate makes.
const MADE_BYTES: usize = 32;

/// A secret's bytes. Never printed: its `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with \"whsec_\" followed by base64")]
    Prefix,
    #[error("the part after \"whsec_\" is not valid base64")]
    Base64,
    #[error("the secret is {0} bytes once decoded; it must be at least 24 (32 is usual)")]
    Short(usize),
    #[error("the secret is {0} bytes once decoded; at most 64 are accepted")]
    Long(usize),
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; MADE_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// Reads `whsec_<base64>` (padded or not).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Prefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::Base64)?;
        match bytes.len() {
            n if n < MIN_BYTES => Err(SecretError::Short(n)),
            n if n > MAX_BYTES => Err(SecretError::Long(n)),
            _ => Ok(Secret(bytes)),
        }
    }

    /// The secret as it is shown (once) and stored.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header's value for one try.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused_with_the_reason() {
        let made = Secret::generate();
        let text = made.encode();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).unwrap(), made);
        assert_ne!(Secret::generate(), made);

        let b64 = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert!(Secret::parse(&b64(24)).is_ok());
        assert!(Secret::parse(&b64(64)).is_ok());
        assert_eq!(Secret::parse(&b64(23)), Err(SecretError::Short(23)));
        assert_eq!(Secret::parse(&b64(65)), Err(SecretError::Long(65)));
        assert_eq!(Secret::parse("hunter2"), Err(SecretError::Prefix));
        assert_eq!(
            Secret::parse("whsec_!!!not base64"),
            Err(SecretError::Base64)
        );
        // Unpadded base64 is read too.
        let unpadded = format!("whsec_{}", STANDARD_NO_PAD.encode(vec![1u8; 25]));
        assert!(Secret::parse(&unpadded).is_ok());
        assert_eq!(format!("{made:?}"), "Secret(..)");
    }

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        // Its secret is 24 bytes: the shortest accepted.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
