//! Loading and layering: built-in defaults < TOML file < `REVERIE_*` environment < `--set` flags.
//! Every value is parsed by the same serde types, whichever layer it comes from.

use std::path::Path;

use super::keys::KEYS;
use super::{Config, ConfigError};

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Environment(&'a str),
    Flag,
}

impl Config {
    /// Defaults, then the TOML file if any, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_environment(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::File {
            path: path.display().to_string(),
            detail: error.to_string(),
        })
    }

    /// Applies `REVERIE_*` variables, read through `lookup` so tests need not touch the process environment.
    pub fn apply_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for key in KEYS {
            let var = key.env_var();
            if let Some(value) = lookup(&var) {
                self.set_key(key.name, &value, Origin::Environment(&var))?;
            }
        }
        Ok(())
    }

    /// Applies one `key=value` from the command line.
    pub fn set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--set takes key=value, got {assignment:?}"))
        })?;
        self.set_key(key.trim(), value.trim(), Origin::Flag)
    }

    fn set_key(&mut self, key: &str, value: &str, origin: Origin<'_>) -> Result<(), ConfigError> {
        let source_name = match origin {
            Origin::Environment(var) => format!("environment variable {var}"),
            Origin::Flag => "--set".to_string(),
        };
        if !KEYS.iter().any(|k| k.name == key) {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                source_name,
            });
        }
        // Round-trip through TOML so each key is parsed by the same serde types as the file.
        let mut tree =
            toml::Table::try_from(&*self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut table = &mut tree;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            table = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| ConfigError::Invalid(format!("{key} is not a table")))?;
        }
        let leaf = parts[parts.len() - 1];
        table.insert(leaf.to_string(), guess_value(value));
        let updated: Result<Config, _> = toml::Value::Table(tree.clone()).try_into();
        let updated = match updated {
            Ok(config) => config,
            Err(_) => {
                // A string that looked like a number or boolean (a bucket called "123"): retry verbatim.
                table_at(&mut tree, &parts)?
                    .insert(leaf.to_string(), toml::Value::String(value.to_string()));
                toml::Value::Table(tree)
                    .try_into()
                    .map_err(|error: toml::de::Error| ConfigError::Value {
                        key: key.to_string(),
                        source_name,
                        detail: error.message().to_string(),
                    })?
            }
        };
        *self = updated;
        Ok(())
    }
}

fn table_at<'a>(
    tree: &'a mut toml::Table,
    parts: &[&str],
) -> Result<&'a mut toml::Table, ConfigError> {
    let mut table = tree;
    for part in &parts[..parts.len() - 1] {
        table = table
            .get_mut(*part)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| ConfigError::Invalid(format!("{part} is not a table")))?;
    }
    Ok(table)
}

fn guess_value(text: &str) -> toml::Value {
    if let Ok(b) = text.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(n) = text.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(f) = text.parse::<f64>() {
        toml::Value::Float(f)
    } else {
        toml::Value::String(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LogFormat};

    #[test]
    fn environment_overrides_defaults_and_is_typed() {
        let mut config = Config::default();
        let env = |name: &str| match name {
            "REVERIE_WORKER_BATCH_MAX" => Some("16".to_string()),
            "REVERIE_S3_BUCKET" => Some("123".to_string()),
            "REVERIE_LOG_FORMAT" => Some("json".to_string()),
            "REVERIE_AMQP_URL" => Some("amqp://127.0.0.1".to_string()),
            _ => None,
        };
        config.apply_environment(env).unwrap();
        assert_eq!(config.worker.batch_max, 16);
        assert_eq!(config.s3.bucket.as_deref(), Some("123"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.amqp.url.as_deref(), Some("amqp://127.0.0.1"));
    }

    #[test]
    fn bad_values_name_the_key_and_source() {
        let mut config = Config::default();
        let error = config
            .apply_environment(|name| {
                (name == "REVERIE_WORKER_BATCH_MAX").then(|| "many".to_string())
            })
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("worker.batch_max") && error.contains("REVERIE_WORKER_BATCH_MAX"),
            "{error}"
        );
        let error = config.set("worker.nonsense=1").unwrap_err().to_string();
        assert!(error.contains("worker.nonsense"), "{error}");
    }

    #[test]
    fn file_layer_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reverie.toml");
        std::fs::write(&path, "[worker]\nbatch_max = 4\n").unwrap();
        assert_eq!(Config::from_file(&path).unwrap().worker.batch_max, 4);
        std::fs::write(&path, "[worker]\nbatch_maxx = 4\n").unwrap();
        assert!(Config::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("batch_maxx"));
    }
}
