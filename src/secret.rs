//! Secrets (API key, client secret, storage credentials): a wrapper that never prints its
//! value, and the client secret's wire form. Below every module that holds one (`config`,
//! `protocol`, `client`, `shell`, `credentials`), so none of them imports another for it.

use std::fmt;

use zeroize::Zeroize;

/// A secret value (API key, client secret). `Debug` prints `[redacted]` and there is no
/// `Display`, so it cannot reach a log line or an error message by accident; the memory is
/// zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself; call only where it is put on the wire or into a cipher.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a client secret is unusable (the message never holds the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The client secret is not base64.
    #[error("the client secret is not valid base64")]
    NotBase64,
    /// The client secret does not decode to 32 bytes.
    #[error("the client secret must decode to 32 bytes, it decodes to {0}")]
    Length(usize),
}

/// Decodes a base64 client secret (32 bytes, the envelope's AES-256 key).
///
/// # Errors
/// It is not base64 of exactly 32 bytes.
pub fn decode_client_secret(b64: &str) -> Result<Secret<[u8; 32]>, SecretError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| SecretError::NotBase64)?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| SecretError::Length(b.len()))?;
    Ok(Secret::new(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
    }
}
