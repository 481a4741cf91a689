//! API keys the emulator accepts: one mapper key from flags or environment, several from a
//! JSON file, or the documented demo key. Secrets are kept in [`Secret`] and never printed.

use std::collections::HashMap;

use super::OperatorConfigError as ConfigError;
use crate::protocol::envelope::{decode_secret, Key};
use crate::protocol::{DEMO_API_KEY, DEMO_CLIENT_SECRET};
use crate::secret::Secret;

/// One client of the emulator.
#[derive(Debug)]
pub struct Client {
    /// The AES key from its secret.
    pub key: Key,
    /// Whether it has the MAPPER role.
    pub mapper: bool,
}

/// The emulator's key store. `Debug` shows how many keys it holds, never the keys.
#[derive(Default)]
pub struct Keys {
    by_api_key: HashMap<String, Client>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} keys, [redacted])", self.by_api_key.len())
    }
}

impl Keys {
    /// A store with one mapper key.
    ///
    /// # Errors
    /// The secret is not base64 of 32 bytes.
    pub fn single(
        api_key: &Secret<String>,
        secret_b64: &Secret<String>,
    ) -> Result<Keys, ConfigError> {
        let mut k = Keys::default();
        k.insert(api_key.expose(), secret_b64.expose(), true)?;
        Ok(k)
    }

    /// The documented demo key.
    pub fn demo() -> Keys {
        let mut k = Keys::default();
        k.insert(DEMO_API_KEY, DEMO_CLIENT_SECRET, true)
            .expect("the demo secret is 32 bytes");
        k
    }

    /// Loads `[{"key": "...", "secret": "...", "roles": ["MAPPER", ...]}, ...]`.
    ///
    /// # Errors
    /// The file is unreadable or malformed (the message never contains a secret).
    pub fn from_file(path: &std::path::Path) -> Result<Keys, ConfigError> {
        let bad = |why: String| ConfigError::KeysFile {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let mut k = Keys::default();
        for (i, entry) in v
            .as_array()
            .ok_or_else(|| bad("expected a JSON array".to_string()))?
            .iter()
            .enumerate()
        {
            let field = |f: &str| {
                entry[f]
                    .as_str()
                    .ok_or_else(|| bad(format!("entry {i}: missing \"{f}\"")))
            };
            let roles = entry["roles"].as_array().cloned().unwrap_or_default();
            let mapper = roles
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.eq_ignore_ascii_case("mapper")));
            k.insert(field("key")?, field("secret")?, mapper)
                .map_err(|e| bad(format!("entry {i}: {e}")))?;
        }
        Ok(k)
    }

    fn insert(&mut self, api_key: &str, secret_b64: &str, mapper: bool) -> Result<(), ConfigError> {
        let secret = decode_secret(secret_b64)?;
        self.by_api_key.insert(
            api_key.to_string(),
            Client {
                key: Key::new(&secret),
                mapper,
            },
        );
        Ok(())
    }

    /// The client for an `Authorization` header value, if it is a known mapper key. The
    /// header is trimmed and the `bearer ` prefix compared case-insensitively, as the
    /// operator does.
    pub fn authorize(&self, header: Option<&str>) -> Option<&Client> {
        let h = header?.trim();
        if h.len() < 7 || !h[..7].eq_ignore_ascii_case("bearer ") {
            return None;
        }
        self.by_api_key.get(&h[7..]).filter(|c| c.mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_gives_roles_and_only_mappers_are_authorized() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
        let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let json = format!(
            r#"[{{"key":"m","secret":"{secret}","roles":["MAPPER"]}},{{"key":"g","secret":"{secret}","roles":["GENERATOR"]}}]"#
        );
        std::fs::write(&path, json).expect("write");
        let keys = Keys::from_file(&path).expect("loads");
        assert!(keys.authorize(Some("Bearer m")).is_some());
        assert!(
            keys.authorize(Some("Bearer g")).is_none(),
            "a key without the mapper role is refused"
        );
        assert!(keys.authorize(Some("Bearer nobody")).is_none());
        assert!(keys.authorize(Some("Basic m")).is_none());
        std::fs::write(
            &path,
            r#"[{"key":"m","secret":"c2hvcnQ=","roles":["MAPPER"]}]"#,
        )
        .expect("write");
        let err = Keys::from_file(&path)
            .expect_err("short secret")
            .to_string();
        assert!(
            err.contains("32 bytes") && !err.contains("c2hvcnQ="),
            "{err}"
        );
    }

    #[test]
    fn the_demo_secret_is_32_bytes() {
        assert!(decode_secret(DEMO_CLIENT_SECRET).is_ok());
        assert!(Keys::demo()
            .authorize(Some(&format!("Bearer {DEMO_API_KEY}")))
            .is_some());
    }
}
