//! `reverie pets list|show|name|merge|split`: the cats and dogs analysis found, grouped into animals.

use anyhow::{bail, Context};
use clap::Subcommand;
use reverie_library::load_manifest;
use reverie_pets::{Pets, PetsError, SightingKey};
use reverie_shared::ids::TenantId;
use reverie_shared::Backends;
use reverie_worker::pets::{load_pets, pets_view, save_pets};

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum PetsCommand {
    /// Every pet with the photos it is in.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// One pet (id or name).
    Show {
        #[arg(long)]
        tenant: String,
        pet: String,
    },
    /// Name a pet (id or current name).
    Name {
        #[arg(long)]
        tenant: String,
        pet: String,
        name: String,
    },
    /// Merge pet FROM into pet INTO (ids or names); they must be the same species.
    Merge {
        #[arg(long)]
        tenant: String,
        into: String,
        from: String,
    },
    /// Move sightings (PHOTO_ID:LEFT,TOP,RIGHT,BOTTOM, as `show` prints them) out of a pet into a new one.
    Split {
        #[arg(long)]
        tenant: String,
        pet: String,
        #[arg(long = "photo", required = true)]
        photos: Vec<String>,
    },
}

fn parse_sighting(text: &str) -> anyhow::Result<SightingKey> {
    let (photo, coords) = text
        .split_once(':')
        .context("--photo takes PHOTO_ID:LEFT,TOP,RIGHT,BOTTOM")?;
    let n: Vec<i64> = coords
        .split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--photo {text:?}: coordinates must be integers"))?;
    let [left, top, right, bottom] = n[..] else {
        bail!("--photo {text:?}: four coordinates expected")
    };
    Ok(SightingKey {
        photo: photo.to_string(),
        bbox: [left, top, right, bottom],
    })
}

pub async fn run(global: &GlobalArgs, command: PetsCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    match command {
        PetsCommand::List { tenant, json } => {
            let tenant = TenantId::new(&tenant)?;
            let pets = load_pets(&*backends.store, &tenant).await?;
            let manifest = load_manifest(&*backends.store, &tenant).await?;
            let view = pets_view(&pets, &manifest);
            let (status, unfinished) =
                super::people::unfinished_analysis(&config, &backends, &tenant, &manifest, "pets")
                    .await?;
            if json {
                super::people::print_list_json("pets", &view, &status, unfinished.as_deref())?;
            } else {
                if let Some(message) = &unfinished {
                    println!("{message}");
                }
                for pet in &view {
                    let name = pet.name.clone().unwrap_or_else(|| "(unnamed)".into());
                    println!(
                        "{:>4}  {name} ({}): {} photos",
                        pet.id,
                        pet.species,
                        pet.photos.len()
                    );
                }
            }
        }
        PetsCommand::Show { tenant, pet } => {
            let tenant = TenantId::new(&tenant)?;
            let pets = load_pets(&*backends.store, &tenant).await?;
            let id = pets.resolve(&pet)?;
            let manifest = load_manifest(&*backends.store, &tenant).await?;
            let view = pets_view(&pets, &manifest);
            let pet = view.iter().find(|p| p.id == id).context("pet vanished")?;
            println!("{}", serde_json::to_string_pretty(pet)?);
        }
        PetsCommand::Name { tenant, pet, name } => {
            if name.trim().is_empty() {
                bail!("a pet's name cannot be empty");
            }
            edit(&backends, &TenantId::new(&tenant)?, |p| {
                let id = p.resolve(&pet)?;
                p.name(id, &name)
            })
            .await?
        }
        PetsCommand::Merge { tenant, into, from } => {
            edit(&backends, &TenantId::new(&tenant)?, |p| {
                let (into, from) = (p.resolve(&into)?, p.resolve(&from)?);
                p.merge(into, from)
            })
            .await?
        }
        PetsCommand::Split {
            tenant,
            pet,
            photos,
        } => {
            let sightings = photos
                .iter()
                .map(|f| parse_sighting(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            edit(&backends, &TenantId::new(&tenant)?, |p| {
                let id = p.resolve(&pet)?;
                p.split(id, &sightings).map(|new| println!("new pet {new}"))
            })
            .await?
        }
    }
    Ok(())
}

async fn edit(
    backends: &Backends,
    tenant: &TenantId,
    change: impl FnOnce(&mut Pets) -> Result<(), PetsError>,
) -> anyhow::Result<()> {
    let mut pets = load_pets(&*backends.store, tenant).await?;
    change(&mut pets)?;
    save_pets(&*backends.store, tenant, &pets).await?;
    Ok(())
}
