//! The real services, from `reverie_shared::testing`.

#![allow(dead_code, unused_imports)]

use reverie_shared::ports::store::S3Store;
pub use reverie_shared::testing::{amqp_url, redis_url, s3_config, unique};

pub async fn s3_store() -> S3Store {
    reverie_shared::testing::s3_store("reverie-test").await
}
