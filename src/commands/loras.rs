//! `reverie loras add|list|bind|remove`: a tenant's LoRAs, kept in the tenant's own storage and
//! bound to one of their people or pets, so a prompt placing that subject renders with it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Subcommand;
use reverie_diffusion::lora::{trigger_from_metadata, LoraFile, LoraSpec, MAX_WEIGHT};
use reverie_diffusion::pipeline::StableDiffusion;
use reverie_shared::backends::connect_store;
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::retry::Backoff;
use reverie_shared::tenant_loras::{load_loras, save_loras, TenantLora, TenantLoras};
use reverie_shared::{Backends, Config};
use reverie_worker::render::ModelSource;
use sha2::{Digest, Sha256};

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum LorasCommand {
    /// Register a LoRA file (kohya or diffusers/PEFT naming) under a name.
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// The .safetensors file.
        file: PathBuf,
        /// The weight it is applied at (default 1).
        #[arg(long, allow_negative_numbers = true)]
        weight: Option<f32>,
        /// Words the LoRA was trained with (default: from its metadata, if it says).
        #[arg(long)]
        trigger: Option<String>,
        /// Bind it at once to this person or pet (a name, or a catalog id).
        #[arg(long)]
        person: Option<String>,
        /// Check it against this model (a registered name or a folder) and record it as the base
        /// model (default: diffusion.model, when set).
        #[arg(long)]
        model: Option<String>,
    },
    /// The tenant's LoRAs.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Bind a LoRA to one of the tenant's people or pets (a name, or a catalog id).
    Bind {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        person: String,
    },
    /// Remove a LoRA (its file too, unless another name uses it).
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
}

/// The longest LoRA name.
const MAX_NAME: usize = 64;

pub async fn run(global: &GlobalArgs, command: LorasCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    match command {
        LorasCommand::Add {
            tenant,
            name,
            file,
            weight,
            trigger,
            person,
            model,
        } => {
            let tenant = TenantId::new(&tenant)?;
            let options = AddOptions {
                weight,
                trigger,
                person,
                model,
            };
            let added = add(&config, &backends, &tenant, &name, &file, options).await?;
            println!(
                "LoRA {} ({}, {} bytes){}{}",
                added.name,
                &added.sha256[..12],
                added.bytes,
                added
                    .trigger
                    .as_deref()
                    .map(|t| format!(", trigger \"{t}\""))
                    .unwrap_or_default(),
                added
                    .subject
                    .as_deref()
                    .map(|s| format!(", bound to {s}"))
                    .unwrap_or_default()
            );
        }
        LorasCommand::List { tenant, json } => {
            let index = load_loras(&*backends.store, &TenantId::new(&tenant)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&index.loras)?);
            } else if index.loras.is_empty() {
                println!("no LoRAs (reverie loras add --tenant {tenant} --name NAME FILE)");
            } else {
                for lora in &index.loras {
                    println!(
                        "{:<20} {}  weight {}  {}  {}",
                        lora.name,
                        &lora.sha256[..12],
                        lora.weight,
                        lora.subject.as_deref().unwrap_or("(not bound)"),
                        lora.trigger.as_deref().unwrap_or("")
                    );
                }
            }
        }
        LorasCommand::Bind {
            tenant,
            name,
            person,
        } => {
            let tenant = TenantId::new(&tenant)?;
            edit(&backends, &tenant, &name, |lora| {
                lora.subject = Some(person.trim().to_string()).filter(|p| !p.is_empty());
            })
            .await?;
            println!("LoRA {name} bound to {person}");
        }
        LorasCommand::Remove { tenant, name } => {
            let tenant = TenantId::new(&tenant)?;
            remove(&backends, &tenant, &name).await?;
            println!("LoRA {name} removed");
        }
    }
    Ok(())
}

struct AddOptions {
    weight: Option<f32>,
    trigger: Option<String>,
    person: Option<String>,
    model: Option<String>,
}

/// Checks the file (a LoRA in a naming we read; fitting the base model when one is known), stores
/// it in the tenant's storage by its hash and records it in the index (a name given again is
/// replaced).
async fn add(
    config: &Config,
    backends: &Backends,
    tenant: &TenantId,
    name: &str,
    file: &Path,
    options: AddOptions,
) -> anyhow::Result<TenantLora> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("--name {name:?}: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'");
    }
    let weight = options.weight.unwrap_or(1.0);
    if !weight.is_finite() || f64::from(weight.abs()) > MAX_WEIGHT {
        bail!("--weight {weight} must be a finite number within ±{MAX_WEIGHT}");
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = LoraSpec::file(file, f64::from(weight)).open()?;
    let base_model = options
        .model
        .clone()
        .or_else(|| config.diffusion.model.clone());
    if let Some(model) = &base_model {
        check_against_model(config, model, &parsed).await?;
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let store = &*backends.store;
    store
        .put(
            &keys::tenant_lora_file(tenant, &sha256),
            Bytes::from(bytes.clone()),
        )
        .await?;
    let lora = TenantLora {
        name: name.to_string(),
        sha256,
        bytes: bytes.len() as u64,
        trigger: options
            .trigger
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .or_else(|| trigger_from_metadata(&bytes)),
        weight,
        base_model,
        subject: options
            .person
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty()),
    };
    let mut index = load_loras(store, tenant).await?;
    let replaced = index.find(name).map(|old| old.sha256.clone());
    index.loras.retain(|l| l.name != name);
    index.loras.push(lora.clone());
    save_loras(store, tenant, &index).await?;
    if let Some(old) = replaced {
        delete_if_unused(backends, tenant, &index, &old).await?;
    }
    Ok(lora)
}

/// Refuses a LoRA that does not fit `model` (a registered name or a folder), naming the tensor.
async fn check_against_model(config: &Config, model: &str, lora: &LoraFile) -> anyhow::Result<()> {
    let store = if Path::new(model).is_dir() {
        None
    } else {
        Some(connect_store(config, Backoff::from(&config.retry)).await?)
    };
    let source = ModelSource {
        registry: config.diffusion_registry(),
        cache_dir: config.models_dir().join("diffusion").join("cache"),
        store,
        runtime: tokio::runtime::Handle::current(),
    };
    let model_name = model.to_string();
    let resolved = tokio::task::spawn_blocking(move || source.resolve(&model_name)).await??;
    StableDiffusion::check_lora(&resolved.dir, lora)
        .with_context(|| format!("checking the LoRA against model {model}"))?;
    Ok(())
}

async fn edit(
    backends: &Backends,
    tenant: &TenantId,
    name: &str,
    change: impl FnOnce(&mut TenantLora),
) -> anyhow::Result<()> {
    let store = &*backends.store;
    let mut index = load_loras(store, tenant).await?;
    let Some(lora) = index.find_mut(name) else {
        bail!("{tenant} has no LoRA named {name:?} (reverie loras list --tenant {tenant})");
    };
    change(lora);
    save_loras(store, tenant, &index).await?;
    Ok(())
}

async fn remove(backends: &Backends, tenant: &TenantId, name: &str) -> anyhow::Result<()> {
    let store = &*backends.store;
    let mut index = load_loras(store, tenant).await?;
    let Some(removed) = index.find(name).cloned() else {
        bail!("{tenant} has no LoRA named {name:?} (reverie loras list --tenant {tenant})");
    };
    index.loras.retain(|l| l.name != name);
    save_loras(store, tenant, &index).await?;
    delete_if_unused(backends, tenant, &index, &removed.sha256).await
}

/// Deletes the file `sha256` unless another entry of the index still uses it.
async fn delete_if_unused(
    backends: &Backends,
    tenant: &TenantId,
    index: &TenantLoras,
    sha256: &str,
) -> anyhow::Result<()> {
    if index.loras.iter().any(|l| l.sha256 == sha256) {
        return Ok(());
    }
    backends
        .store
        .delete(&keys::tenant_lora_file(tenant, sha256))
        .await?;
    Ok(())
}
