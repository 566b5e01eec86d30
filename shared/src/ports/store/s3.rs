//! The production object store: Amazon S3 or any S3-compatible server (custom endpoint, path-style).

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::permanent_code;
use super::{validate_key, ObjectMeta, ObjectReader, ObjectStore, StoreError};

/// Everything needed to reach one bucket. Credentials come from the config (or, when absent, the AWS
/// default chain: environment, profile, IRSA web identity on EKS).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:9000` for an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// A key prefix inside the bucket (`s3://bucket/prefix`), without leading or trailing `/`.
    pub prefix: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Files larger than this go up as a multipart upload, in parts of this size.
    pub multipart_threshold: u64,
}

impl S3Config {
    pub fn address(&self) -> String {
        format!(
            "{}/{}",
            self.endpoint.as_deref().unwrap_or("aws-s3"),
            self.bucket
        )
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    config: S3Config,
}

/// S3 requires parts of at least 5 MiB (except the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl S3Store {
    pub async fn connect(config: S3Config) -> S3Store {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let (Some(access), Some(secret)) = (&config.access_key, &config.secret_key) {
            loader = loader.credentials_provider(aws_credential_types::Credentials::from_keys(
                access.clone(),
                secret.clone(),
                None,
            ));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            .build();
        S3Store {
            client: Client::from_conf(s3_config),
            config,
        }
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Creates the bucket when it does not exist yet (tests and first start-ups).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => {
                let text = format!("{}", DisplayErrorContext(&error));
                if text.contains("BucketAlreadyOwnedByYou") || text.contains("BucketAlreadyExists")
                {
                    Ok(())
                } else {
                    Err(self.classify("create_bucket", "", error))
                }
            }
        }
    }

    /// Removes the bucket and everything in it (tests clean up after themselves).
    pub async fn remove_bucket(&self) -> Result<(), StoreError> {
        self.delete_prefix("").await?;
        self.client
            .delete_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .map_err(|error| self.classify("delete_bucket", "", error))?;
        Ok(())
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(self.prefixed(key))
    }

    fn prefixed(&self, key: &str) -> String {
        if self.config.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.config.prefix)
        }
    }

    fn strip_prefix<'a>(&self, full: &'a str) -> &'a str {
        if self.config.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.config.prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    /// A single-request upload of `body` to the full key `full` of this store's bucket.
    fn put_request(&self, full: String, body: ByteStream) -> PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(full)
            .body(body)
    }

    fn classify<E, R>(
        &self,
        operation: &'static str,
        key: &str,
        error: SdkError<E, R>,
    ) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let detail = format!("{}", DisplayErrorContext(&error));
        match &error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unreachable {
                backend: "s3",
                address: self.config.address(),
                detail,
            },
            _ if permanent_code(&detail).is_some() => StoreError::Refused {
                backend: "s3",
                operation,
                key: key.to_string(),
                code: permanent_code(&detail).unwrap_or_default().to_string(),
                detail,
            },
            _ if detail.contains("NoSuchKey") || detail.contains("NotFound") => {
                StoreError::NotFound {
                    backend: "s3",
                    key: key.to_string(),
                }
            }
            _ => StoreError::Backend {
                backend: "s3",
                operation,
                key: key.to_string(),
                detail,
            },
        }
    }

    async fn upload_parts(
        &self,
        full_key: &str,
        key: &str,
        path: &Path,
        size: u64,
    ) -> Result<(), StoreError> {
        let part_size = self.config.multipart_threshold.max(MIN_PART_SIZE);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(full_key)
            .send()
            .await
            .map_err(|error| self.classify("put", key, error))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = self
            .send_parts(full_key, key, path, size, part_size, &upload_id)
            .await;
        match result {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(full_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|error| self.classify("put", key, error))?;
                Ok(())
            }
            Err(error) => {
                // Abandoned parts cost storage until aborted: abort, and report the original failure.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(full_key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(error)
            }
        }
    }

    async fn send_parts(
        &self,
        full_key: &str,
        key: &str,
        path: &Path,
        size: u64,
        part_size: u64,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut parts = Vec::new();
        let mut sent = 0u64;
        let mut number = 1;
        while sent < size {
            let length = part_size.min(size - sent);
            let mut chunk = vec![0u8; length as usize];
            file.read_exact(&mut chunk).await.map_err(io)?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.config.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|error| self.classify("put", key, error))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build(),
            );
            sent += length;
            number += 1;
        }
        Ok(parts)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn other_bucket(&self, bucket: &str) -> Result<super::SharedStore, StoreError> {
        super::validate_bucket(bucket)?;
        Ok(std::sync::Arc::new(S3Store {
            client: self.client.clone(),
            config: S3Config {
                bucket: bucket.to_string(),
                prefix: String::new(),
                ..self.config.clone()
            },
        }))
    }

    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        self.put_request(full, ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.classify("put", key, error))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        let full = self.full_key(key)?;
        let result = self
            .put_request(full, ByteStream::from(body))
            .if_none_match("*")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // 412: the key exists. 409 (ConditionalRequestConflict): a concurrent conditional write of
            // the same key won the race; either way this write did not happen.
            Err(SdkError::ServiceError(failure))
                if matches!(failure.raw().status().as_u16(), 409 | 412) =>
            {
                Ok(false)
            }
            Err(error) => Err(self.classify("put", key, error)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if size > self.config.multipart_threshold {
            return self.upload_parts(&full, key, path, size).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|error| StoreError::Backend {
                backend: "s3",
                operation: "put",
                key: key.to_string(),
                detail: error.to_string(),
            })?;
        self.put_request(full, body)
            .send()
            .await
            .map_err(|error| self.classify("put", key, error))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let full = self.full_key(key)?;
        let object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(full)
            .send()
            .await
            .map_err(|error| self.classify("get", key, error))?;
        read_body(object.body, "get", key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let full = self.full_key(key)?;
        let size = match self.head(key).await? {
            Some(meta) => meta.size,
            None => {
                return Err(StoreError::NotFound {
                    backend: "s3",
                    key: key.to_string(),
                })
            }
        };
        let end = range.end.min(size);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(full)
            .range(format!("bytes={}-{}", range.start, end - 1))
            .send()
            .await
            .map_err(|error| self.classify("get_range", key, error))?;
        read_body(object.body, "get_range", key).await
    }

    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let full = self.full_key(key)?;
        let object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(full)
            .send()
            .await
            .map_err(|error| self.classify("get", key, error))?;
        Ok(Box::pin(object.body.into_async_read()))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(full)
            .send()
            .await
        {
            Ok(head) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: head.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(error) => match self.classify("head", key, error) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = self.prefixed(prefix);
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.classify("list", prefix, error))?;
            for object in page.contents() {
                let Some(full_key) = object.key() else {
                    continue;
                };
                found.push(ObjectMeta {
                    key: self.strip_prefix(full_key).to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(full)
            .send()
            .await
            .map_err(|error| self.classify("delete", key, error))?;
        Ok(())
    }
}

/// Reads a response body to the end; a connection cut mid-body names the operation and key.
async fn read_body(
    body: ByteStream,
    operation: &'static str,
    key: &str,
) -> Result<Bytes, StoreError> {
    body.collect()
        .await
        .map(|data| data.into_bytes())
        .map_err(|error| StoreError::Backend {
            backend: "s3",
            operation,
            key: key.to_string(),
            detail: error.to_string(),
        })
}
