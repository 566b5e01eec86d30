//! Checks across keys that no single key's type can make: secrets given twice, impossible values.

use super::{Config, ConfigError};

impl Config {
    /// Checks combinations no single key can: secrets given twice, impossible values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pairs = [
            (
                "amqp.url",
                self.amqp.url.is_some(),
                self.amqp.url_file.is_some(),
            ),
            (
                "redis.url",
                self.redis.url.is_some(),
                self.redis.url_file.is_some(),
            ),
            (
                "s3.access_key",
                self.s3.access_key.is_some(),
                self.s3.access_key_file.is_some(),
            ),
            (
                "s3.secret_key",
                self.s3.secret_key.is_some(),
                self.s3.secret_key_file.is_some(),
            ),
        ];
        for (key, value, file) in pairs {
            if value && file {
                return Err(ConfigError::Invalid(format!(
                    "give {key} or {key}_file, not both"
                )));
            }
        }
        if self.worker.batch_max == 0 {
            return Err(ConfigError::Invalid(
                "worker.batch_max must be at least 1".into(),
            ));
        }
        if self.worker.max_attempts == 0 || self.worker.max_deliveries == 0 {
            return Err(ConfigError::Invalid(
                "worker.max_attempts and worker.max_deliveries must be at least 1".into(),
            ));
        }
        let scale = self.diffusion.ip_scale;
        if !scale.is_finite() || !(0.0..=crate::jobs::MAX_IMAGE_PROMPT_SCALE).contains(&scale) {
            return Err(ConfigError::Invalid(format!(
                "diffusion.ip_scale must be between 0 and {}, not {scale}",
                crate::jobs::MAX_IMAGE_PROMPT_SCALE
            )));
        }
        if !(1..=crate::queues::MAX_SHARDS).contains(&self.scheduler.shards) {
            return Err(ConfigError::Invalid(format!(
                "scheduler.shards must be between 1 and {}, not {}",
                crate::queues::MAX_SHARDS,
                self.scheduler.shards
            )));
        }
        Ok(())
    }
}
