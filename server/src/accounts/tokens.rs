//! API token secrets: `slate_` followed by 43 random URL-safe characters (256 bits).
//! Only their SHA-256 is stored, which is enough for secrets of that strength.

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

const PREFIX: &str = "slate_";
const SECRET_LEN: usize = PREFIX.len() + 43;
/// How much of the secret the UI shows to tell tokens apart.
pub const DISPLAY_PREFIX_LEN: usize = PREFIX.len() + 6;

pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Whether a presented bearer value has the shape of one of our tokens.
pub fn well_formed(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret.starts_with(PREFIX)
        && secret[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, generate());
        assert_eq!(digest(&a).len(), 32);
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        assert!(!well_formed(""));
        assert!(!well_formed("slate_short"));
        assert!(!well_formed(&format!("other_{}", "a".repeat(43))));
        assert!(!well_formed(&format!("slate_{}", "!".repeat(43))));
    }
}
