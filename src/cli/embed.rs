//! `spindle embed`: embeds texts from the command line or a file with the
//! ONNX Runtime engine of `spindle-embed`.
//!
//! Texts on the command line print one JSON line each (or, with
//! `--similarity`, the cosine matrix). `--input FILE --output FILE.jsonl`
//! embeds one text per line and answers every line: a vector, a vector with
//! a truncation warning, or an error (empty line, invalid UTF-8); nothing
//! is skipped silently. Throughput goes to stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use spindle_embed::pool::cosine;
use spindle_embed::{EmbedBatch, Engine, EngineConfig, Provider};

/// Embed texts with a registry model.
///
/// Vectors are unit length (mean pooling, L2 normalisation). Texts longer
/// than the model's maximum are truncated, and said so. Exits 1 when some
/// input line could not be embedded.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  spindle embed \"The cat sits on the mat.\" \"A dog lies on the rug.\"
  spindle embed --similarity \"cat\" \"kitten\" \"stock market\"
  spindle embed --model paraphrase-MiniLM-L3-v2 --provider cuda,cpu \"hello\"
  spindle embed --input sentences.txt --output vectors.jsonl --batch 32")]
pub struct Args {
    /// Texts to embed (unless --input is given).
    texts: Vec<String>,
    /// Model name from `spindle models list` (default: the registry's default).
    #[arg(long, default_value = "")]
    model: String,
    /// Execution providers in order of preference, comma-separated.
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// ONNX Runtime intra-op threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the cosine similarity matrix of the texts instead of vectors.
    #[arg(long)]
    similarity: bool,
    /// Read one text per line from FILE.
    #[arg(long, value_name = "FILE", requires = "output")]
    input: Option<PathBuf>,
    /// Write one JSON object per input line to FILE (with --input).
    #[arg(long, value_name = "FILE.jsonl", requires = "input")]
    output: Option<PathBuf>,
    /// Texts per batch (with --input). Lines are grouped by length within a
    /// window of 64 batches to cut padding; the output keeps the input order.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    batch: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging();
    let providers = Provider::parse_list(&args.provider)?;
    let config = EngineConfig {
        model: args.model.clone(),
        providers,
        intra_threads: args.threads,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config)?;
    match (&args.input, &args.output) {
        (Some(input), Some(output)) => embed_file(&engine, input, output, args.batch as usize),
        _ => {
            anyhow::ensure!(
                !args.texts.is_empty(),
                "give texts to embed, or --input FILE --output FILE.jsonl"
            );
            embed_texts(&engine, &args.texts, args.similarity)
        }
    }
}

/// Logs go to stderr; `SPINDLE_LOG` takes a tracing filter. ONNX Runtime's
/// own log is off by default so that a provider fallback is one warning.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPINDLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,spindle_embed=info,ort=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

fn embed_texts(engine: &Engine, texts: &[String], similarity: bool) -> anyhow::Result<ExitCode> {
    let batch = engine.embed(texts)?;
    for (index, embedding) in batch.embeddings.iter().enumerate() {
        if embedding.truncated {
            eprintln!(
                "warning: text {index} was truncated to {} tokens",
                embedding.tokens
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if similarity {
        let width = 8;
        write!(out, "{:>width$}", "")?;
        for index in 0..texts.len() {
            write!(out, "{:>width$}", format!("[{index}]"))?;
        }
        writeln!(out)?;
        for (row, a) in batch.embeddings.iter().enumerate() {
            write!(out, "{:>width$}", format!("[{row}]"))?;
            for b in &batch.embeddings {
                write!(out, "{:>width$.4}", cosine(&a.vector, &b.vector))?;
            }
            writeln!(out, "  {}", preview(&texts[row]))?;
        }
    } else {
        for (index, embedding) in batch.embeddings.iter().enumerate() {
            let line = OutLine {
                index,
                tokens: Some(embedding.tokens),
                truncated: embedding.truncated.then_some(true),
                vector: Some(&embedding.vector),
                ..OutLine::default()
            };
            writeln!(out, "{}", line.to_json())?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} text(s), {} tokens, model {} on {}, {:.1} ms",
        texts.len(),
        batch.real_tokens,
        batch.model,
        batch.provider,
        batch.elapsed.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

fn preview(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// One output line: `index` first, the vector last, absent fields left out.
#[derive(serde::Serialize, Default)]
struct OutLine<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<&'a [f32]>,
}

impl OutLine<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One input line, classified.
enum Line {
    Text(String),
    Invalid(String),
}

fn classify(bytes: &[u8]) -> Line {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Err(error) => Line::Invalid(format!("invalid UTF-8 at byte {}", error.valid_up_to())),
        Ok(text) if text.trim().is_empty() => Line::Invalid("empty line".to_string()),
        Ok(text) => Line::Text(text.to_string()),
    }
}

#[derive(Default)]
struct Totals {
    lines: usize,
    vectors: usize,
    errors: usize,
    truncated: usize,
    real_tokens: usize,
    padded_tokens: usize,
    busy: Duration,
}

fn embed_file(
    engine: &Engine,
    input: &Path,
    output: &Path,
    batch_size: usize,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let mut raw_lines: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    if raw_lines.last().is_some_and(|line| line.is_empty()) {
        raw_lines.pop(); // the final newline ends the last line; it does not start one
    }
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = BufWriter::new(file);
    let mut totals = Totals {
        lines: raw_lines.len(),
        ..Totals::default()
    };
    let started = Instant::now();
    let max_tokens = engine.info().max_seq_length;
    let window = batch_size * 64;
    for (window_index, chunk) in raw_lines.chunks(window).enumerate() {
        let first = window_index * window;
        let lines: Vec<Line> = chunk.iter().map(|bytes| classify(bytes)).collect();
        let mut answers: Vec<Option<String>> = vec![None; lines.len()];
        // Group similar lengths to cut padding; answers go back in input order.
        let mut order: Vec<usize> = (0..lines.len())
            .filter(|&i| matches!(lines[i], Line::Text(_)))
            .collect();
        order.sort_by_key(|&i| match &lines[i] {
            Line::Text(text) => text.len(),
            Line::Invalid(_) => 0,
        });
        for group in order.chunks(batch_size) {
            let texts: Vec<&str> = group
                .iter()
                .map(|&i| match &lines[i] {
                    Line::Text(text) => text.as_str(),
                    Line::Invalid(_) => "",
                })
                .collect();
            match engine.embed(&texts) {
                Ok(batch) => {
                    record_batch(&batch, group, first, max_tokens, &mut answers, &mut totals)
                }
                Err(error) => {
                    for &i in group {
                        let line = OutLine {
                            index: first + i,
                            error: Some(error.to_string()),
                            ..OutLine::default()
                        };
                        answers[i] = Some(line.to_json());
                        totals.errors += 1;
                    }
                }
            }
        }
        for (i, line) in lines.iter().enumerate() {
            if let Line::Invalid(reason) = line {
                eprintln!("line {}: error: {reason}", first + i + 1);
                let line = OutLine {
                    index: first + i,
                    error: Some(reason.clone()),
                    ..OutLine::default()
                };
                answers[i] = Some(line.to_json());
                totals.errors += 1;
            }
        }
        for answer in answers.into_iter().flatten() {
            writeln!(out, "{answer}")?;
        }
    }
    out.flush()?;
    report(engine, &totals, started.elapsed(), batch_size, output);
    Ok(if totals.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn record_batch(
    batch: &EmbedBatch,
    group: &[usize],
    first: usize,
    max_tokens: usize,
    answers: &mut [Option<String>],
    totals: &mut Totals,
) {
    totals.real_tokens += batch.real_tokens;
    totals.padded_tokens += batch.padded_tokens;
    totals.busy += batch.elapsed;
    for (embedding, &i) in batch.embeddings.iter().zip(group) {
        let mut line = OutLine {
            index: first + i,
            tokens: Some(embedding.tokens),
            vector: Some(&embedding.vector),
            ..OutLine::default()
        };
        if embedding.truncated {
            let warning = format!("truncated to the model's maximum of {max_tokens} tokens");
            eprintln!("line {}: warning: {warning}", first + i + 1);
            line.truncated = Some(true);
            line.warning = Some(warning);
            totals.truncated += 1;
        }
        answers[i] = Some(line.to_json());
        totals.vectors += 1;
    }
}

fn report(engine: &Engine, totals: &Totals, elapsed: Duration, batch_size: usize, output: &Path) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "{} line(s): {} vector(s), {} truncated, {} error(s) -> {}",
        totals.lines,
        totals.vectors,
        totals.truncated,
        totals.errors,
        output.display()
    );
    eprintln!(
        "{:.1} sentences/s, {:.0} tokens/s ({} real tokens; {:.0} padded tokens/s) in {:.2} s; model {} on {}, batch {batch_size}, {} thread(s)",
        totals.vectors as f64 / seconds,
        totals.real_tokens as f64 / seconds,
        totals.real_tokens,
        totals.padded_tokens as f64 / seconds,
        seconds,
        engine.info().model,
        engine.provider(),
        engine.info().intra_threads,
    );
}
