//! A tenant's LoRAs: files the tenant registered (`reverie loras add`), kept in the tenant's own
//! storage (`tenants/{t}/adapters/loras/{sha256}.safetensors`) with an index
//! (`tenants/{t}/adapters/loras.json`). Each has a name, the trigger words its training used, the
//! weight it is applied at, the base model it was made for and, once bound, the person or pet it
//! stands for: a prompt that places that subject renders with it (the planner), and the worker reads
//! the file by its hash from the same tenant's storage, so no tenant can use another's.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::jobs::LoraUse;
use crate::keys;
use crate::ports::store::{ObjectStore, StoreError};

/// One registered LoRA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantLora {
    /// The tenant's name for it (unique per tenant).
    pub name: String,
    /// SHA-256 of the file: its key in the tenant's storage.
    pub sha256: String,
    pub bytes: u64,
    /// Words the LoRA was trained with ("sks person"), put into the prompt when it is used.
    #[serde(default)]
    pub trigger: Option<String>,
    /// The weight it is applied at.
    pub weight: f32,
    /// The diffusion model it was made for (`diffusion.model`); `None`: not checked.
    #[serde(default)]
    pub base_model: Option<String>,
    /// The person or pet it stands for: a name or a catalog id. `None` until bound.
    #[serde(default)]
    pub subject: Option<String>,
}

impl TenantLora {
    /// What a job carries of it.
    pub fn usage(&self) -> LoraUse {
        LoraUse {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            weight: self.weight,
        }
    }

    /// Whether it stands for the subject a plan places: one the resolution answered as
    /// `person:NAME` / `pet:NAME`, showing the catalog ids `shows`.
    pub fn stands_for(&self, answers: &str, shows: &[String]) -> bool {
        let Some(subject) = self.subject.as_deref() else {
            return false;
        };
        let named = answers
            .split_once(':')
            .is_some_and(|(_, name)| name.eq_ignore_ascii_case(subject));
        named || shows.iter().any(|id| id == subject)
    }
}

/// The tenant's LoRA index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLoras {
    #[serde(default)]
    pub loras: Vec<TenantLora>,
}

impl TenantLoras {
    pub fn find(&self, name: &str) -> Option<&TenantLora> {
        self.loras.iter().find(|l| l.name == name)
    }

    pub fn find_mut(&mut self, name: &str) -> Option<&mut TenantLora> {
        self.loras.iter_mut().find(|l| l.name == name)
    }
}

/// Reading or writing the index failed.
#[derive(Debug, thiserror::Error)]
pub enum LoraIndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the LoRA index {key} is not valid JSON: {detail}")]
    Corrupt { key: String, detail: String },
}

/// The tenant's LoRA index; empty when the tenant registered none.
pub async fn load_loras(
    store: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<TenantLoras, LoraIndexError> {
    let key = keys::tenant_loras(tenant);
    match store.get(&key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| LoraIndexError::Corrupt {
            key,
            detail: error.to_string(),
        }),
        Err(error) if error.is_not_found() => Ok(TenantLoras::default()),
        Err(error) => Err(error.into()),
    }
}

pub async fn save_loras(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    loras: &TenantLoras,
) -> Result<(), LoraIndexError> {
    let json = serde_json::to_vec_pretty(loras).map_err(|error| LoraIndexError::Corrupt {
        key: keys::tenant_loras(tenant),
        detail: error.to_string(),
    })?;
    Ok(store
        .put(&keys::tenant_loras(tenant), Bytes::from(json))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(subject: Option<&str>) -> TenantLora {
        TenantLora {
            name: "anna".into(),
            sha256: "ab".repeat(32),
            bytes: 10,
            trigger: Some("sks person".into()),
            weight: 0.8,
            base_model: None,
            subject: subject.map(str::to_string),
        }
    }

    #[test]
    fn a_lora_stands_for_its_subject_by_name_or_catalog_id() {
        let bound = lora(Some("Anna"));
        assert!(bound.stands_for("person:anna", &[]));
        assert!(!bound.stands_for("person:Bob", &["face-person-2".into()]));
        assert!(lora(Some("face-person-2")).stands_for("person:B", &["face-person-2".into()]));
        assert!(!lora(None).stands_for("person:Anna", &[]));
    }
}
