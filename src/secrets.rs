//! Sealing tenants' secrets with the server's key (ChaCha20-Poly1305). The tenant and the
//! secret's name are authenticated with each value, so a sealed value copied to another
//! tenant or name in the database does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

pub struct Vault {
    cipher: ChaCha20Poly1305,
}

/// A secret's name: an environment-variable-like identifier, so it can never hold path or
/// shell characters.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn aad(tenant: &str, name: &str) -> Vec<u8> {
    format!("maestro-secret\0{tenant}\0{name}").into_bytes()
}

impl Vault {
    /// `key_material` is any string (SECRETS_KEY or the generated key file); it is hashed
    /// to the 256-bit key.
    pub fn new(key_material: &str) -> Vault {
        let key = Sha256::digest(key_material.as_bytes());
        Vault {
            cipher: ChaCha20Poly1305::new(&key),
        }
    }

    /// (nonce, ciphertext)
    pub fn seal(&self, tenant: &str, name: &str, value: &str) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let nonce: [u8; 12] = rand::random();
        let aad = aad(tenant, name);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
        Ok((nonce.to_vec(), sealed))
    }

    /// The plaintext, or an error if the key, tenant or name do not match.
    pub fn open(&self, tenant: &str, name: &str, nonce: &[u8], sealed: &[u8]) -> anyhow::Result<String> {
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| anyhow::anyhow!("a stored secret has a bad nonce"))?;
        let aad = aad(tenant, name);
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| {
                anyhow::anyhow!("secret {name} does not open with this server's key (was SECRETS_KEY changed?)")
            })?;
        Ok(String::from_utf8(plain)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_where_they_belong() {
        let v = Vault::new("k");
        let (n, c) = v.seal("t1", "API_KEY", "s3cret").unwrap();
        assert_eq!(v.open("t1", "API_KEY", &n, &c).unwrap(), "s3cret");
        assert!(v.open("t2", "API_KEY", &n, &c).is_err());
        assert!(v.open("t1", "OTHER", &n, &c).is_err());
        assert!(Vault::new("other").open("t1", "API_KEY", &n, &c).is_err());
        assert!(!c.windows(6).any(|w| w == b"s3cret"));
        assert!(valid_name("OPENAI_API_KEY") && !valid_name("../x") && !valid_name("a-b") && !valid_name("1A"));
    }
}
