//! Secrets and their names: the tenant database's credentials (RDS JSON) and
//! a project's API keys, as kept in Secrets Manager, in types whose Debug never
//! shows the secret part, and the names they are kept under.

use crate::config::Settings;
use crate::error::StageError;
use crate::keys::ApiKey;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// The kind of a project's database credentials secret.
pub const DATABASE_SECRET: &str = "database";
/// The kind of a project's API keys secret.
pub const API_KEYS_SECRET: &str = "api-keys";

/// `{secret_prefix}/{project_id}/{kind}`.
pub fn secret_name(settings: &Settings, project_id: Uuid, kind: &str) -> String {
    format!("{}/{}/{}", settings.secret_prefix, project_id, kind)
}

/// The RDS-style credentials secret of a tenant database. Debug shows the
/// password as `[REDACTED]` (`SecretString`).
#[derive(Debug)]
pub struct DatabaseCredentials {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub dbname: String,
    pub password: SecretString,
}

#[derive(Deserialize)]
struct CredentialsJson {
    host: String,
    port: u16,
    username: String,
    password: String,
    dbname: String,
}

impl DatabaseCredentials {
    pub fn parse(secret: &SecretString) -> Result<DatabaseCredentials, StageError> {
        let c: CredentialsJson = serde_json::from_str(secret.expose_secret()).map_err(|_| {
            StageError::permanent("database secret is not valid RDS credentials JSON")
        })?;
        Ok(DatabaseCredentials {
            host: c.host,
            port: c.port,
            username: c.username,
            dbname: c.dbname,
            password: SecretString::from(c.password),
        })
    }

    pub fn to_secret(&self) -> SecretString {
        let value = json!({
            "engine": "postgres",
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password.expose_secret(),
            "dbname": self.dbname,
        });
        SecretString::from(value.to_string())
    }
}

/// A cluster's admin credentials (RDS JSON). An RDS-managed master secret
/// holds only the user name and password: host, port and database then come
/// from the registry (and `postgres`). Debug redacts the password.
#[derive(Debug)]
pub struct AdminCredentials {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: String,
    pub dbname: Option<String>,
    pub password: SecretString,
}

#[derive(Deserialize)]
struct AdminJson {
    host: Option<String>,
    port: Option<serde_json::Value>,
    username: String,
    password: String,
    dbname: Option<String>,
}

impl AdminCredentials {
    pub fn parse(secret: &SecretString) -> Result<AdminCredentials, StageError> {
        let c: AdminJson = serde_json::from_str(secret.expose_secret()).map_err(|_| {
            StageError::permanent("admin secret is not RDS credentials JSON (username, password)")
        })?;
        // RDS writes the port as a number; hand-made secrets often as a string.
        let port = match c.port {
            None => None,
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        Ok(AdminCredentials {
            host: c.host.filter(|h| !h.is_empty()),
            port,
            username: c.username,
            dbname: c.dbname.filter(|d| !d.is_empty()),
            password: SecretString::from(c.password),
        })
    }
}

/// The keys held in a project's api-keys secret.
pub struct StoredKeys {
    pub keys: Vec<(ApiKey, Vec<String>)>,
}

#[derive(Deserialize)]
struct KeysJson {
    keys: Vec<KeyJson>,
}

#[derive(Deserialize)]
struct KeyJson {
    key: String,
    scopes: Vec<String>,
}

impl StoredKeys {
    pub fn parse(secret: &SecretString) -> Result<StoredKeys, StageError> {
        let parsed: KeysJson = serde_json::from_str(secret.expose_secret())
            .map_err(|_| StageError::permanent("api-keys secret is not valid JSON"))?;
        let keys = parsed
            .keys
            .into_iter()
            .map(|k| {
                let key = ApiKey::from_plaintext(SecretString::from(k.key))
                    .map_err(|e| StageError::permanent(format!("api-keys secret: {e}")))?;
                Ok((key, k.scopes))
            })
            .collect::<Result<_, StageError>>()?;
        Ok(StoredKeys { keys })
    }

    pub fn to_secret(&self) -> SecretString {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|(k, scopes)| json!({ "id": k.id, "prefix": k.prefix, "key": k.plaintext().expose_secret(), "scopes": scopes }))
            .collect();
        SecretString::from(json!({ "keys": keys }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_password_and_json_round_trips() {
        let c = DatabaseCredentials {
            host: "h".into(),
            port: 5432,
            username: "u".into(),
            dbname: "d".into(),
            password: SecretString::from("s3cr3t-value".to_owned()),
        };
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        let secret = c.to_secret();
        let parsed: serde_json::Value = serde_json::from_str(secret.expose_secret()).unwrap();
        assert_eq!(parsed["engine"], "postgres");
        let back = DatabaseCredentials::parse(&secret).unwrap();
        assert_eq!(back.password.expose_secret(), "s3cr3t-value");
        let admin = AdminCredentials::parse(&secret).unwrap();
        assert_eq!((admin.port, admin.host.as_deref()), (Some(5432), Some("h")));
        assert!(!format!("{admin:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn admin_credentials_need_only_a_user_and_password() {
        let secret = SecretString::from(r#"{"username":"admin","password":"pw","port":"6432"}"#);
        let admin = AdminCredentials::parse(&secret).unwrap();
        assert_eq!(
            (admin.host, admin.port, admin.dbname),
            (None, Some(6432), None)
        );
        let missing = SecretString::from(r#"{"username":"admin"}"#);
        assert!(AdminCredentials::parse(&missing).is_err());
    }
}
