//! Retrying calls to services that may be starting, restarting or briefly away.

use std::future::Future;
use std::time::Duration;

use crate::config::RetrySettings;

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// 0 = keep trying forever.
    pub max_attempts: u32,
}

impl From<&RetrySettings> for Backoff {
    fn from(settings: &RetrySettings) -> Backoff {
        Backoff {
            initial: Duration::from_millis(settings.initial_ms.max(1)),
            max: Duration::from_millis(settings.max_ms.max(settings.initial_ms).max(1)),
            max_attempts: settings.max_attempts,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1-based) with the jitter drawn from `unit` in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        // Half fixed, half jitter: never zero, and retries from many workers spread out.
        ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// A cheap jitter source; retry timing needs spread, not cryptographic randomness.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Calls `attempt` until it succeeds, `is_transient` says an error is final, or attempts run out. Each
/// failure is logged once as one line naming what is being waited for.
pub async fn with_backoff<T, E, F, Fut>(
    what: &str,
    backoff: Backoff,
    is_transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => {
                if tries > 1 {
                    tracing::info!(what, tries, "reachable again");
                }
                return Ok(value);
            }
            Err(error) => {
                let out_of_attempts = backoff.max_attempts != 0 && tries >= backoff.max_attempts;
                if !is_transient(&error) || out_of_attempts {
                    return Err(error);
                }
                let wait = backoff.delay(tries, jitter());
                tracing::warn!(
                    what,
                    attempt = tries,
                    retry_in_ms = wait.as_millis() as u64,
                    "{error}"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 0,
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff.delay(2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff.delay(30, 1.0), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn retries_transient_errors_then_succeeds() {
        let backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            max_attempts: 10,
        };
        let mut calls = 0;
        let result: Result<u32, String> = with_backoff(
            "test",
            backoff,
            |_| true,
            || {
                calls += 1;
                let now = calls;
                async move {
                    if now < 3 {
                        Err("not yet".to_string())
                    } else {
                        Ok(now)
                    }
                }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn final_errors_are_not_retried() {
        let backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            max_attempts: 10,
        };
        let mut calls = 0;
        let result: Result<(), String> = with_backoff(
            "test",
            backoff,
            |_| false,
            || {
                calls += 1;
                async { Err("bad input".to_string()) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
