//! `reverie generate` on the tiny fixture model: the txt2img case through the command line
//! (given latents in, final latents and PNG out, parameters in the PNG), a registry model, and
//! clear refusals of bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

fn sd_tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd-tiny")
}

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(data)
        .arg("generate")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("REVERIE_MODEL_REGISTRY")
        .output()
        .expect("reverie runs")
}

fn case_tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        sd_tiny().join(format!("cases/{name}.safetensors")),
        &Device::Cpu,
    )
    .expect("case tensors")
}

fn max_excess(ours: &Tensor, expected: &Tensor, atol: f32, rtol: f32) -> f32 {
    assert_eq!(ours.dims(), expected.dims());
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
    ours.iter()
        .zip(&expected)
        .map(|(o, e)| (o - e).abs() - (atol + rtol * e.abs()))
        .fold(f32::NEG_INFINITY, f32::max)
}

fn png_text(path: &Path) -> HashMap<String, String> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().expect("png");
    let info = reader.info();
    let mut text: HashMap<String, String> = info
        .uncompressed_latin1_text
        .iter()
        .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
        .collect();
    for chunk in &info.utf8_text {
        text.insert(chunk.keyword.clone(), chunk.get_text().unwrap());
    }
    text
}

/// The txt2img_euler_cfg case's settings as flags, with its latents written to a file.
fn txt2img_args(dir: &Path, model: &str) -> Vec<String> {
    let tensors = case_tensors("txt2img_euler_cfg");
    let latents_in = dir.join("in.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([("latents".to_string(), tensors["in.latents"].clone())]),
        &latents_in,
    )
    .unwrap();
    [
        "--model",
        model,
        "--prompt",
        "a lighthouse on a cliff at sunset, watercolor",
        "--negative",
        "blurry, low quality",
        "--steps",
        "4",
        "--guidance",
        "7.5",
        "--scheduler",
        "euler",
        "--size",
        "64x64",
        "--seed",
        "7",
        "--init-latents",
        latents_in.to_str().unwrap(),
        "--output-latents",
        dir.join("out.safetensors").to_str().unwrap(),
        "--out",
        dir.join("out.png").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn generate_reproduces_the_txt2img_case_and_records_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let model = sd_tiny().join("model");
    let args = txt2img_args(dir.path(), model.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(dir.path(), &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let expected = case_tensors("txt2img_euler_cfg");
    let ours = candle_core::safetensors::load(dir.path().join("out.safetensors"), &Device::Cpu)
        .expect("output latents");
    let excess = max_excess(&ours["latents"], &expected["out.final_latents"], 1e-3, 1e-3);
    assert!(
        excess <= 0.0,
        "final latents exceed the tolerance by {excess}"
    );

    let png = image::open(dir.path().join("out.png")).unwrap().to_rgb8();
    let reference = image::open(sd_tiny().join("cases/txt2img_euler_cfg.png"))
        .unwrap()
        .to_rgb8();
    let worst = png
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "PNG differs from diffusers' by {worst} levels");

    let text = png_text(&dir.path().join("out.png"));
    assert_eq!(
        text["prompt"],
        "a lighthouse on a cliff at sunset, watercolor"
    );
    assert_eq!(text["negative_prompt"], "blurry, low quality");
    assert_eq!(text["seed"], "7");
    assert_eq!(text["steps"], "4");
    assert_eq!(text["scheduler"], "euler");
    assert_eq!(text["guidance"], "7.5");
    assert_eq!(text["model"], "model");
    assert_eq!(text["initial_latents"], "given");
    assert_eq!(text["model_hash"].len(), 64);
}

#[test]
fn a_registered_model_is_verified_and_gives_the_same_identity() {
    let dir = tempfile::tempdir().unwrap();
    let model = sd_tiny().join("model");
    let entry =
        reverie_diffusion::registry::entry_toml("tiny", model.to_str().unwrap(), &model).unwrap();
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, &entry).unwrap();
    let mut args = txt2img_args(dir.path(), "tiny");
    args.extend(["--registry".to_string(), registry.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(dir.path(), &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = png_text(&dir.path().join("out.png"));
    assert_eq!(text["model"], "tiny");
    let local = reverie_diffusion::registry::resolve_local_dir(&model).unwrap();
    assert_eq!(text["model_hash"], local.identity);

    // One wrong hash: refused, naming the file.
    let tampered: String = entry
        .lines()
        .map(|line| match line.starts_with("\"model_index.json\"") {
            true => format!("\"model_index.json\" = \"{}\"\n", "0".repeat(64)),
            false => format!("{line}\n"),
        })
        .collect();
    assert_ne!(tampered, entry);
    std::fs::write(&registry, tampered).unwrap();
    let output = run(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("model_index.json") && stderr.contains("SHA-256"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_refused_with_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = sd_tiny().join("model");
    let model = model.to_str().unwrap();
    let out = d.join("x.png");
    let out = out.to_str().unwrap();
    let init = sd_tiny().join("cases/init_image.png");
    let init = init.to_str().unwrap();
    let small_mask = d.join("mask.png");
    image::GrayImage::new(32, 64).save(&small_mask).unwrap();
    let corrupt = d.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let base = ["--model", model, "--prompt", "a cat", "--out", out];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--size", "60x64"], "multiple of 8"),
        (vec!["--size", "64x64", "--steps", "0"], "steps 0"),
        (vec!["--size", "64x64", "--steps", "10000"], "steps 10000"),
        (
            vec!["--init-image", init, "--strength", "1.5"],
            "strength 1.5",
        ),
        (
            vec!["--init-image", init, "--mask", small_mask.to_str().unwrap()],
            "--mask",
        ),
        (
            vec![
                "--size",
                "64x64",
                "--init-latents",
                corrupt.to_str().unwrap(),
            ],
            "--init-latents",
        ),
        (vec!["--size", "64x64", "--scheduler", "plms"], "plms"),
        (vec!["--size", "64x64", "--mask", init], "need --init-image"),
    ];
    for (extra, message) in cases {
        let mut args = base.to_vec();
        args.extend(extra);
        let output = run(d, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in {stderr}"
        );
    }
}

#[test]
fn an_empty_prompt_generates_unconditionally() {
    let dir = tempfile::tempdir().unwrap();
    let model = sd_tiny().join("model");
    let out = dir.path().join("empty.png");
    let output = run(
        dir.path(),
        &[
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "",
            "--steps",
            "2",
            "--size",
            "64x48",
            "--batch",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for index in 0..2 {
        let image = image::open(dir.path().join(format!("empty-{index}.png"))).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
    }
}

#[test]
fn a_registered_s3_model_is_fetched_through_the_object_store() {
    use reverie_shared::ports::store::{ObjectStore, S3Store};
    use reverie_shared::testing;

    let model = sd_tiny().join("model");
    let bucket = testing::unique("reverie-sd");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let store = S3Store::connect(testing::s3_config(&bucket)).await;
        store
            .ensure_bucket()
            .await
            .expect("S3 server reachable (run scripts/test)");
        for path in reverie_diffusion::registry::pipeline_files(&model) {
            let key = format!("models/sd-tiny/{}", path.display());
            store.put_file(&key, &model.join(&path)).await.unwrap();
        }
        store
    });

    let dir = tempfile::tempdir().unwrap();
    let entry = reverie_diffusion::registry::entry_toml(
        "tiny-s3",
        &format!("s3://{bucket}/models/sd-tiny"),
        &model,
    )
    .unwrap();
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, entry).unwrap();
    let mut args = txt2img_args(dir.path(), "tiny-s3");
    args.extend(["--registry".to_string(), registry.display().to_string()]);
    let s3 = testing::s3_config(&bucket);
    let output = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("generate")
        .args(&args)
        .env_remove("RUST_LOG")
        // The farm's store is S3: registry entries in any bucket are read with its endpoint and keys.
        .env("REVERIE_S3_BUCKET", &bucket)
        // The cache is looked for under this data directory's models folder.
        .env_remove("REVERIE_MODELS_DIR")
        .env("REVERIE_S3_ENDPOINT", testing::s3_endpoint())
        .env("REVERIE_S3_ACCESS_KEY", s3.access_key.unwrap())
        .env("REVERIE_S3_SECRET_KEY", s3.secret_key.unwrap())
        .output()
        .unwrap();
    runtime.block_on(async {
        let _ = store.delete_prefix("").await;
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = png_text(&dir.path().join("out.png"));
    assert_eq!(text["model"], "tiny-s3");
    let local = reverie_diffusion::registry::resolve_local_dir(&model).unwrap();
    assert_eq!(text["model_hash"], local.identity);
    let cached = dir
        .path()
        .join("models/diffusion/cache")
        .read_dir()
        .unwrap()
        .count();
    assert_eq!(cached, 1, "one cache folder for the model");
    let expected = case_tensors("txt2img_euler_cfg");
    let ours =
        candle_core::safetensors::load(dir.path().join("out.safetensors"), &Device::Cpu).unwrap();
    let excess = max_excess(&ours["latents"], &expected["out.final_latents"], 1e-3, 1e-3);
    assert!(
        excess <= 0.0,
        "final latents exceed the tolerance by {excess}"
    );
}

#[test]
fn masked_img2img_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = sd_tiny().join("model");
    let out = dir.path().join("masked.png");
    let latents = dir.path().join("masked.safetensors");
    let output = run(
        dir.path(),
        &[
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a forest at night",
            "--steps",
            "8",
            "--guidance",
            "5",
            "--init-image",
            sd_tiny().join("cases/init_image.png").to_str().unwrap(),
            "--mask",
            sd_tiny().join("cases/mask.png").to_str().unwrap(),
            "--strength",
            "0.75",
            "--previews",
            dir.path().join("previews").to_str().unwrap(),
            "--output-latents",
            latents.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = png_text(&out);
    assert_eq!(text["strength"], "0.75");
    assert_eq!(text["masked"], "true");
    assert_eq!(text["size"], "64x64");
    // 0.75 of 8 steps runs 6, each with a preview at latent resolution.
    let previews: Vec<_> = std::fs::read_dir(dir.path().join("previews"))
        .unwrap()
        .collect();
    assert_eq!(previews.len(), 6);
    let first = image::open(dir.path().join("previews/step-001.png")).unwrap();
    assert_eq!((first.width(), first.height()), (8, 8));
    assert!(
        candle_core::safetensors::load(&latents, &Device::Cpu).unwrap()["latents"]
            .dims()
            .eq(&[1, 4, 8, 8])
    );
}

fn sdxl_tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdxl-tiny")
}

/// Runs `reverie generate` on the sdxl-tiny base with the settings of the diffusers case `name`
/// (its prompt, negative prompt, 3 Euler steps at guidance 5, 64x48, its starting latents) plus
/// `extra` flags; checks the final latents against diffusers' and returns the PNG written.
fn sdxl_case_through_the_cli(dir: &Path, name: &str, prompt: &str, extra: &[&str]) -> PathBuf {
    let model = sdxl_tiny().join("base");
    sdxl_case_with_model(dir, model.to_str().unwrap(), name, prompt, extra)
}

/// [`sdxl_case_through_the_cli`] with `--model MODEL` (a folder or a registered name).
fn sdxl_case_with_model(
    dir: &Path,
    model: &str,
    name: &str,
    prompt: &str,
    extra: &[&str],
) -> PathBuf {
    let case = candle_core::safetensors::load(
        sdxl_tiny().join(format!("cases/{name}.safetensors")),
        &Device::Cpu,
    )
    .expect("case");
    let latents_in = dir.join("in.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([("latents".to_string(), case["in.latents"].clone())]),
        &latents_in,
    )
    .unwrap();
    let out = dir.join("out.png");
    let latents_out = dir.join("out.safetensors");
    let mut args = vec![
        "--model",
        model,
        "--prompt",
        prompt,
        "--negative",
        "blurry",
        "--steps",
        "3",
        "--guidance",
        "5",
        "--scheduler",
        "euler",
        "--size",
        "64x48",
        "--init-latents",
        latents_in.to_str().unwrap(),
        "--output-latents",
        latents_out.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = run(dir, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours = candle_core::safetensors::load(&latents_out, &Device::Cpu).expect("latents");
    let excess = max_excess(&ours["latents"], &case["out.final_latents"], 1e-3, 1e-3);
    assert!(
        excess <= 0.0,
        "{name}: final latents exceed the tolerance by {excess}"
    );
    out
}

/// Runs a one-step 64x48 `reverie generate` with `args` (the model among them) that must be
/// refused, and returns what it said.
fn refused_run(dir: &Path, args: &[&str]) -> String {
    let out = dir.join("refused.png");
    let common = [
        "--prompt",
        "x",
        "--steps",
        "1",
        "--size",
        "64x48",
        "--out",
        out.to_str().unwrap(),
    ];
    let output = run(dir, &[args, &common].concat());
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sidecar_of(png: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(png.with_extension("json")).unwrap()).unwrap()
}

/// An SDXL run with two LoRAs (PEFT-named at 0.7, kohya-named at 1.2) through the command line:
/// diffusers' final latents, and each LoRA's file, hash and weight in the PNG and the sidecar.
#[test]
fn generate_runs_sdxl_with_two_loras_like_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let subject = format!(
        "{}:0.7",
        sdxl_tiny().join("loras/subject_peft.safetensors").display()
    );
    let style = format!(
        "{}:1.2",
        sdxl_tiny().join("loras/style_kohya.safetensors").display()
    );
    let out = sdxl_case_through_the_cli(
        dir.path(),
        "lora_subject_and_style",
        "a portrait of sks person, watercolor",
        &["--lora", &subject, "--lora", &style],
    );
    let sidecar = sidecar_of(&out);
    let loras = sidecar["loras"].as_array().expect("loras in the sidecar");
    assert_eq!(loras.len(), 2);
    assert_eq!(loras[0]["weight"], 0.7);
    assert_eq!(loras[1]["weight"], 1.2);
    assert_eq!(loras[1]["sha256"].as_str().unwrap().len(), 64);
    assert!(png_text(&out)["loras"].contains("style_kohya"));
}

#[test]
fn sdxl_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = sdxl_tiny().join("base");
    let out = dir.path().join("out.png");
    let base = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a cat",
            "--steps",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = run(dir.path(), &args);
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = base(&["--size", "60x48"]);
    assert!(stderr.contains("multiple of 8"), "{stderr}");
    // A LoRA with a key that names no layer of the model.
    let stray = dir.path().join("stray.safetensors");
    let t = |dims: &[usize]| Tensor::ones(dims, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([
            (
                "lora_unet_no_such_layer.lora_down.weight".to_string(),
                t(&[2, 8]),
            ),
            (
                "lora_unet_no_such_layer.lora_up.weight".to_string(),
                t(&[8, 2]),
            ),
        ]),
        &stray,
    )
    .unwrap();
    let stderr = base(&["--size", "64x48", "--lora", stray.to_str().unwrap()]);
    assert!(
        stderr.contains("lora_unet_no_such_layer") && stderr.contains("name no layer"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.safetensors");
    let stderr = base(&["--size", "64x48", "--lora", missing.to_str().unwrap()]);
    assert!(stderr.contains("missing.safetensors"), "{stderr}");
    // The refiner refines images; it does not start from noise.
    let refiner = sdxl_tiny().join("refiner");
    let output = run(
        dir.path(),
        &[
            "--model",
            refiner.to_str().unwrap(),
            "--prompt",
            "a cat",
            "--steps",
            "1",
            "--size",
            "64x48",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("refiner"),
        "{stderr}"
    );
}

/// An SDXL run with an IP-Adapter image prompt through the command line: our own preprocessing
/// and encoder on the photo, then diffusers' final latents; the adapter, the photo and the scale in
/// the sidecar.
#[test]
fn generate_runs_an_ip_adapter_image_prompt_like_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = sdxl_tiny().join("ip-adapter/ip_adapter_sdxl.safetensors");
    let photo = sdxl_tiny().join("cases/ip_photo.png");
    let out = sdxl_case_through_the_cli(
        dir.path(),
        "ip_adapter_sdxl_scale05",
        "a portrait in the park",
        &[
            "--ip-adapter",
            adapter.to_str().unwrap(),
            "--ip-image",
            photo.to_str().unwrap(),
            "--ip-scale",
            "0.5",
        ],
    );
    let sidecar = sidecar_of(&out);
    assert_eq!(sidecar["image_prompt"]["scale"], 0.5);
    assert_eq!(
        sidecar["image_prompt"]["image_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let model = sdxl_tiny().join("base");

    // A folder of several adapters must name one; an image prompt needs both flags.
    let folder = sdxl_tiny().join("ip-adapter");
    let stderr = |args: &[&str]| {
        refused_run(
            dir.path(),
            &[&["--model", model.to_str().unwrap()], args].concat(),
        )
    };
    let message = stderr(&[
        "--ip-adapter",
        folder.to_str().unwrap(),
        "--ip-image",
        photo.to_str().unwrap(),
    ]);
    assert!(message.contains("several adapters"), "{message}");
    let message = stderr(&["--ip-adapter", adapter.to_str().unwrap()]);
    assert!(message.contains("--ip-image"), "{message}");
}

/// LoRAs and an IP-Adapter by their names in the registry: verified by hash, made for the model
/// (another model's adapter is refused by name), and the same latents as the files give.
#[test]
fn registered_adapters_are_used_by_name_for_the_models_they_are_made_for() {
    use reverie_diffusion::registry::{adapter_entry_toml, entry_toml, AdapterKind};
    let dir = tempfile::tempdir().unwrap();
    let xl = sdxl_tiny().join("base");
    let sd15 = sd_tiny().join("model");
    let lora = |name: &str, file: &str| {
        let weights = sdxl_tiny().join("loras").join(file);
        let location = sdxl_tiny().join("loras");
        adapter_entry_toml(
            name,
            AdapterKind::Lora,
            location.to_str().unwrap(),
            &weights,
            &["xl"],
        )
        .unwrap()
    };
    let ip = |name: &str, file: &str, base: &str| {
        let weights = sdxl_tiny().join("ip-adapter").join(file);
        let location = sdxl_tiny().join("ip-adapter");
        adapter_entry_toml(
            name,
            AdapterKind::IpAdapter,
            location.to_str().unwrap(),
            &weights,
            &[base],
        )
        .unwrap()
    };
    let registry = dir.path().join("registry.toml");
    let text = [
        entry_toml("xl", xl.to_str().unwrap(), &xl).unwrap(),
        entry_toml("sd15", sd15.to_str().unwrap(), &sd15).unwrap(),
        lora("subject", "subject_peft.safetensors"),
        lora("style", "style_kohya.safetensors"),
        ip("face", "ip_adapter_sdxl.safetensors", "xl"),
        ip("face-sd15", "ip_adapter_sd15.safetensors", "sd15"),
    ]
    .concat();
    std::fs::write(&registry, text).unwrap();
    let registry = registry.to_str().unwrap();

    let out = sdxl_case_with_model(
        dir.path(),
        "xl",
        "lora_subject_and_style",
        "a portrait of sks person, watercolor",
        &[
            "--registry",
            registry,
            "--lora",
            "subject:0.7",
            "--lora",
            "style:1.2",
        ],
    );
    let sidecar = sidecar_of(&out);
    assert_eq!(sidecar["loras"][0]["name"], "subject");
    assert_eq!(sidecar["loras"][1]["weight"], 1.2);
    let photo = sdxl_tiny().join("cases/ip_photo.png");
    let photo = photo.to_str().unwrap();
    let out = sdxl_case_with_model(
        dir.path(),
        "xl",
        "ip_adapter_sdxl_scale05",
        "a portrait in the park",
        &[
            "--registry",
            registry,
            "--ip-adapter",
            "face",
            "--ip-image",
            photo,
            "--ip-scale",
            "0.5",
        ],
    );
    assert_eq!(sidecar_of(&out)["image_prompt"]["name"], "face");

    let refused = |extra: &[&str]| {
        refused_run(
            dir.path(),
            &[&["--model", "xl", "--registry", registry], extra].concat(),
        )
    };
    let stderr = refused(&["--ip-adapter", "face-sd15", "--ip-image", photo]);
    assert!(
        stderr.contains("adapter `face-sd15`")
            && stderr.contains("made for sd15, not for model `xl`"),
        "{stderr}"
    );
    let stderr = refused(&[
        "--ip-adapter",
        "nowhere/ip.safetensors",
        "--ip-image",
        photo,
    ]);
    assert!(stderr.contains("no such file or folder"), "{stderr}");
    let stderr = refused(&["--lora", "face"]);
    assert!(stderr.contains("is an IP-Adapter, not a LoRA"), "{stderr}");
    let stderr = refused(&["--lora", "nobody:0.5"]);
    assert!(
        stderr.contains("--lora nobody")
            && stderr.contains("known adapters: face, face-sd15, style, subject"),
        "{stderr}"
    );
}
