//! `spindle embed`: embeds texts from the command line or a file with the
//! ONNX Runtime engine of `spindle-embed`.
//!
//! Texts on the command line print one JSON line each (or, with
//! `--similarity`, the cosine matrix). `--input FILE --output FILE.jsonl`
//! embeds one text per line and answers every line: a vector, a vector with
//! a truncation warning, or an error (empty line, invalid UTF-8); nothing
//! is skipped silently. Throughput goes to stderr.
//!
//! File mode streams: it reads a window of lines at a time (a file larger
//! than memory works), tokenizes each line once, orders the window by
//! length so that batches carry little padding, sizes batches by the
//! engine's measured batch costs (unless `--batch` fixes the size), and
//! writes the window's answers in input order before reading on. The next
//! window is read and tokenized while the engine computes this one.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use spindle_embed::pool::cosine;
use spindle_embed::{
    BatchCosts, Calibration, EmbedBatch, EmbedError, Encoded, Engine, EngineConfig, Input, Provider,
};
use spindle_scheduler::batch_plan::{BatchCost, PlanLimits, fastest_size};

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
  spindle embed --input sentences.txt --output vectors.jsonl
  spindle embed --input sentences.txt --output vectors.jsonl --batch 32
  spindle embed --input sentences.txt --output vectors.jsonl --sessions 2 --threads 1")]
pub struct Args {
    /// Texts to embed (unless --input is given).
    texts: Vec<String>,
    /// Model name from `spindle models list` (default: the registry's default).
    #[arg(long, default_value = "")]
    model: String,
    /// Execution providers in order of preference, comma-separated.
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// ONNX Runtime intra-op threads of each session (default: the cores
    /// shared out among the sessions).
    #[arg(long)]
    threads: Option<usize>,
    /// Sessions run side by side, each batch on whichever is free (with
    /// --input: two of one thread each do more sentences per second on a
    /// CPU than one of two threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    sessions: u64,
    /// Print the cosine similarity matrix of the texts instead of vectors.
    #[arg(long)]
    similarity: bool,
    /// Read one text per line from FILE.
    #[arg(long, value_name = "FILE", requires = "output")]
    input: Option<PathBuf>,
    /// Write one JSON object per input line to FILE (with --input).
    #[arg(long, value_name = "FILE.jsonl", requires = "input")]
    output: Option<PathBuf>,
    /// Texts per batch (with --input); by default each batch gets the size
    /// the engine measured to be fastest for its length. Lines are ordered
    /// by length within a window of 2,048 lines to cut padding; the output
    /// keeps the input order.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    batch: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging();
    let providers = Provider::parse_list(&args.provider)?;
    let file_mode = args.input.is_some();
    let config = EngineConfig {
        model: args.model.clone(),
        providers,
        intra_threads: args.threads,
        sessions: args.sessions as usize,
        // Batch sizes from measurement, kept in the cache after the first run.
        calibration: if file_mode && args.batch.is_none() {
            Calibration::Cached
        } else {
            Calibration::Off
        },
        ..EngineConfig::default()
    };
    let engine = Engine::start(config)?;
    match (&args.input, &args.output) {
        (Some(input), Some(output)) => {
            let sizing = match args.batch {
                Some(size) => Sizing::Fixed(size as usize),
                None => Sizing::Measured(engine.batch_costs()),
            };
            embed_file(&engine, input, output, sizing)
        }
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
    batches: usize,
}

/// How file mode sizes its batches.
enum Sizing {
    /// `--batch N`.
    Fixed(usize),
    /// The size the engine measured to be fastest for each batch's length
    /// (16 when it has no measurement).
    Measured(Option<Arc<BatchCosts>>),
}

impl Sizing {
    fn size_for(&self, seq: usize) -> usize {
        match self {
            Sizing::Fixed(size) => *size,
            Sizing::Measured(None) => 16,
            Sizing::Measured(Some(costs)) => fastest_size(
                seq,
                &PlanLimits {
                    max_batch_tokens: 8192,
                    max_batch_size: 64,
                    min_padding_ratio: 0.0,
                },
                &Measured(costs.clone()),
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Sizing::Fixed(size) => format!("batch {size}"),
            Sizing::Measured(Some(_)) => "batches sized by measured cost".to_string(),
            Sizing::Measured(None) => "batch 16".to_string(),
        }
    }
}

struct Measured(Arc<BatchCosts>);

impl BatchCost for Measured {
    fn seconds(&self, batch: usize, seq: usize) -> f64 {
        self.0.seconds(batch, seq)
    }
}

/// Lines read and tokenized per window: the unit of ordering by length and
/// of memory use.
const WINDOW: usize = 2048;

/// A window of input lines, tokenized.
struct Window {
    /// Index of its first line in the file.
    first: usize,
    lines: Vec<Line>,
    /// The encoding of each text line (`None` for invalid lines, or when the
    /// tokenizer rejected it: its error).
    encoded: Vec<Option<Result<Arc<Encoded>, EmbedError>>>,
}

/// Reads the next window of up to [`WINDOW`] lines (without their `\n`)
/// and tokenizes its text lines. `None` at the end of the input.
fn read_window(
    reader: &mut impl BufRead,
    first: usize,
    engine: &Engine,
) -> anyhow::Result<Option<Window>> {
    let mut lines = Vec::new();
    let mut buffer = Vec::new();
    while lines.len() < WINDOW {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        }
        lines.push(classify(&buffer));
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let encoded = lines
        .iter()
        .map(|line| match line {
            Line::Text(text) => Some(engine.encode(text).map(Arc::new)),
            Line::Invalid(_) => None,
        })
        .collect();
    Ok(Some(Window {
        first,
        lines,
        encoded,
    }))
}

/// A window's batches, submitted to the engine; answers arrive on `replies`
/// tagged with the batch's line indices.
struct InFlight {
    window: Window,
    replies: mpsc::Receiver<(Vec<usize>, Result<EmbedBatch, EmbedError>)>,
    batches: usize,
}

/// Orders `window`'s text lines by length, cuts them into batches and
/// submits them all; the engine computes them while the caller reads on.
fn submit_window(engine: &Engine, window: Window, sizing: &Sizing) -> InFlight {
    let mut order: Vec<usize> = (0..window.lines.len())
        .filter(|&i| matches!(window.encoded[i], Some(Ok(_))))
        .collect();
    order.sort_by_key(|&i| match &window.encoded[i] {
        Some(Ok(encoded)) => encoded.len(),
        _ => 0,
    });
    let length = |i: usize| match &window.encoded[i] {
        Some(Ok(encoded)) => encoded.len(),
        _ => 0,
    };
    let (sender, replies) = mpsc::channel();
    let mut batches = 0;
    let mut start = 0;
    while start < order.len() {
        // Sized for the longest length the batch would reach.
        let mut size = sizing.size_for(length(order[start])).max(1);
        let end = (start + size).min(order.len());
        size = sizing
            .size_for(length(order[end - 1]))
            .max(1)
            .min(end - start);
        let group: Vec<usize> = order[start..start + size].to_vec();
        start += size;
        let inputs = group
            .iter()
            .map(|&i| match &window.encoded[i] {
                Some(Ok(encoded)) => Input::Encoded(encoded.clone()),
                _ => Input::Text(String::new()),
            })
            .collect();
        let sender = sender.clone();
        engine.submit_inputs(
            inputs,
            Box::new(move |result| {
                let _ = sender.send((group, result));
            }),
        );
        batches += 1;
    }
    InFlight {
        window,
        replies,
        batches,
    }
}

/// Waits for a window's batches and writes its answers in input order.
fn finish_window(
    in_flight: InFlight,
    max_tokens: usize,
    out: &mut impl Write,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let InFlight {
        window,
        replies,
        batches,
    } = in_flight;
    let first = window.first;
    let mut answers: Vec<Option<String>> = vec![None; window.lines.len()];
    for _ in 0..batches {
        let (group, result) = replies
            .recv()
            .map_err(|_| anyhow::anyhow!("the embedding engine stopped"))?;
        totals.batches += 1;
        match result {
            Ok(batch) => record_batch(&batch, &group, first, max_tokens, &mut answers, totals),
            Err(error) => {
                for &i in &group {
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
    for (i, line) in window.lines.iter().enumerate() {
        let reason = match (line, &window.encoded[i]) {
            (Line::Invalid(reason), _) => reason.clone(),
            (Line::Text(_), Some(Err(error))) => error.to_string(),
            _ => continue,
        };
        eprintln!("line {}: error: {reason}", first + i + 1);
        let line = OutLine {
            index: first + i,
            error: Some(reason),
            ..OutLine::default()
        };
        answers[i] = Some(line.to_json());
        totals.errors += 1;
    }
    for answer in answers.into_iter().flatten() {
        writeln!(out, "{answer}")?;
    }
    Ok(())
}

fn embed_file(
    engine: &Engine,
    input: &Path,
    output: &Path,
    sizing: Sizing,
) -> anyhow::Result<ExitCode> {
    let file = File::open(input).with_context(|| format!("reading {}", input.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let out_file =
        File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = BufWriter::new(out_file);
    let mut totals = Totals::default();
    let started = Instant::now();
    let max_tokens = engine.info().max_seq_length;
    let read = |reader: &mut BufReader<File>, first: usize| {
        read_window(reader, first, engine).with_context(|| format!("reading {}", input.display()))
    };
    let mut next = read(&mut reader, 0)?;
    while let Some(window) = next.take() {
        let lines = window.lines.len();
        totals.lines += lines;
        let first = window.first;
        let in_flight = submit_window(engine, window, &sizing);
        // Read and tokenize the next window while the engine computes.
        next = read(&mut reader, first + lines)?;
        finish_window(in_flight, max_tokens, &mut out, &mut totals)?;
    }
    out.flush()?;
    report(engine, &totals, started.elapsed(), &sizing, output);
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

fn report(engine: &Engine, totals: &Totals, elapsed: Duration, sizing: &Sizing, output: &Path) {
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
        "{:.1} sentences/s, {:.0} tokens/s ({} real tokens; {:.0} padded tokens/s, padding ratio {:.3}) in {:.2} s; model {} on {}, {} ({} batches), {} session(s) of {} thread(s)",
        totals.vectors as f64 / seconds,
        totals.real_tokens as f64 / seconds,
        totals.real_tokens,
        totals.padded_tokens as f64 / seconds,
        totals.real_tokens as f64 / totals.padded_tokens.max(1) as f64,
        seconds,
        engine.info().model,
        engine.provider(),
        sizing.describe(),
        totals.batches,
        engine.info().sessions,
        engine.info().intra_threads,
    );
}
