//! The CLIP byte-level BPE tokenizer, read from a diffusers `tokenizer/` folder.
//!
//! Matches the `tokenizers` pipeline CLIP ships with: special-token text is recognised first;
//! the rest has whitespace runs collapsed and is lowercased, is split into letter runs, single
//! digits, contractions and punctuation runs, mapped byte-wise to GPT-2's printable byte
//! alphabet, and merged by BPE with a `</w>` end-of-word marker.
//!
//! Known gap: the Unicode NFC step is not applied (this crate has no normalisation tables), so
//! prompts must arrive NFC-composed — which is what keyboards and web forms produce.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DiffusionError, Result};

const END_OF_WORD: &str = "</w>";
const BOS_TEXT: &str = "<|startoftext|>";
const EOS_TEXT: &str = "<|endoftext|>";
const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

/// The token-to-id table and the merge list in rank order.
type VocabAndMerges = (HashMap<String, u32>, Vec<(String, String)>);

/// Token ids and attention mask for one prompt, both `max_length` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

/// CLIP's BPE tokenizer.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    merge_ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    max_length: usize,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeModelJson,
}

#[derive(Deserialize)]
struct BpeModelJson {
    vocab: HashMap<String, u32>,
    merges: Vec<MergeJson>,
}

/// tokenizers writes merges either as "a b" strings (older) or as ["a", "b"] pairs.
#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Joined(String),
    Pair(String, String),
}

#[derive(Deserialize, Default)]
struct TokenizerConfigJson {
    model_max_length: Option<f64>,
    pad_token: Option<SpecialTokenJson>,
}

/// transformers writes special tokens as plain text or, in older configs (SD 2.x), as an
/// `AddedToken` object with the text under `content`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpecialTokenJson {
    Text(String),
    Added { content: String },
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| DiffusionError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    serde_json::from_str(&read_text(path)?).map_err(|source| DiffusionError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn split_merge_line(line: &str, path: &Path) -> Result<(String, String)> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
            Ok((a.to_string(), b.to_string()))
        }
        _ => Err(DiffusionError::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("merge `{line}` is not two symbols"),
        }),
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
/// themselves, the rest to code points from 256 up, in byte order.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let printable = (0x21..=0x7e).contains(&byte)
            || (0xa1..=0xac).contains(&byte)
            || (0xae..=0xff).contains(&byte);
        let code = if printable {
            byte as u32
        } else {
            next_extra += 1;
            next_extra - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// `\p{L}`: alphabetic but not a letter-number (those are `\p{N}`).
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

fn is_punctuation(c: char) -> bool {
    !c.is_whitespace() && !is_letter(c) && !c.is_numeric()
}

/// CLIP's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs;
/// whitespace is dropped.
fn split_words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let len = if let Some(contraction) = CONTRACTIONS.iter().find(|s| rest.starts_with(**s)) {
            contraction.len()
        } else if is_letter(c) {
            run_length(rest, is_letter)
        } else if c.is_numeric() {
            c.len_utf8()
        } else if is_punctuation(c) {
            run_length(rest, is_punctuation)
        } else {
            rest = &rest[c.len_utf8()..];
            continue;
        };
        words.push(&rest[..len]);
        rest = &rest[len..];
    }
    words
}

fn run_length(text: &str, keep: fn(char) -> bool) -> usize {
    text.char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(text.len(), |(i, _)| i)
}

/// Collapses whitespace runs to one space and lowercases.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

impl ClipTokenizer {
    /// Loads `tokenizer.json` if the folder has one, else `vocab.json` + `merges.txt`;
    /// the length limit and pad token come from `tokenizer_config.json` when present.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let single_file = dir.join("tokenizer.json");
        let (vocab, merges) = if single_file.exists() {
            Self::read_tokenizer_json(&single_file)?
        } else {
            Self::read_vocab_and_merges(&dir.join("vocab.json"), &dir.join("merges.txt"))?
        };
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfigJson = if config_path.exists() {
            parse_json(&config_path)?
        } else {
            TokenizerConfigJson::default()
        };
        // Tokenizer configs without a limit say 1e30; CLIP's position table has 77.
        let max_length = config
            .model_max_length
            .filter(|&m| (3.0..=1e6).contains(&m))
            .map_or(77, |m| m as usize);
        let pad_text = match config.pad_token {
            Some(SpecialTokenJson::Text(text) | SpecialTokenJson::Added { content: text }) => text,
            None => EOS_TEXT.to_string(),
        };
        Self::new(vocab, merges, &pad_text, max_length, dir)
    }

    fn read_tokenizer_json(path: &Path) -> Result<VocabAndMerges> {
        let parsed: TokenizerJson = parse_json(path)?;
        let merges = parsed
            .model
            .merges
            .into_iter()
            .map(|merge| match merge {
                MergeJson::Pair(a, b) => Ok((a, b)),
                MergeJson::Joined(line) => split_merge_line(&line, path),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((parsed.model.vocab, merges))
    }

    fn read_vocab_and_merges(vocab_path: &Path, merges_path: &Path) -> Result<VocabAndMerges> {
        let vocab: HashMap<String, u32> = parse_json(vocab_path)?;
        let merges = read_text(merges_path)?
            .lines()
            .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
            .map(|line| split_merge_line(line, merges_path))
            .collect::<Result<Vec<_>>>()?;
        Ok((vocab, merges))
    }

    fn new(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        pad_text: &str,
        max_length: usize,
        dir: &Path,
    ) -> Result<Self> {
        let id_of = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| DiffusionError::Tokenizer {
                    path: PathBuf::from(dir),
                    reason: format!("special token `{token}` is not in the vocabulary"),
                })
        };
        let (bos_id, eos_id, pad_id) = (id_of(BOS_TEXT)?, id_of(EOS_TEXT)?, id_of(pad_text)?);
        let merge_ranks = merges
            .into_iter()
            .enumerate()
            .map(|(rank, pair)| (pair, rank))
            .collect();
        Ok(Self {
            vocab,
            merge_ranks,
            byte_chars: byte_alphabet(),
            bos_id,
            eos_id,
            pad_id,
            max_length,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Ids with start and end tokens, no padding or truncation.
    pub fn encode_unpadded(&self, prompt: &str) -> Vec<u32> {
        let mut ids = vec![self.bos_id];
        for (segment, special) in split_special(prompt) {
            match special {
                Some(is_bos) => ids.push(if is_bos { self.bos_id } else { self.eos_id }),
                None => {
                    for word in split_words(&normalize(segment)) {
                        self.encode_word(word, &mut ids);
                    }
                }
            }
        }
        ids.push(self.eos_id);
        ids
    }

    /// Ids padded with the pad token to `max_length`, truncated keeping the end token.
    pub fn encode(&self, prompt: &str) -> Encoding {
        let mut ids = self.encode_unpadded(prompt);
        if ids.len() > self.max_length {
            ids.truncate(self.max_length - 1);
            ids.push(self.eos_id);
        }
        let real = ids.len();
        ids.resize(self.max_length, self.pad_id);
        let attention_mask = (0..self.max_length).map(|i| u32::from(i < real)).collect();
        Encoding {
            ids,
            attention_mask,
        }
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        let mut symbols: Vec<String> = word
            .bytes()
            .map(|b| self.byte_chars[usize::from(b)].to_string())
            .collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str(END_OF_WORD);
        }
        while let Some(position) = self.best_merge(&symbols) {
            let right = symbols.remove(position + 1);
            symbols[position].push_str(&right);
        }
        // Every byte symbol is in CLIP's vocabulary; the unknown token covers foreign vocabs.
        ids.extend(
            symbols
                .iter()
                .map(|s| self.vocab.get(s).copied().unwrap_or(self.eos_id)),
        );
    }

    /// Index of the adjacent pair with the lowest merge rank (leftmost on ties).
    fn best_merge(&self, symbols: &[String]) -> Option<usize> {
        symbols
            .windows(2)
            .enumerate()
            .filter_map(|(i, pair)| {
                self.merge_ranks
                    .get(&(pair[0].clone(), pair[1].clone()))
                    .map(|&rank| (rank, i))
            })
            .min()
            .map(|(_, i)| i)
    }
}

/// Splits out literal `<|startoftext|>` / `<|endoftext|>` (Some(true) / Some(false)).
fn split_special(prompt: &str) -> Vec<(&str, Option<bool>)> {
    let mut parts = Vec::new();
    let mut rest = prompt;
    loop {
        let next = [(BOS_TEXT, true), (EOS_TEXT, false)]
            .iter()
            .filter_map(|&(text, is_bos)| rest.find(text).map(|at| (at, text, is_bos)))
            .min_by_key(|&(at, _, _)| at);
        match next {
            Some((at, text, is_bos)) => {
                parts.push((&rest[..at], None));
                parts.push((text, Some(is_bos)));
                rest = &rest[at + text.len()..];
            }
            None => {
                parts.push((rest, None));
                return parts;
            }
        }
    }
}
