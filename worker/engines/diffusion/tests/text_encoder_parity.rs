//! CLIP text encoder parity with transformers on the sd-tiny fixture's `text_encoder` case.

mod common;

use candle_core::{DType, Tensor};
use reverie_diffusion::ClipTextEncoder;
use serde_json::Value;

use common::{fixture_dir, test_device};

fn tolerance() -> (f64, f64) {
    let text = std::fs::read_to_string(fixture_dir().join("cases.json")).expect("cases.json");
    // Python's json writes -Infinity (diffusers' lambda_min_clipped); serde_json rejects it.
    let text = text.replace("-Infinity", "\"-Infinity\"");
    let cases: Value = serde_json::from_str(&text).expect("cases.json parses");
    let case = cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "text_encoder")
        .expect("text_encoder case")
        .clone();
    (
        case["tolerance"]["atol"].as_f64().expect("atol"),
        case["tolerance"]["rtol"].as_f64().expect("rtol"),
    )
}

fn assert_tensor_close(what: &str, ours: &Tensor, expected: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(ours.dims(), expected.dims(), "{what}: shape");
    let ours: Vec<f32> = ours.flatten_all().expect("flat").to_vec1().expect("f32");
    let expected: Vec<f32> = expected
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("f32");
    let mut worst = f64::NEG_INFINITY;
    for (o, e) in ours.iter().zip(&expected) {
        let (o, e) = (f64::from(*o), f64::from(*e));
        worst = worst.max((o - e).abs() - (atol + rtol * e.abs()));
    }
    assert!(worst <= 0.0, "{what}: exceeds tolerance by {worst}");
}

#[test]
fn text_encoder_matches_transformers() {
    let device = test_device();
    let encoder = ClipTextEncoder::from_dir(&fixture_dir().join("model/text_encoder"), &device)
        .expect("text encoder loads");
    let case = candle_core::safetensors::load(
        fixture_dir().join("cases/text_encoder.safetensors"),
        &device,
    )
    .expect("case tensors");
    let ids = case["in.input_ids"].to_dtype(DType::U32).expect("ids");
    let output = encoder.forward(&ids).expect("forward");
    let (atol, rtol) = tolerance();
    assert_tensor_close(
        "last_hidden_state",
        &output.last_hidden_state,
        &case["out.last_hidden_state"],
        atol,
        rtol,
    );
    assert_tensor_close(
        "penultimate_normed",
        &output.penultimate_normed,
        &case["out.penultimate_normed"],
        atol,
        rtol,
    );
}

#[test]
fn missing_weights_file_is_named_in_the_error() {
    let dir = fixture_dir().join("model/text_encoder");
    let config = reverie_diffusion::ClipTextConfig::from_file(&dir.join("config.json"))
        .expect("config loads");
    let error = ClipTextEncoder::load(&config, &dir.join("absent.safetensors"), &test_device())
        .err()
        .expect("absent file must fail");
    assert!(error.to_string().contains("absent.safetensors"), "{error}");
}

#[test]
fn wrong_shape_names_the_tensor() {
    let dir = fixture_dir().join("model/text_encoder");
    let mut config = reverie_diffusion::ClipTextConfig::from_file(&dir.join("config.json"))
        .expect("config loads");
    config.intermediate_size += 1;
    let error = ClipTextEncoder::load(&config, &dir.join("model.safetensors"), &test_device())
        .err()
        .expect("wrong config must fail");
    let message = error.to_string();
    assert!(
        message.contains("mlp.fc1.weight") && message.contains("model.safetensors"),
        "{message}"
    );
}

/// transformers 5 writes the same tensors without `text_model.`; both spellings must load
/// and give the same output.
#[test]
fn weights_without_text_model_prefix_load_the_same() {
    let device = test_device();
    let dir = fixture_dir().join("model/text_encoder");
    let original =
        candle_core::safetensors::load(dir.join("model.safetensors"), &device).expect("weights");
    let renamed: std::collections::HashMap<String, Tensor> = original
        .into_iter()
        .map(|(name, tensor)| {
            let short = name
                .strip_prefix("text_model.")
                .unwrap_or(&name)
                .to_string();
            (short, tensor)
        })
        .collect();
    let temp = std::env::temp_dir().join(format!("reverie-clip-{}", std::process::id()));
    std::fs::create_dir_all(&temp).expect("temp dir");
    let unprefixed = temp.join("model.safetensors");
    candle_core::safetensors::save(&renamed, &unprefixed).expect("save renamed");
    let config = reverie_diffusion::ClipTextConfig::from_file(&dir.join("config.json"))
        .expect("config loads");
    let prefixed = ClipTextEncoder::from_dir(&dir, &device).expect("prefixed loads");
    let bare = ClipTextEncoder::load(&config, &unprefixed, &device).expect("unprefixed loads");
    let ids = Tensor::new(&[[49406u32, 320, 1125, 49407]], &device).expect("ids");
    let a = prefixed.forward(&ids).expect("forward").last_hidden_state;
    let b = bare.forward(&ids).expect("forward").last_hidden_state;
    assert_tensor_close("unprefixed", &a, &b, 0.0, 0.0);
    std::fs::remove_dir_all(&temp).expect("clean temp dir");
}

/// The tokenizer produces exactly the ids the text encoder case was run on.
#[test]
fn tokenizer_feeds_the_text_encoder_case_ids() {
    let text = std::fs::read_to_string(fixture_dir().join("cases.json")).expect("cases.json");
    let text = text.replace("-Infinity", "\"-Infinity\"");
    let cases: Value = serde_json::from_str(&text).expect("cases.json parses");
    let case = cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "text_encoder")
        .expect("text_encoder case")
        .clone();
    let tokenizer =
        reverie_diffusion::ClipTokenizer::from_dir(&fixture_dir().join("model/tokenizer"))
            .expect("tokenizer loads");
    let tensors = candle_core::safetensors::load(
        fixture_dir().join("cases/text_encoder.safetensors"),
        &test_device(),
    )
    .expect("case tensors");
    let expected = tensors["in.input_ids"].to_vec2::<f32>().expect("ids");
    let prompts = case["params"]["prompts"].as_array().expect("prompts");
    assert_eq!(prompts.len(), expected.len());
    for (prompt, row) in prompts.iter().zip(expected) {
        let ids = tokenizer.encode(prompt.as_str().expect("text")).ids;
        let row: Vec<u32> = row.into_iter().map(|v| v as u32).collect();
        assert_eq!(ids, row, "{prompt}");
    }
}

#[test]
fn out_of_vocabulary_id_is_an_error_not_a_panic() {
    let device = test_device();
    let encoder = ClipTextEncoder::from_dir(&fixture_dir().join("model/text_encoder"), &device)
        .expect("loads");
    let ids = Tensor::new(&[[49406u32, 60000, 49407]], &device).expect("ids");
    assert!(encoder.forward(&ids).is_err());
}
