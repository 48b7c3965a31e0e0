//! Tokenizing a batch with the `tokenizers` crate.
//!
//! The `tokenizer.json` shipped with all-MiniLM-L6-v2 pads every input to a
//! fixed 128 tokens and truncates at 128; both settings are replaced here:
//! no padding inside the tokenizer (the batch is padded to its longest
//! input below) and truncation at the model's own maximum sequence length
//! from its sentence-transformers configuration.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::EmbedError;

/// A tokenizer set up for one model.
#[derive(Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pad_id: i64,
    max_seq_length: usize,
}

/// A padded batch, row-major `[batch, seq]`, ready for ONNX Runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub batch: usize,
    /// Length of the longest input, which every row is padded to.
    pub seq: usize,
    /// Real tokens per input, special tokens included.
    pub lengths: Vec<usize>,
    /// Whether each input was cut at the maximum sequence length.
    pub truncated: Vec<bool>,
}

impl TokenBatch {
    /// Tokens that carry text (and `[CLS]`/`[SEP]`).
    pub fn real_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// Tokens the model computes, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.batch * self.seq
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and applies the model's maximum length.
    pub fn load(path: &Path, max_seq_length: usize) -> Result<TextTokenizer, String> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|error| error.to_string())?;
        let pad_id = tokenizer
            .get_padding()
            .map_or(0, |padding| i64::from(padding.pad_id));
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|error| error.to_string())?;
        Ok(TextTokenizer {
            tokenizer,
            pad_id,
            max_seq_length,
        })
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// How many tokens `text` becomes (special tokens included, after
    /// truncation), without padding.
    pub fn count(&self, text: &str) -> Result<usize, EmbedError> {
        self.tokenizer
            .encode_fast(text, true)
            .map(|encoding| encoding.get_ids().len())
            .map_err(|error| EmbedError::Tokenize(error.to_string()))
    }

    /// Tokenizes `texts` and pads them to the longest one.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch, EmbedError> {
        let mut encodings = Vec::with_capacity(texts.len());
        for text in texts {
            // One at a time on this thread: the batch variant spreads over a
            // rayon pool that would compete with ONNX Runtime's threads.
            let encoding = self
                .tokenizer
                .encode_fast(text.as_ref(), true)
                .map_err(|error| EmbedError::Tokenize(error.to_string()))?;
            encodings.push(encoding);
        }
        let seq = encodings
            .iter()
            .map(|encoding| encoding.get_ids().len())
            .max()
            .unwrap_or(0);
        let batch = encodings.len();
        let mut token_batch = TokenBatch {
            input_ids: vec![self.pad_id; batch * seq],
            attention_mask: vec![0; batch * seq],
            token_type_ids: vec![0; batch * seq],
            batch,
            seq,
            lengths: Vec::with_capacity(batch),
            truncated: Vec::with_capacity(batch),
        };
        for (row, encoding) in encodings.iter().enumerate() {
            let start = row * seq;
            for (column, ((id, type_id), mask)) in encoding
                .get_ids()
                .iter()
                .zip(encoding.get_type_ids())
                .zip(encoding.get_attention_mask())
                .enumerate()
            {
                token_batch.input_ids[start + column] = i64::from(*id);
                token_batch.token_type_ids[start + column] = i64::from(*type_id);
                token_batch.attention_mask[start + column] = i64::from(*mask);
            }
            token_batch.lengths.push(encoding.get_ids().len());
            token_batch
                .truncated
                .push(!encoding.get_overflowing().is_empty());
        }
        Ok(token_batch)
    }
}
