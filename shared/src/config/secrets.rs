//! Secrets: given as a value or, for Kubernetes secret mounts, as a path in the `*_file` key (never
//! both: [`Config::validate`]); masked whenever the configuration is shown.

use std::path::PathBuf;

use super::{Config, ConfigError};

impl Config {
    pub fn amqp_url(&self) -> Result<Option<String>, ConfigError> {
        secret("amqp.url_file", &self.amqp.url, &self.amqp.url_file)
    }

    pub fn redis_url(&self) -> Result<Option<String>, ConfigError> {
        secret("redis.url_file", &self.redis.url, &self.redis.url_file)
    }

    pub fn s3_access_key(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "s3.access_key_file",
            &self.s3.access_key,
            &self.s3.access_key_file,
        )
    }

    pub fn s3_secret_key(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "s3.secret_key_file",
            &self.s3.secret_key,
            &self.s3.secret_key_file,
        )
    }

    /// The configuration as TOML with secrets masked (`reverie config show`).
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        for value in [
            &mut copy.amqp.url,
            &mut copy.redis.url,
            &mut copy.s3.access_key,
            &mut copy.s3.secret_key,
        ] {
            if value.is_some() {
                *value = Some("***".to_string());
            }
        }
        toml::to_string_pretty(&copy).unwrap_or_default()
    }
}

fn secret(
    file_key: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(value), _) => Ok(Some(value.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim().to_string()))
            .map_err(|error| ConfigError::Value {
                key: file_key.to_string(),
                source_name: path.display().to_string(),
                detail: error.to_string(),
            }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn secrets_come_from_value_or_file_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "redis://secret-host:6379\n").unwrap();
        let mut config = Config::default();
        config.redis.url_file = Some(path);
        assert_eq!(
            config.redis_url().unwrap().as_deref(),
            Some("redis://secret-host:6379")
        );
        config.redis.url = Some("redis://other".into());
        assert!(config.validate().is_err());
        assert!(!config.to_redacted_toml().contains("redis://other"));
    }
}
