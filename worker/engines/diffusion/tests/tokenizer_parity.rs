//! CLIP tokenizer parity with transformers/tokenizers on the sd-tiny fixture's `tokenizer` case.

use std::path::PathBuf;

use candle_core::Device;
use reverie_diffusion::ClipTokenizer;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/fixtures/sd-tiny"
    ))
}

fn tokenizer_case() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("cases.json")).expect("cases.json");
    // Python's json writes -Infinity (diffusers' lambda_min_clipped); serde_json rejects it.
    let text = text.replace("-Infinity", "\"-Infinity\"");
    let cases: Value = serde_json::from_str(&text).expect("cases.json parses");
    cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "tokenizer")
        .expect("tokenizer case")
        .clone()
}

fn load_tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_dir(&fixture_dir().join("model/tokenizer")).expect("tokenizer loads")
}

fn rows(tensor: &candle_core::Tensor) -> Vec<Vec<u32>> {
    tensor
        .to_vec2::<f32>()
        .expect("2-d f32")
        .into_iter()
        .map(|row| row.into_iter().map(|v| v as u32).collect())
        .collect()
}

/// The fixture's `unpadded_ids` are the truncated ids without padding (at most 77).
#[test]
fn tokenizer_unpadded_ids_match_every_prompt() {
    let case = tokenizer_case();
    let tokenizer = load_tokenizer();
    let prompts = case["params"]["prompts"].as_array().expect("prompts");
    let expected = case["params"]["unpadded_ids"].as_array().expect("ids");
    for (prompt, ids) in prompts.iter().zip(expected) {
        let prompt = prompt.as_str().expect("prompt text");
        let ids: Vec<u32> = ids
            .as_array()
            .expect("id list")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        let mut ours = tokenizer.encode_unpadded(prompt);
        if ours.len() > tokenizer.max_length() {
            assert_eq!(ours.last(), Some(&49407), "end token of {prompt:?}");
            ours.truncate(tokenizer.max_length() - 1);
            ours.push(49407);
        }
        assert_eq!(ours, ids, "prompt {prompt:?}");
    }
}

#[test]
fn tokenizer_padded_ids_and_masks_match_every_prompt() {
    let case = tokenizer_case();
    let tokenizer = load_tokenizer();
    let file = fixture_dir().join(case["file"].as_str().expect("file"));
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).expect("case tensors");
    let expected_ids = rows(&tensors["out.input_ids"]);
    let expected_masks = rows(&tensors["out.attention_mask"]);
    let prompts = case["params"]["prompts"].as_array().expect("prompts");
    assert_eq!(prompts.len(), expected_ids.len());
    for (i, prompt) in prompts.iter().enumerate() {
        let prompt = prompt.as_str().expect("prompt text");
        let encoding = tokenizer.encode(prompt);
        assert_eq!(encoding.ids, expected_ids[i], "ids of {prompt:?}");
        assert_eq!(
            encoding.attention_mask, expected_masks[i],
            "mask of {prompt:?}"
        );
    }
    assert_eq!(tokenizer.max_length(), 77);
    assert_eq!(tokenizer.pad_id(), 49407);
}

#[test]
fn missing_tokenizer_folder_names_the_file() {
    let error = ClipTokenizer::from_dir(&fixture_dir().join("no-such-folder"))
        .expect_err("no files, no tokenizer");
    assert!(error.to_string().contains("vocab.json"), "{error}");
}

/// The two-file form (`vocab.json` + `merges.txt`) gives the same ids as `tokenizer.json`.
#[test]
fn vocab_and_merges_files_tokenize_like_tokenizer_json() {
    let source = fixture_dir().join("model/tokenizer/tokenizer.json");
    let parsed: Value =
        serde_json::from_str(&std::fs::read_to_string(&source).expect("read")).expect("parse");
    let temp = std::env::temp_dir().join(format!("reverie-bpe-{}", std::process::id()));
    std::fs::create_dir_all(&temp).expect("temp dir");
    let vocab = serde_json::to_string(&parsed["model"]["vocab"]).expect("vocab json");
    std::fs::write(temp.join("vocab.json"), vocab).expect("write vocab");
    let mut merges = String::from("#version: 0.2\n");
    for pair in parsed["model"]["merges"].as_array().expect("merges") {
        let pair = pair.as_array().expect("pair");
        let (a, b) = (pair[0].as_str().expect("a"), pair[1].as_str().expect("b"));
        merges.push_str(&format!("{a} {b}\n"));
    }
    std::fs::write(temp.join("merges.txt"), merges).expect("write merges");
    let two_files = ClipTokenizer::from_dir(&temp).expect("two-file tokenizer loads");
    let single = load_tokenizer();
    let case = tokenizer_case();
    for prompt in case["params"]["prompts"].as_array().expect("prompts") {
        let prompt = prompt.as_str().expect("text");
        assert_eq!(
            two_files.encode(prompt),
            single.encode(prompt),
            "{prompt:?}"
        );
    }
    std::fs::remove_dir_all(&temp).expect("clean temp dir");
}
