//! API keys: `{prefix}_{id}_{secret}_{checksum}`.
//!
//! - `id`: 16 hex digits (64 random bits), public, the lookup key in Postgres;
//! - `secret`: 64 hex digits (256 random bits), never stored in Postgres;
//! - `checksum`: CRC-32 of everything before it, so a mistyped key is rejected
//!   without a database hit (CRC-32 catches every single-character change).
//!
//! Postgres keeps an scrypt PHC string of the secret (parameters included);
//! verification compares in constant time. Hashing runs off the async threads.

use crate::error::StageError;
use rand::RngCore;
use scrypt::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use scrypt::{Params, Scrypt};
use secrecy::{ExposeSecret, SecretString};

const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly generated key. Its plaintext is only reachable through `expose_secret`.
pub struct ApiKey {
    pub id: String,
    pub prefix: String,
    plaintext: SecretString,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn generate(prefix: &str) -> ApiKey {
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        let mut rng = rand::rng();
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let body = format!("{prefix}_{}_{}", hex::encode(id), hex::encode(secret));
        let plaintext = format!("{body}_{:08x}", crc32fast::hash(body.as_bytes()));
        ApiKey {
            id: hex::encode(id),
            prefix: prefix.to_owned(),
            plaintext: SecretString::from(plaintext),
        }
    }

    pub fn from_plaintext(plaintext: SecretString) -> Result<ApiKey, KeyFormatError> {
        let parsed = parse(plaintext.expose_secret())?;
        let (id, prefix) = (parsed.id.to_owned(), parsed.prefix.to_owned());
        Ok(ApiKey {
            id,
            prefix,
            plaintext,
        })
    }

    pub fn plaintext(&self) -> &SecretString {
        &self.plaintext
    }

    /// The secret part, the only part that is hashed.
    pub fn secret_part(&self) -> SecretString {
        let parsed = parse(self.plaintext.expose_secret()).expect("generated keys are well formed");
        SecretString::from(parsed.secret.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("api key is not of the form prefix_id_secret_checksum")]
    Shape,
    #[error("api key checksum does not match (mistyped key?)")]
    Checksum,
}

/// The parts of a key, borrowed from its plaintext.
#[derive(PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub id: &'a str,
    pub secret: &'a str,
}

/// Checks a presented key's shape and checksum; no database needed.
pub fn parse(plaintext: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    let mut parts = plaintext.rsplitn(4, '_');
    let (Some(checksum), Some(secret), Some(id), Some(prefix)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyFormatError::Shape);
    };
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_valid_prefix(prefix)
        || !lower_hex(id, ID_BYTES * 2)
        || !lower_hex(secret, SECRET_BYTES * 2)
        || !lower_hex(checksum, 8)
    {
        return Err(KeyFormatError::Shape);
    }
    let body = &plaintext[..plaintext.len() - checksum.len() - 1];
    if format!("{:08x}", crc32fast::hash(body.as_bytes())) != checksum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(ParsedKey { prefix, id, secret })
}

/// Prefix rule: a lowercase letter, then up to 15 lowercase letters or digits.
pub fn is_valid_prefix(prefix: &str) -> bool {
    let mut bytes = prefix.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && prefix.len() <= 16
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The scopes a key may carry; a key issued without any gets both.
pub const SCOPES: [&str; 2] = ["read", "write"];

pub const PREFIX_RULE: &str =
    "must start with a lowercase letter followed by at most 15 lowercase letters or digits";

/// scrypt PHC string of `secret` with cost 2^log_n, r = 8, p = 1 (CPU-heavy: call
/// through `hash_off_thread` from async code).
pub fn hash_secret(secret: &SecretString, log_n: u8) -> Result<String, StageError> {
    let params = Params::new(log_n, 8, 1, 32)
        .map_err(|e| StageError::permanent(format!("scrypt parameters: {e}")))?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| StageError::permanent(format!("salt: {e}")))?;
    Scrypt
        .hash_password_customized(secret.expose_secret().as_bytes(), None, None, params, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StageError::permanent(format!("hashing api key: {e}")))
}

pub async fn hash_off_thread(secret: SecretString, log_n: u8) -> Result<String, StageError> {
    tokio::task::spawn_blocking(move || hash_secret(&secret, log_n))
        .await
        .map_err(|e| StageError::retryable(format!("hashing task: {e}")))?
}

/// Whether `plaintext` is the key whose secret `phc` hashes. Shape and checksum
/// are checked first; the hash comparison is constant-time.
pub fn verify(plaintext: &str, phc: &str) -> bool {
    let Ok(parsed) = parse(plaintext) else {
        return false;
    };
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Scrypt
        .verify_password(parsed.secret.as_bytes(), &hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_parses_and_carries_256_secret_bits() {
        let key = ApiKey::generate("pk");
        let plain = key.plaintext().expose_secret().to_owned();
        let parsed = parse(&plain).unwrap();
        assert_eq!(parsed.prefix, "pk");
        assert_eq!(parsed.id, key.id);
        assert_eq!(parsed.secret.len() * 4, 256);
        assert_ne!(ApiKey::generate("pk").id, key.id);
    }

    #[test]
    fn every_single_character_change_fails_the_checksum_or_shape() {
        let key = ApiKey::generate("acme");
        let plain = key.plaintext().expose_secret().to_owned();
        for i in 0..plain.len() {
            let mut bytes = plain.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' {
                b'b'
            } else if bytes[i] == b'_' {
                b'x'
            } else {
                b'a'
            };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != plain {
                assert!(
                    parse(&changed).is_err(),
                    "position {i} accepted: change went unnoticed"
                );
            }
        }
    }

    #[test]
    fn hash_verifies_only_the_right_key_and_records_its_parameters() {
        let key = ApiKey::generate("pk");
        let phc = hash_secret(&key.secret_part(), 10).unwrap();
        assert!(phc.starts_with("$scrypt$ln=10,r=8,p=1$"), "{phc}");
        assert!(!phc.contains(key.secret_part().expose_secret()));
        assert!(verify(key.plaintext().expose_secret(), &phc));
        assert!(!verify(
            ApiKey::generate("pk").plaintext().expose_secret(),
            &phc
        ));
    }

    #[test]
    fn debug_output_never_shows_the_plaintext() {
        let key = ApiKey::generate("pk");
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.secret_part().expose_secret()));
        assert!(shown.contains(&key.id));
    }

    #[test]
    fn prefix_rule_rejects_sql_and_control_characters() {
        for ok in ["pk", "a", "acme2024", "abcdefghijklmnop"] {
            assert!(is_valid_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "1pk",
            "Pk",
            "p_k",
            "pk'; drop table x;--",
            "p\nk",
            "abcdefghijklmnopq",
        ] {
            assert!(!is_valid_prefix(bad), "{bad:?}");
        }
    }
}
