//! Tenancy operations that reach into requests in flight: revoking consent (cancelling the unfinished
//! jobs that used the source's photos) and forgetting a tenant (cancelling its work, dropping it from
//! every part, then deleting its objects and cache keys). Both hold the tenant's gate exclusively, so
//! no acceptance of the tenant interleaves. Owns no map of its own: it drives the parts that do.

use std::sync::Arc;

use reverie_shared::ids::TenantId;

use super::dispatch::Dispatch;
use super::intake::Acceptor;
use super::settle::Settler;
use super::state::{OpenRequests, Quotas, TenantGates};
use super::streams::ReplyRouter;
use crate::error::Result;
use crate::records::Records;
use crate::tenants::{ForgetReport, Tenants};

pub(crate) struct Tenancy {
    tenants: Tenants,
    records: Records,
    open: Arc<OpenRequests>,
    quotas: Arc<Quotas>,
    gates: Arc<TenantGates>,
    intake: Arc<Acceptor>,
    dispatch: Arc<Dispatch>,
    settle: Arc<Settler>,
    replies: Arc<ReplyRouter>,
}

impl Tenancy {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenants: Tenants,
        records: Records,
        open: Arc<OpenRequests>,
        quotas: Arc<Quotas>,
        gates: Arc<TenantGates>,
        intake: Arc<Acceptor>,
        dispatch: Arc<Dispatch>,
        settle: Arc<Settler>,
        replies: Arc<ReplyRouter>,
    ) -> Tenancy {
        Tenancy {
            tenants,
            records,
            open,
            quotas,
            gates,
            intake,
            dispatch,
            settle,
            replies,
        }
    }

    /// Revokes consent for a source and cancels unfinished jobs that used its photos without another
    /// consented source covering them. Returns how many jobs were cancelled.
    pub async fn revoke_consent(&self, tenant: &TenantId, source: &str) -> Result<u64> {
        self.gates
            .changing(tenant, self.revoke_consent_now(tenant, source))
            .await
    }

    async fn revoke_consent_now(&self, tenant: &TenantId, source: &str) -> Result<u64> {
        let updated = self.tenants.set_consent(tenant, source, false).await?;
        let reason = format!("consent for {source} was revoked");
        let mut cancelled = 0;
        for request in self.open.requests_of(tenant) {
            let albums = match self.open.get(tenant, &request) {
                Some(entry) => entry.lock().await.record.plan.reference_albums.clone(),
                None => continue,
            };
            cancelled += self
                .settle
                .cancel_jobs(tenant, &request, &reason, |job| {
                    job.spec.references.iter().any(|r| {
                        let photo_albums =
                            albums.get(r.photo.as_str()).cloned().unwrap_or_default();
                        !updated.may_use(&photo_albums)
                    })
                })
                .await?;
        }
        Ok(cancelled)
    }

    /// Deletes everything of a tenant: its unfinished work is cancelled first, then every object under
    /// `tenants/{t}/` and every cache key under `reverie:{t}:` is deleted.
    pub async fn forget(&self, tenant: &TenantId) -> Result<ForgetReport> {
        self.gates.changing(tenant, self.forget_now(tenant)).await
    }

    async fn forget_now(&self, tenant: &TenantId) -> Result<ForgetReport> {
        let mut jobs_cancelled = 0;
        for request in &self.open.requests_of(tenant) {
            jobs_cancelled += self
                .settle
                .cancel_jobs(tenant, request, "the tenant was forgotten", |_| true)
                .await?;
        }
        // Retire whatever is left so no task writes a record back after the deletion.
        for entry in self.open.take_tenant(tenant) {
            entry.lock().await.retired = true;
        }
        self.dispatch.forget(tenant);
        self.quotas.forget(tenant);
        self.replies.forget(tenant);
        self.intake.forget(tenant);
        self.records.open_log().forget(tenant).await?;
        let (store_objects_deleted, cache_keys_deleted) =
            self.tenants.delete_everything(tenant).await?;
        tracing::info!(%tenant, store_objects_deleted, cache_keys_deleted, jobs_cancelled, "tenant forgotten");
        Ok(ForgetReport {
            tenant: tenant.to_string(),
            store_objects_deleted,
            cache_keys_deleted,
            jobs_cancelled,
        })
    }
}
