//! Tokenizing with the `tokenizers` crate, once per text.
//!
//! The `tokenizer.json` shipped with all-MiniLM-L6-v2 pads every input to a
//! fixed 128 tokens and truncates at 128; both settings are replaced here:
//! no padding inside the tokenizer (a batch is padded to its longest input
//! when it is assembled) and truncation at the model's own maximum sequence
//! length from its sentence-transformers configuration.
//!
//! A text is tokenized once: [`TextTokenizer::encode`] makes an [`Encoded`]
//! on the caller's thread (the kernel does it off the Lua thread, before the
//! batcher needs the length), and the engine pads encodings into a
//! [`TokenBatch`] without tokenizing again. Each loaded tokenizer has an id,
//! so an engine can tell an encoding of its own vocabulary from another's.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::EmbedError;

/// A tokenizer set up for one model; clones share its id.
#[derive(Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pad_id: i64,
    max_seq_length: usize,
    id: TokenizerId,
}

/// Which loaded tokenizer made an [`Encoded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenizerId(u64);

/// One text, tokenized: what the model sees of it, unpadded.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids, `[CLS]` and `[SEP]` included.
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// Whether the text was cut at the model's maximum sequence length.
    pub truncated: bool,
    /// The tokenizer that made it.
    pub tokenizer: TokenizerId,
}

impl Encoded {
    /// Tokens the model computes for this text.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
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
    /// Pads `encodings` to the longest of them with `pad_id`.
    pub fn pad<'a>(
        encodings: impl ExactSizeIterator<Item = &'a Encoded> + Clone,
        pad_id: i64,
    ) -> TokenBatch {
        let batch = encodings.len();
        let seq = encodings.clone().map(Encoded::len).max().unwrap_or(0);
        let mut token_batch = TokenBatch {
            input_ids: vec![pad_id; batch * seq],
            attention_mask: vec![0; batch * seq],
            token_type_ids: vec![0; batch * seq],
            batch,
            seq,
            lengths: Vec::with_capacity(batch),
            truncated: Vec::with_capacity(batch),
        };
        for (row, encoded) in encodings.enumerate() {
            let start = row * seq;
            let length = encoded.len();
            token_batch.input_ids[start..start + length].copy_from_slice(&encoded.ids);
            token_batch.token_type_ids[start..start + length].copy_from_slice(&encoded.type_ids);
            token_batch.attention_mask[start..start + length].fill(1);
            token_batch.lengths.push(length);
            token_batch.truncated.push(encoded.truncated);
        }
        token_batch
    }

    /// Tokens that carry text (and `[CLS]`/`[SEP]`).
    pub fn real_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// Tokens the model computes, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.batch * self.seq
    }
}

static NEXT_TOKENIZER: AtomicU64 = AtomicU64::new(1);

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
            id: TokenizerId(NEXT_TOKENIZER.fetch_add(1, Ordering::Relaxed)),
        })
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn id(&self) -> TokenizerId {
        self.id
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// How many tokens `text` becomes (special tokens included, after
    /// truncation), without padding.
    pub fn count(&self, text: &str) -> Result<usize, EmbedError> {
        self.encode(text).map(|encoded| encoded.len())
    }

    /// Tokenizes one text (special tokens included, truncated at the
    /// model's maximum), unpadded.
    pub fn encode(&self, text: &str) -> Result<Encoded, EmbedError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|error| EmbedError::Tokenize(error.to_string()))?;
        Ok(Encoded {
            ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
            type_ids: encoding
                .get_type_ids()
                .iter()
                .map(|&id| i64::from(id))
                .collect(),
            truncated: !encoding.get_overflowing().is_empty(),
            tokenizer: self.id,
        })
    }

    /// Tokenizes `texts` and pads them to the longest one. One at a time on
    /// this thread: the batch variant of `tokenizers` spreads over a rayon
    /// pool that would compete with ONNX Runtime's threads.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch, EmbedError> {
        let encodings = texts
            .iter()
            .map(|text| self.encode(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TokenBatch::pad(encodings.iter(), self.pad_id))
    }
}
