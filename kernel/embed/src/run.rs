//! Running one batch on the loaded session: pad the encodings, run, pool.
//! Used only on the engine's thread; the session is borrowed mutably for
//! the run, so one batch at a time.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::{RunOptions, Session, SessionInputValue};
use ort::value::Tensor;

use crate::engine::{EmbedBatch, Embedding};
use crate::error::EmbedError;
use crate::pool::{l2_normalize, mean_pool};
use crate::registry::{ModelSpec, Normalization};
use crate::runtime::Provider;
use crate::tokenize::{Encoded, TextTokenizer, TokenBatch};

/// One input of a batch: a text the engine tokenizes, or a text its
/// tokenizer has already encoded ([`crate::Engine::encode`]).
#[derive(Debug, Clone)]
pub enum Input {
    Text(String),
    Encoded(Arc<Encoded>),
}

/// What the engine thread owns.
pub(crate) struct Loaded {
    pub(crate) session: Session,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) spec: ModelSpec,
    pub(crate) provider: Provider,
}

impl Loaded {
    /// Embeds `inputs` as one batch.
    pub(crate) fn run_inputs(
        &mut self,
        inputs: &[Input],
        run_options: Option<&RunOptions>,
    ) -> Result<EmbedBatch, EmbedError> {
        let started = Instant::now();
        let mut owned = Vec::new();
        for input in inputs {
            if let Input::Text(text) = input {
                owned.push(self.tokenizer.encode(text)?);
            }
        }
        let mut owned_iter = owned.iter();
        let mut encodings: Vec<&Encoded> = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                Input::Text(_) => encodings.push(owned_iter.next().expect("encoded above")),
                Input::Encoded(encoded) if encoded.tokenizer == self.tokenizer.id() => {
                    encodings.push(encoded)
                }
                Input::Encoded(_) => {
                    return Err(EmbedError::Tokenize(format!(
                        "an input was encoded by another model's tokenizer than `{}`'s",
                        self.spec.name
                    )));
                }
            }
        }
        let tokens = TokenBatch::pad(encodings.into_iter(), self.tokenizer.pad_id());
        let mut batch = self.run_tokens(tokens, run_options)?;
        batch.tokenized = owned.len();
        batch.elapsed = started.elapsed();
        Ok(batch)
    }

    /// Runs a batch of `batch` texts of `seq` tokens each (ordinary
    /// vocabulary ids), for measuring what a shape costs.
    pub(crate) fn run_shape(&mut self, batch: usize, seq: usize) -> Result<(), EmbedError> {
        let mut ids = Vec::with_capacity(seq);
        for column in 0..seq {
            ids.push(match column {
                0 => 101,
                _ if column + 1 == seq => 102,
                _ => 2000 + (column as i64 * 37) % 20_000,
            });
        }
        let encoded = Encoded {
            type_ids: vec![0; seq],
            ids,
            truncated: false,
            tokenizer: self.tokenizer.id(),
        };
        let rows = vec![&encoded; batch];
        let tokens = TokenBatch::pad(rows.into_iter(), self.tokenizer.pad_id());
        self.run_tokens(tokens, None).map(|_| ())
    }

    fn run_tokens(
        &mut self,
        mut tokens: TokenBatch,
        run_options: Option<&RunOptions>,
    ) -> Result<EmbedBatch, EmbedError> {
        let mut batch = EmbedBatch {
            embeddings: Vec::with_capacity(tokens.batch),
            model: self.spec.name.clone(),
            provider: self.provider,
            padded_len: tokens.seq,
            real_tokens: tokens.real_tokens(),
            padded_tokens: tokens.padded_tokens(),
            elapsed: Duration::ZERO,
            tokenized: 0,
        };
        if tokens.batch == 0 {
            return Ok(batch);
        }
        let (rows, seq, dim) = (tokens.batch, tokens.seq, self.spec.dimensions);
        let mask = tokens.attention_mask.clone();
        let inputs = self.session_inputs(&mut tokens)?;
        let inference = |error: ort::Error| EmbedError::Inference(error.to_string());
        let outputs = match run_options {
            Some(run_options) => self.session.run_with_options(inputs, run_options),
            None => self.session.run(inputs),
        }
        .map_err(inference)?;
        let output = outputs
            .get(&self.spec.output)
            .ok_or_else(|| EmbedError::Inference(format!("no output `{}`", self.spec.output)))?;
        let (shape, hidden) = output.try_extract_tensor::<f32>().map_err(inference)?;
        let expected = [rows as i64, seq as i64, dim as i64];
        if shape[..] != expected[..] {
            return Err(EmbedError::Inference(format!(
                "output `{}` has shape {shape:?}, expected {expected:?}",
                self.spec.output
            )));
        }
        let pooled = mean_pool(hidden, &mask, rows, seq, dim);
        for (row, mut vector) in pooled.into_iter().enumerate() {
            if self.spec.normalization == Normalization::L2 {
                l2_normalize(&mut vector);
            }
            batch.embeddings.push(Embedding {
                vector,
                tokens: tokens.lengths[row],
                truncated: tokens.truncated[row],
            });
        }
        Ok(batch)
    }

    fn session_inputs(
        &self,
        tokens: &mut TokenBatch,
    ) -> Result<Vec<(Cow<'static, str>, SessionInputValue<'static>)>, EmbedError> {
        let shape = [tokens.batch, tokens.seq];
        let mut inputs = Vec::with_capacity(self.spec.inputs.len());
        for name in &self.spec.inputs {
            let data = match name.as_str() {
                "input_ids" => std::mem::take(&mut tokens.input_ids),
                "attention_mask" => std::mem::take(&mut tokens.attention_mask),
                _ => std::mem::take(&mut tokens.token_type_ids),
            };
            let tensor = Tensor::from_array((shape, data))
                .map_err(|error| EmbedError::Inference(error.to_string()))?;
            inputs.push((Cow::Owned(name.clone()), SessionInputValue::from(tensor)));
        }
        Ok(inputs)
    }
}
