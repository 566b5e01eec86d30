//! SD 2.x components load through their configs alone: the OpenCLIP-H text encoder config
//! (gelu, 1024 wide, 23 layers) and the tokenizer with `!` as its pad token.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::{ClipActivation, ClipTextConfig, ClipTextEncoder, ClipTokenizer};

fn fixture_model() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/fixtures/sd-tiny/model"
    ))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reverie-sd2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// stabilityai/stable-diffusion-2-1 `text_encoder/config.json`, as published.
const SD21_TEXT_CONFIG: &str = r#"{
  "_name_or_path": "hf-models/stable-diffusion-v2-768x768/text_encoder",
  "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
  "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1024,
  "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
  "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
  "num_attention_heads": 16, "num_hidden_layers": 23, "pad_token_id": 1, "projection_dim": 512,
  "torch_dtype": "float32", "transformers_version": "4.25.0.dev0", "vocab_size": 49408
}"#;

#[test]
fn the_sd21_text_encoder_config_parses() {
    let dir = scratch("config");
    let path = dir.join("config.json");
    std::fs::write(&path, SD21_TEXT_CONFIG).unwrap();
    let config = ClipTextConfig::from_file(&path).unwrap();
    assert_eq!(config.hidden_act, ClipActivation::Gelu);
    assert_eq!(
        (
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers
        ),
        (1024, 4096, 23)
    );
    assert_eq!(config.num_attention_heads, 16);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tokenizer_with_config(dir: &Path, config: &str) -> ClipTokenizer {
    std::fs::copy(
        fixture_model().join("tokenizer/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config).unwrap();
    ClipTokenizer::from_dir(dir).unwrap()
}

#[test]
fn sd2_tokenizers_pad_with_the_exclamation_mark_in_either_config_form() {
    let dir = scratch("tokenizer");
    let plain = tokenizer_with_config(&dir, r#"{"model_max_length": 77, "pad_token": "!"}"#);
    let added = tokenizer_with_config(
        &dir,
        r#"{"model_max_length": 77, "pad_token": {"__type": "AddedToken", "content": "!",
            "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}}"#,
    );
    // "!" is the first entry of CLIP's byte-level vocabulary.
    assert_eq!(plain.pad_id(), 0);
    assert_eq!(added.pad_id(), 0);
    let encoding = added.encode("a cat");
    assert_eq!(encoding.ids.len(), 77);
    assert_eq!(encoding.ids[4..], [0; 73]);
    assert_eq!(
        encoding.ids[3], 49407,
        "the end token stays before the padding"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_activation_comes_from_the_config() {
    // The fixture's weights under a gelu config: runs, and differs from quick_gelu.
    let dir = fixture_model().join("text_encoder");
    let mut config = ClipTextConfig::from_file(&dir.join("config.json")).unwrap();
    let ids = Tensor::new(&[[49406u32, 320, 2368, 49407, 49407]], &Device::Cpu).unwrap();
    let quick = ClipTextEncoder::load(&config, &dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .forward(&ids)
        .unwrap();
    config.hidden_act = ClipActivation::Gelu;
    let gelu = ClipTextEncoder::load(&config, &dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .forward(&ids)
        .unwrap();
    let diff = (quick.last_hidden_state - gelu.last_hidden_state)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 1e-4, "activation had no effect ({diff})");
}
