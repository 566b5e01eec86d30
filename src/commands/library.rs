//! `reverie library import|show`: bring a photo library in, and see what it holds.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use reverie_library::{import, load_manifest, summarise, ImportOptions, ImportSource};
use reverie_shared::backends::{connect_store, parse_s3_url};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::{S3Config, S3Store};
use reverie_shared::retry::Backoff;
use reverie_shared::Backends;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// Import photos from a folder, a Google Takeout export (unpacked or the .zip), or s3://bucket/prefix.
    Import {
        #[arg(long)]
        tenant: String,
        source: String,
        /// Refuse images with more pixels than this (decompression bombs).
        #[arg(long, default_value_t = 100_000_000)]
        max_pixels: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The photos closest in style (colour, tone, texture) to PHOTO (a file name or photo id).
    Similar {
        #[arg(long)]
        tenant: String,
        photo: String,
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
    /// What a tenant's library holds: counts, dates, albums, places, light, people.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(global: &GlobalArgs, command: LibraryCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let store = connect_store(&config, Backoff::from(&config.retry)).await?;
    match command {
        LibraryCommand::Import {
            tenant,
            source,
            max_pixels,
            json,
        } => {
            let tenant = TenantId::new(tenant)?;
            let options = ImportOptions {
                max_pixels,
                ..ImportOptions::default()
            };
            let report = match parse_s3_url(&source) {
                Some((bucket, prefix)) => {
                    let s3 = S3Store::connect(S3Config {
                        endpoint: config.s3.endpoint.clone(),
                        region: config.s3.region.clone(),
                        bucket,
                        prefix: String::new(),
                        access_key: config.s3_access_key()?,
                        secret_key: config.s3_secret_key()?,
                        path_style: config.s3.path_style,
                        multipart_threshold: config.s3.multipart_threshold_mb * 1024 * 1024,
                    })
                    .await;
                    import(
                        &*store,
                        &tenant,
                        ImportSource::Objects { store: &s3, prefix },
                        &options,
                    )
                    .await?
                }
                None => {
                    let path = PathBuf::from(&source);
                    let is_zip = !path.is_dir()
                        && path
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
                    let source_kind = if is_zip {
                        ImportSource::Zip(path)
                    } else {
                        ImportSource::Folder(path)
                    };
                    import(&*store, &tenant, source_kind, &options)
                        .await
                        .with_context(|| format!("importing {source}"))?
                }
            };
            // With the tenant's consent the library's analysis follows at once, so people appear
            // after an import without another command.
            // An analysis that fails leaves the import as it is: it is retried by the next import or
            // by `reverie analyse`.
            let backends = Backends::connect(&config).await?;
            let analysis = match super::analyse::follow_up(&config, &backends, &tenant).await {
                Ok(analysis) => Some(analysis),
                Err(error) => {
                    eprintln!(
                        "warning: the import is complete but the library's analysis failed: {error:#}; \
                         run `reverie analyse --tenant {tenant}` to retry"
                    );
                    None
                }
            };
            if json {
                let mut value = serde_json::to_value(&report)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("analysis".to_string(), serde_json::to_value(&analysis)?);
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "imported {} photos ({} already present), {} shards written, {} files skipped",
                    report.imported,
                    report.already_present,
                    report.shards_written,
                    report.skipped.len()
                );
                for skipped in report.skipped.iter().chain(&report.notes) {
                    println!("  {}: {}", skipped.file, skipped.reason);
                }
                for merged in &report.merged {
                    println!(
                        "  merged as one photo ({}): {}",
                        merged.photo,
                        merged.files.join(", ")
                    );
                }
                for edit in &report.edits {
                    println!("  {}: edited copy of {}", edit.edited, edit.original);
                }
                if let Some(analysis) = &analysis {
                    println!("{analysis}");
                }
            }
        }
        LibraryCommand::Similar {
            tenant,
            photo,
            count,
        } => similar(&*store, tenant, photo, count).await?,
        LibraryCommand::Show { tenant, json } => {
            let tenant = TenantId::new(tenant)?;
            let manifest = load_manifest(&*store, &tenant).await?;
            let summary = summarise(&manifest);
            let palettes = reverie_worker::palettes::load_palettes(&*store, &tenant).await?;
            if json {
                let mut value = serde_json::to_value(&summary)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("palettes".to_string(), serde_json::to_value(&palettes)?);
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", summary.to_text());
                match &palettes {
                    Some(palettes) => {
                        print!("{}", reverie_worker::palettes::favourites_text(palettes))
                    }
                    None => println!(
                        "favourite palettes: not computed yet (run `reverie analyse --tenant {tenant}`)"
                    ),
                }
            }
        }
    }
    Ok(())
}

/// `reverie library similar --tenant T PHOTO`: the photos whose style fingerprints are closest.
async fn similar(
    store: &dyn reverie_shared::ports::store::ObjectStore,
    tenant: String,
    photo: String,
    count: usize,
) -> anyhow::Result<()> {
    use reverie_worker::analysis::analysis_key;
    let tenant = TenantId::new(tenant)?;
    let manifest = load_manifest(store, &tenant).await?;
    let mut fingerprints = Vec::new();
    for shard in &manifest.shards {
        let key = analysis_key(&tenant, &shard.id);
        let bytes = match store.get(&key).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => bail!(
                "shard {} is not analysed yet: run `reverie analyse --tenant {tenant}`",
                shard.id
            ),
            Err(error) => return Err(error.into()),
        };
        let analysis: reverie_worker::analysis::ShardAnalysis = serde_json::from_slice(&bytes)?;
        for photo in analysis.photos {
            if let Some(fingerprint) = photo.fingerprint {
                fingerprints.push((photo.photo, fingerprint));
            }
        }
    }
    let name_of = |id: &reverie_shared::ids::PhotoId| {
        manifest
            .photos
            .iter()
            .find(|p| &p.meta.id == id)
            .map(|p| p.meta.original.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let query = fingerprints
        .iter()
        .position(|(id, _)| id.as_str() == photo || name_of(id) == photo || name_of(id).ends_with(&format!("/{photo}")))
        .with_context(|| format!("no analysed photo {photo:?} in tenant {tenant}'s library (give its file name or id)"))?;
    let candidates: Vec<reverie_paint::Fingerprint> =
        fingerprints.iter().map(|(_, f)| f.clone()).collect();
    let neighbours = reverie_paint::nearest(&candidates[query], &candidates, count + 1);
    for neighbour in neighbours
        .into_iter()
        .filter(|n| n.index != query)
        .take(count)
    {
        println!(
            "{:.3}  {}",
            neighbour.similarity,
            name_of(&fingerprints[neighbour.index].0)
        );
    }
    Ok(())
}
