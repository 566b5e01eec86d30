//! Turning deliveries into typed messages, and what happens to the ones that cannot be.

use crate::envelope::EnvelopeError;
use crate::ports::queue::{Delivery, QueueError};

/// Decodes a delivery's body. A body that does not decode can never succeed, so it is dead-lettered with
/// the reason (never requeued, never crashing the consumer) and `Ok(None)` is returned.
pub async fn decode_or_dead_letter<T>(
    delivery: Delivery,
    decode: impl FnOnce(&[u8]) -> Result<T, EnvelopeError>,
) -> Result<Option<(T, Delivery)>, QueueError> {
    match decode(delivery.body()) {
        Ok(value) => Ok(Some((value, delivery))),
        Err(error) => {
            delivery
                .dead_letter(error.reason(), &error.to_string())
                .await?;
            Ok(None)
        }
    }
}
