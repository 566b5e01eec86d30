//! A tenant's LoRA and image prompts through the real farm (the binary as scheduler, worker and
//! client on RabbitMQ, Redis and S3): a LoRA registered with `reverie loras add`, bound to a person
//! the library names, used by a prompt that places that person — with its trigger words in the text
//! — and the person's photo read by the farm's IP-Adapter as the image prompt, both recorded in the
//! output's provenance; a prompt without the person renders without either. The model and the
//! IP-Adapter are registered by name (files checked by hash, the adapter made for that model), and
//! the person's image prompt embeddings are cached in Redis per (adapter, photo) for every worker.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{kill, ProcessFarm};
use reverie_diffusion::registry::{adapter_entry_toml, entry_toml, AdapterKind};
use reverie_shared::ports::cache::Cache;
use reverie_shared::ports::store::ObjectStore;
use reverie_shared::testing;

fn sdxl_tiny(part: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sdxl-tiny")
        .join(part)
        .display()
        .to_string()
}

/// The JSON documents a command printed, in order.
fn documents(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<serde_json::Value>()
        .map(|d| d.expect("JSON output"))
        .collect()
}

/// Runs a command that must fail, and returns what it said.
fn refused(farm: &ProcessFarm, args: &[&str]) -> String {
    let output = farm.command(args).output().unwrap();
    assert!(!output.status.success(), "reverie {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Submits `prompt`, waits for it, and returns the first output's provenance.
async fn render(
    farm: &ProcessFarm,
    store: &reverie_shared::ports::store::S3Store,
    tenant: &str,
    token: &str,
    prompt: &str,
) -> serde_json::Value {
    let stdout = farm.run(&[
        "submit", "--api", &farm.api, "--token", token, "--tenant", tenant, "--wait", prompt,
    ]);
    let answers = documents(&stdout);
    let request = answers[0]["request_id"].as_str().expect("a request id");
    let last = answers.last().expect("the final status");
    assert_eq!(last["state"], "succeeded", "{stdout}");
    let key = format!("tenants/{tenant}/results/{request}/0.json");
    let bytes = store
        .get(&key)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    serde_json::from_slice(&bytes).expect("provenance JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lora_and_an_image_prompt_of_a_person_render_through_the_farm_into_the_provenance() {
    let store = testing::s3_store("farm-loras").await;
    let prefix = testing::unique("loras");
    let mut farm = ProcessFarm::new(&store.config().bucket, &prefix);
    // The model and its IP-Adapter by name, as an operator registers them.
    let model = "xl-tiny";
    let weights = sdxl_tiny("ip-adapter/ip_adapter_sdxl.safetensors");
    let location = sdxl_tiny("ip-adapter");
    let registry = farm.data.path().join("registry.toml");
    let entries = entry_toml(model, &sdxl_tiny("base"), Path::new(&sdxl_tiny("base"))).unwrap()
        + &adapter_entry_toml(
            "face-prompt",
            AdapterKind::IpAdapter,
            &location,
            Path::new(&weights),
            &[model],
        )
        .unwrap();
    std::fs::write(&registry, entries).unwrap();
    let registry = registry.display().to_string();
    for (key, value) in [
        ("REVERIE_DIFFUSION_REGISTRY", registry.as_str()),
        ("REVERIE_DIFFUSION_MODEL", model),
        ("REVERIE_DIFFUSION_STEPS", "2"),
        ("REVERIE_DIFFUSION_SIZE", "64"),
        ("REVERIE_DIFFUSION_IP_ADAPTER", "face-prompt"),
        ("REVERIE_DIFFUSION_IP_SCALE", "0.5"),
    ] {
        farm.env.push((key.to_string(), value.to_string()));
    }
    let tenant = prefix.clone();
    let token = farm.run(&["tenant", "create", &tenant]).trim().to_string();
    farm.run(&["consent", "grant", "--tenant", &tenant, "library"]);
    // The fixture's family photos: one names Jesper in an XMP face region (its sidecar comes along).
    let family = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/library/folder/Family");
    farm.run(&[
        "library",
        "import",
        "--tenant",
        &tenant,
        &family.display().to_string(),
    ]);

    let lora = sdxl_tiny("loras/subject_peft.safetensors");
    let added = farm.run(&[
        "loras",
        "add",
        "--tenant",
        &tenant,
        "--name",
        "jesper",
        "--weight",
        "0.7",
        "--trigger",
        "sks man",
        "--person",
        "Jesper",
        &lora,
    ]);
    assert!(added.contains("bound to Jesper"), "{added}");
    let listed: serde_json::Value =
        serde_json::from_str(&farm.run(&["loras", "list", "--tenant", &tenant, "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "jesper");
    assert_eq!(listed[0]["base_model"], model);
    let sha256 = listed[0]["sha256"].as_str().unwrap().to_string();
    // The file lives in the tenant's own storage, by its hash.
    store
        .get(&format!(
            "tenants/{tenant}/adapters/loras/{sha256}.safetensors"
        ))
        .await
        .expect("the LoRA in the tenant's storage");

    // Refused at registration, naming what is wrong: a LoRA for another base model, and a file that
    // is no LoRA; the index is left as it was.
    let sd15 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd-tiny/model");
    let sd15 = sd15.display().to_string();
    let style = sdxl_tiny("loras/style_kohya.safetensors");
    let stderr = refused(
        &farm,
        &[
            "loras", "add", "--tenant", &tenant, "--name", "other", "--model", &sd15, &style,
        ],
    );
    assert!(stderr.contains("another base model"), "{stderr}");
    let vae = sdxl_tiny("base/vae/diffusion_pytorch_model.safetensors");
    let stderr = refused(
        &farm,
        &["loras", "add", "--tenant", &tenant, "--name", "vae", &vae],
    );
    assert!(stderr.contains("naming"), "{stderr}");
    let listed: serde_json::Value =
        serde_json::from_str(&farm.run(&["loras", "list", "--tenant", &tenant, "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let mut scheduler = farm.spawn(&["scheduler"], "scheduler.log");
    farm.wait_until_ready(&mut scheduler, "scheduler.log");
    let mut worker = farm.spawn(&["worker"], "worker.log");

    let provenance = tokio::time::timeout(
        Duration::from_secs(240),
        render(
            &farm,
            &store,
            &tenant,
            &token,
            "Jesper in the garden, watercolour",
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("no result in 240 s\nworker:\n{}", farm.log("worker.log")));
    assert_eq!(provenance["renderer"], "diffusion", "{provenance:#}");
    assert_eq!(provenance["loras"][0]["name"], "jesper", "{provenance:#}");
    assert_eq!(provenance["loras"][0]["sha256"], sha256.as_str());
    assert_eq!(provenance["loras"][0]["weight"], 0.7);
    assert!(
        provenance["prompt"]
            .as_str()
            .unwrap()
            .starts_with("sks man"),
        "the trigger words lead the text: {provenance:#}"
    );
    // Jesper's photo is the image prompt: one of the references, at the configured scale.
    let prompt_photo = &provenance["image_prompt"]["photo"];
    assert!(
        provenance["references"]
            .as_array()
            .unwrap()
            .contains(prompt_photo),
        "{provenance:#}"
    );
    assert_eq!(provenance["image_prompt"]["scale"], 0.5);

    // The photo's embeddings are in the cache, under the tenant, the adapter and the photo.
    let cache = testing::redis().await;
    let cached_prefix = format!("reverie:{tenant}:emb:image_prompt:");
    // Written beside the job's results: give it a moment.
    let mut cached = Vec::new();
    for _ in 0..50 {
        cached = cache.keys(&cached_prefix).await.unwrap();
        if !cached.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cached.len(), 1, "{cached:?}");
    let photo = prompt_photo.as_str().unwrap();
    assert!(cached[0].ends_with(photo), "{cached:?}");
    let entry = cache
        .get(&cached[0])
        .await
        .unwrap()
        .expect("the cached embeddings");
    assert!(
        cache.ttl(&cached[0]).await.unwrap().is_some(),
        "kept for cache.embedding_ttl_s"
    );

    // The next job reads them from there: an entry of the wrong shape is noticed (and the job
    // renders from freshly computed embeddings, which replace it).
    let wrong_shape = [
        b"RIP1".as_slice(),
        &[2],
        &1u32.to_le_bytes(),
        &3u32.to_le_bytes(),
        &[0; 6],
    ]
    .concat();
    cache
        .set(&cached[0], bytes::Bytes::from(wrong_shape), None)
        .await
        .unwrap();
    let again = render(
        &farm,
        &store,
        &tenant,
        &token,
        "Jesper in the garden, oil painting",
    )
    .await;
    assert_eq!(again["image_prompt"]["photo"], *prompt_photo, "{again:#}");
    assert!(
        farm.log("worker.log")
            .contains("cached image prompt unusable"),
        "the worker read the cached entry"
    );
    let mut rewritten = None;
    for _ in 0..50 {
        rewritten = cache.get(&cached[0]).await.unwrap();
        if rewritten.as_ref() == Some(&entry) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rewritten, Some(entry), "the stale entry is replaced");
    // The provenance names the adapter by its identity.
    assert_eq!(
        again["image_prompt"]["adapter"].as_str().unwrap().len(),
        64,
        "{again:#}"
    );

    // Without Jesper in the picture, no LoRA.
    let plain = render(&farm, &store, &tenant, &token, "a lighthouse in a storm").await;
    assert!(plain.get("loras").is_none(), "{plain:#}");
    assert!(plain.get("image_prompt").is_none(), "{plain:#}");

    // Removed, its file goes too.
    farm.run(&["loras", "remove", "--tenant", &tenant, "--name", "jesper"]);
    assert!(store
        .get(&format!(
            "tenants/{tenant}/adapters/loras/{sha256}.safetensors"
        ))
        .await
        .is_err());
    kill(&mut worker);
    kill(&mut scheduler);
}
