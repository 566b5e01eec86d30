//! LoRA files, fused into the weights as a model loads.
//!
//! Two namings are read, for the UNet and the text encoders, linear and convolution layers:
//! - kohya / A1111: `lora_unet_…`, `lora_te_…` (SD 1.x/2.x), `lora_te1_…` / `lora_te2_…` (SDXL), each
//!   module with `.lora_down.weight`, `.lora_up.weight` and an optional `.alpha`. Module paths have
//!   their dots written as underscores, in diffusers' layout or (SDXL files made by kohya's
//!   scripts) in the original Stability layout (`input_blocks_4_1_…`); both are mapped back.
//! - diffusers / PEFT: `{module}.lora_A.weight` and `{module}.lora_B.weight`, under `unet.`,
//!   `text_encoder.` or `text_encoder_2.` (no prefix: the UNet), with optional `{module}.alpha`.
//!
//! A pair's update is `weight x (alpha / rank) x up @ down` (alpha defaults to the rank), added to
//! the layer's weight in f32 ([`crate::weights::WeightFile::with_patches`]). Several LoRAs add
//! up. A key that fits neither naming, or names no layer of the model, is an error that names it;
//! LoHa, LoKr and DoRA files are refused by name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::{DiffusionError, Result};
use crate::weights::WeightFile;

/// Where a LoRA's safetensors bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum LoraSource {
    File(PathBuf),
    /// Already in memory (a tenant's LoRA read from the object store), with a name for errors.
    Bytes {
        name: String,
        bytes: Arc<Vec<u8>>,
    },
}

impl LoraSource {
    /// What errors call it: the file's path, or the name given.
    pub fn label(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Bytes { name, .. } => PathBuf::from(name),
        }
    }
}

/// A LoRA and the weight to apply it with.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub source: LoraSource,
    pub weight: f64,
}

impl LoraSpec {
    /// A LoRA file at `weight`.
    pub fn file(path: impl Into<PathBuf>, weight: f64) -> Self {
        Self {
            source: LoraSource::File(path.into()),
            weight,
        }
    }

    /// Opens and parses the LoRA.
    pub fn open(&self) -> Result<LoraFile> {
        match &self.source {
            LoraSource::File(path) => LoraFile::open(path),
            LoraSource::Bytes { name, bytes } => {
                let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(
                    |source| DiffusionError::Lora {
                        path: PathBuf::from(name),
                        reason: source.to_string(),
                    },
                )?;
                LoraFile::from_tensors(Path::new(name), tensors)
            }
        }
    }

    /// `FILE` or `FILE:WEIGHT` (weight 1 when absent), as `reverie generate --lora` takes it.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| DiffusionError::InvalidInput(format!("--lora {text}: {reason}"));
        let (path, weight) = match text.rsplit_once(':') {
            Some((path, weight)) if !path.is_empty() && weight.parse::<f64>().is_ok() => {
                (path, weight.parse::<f64>().unwrap_or(1.0))
            }
            _ => (text, 1.0),
        };
        if !weight.is_finite() || weight.abs() > MAX_WEIGHT {
            return Err(bad(format!(
                "weight {weight} must be a finite number within ±{MAX_WEIGHT}"
            )));
        }
        Ok(Self::file(path, weight))
    }
}

/// The largest LoRA weight accepted; far beyond what anyone applies on purpose.
pub const MAX_WEIGHT: f64 = 10.0;

/// The words a LoRA was trained with, from its safetensors metadata: the model-spec
/// `modelspec.trigger_phrase`, else kohya's most frequent training tag (`ss_tag_frequency`).
pub fn trigger_from_metadata(bytes: &[u8]) -> Option<String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let metadata = header.metadata().as_ref()?;
    if let Some(phrase) = metadata
        .get("modelspec.trigger_phrase")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        return Some(phrase.to_string());
    }
    let frequencies: HashMap<String, HashMap<String, u64>> =
        serde_json::from_str(metadata.get("ss_tag_frequency")?).ok()?;
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for tags in frequencies.values() {
        for (tag, count) in tags {
            *totals.entry(tag.trim()).or_default() += count;
        }
    }
    totals
        .into_iter()
        .filter(|(tag, _)| !tag.is_empty())
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(tag, _)| tag.to_string())
}

/// The part of a pipeline a LoRA module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    Unet,
    TextEncoder,
    TextEncoder2,
}

impl LoraTarget {
    /// The component's folder in a diffusers checkpoint.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Unet => "unet",
            Self::TextEncoder => "text_encoder",
            Self::TextEncoder2 => "text_encoder_2",
        }
    }
}

/// How a module is written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ModuleName {
    /// Dotted diffusers path (`down_blocks.1.attentions.0.proj_in`).
    Dotted(String),
    /// kohya: dots written as underscores.
    Underscored(String),
}

/// One low-rank pair as read from a file.
#[derive(Debug)]
struct LowRank {
    down: Tensor,
    up: Tensor,
    alpha: Option<f64>,
    /// The file's own key of `down`, for error messages.
    key: String,
}

/// A parsed LoRA file: its low-rank pairs by target and module.
#[derive(Debug)]
pub struct LoraFile {
    path: PathBuf,
    pairs: BTreeMap<(LoraTarget, ModuleName), LowRank>,
}

/// Key markers of network kinds that are not plain LoRA.
const REFUSED_KINDS: [(&str, &str); 5] = [
    ("hada_w1", "LoHa"),
    ("lokr_w1", "LoKr"),
    ("dora_scale", "DoRA"),
    (".diff", "full-difference (diff)"),
    ("oft_blocks", "OFT"),
];

/// The most unknown keys an error lists by name.
const LISTED_KEYS: usize = 8;

impl LoraFile {
    pub fn open(path: &Path) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| {
            DiffusionError::Lora {
                path: path.to_path_buf(),
                reason: source.to_string(),
            }
        })?;
        Self::from_tensors(path, tensors)
    }

    /// Parses `tensors` (named as in the file at `path`).
    pub fn from_tensors(path: &Path, tensors: HashMap<String, Tensor>) -> Result<Self> {
        let fail = |reason: String| DiffusionError::Lora {
            path: path.to_path_buf(),
            reason,
        };
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for (marker, kind) in REFUSED_KINDS {
            if let Some(key) = names.iter().find(|k| k.contains(marker)) {
                return Err(fail(format!(
                    "`{key}` is a {kind} network; only LoRA (down/up pairs) is supported"
                )));
            }
        }
        let mut halves: BTreeMap<(LoraTarget, ModuleName), Halves> = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in names {
            match classify(name) {
                Some((target, module, part)) => {
                    let entry = halves.entry((target, module)).or_default();
                    let tensor = tensors[name].to_dtype(DType::F32)?;
                    match part {
                        Part::Down => entry.down = Some((name.clone(), tensor)),
                        Part::Up => entry.up = Some(tensor),
                        Part::Alpha => entry.alpha = Some(scalar(&tensor, name).map_err(fail)?),
                    }
                }
                None => unknown.push(name.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(fail(format!(
                "{} keys are in neither the kohya nor the diffusers/PEFT LoRA naming: {}",
                unknown.len(),
                list(&unknown)
            )));
        }
        if halves.is_empty() {
            return Err(fail("the file holds no LoRA tensors".into()));
        }
        let mut pairs = BTreeMap::new();
        for (module, half) in halves {
            let (key, down, up) = match (half.down, half.up) {
                (Some((key, down)), Some(up)) => (key, down, up),
                _ => {
                    return Err(fail(format!(
                        "module {module:?} lacks its down (lora_A) or up (lora_B) matrix"
                    )))
                }
            };
            check_pair(&key, &down, &up).map_err(fail)?;
            pairs.insert(
                module,
                LowRank {
                    down,
                    up,
                    alpha: half.alpha,
                    key,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            pairs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The components this LoRA changes.
    pub fn targets(&self) -> Vec<LoraTarget> {
        let mut targets: Vec<LoraTarget> = self.pairs.keys().map(|(t, _)| *t).collect();
        targets.dedup();
        targets
    }
}

#[derive(Default)]
struct Halves {
    down: Option<(String, Tensor)>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Down,
    Up,
    Alpha,
}

/// The target, module and part a key names, in either naming; `None` when it is in neither.
fn classify(key: &str) -> Option<(LoraTarget, ModuleName, Part)> {
    const KOHYA: [(&str, LoraTarget); 4] = [
        ("lora_unet_", LoraTarget::Unet),
        ("lora_te1_", LoraTarget::TextEncoder),
        ("lora_te2_", LoraTarget::TextEncoder2),
        ("lora_te_", LoraTarget::TextEncoder),
    ];
    for (prefix, target) in KOHYA {
        if let Some(rest) = key.strip_prefix(prefix) {
            let (module, part) = split_part(
                rest,
                &[
                    (".lora_down.weight", Part::Down),
                    (".lora_up.weight", Part::Up),
                    (".alpha", Part::Alpha),
                ],
            )?;
            return Some((target, ModuleName::Underscored(module.to_string()), part));
        }
    }
    let (target, rest) = [
        ("unet.", LoraTarget::Unet),
        ("text_encoder.", LoraTarget::TextEncoder),
        ("text_encoder_2.", LoraTarget::TextEncoder2),
    ]
    .into_iter()
    .find_map(|(prefix, target)| key.strip_prefix(prefix).map(|rest| (target, rest)))
    .unwrap_or((LoraTarget::Unet, key));
    let (module, part) = split_part(
        rest,
        &[
            (".lora_A.weight", Part::Down),
            (".lora_B.weight", Part::Up),
            (".lora_A.default.weight", Part::Down),
            (".lora_B.default.weight", Part::Up),
            (".lora.down.weight", Part::Down),
            (".lora.up.weight", Part::Up),
            (".alpha", Part::Alpha),
        ],
    )?;
    Some((target, ModuleName::Dotted(module.to_string()), part))
}

fn split_part<'a>(rest: &'a str, suffixes: &[(&str, Part)]) -> Option<(&'a str, Part)> {
    suffixes.iter().find_map(|(suffix, part)| {
        rest.strip_suffix(suffix)
            .filter(|module| !module.is_empty())
            .map(|module| (module, *part))
    })
}

fn scalar(tensor: &Tensor, name: &str) -> std::result::Result<f64, String> {
    let values: Vec<f32> = tensor
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(|e| format!("`{name}`: {e}"))?;
    match values.as_slice() {
        [value] if value.is_finite() => Ok(f64::from(*value)),
        _ => Err(format!("`{name}` must hold one finite number")),
    }
}

/// `down` is `[rank, in, (k, k)]`, `up` `[out, rank, (1, 1)]`.
fn check_pair(key: &str, down: &Tensor, up: &Tensor) -> std::result::Result<(), String> {
    let rank = down.dims().first().copied().unwrap_or(0);
    let fits = rank > 0
        && down.rank() >= 2
        && up.rank() >= 2
        && up.dims()[1] == rank
        && up.dims()[2..].iter().all(|&d| d == 1);
    if fits {
        Ok(())
    } else {
        Err(format!(
            "`{key}`: down {:?} and up {:?} are not a low-rank pair",
            down.dims(),
            up.dims()
        ))
    }
}

fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(LISTED_KEYS).map(String::as_str).collect();
    let more = names.len().saturating_sub(LISTED_KEYS);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Where the modules of one component's weight file are, under both spellings.
struct ModuleIndex {
    /// Dotted module path (without `text_model.`) -> (full tensor name, shape).
    dotted: HashMap<String, (String, Vec<usize>)>,
    /// The same with dots written as underscores.
    underscored: HashMap<String, String>,
}

impl ModuleIndex {
    fn of(weights: &WeightFile) -> Self {
        let mut dotted = HashMap::new();
        let mut underscored = HashMap::new();
        for (name, shape) in weights.shapes() {
            let Some(module) = name.strip_suffix(".weight") else {
                continue;
            };
            let module = module.strip_prefix("text_model.").unwrap_or(module);
            underscored.insert(module.replace('.', "_"), module.to_string());
            dotted.insert(module.to_string(), (name.clone(), shape));
        }
        Self {
            dotted,
            underscored,
        }
    }

    /// The weight a module name means: `(full tensor name, shape)`.
    fn find(&self, module: &ModuleName, layers_per_block: usize) -> Option<&(String, Vec<usize>)> {
        match module {
            ModuleName::Dotted(path) => {
                let path = path.strip_prefix("text_model.").unwrap_or(path);
                self.dotted.get(path)
            }
            ModuleName::Underscored(path) => {
                let path = path.strip_prefix("text_model_").unwrap_or(path);
                let direct = self.underscored.get(path);
                let mapped = || {
                    stability_to_diffusers(path, layers_per_block)
                        .and_then(|p| self.underscored.get(&p))
                };
                direct
                    .or_else(mapped)
                    .and_then(|dotted| self.dotted.get(dotted))
            }
        }
    }

    /// `layers_per_block` of a UNet, counted from its first down block's resnets.
    fn layers_per_block(&self) -> usize {
        (0..)
            .take_while(|i| {
                self.dotted
                    .contains_key(&format!("down_blocks.0.resnets.{i}.conv1"))
            })
            .count()
    }
}

/// The deltas `files` make to the component `target` whose weights are `weights`: full tensor name
/// -> f32 delta of that tensor's shape, summed over files. Fails naming every module that is not
/// in the component and every delta whose shape does not fit.
pub fn deltas_for(
    files: &[(&LoraFile, f64)],
    target: LoraTarget,
    weights: &WeightFile,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let index = ModuleIndex::of(weights);
    let layers = index.layers_per_block();
    let mut deltas: HashMap<String, Tensor> = HashMap::new();
    for (file, weight) in files {
        let fail = |reason: String| DiffusionError::Lora {
            path: file.path.clone(),
            reason,
        };
        let mut missing = Vec::new();
        for ((pair_target, module), pair) in &file.pairs {
            if *pair_target != target {
                continue;
            }
            let Some((name, shape)) = index.find(module, layers) else {
                missing.push(pair.key.clone());
                continue;
            };
            let delta = low_rank_delta(pair, *weight, shape).map_err(|reason| {
                fail(format!(
                    "`{}` does not fit `{name}` {shape:?} of {} ({reason}): a LoRA for another base \
                     model?",
                    pair.key,
                    weights.path().display()
                ))
            })?;
            let delta = delta.to_device(device)?;
            let sum = match deltas.remove(name) {
                Some(earlier) => (earlier + delta)?,
                None => delta,
            };
            deltas.insert(name.clone(), sum);
        }
        if !missing.is_empty() {
            return Err(fail(format!(
                "{} keys name no layer of the model's {} ({}): {}",
                missing.len(),
                target.folder(),
                weights.path().display(),
                list(&missing)
            )));
        }
    }
    Ok(deltas)
}

/// `weight x alpha / rank x up @ down`, shaped like the layer's weight.
fn low_rank_delta(
    pair: &LowRank,
    weight: f64,
    shape: &[usize],
) -> std::result::Result<Tensor, String> {
    let error = |e: candle_core::Error| e.to_string();
    let rank = pair.down.dim(0).map_err(error)?;
    let out = pair.up.dim(0).map_err(error)?;
    let inner = pair.down.elem_count() / rank;
    let expected: usize = shape.iter().product();
    if shape.first() != Some(&out) || out * inner != expected {
        return Err(format!(
            "its update is [{out}, {}]",
            pair.down.dims()[1..]
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let scale = weight * pair.alpha.unwrap_or(rank as f64) / rank as f64;
    let up = pair.up.reshape((out, rank)).map_err(error)?;
    let down = pair.down.reshape((rank, inner)).map_err(error)?;
    up.matmul(&down)
        .and_then(|d| d.affine(scale, 0.0))
        .and_then(|d| d.reshape(shape))
        .map_err(error)
}

/// A kohya module path in Stability's UNet layout (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`)
/// written in diffusers' layout with underscores (`down_blocks_1_attentions_0_transformer_blocks_…`).
/// `layers` is the UNet's `layers_per_block`; `None` when the path is not in that layout.
fn stability_to_diffusers(path: &str, layers: usize) -> Option<String> {
    let numbers = |rest: &str| -> Option<(usize, usize, String)> {
        let mut parts = rest.splitn(3, '_');
        let block = parts.next()?.parse().ok()?;
        let child = parts.next()?.parse().ok()?;
        Some((block, child, parts.next().unwrap_or("").to_string()))
    };
    let join = |prefix: String, rest: &str| {
        if rest.is_empty() {
            prefix
        } else {
            format!("{prefix}_{}", resnet_part(rest))
        }
    };
    if layers == 0 {
        return None;
    }
    let span = layers + 1;
    if let Some(rest) = path.strip_prefix("input_blocks_") {
        let (block, child, rest) = numbers(rest)?;
        if block == 0 {
            return Some(join("conv_in".into(), &rest));
        }
        let (down, layer) = ((block - 1) / span, (block - 1) % span);
        let prefix = match (layer == layers, child) {
            (true, 0) => {
                return Some(format!(
                    "down_blocks_{down}_downsamplers_0_conv{}",
                    rest.strip_prefix("op").unwrap_or(&rest)
                ))
            }
            (false, 0) => format!("down_blocks_{down}_resnets_{layer}"),
            (false, 1) => format!("down_blocks_{down}_attentions_{layer}"),
            _ => return None,
        };
        return Some(join(prefix, &rest));
    }
    if let Some(rest) = path.strip_prefix("middle_block_") {
        let (child, rest) = rest.split_once('_')?;
        let prefix = match child {
            "0" => "mid_block_resnets_0",
            "1" => "mid_block_attentions_0",
            "2" => "mid_block_resnets_1",
            _ => return None,
        };
        return Some(join(prefix.into(), rest));
    }
    if let Some(rest) = path.strip_prefix("output_blocks_") {
        let (block, child, rest) = numbers(rest)?;
        let (up, layer) = (block / span, block % span);
        let prefix = match child {
            0 => format!("up_blocks_{up}_resnets_{layer}"),
            // The second child is the transformer, or the upsampler in blocks without attention.
            1 if rest.starts_with("conv") => format!("up_blocks_{up}_upsamplers_0"),
            1 => format!("up_blocks_{up}_attentions_{layer}"),
            2 => format!("up_blocks_{up}_upsamplers_0"),
            _ => return None,
        };
        return Some(join(prefix, &rest));
    }
    let renamed = [
        ("time_embed_0", "time_embedding_linear_1"),
        ("time_embed_2", "time_embedding_linear_2"),
        ("label_emb_0_0", "add_embedding_linear_1"),
        ("label_emb_0_2", "add_embedding_linear_2"),
        ("out_0", "conv_norm_out"),
        ("out_2", "conv_out"),
    ];
    renamed
        .iter()
        .find(|(from, _)| path == *from)
        .map(|(_, to)| to.to_string())
}

/// Stability's names inside a resnet, in diffusers' spelling (others pass through).
fn resnet_part(rest: &str) -> String {
    match rest {
        "in_layers_2" => "conv1".into(),
        "out_layers_3" => "conv2".into(),
        "emb_layers_1" => "time_emb_proj".into(),
        "skip_connection" => "conv_shortcut".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_specs_take_an_optional_weight() {
        let spec = LoraSpec::parse("loras/me.safetensors:0.75").expect("spec");
        assert_eq!(spec.source.label(), PathBuf::from("loras/me.safetensors"));
        assert_eq!(spec.weight, 0.75);
        assert_eq!(LoraSpec::parse("me.safetensors").expect("spec").weight, 1.0);
        // A colon that is not a weight stays in the path (C:\\ on Windows, odd names).
        assert_eq!(
            LoraSpec::parse("a:b.safetensors").expect("spec").source,
            LoraSource::File(PathBuf::from("a:b.safetensors"))
        );
        assert!(LoraSpec::parse("me.safetensors:1e9").is_err());
        assert!(LoraSpec::parse("me.safetensors:NaN").is_err());
    }

    #[test]
    fn trigger_words_come_from_the_metadata() {
        let tensor = Tensor::zeros((1,), DType::F32, &Device::Cpu).expect("tensor");
        let with = |metadata: Vec<(&str, &str)>| {
            let metadata = metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let bytes = safetensors::serialize(
                [("w", tensor.to_dtype(DType::F32).expect("f32"))]
                    .iter()
                    .map(|(k, t)| (k.to_string(), SafeView(t.clone()))),
                Some(metadata),
            )
            .expect("serialize");
            trigger_from_metadata(&bytes)
        };
        assert_eq!(
            with(vec![("modelspec.trigger_phrase", "sks person")]).as_deref(),
            Some("sks person")
        );
        let tags = r#"{"10_anna": {"ohwx woman": 30, "smiling": 4}, "5_x": {"smiling": 2}}"#;
        assert_eq!(
            with(vec![("ss_tag_frequency", tags)]).as_deref(),
            Some("ohwx woman")
        );
        assert_eq!(with(vec![]), None);
    }

    /// candle tensors as safetensors views, for writing test files.
    struct SafeView(Tensor);

    impl safetensors::View for SafeView {
        fn dtype(&self) -> safetensors::Dtype {
            safetensors::Dtype::F32
        }
        fn shape(&self) -> &[usize] {
            self.0.dims()
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            let values: Vec<f32> = self
                .0
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .unwrap_or_default();
            std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
        fn data_len(&self) -> usize {
            self.0.elem_count() * 4
        }
    }

    #[test]
    fn keys_are_classified_in_both_namings() {
        let (target, module, _) =
            classify("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight")
                .expect("kohya");
        assert_eq!(target, LoraTarget::TextEncoder2);
        assert_eq!(
            module,
            ModuleName::Underscored("text_model_encoder_layers_0_mlp_fc1".into())
        );
        let (target, module, _) =
            classify("unet.down_blocks.1.attentions.0.proj_in.lora_B.weight").expect("peft");
        assert_eq!(target, LoraTarget::Unet);
        assert_eq!(
            module,
            ModuleName::Dotted("down_blocks.1.attentions.0.proj_in".into())
        );
        assert!(classify("down_blocks.1.something.weight").is_none());
    }

    #[test]
    fn stability_names_map_to_diffusers_names() {
        let map = |p| stability_to_diffusers(p, 2);
        assert_eq!(
            map("input_blocks_4_1_transformer_blocks_0_attn1_to_q").as_deref(),
            Some("down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q")
        );
        assert_eq!(
            map("input_blocks_1_0_in_layers_2").as_deref(),
            Some("down_blocks_0_resnets_0_conv1")
        );
        assert_eq!(
            map("input_blocks_3_0_op").as_deref(),
            Some("down_blocks_0_downsamplers_0_conv")
        );
        assert_eq!(
            map("middle_block_1_proj_in").as_deref(),
            Some("mid_block_attentions_0_proj_in")
        );
        assert_eq!(
            map("output_blocks_5_2_conv").as_deref(),
            Some("up_blocks_1_upsamplers_0_conv")
        );
        assert_eq!(
            map("output_blocks_2_1_conv").as_deref(),
            Some("up_blocks_0_upsamplers_0_conv")
        );
        assert_eq!(
            map("output_blocks_4_0_skip_connection").as_deref(),
            Some("up_blocks_1_resnets_1_conv_shortcut")
        );
        assert_eq!(
            map("label_emb_0_0").as_deref(),
            Some("add_embedding_linear_1")
        );
        assert_eq!(map("nonsense_1_2"), None);
    }

    #[test]
    fn loha_lokr_and_stray_keys_are_refused_by_name() {
        let t = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).expect("tensor");
        let file = |keys: &[(&str, &[usize])]| {
            let tensors = keys.iter().map(|(k, d)| (k.to_string(), t(d))).collect();
            LoraFile::from_tensors(Path::new("x.safetensors"), tensors)
                .expect_err("refused")
                .to_string()
        };
        assert!(file(&[("lora_unet_a.hada_w1_a", &[2, 2])]).contains("LoHa"));
        assert!(file(&[("lora_unet_a.lokr_w1", &[2, 2])]).contains("LoKr"));
        let stray = file(&[
            ("lora_unet_a.lora_down.weight", &[2, 4]),
            ("lora_unet_a.lora_up.weight", &[4, 2]),
            ("model.diffusion_model.stray", &[1]),
        ]);
        assert!(stray.contains("model.diffusion_model.stray"), "{stray}");
        let unpaired = file(&[("lora_unet_a.lora_down.weight", &[2, 4])]);
        assert!(unpaired.contains("lacks its down"), "{unpaired}");
    }
}
