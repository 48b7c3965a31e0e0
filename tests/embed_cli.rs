//! End-to-end tests of `spindle embed` and `spindle models` against the real
//! ONNX Runtime library and models in the cache (filled by
//! `python3 scripts/fetch_models.py --all --venv`; the binary and these tests
//! resolve the cache the same way: $SPINDLE_CACHE, $XDG_CACHE_HOME/spindle,
//! ~/.cache/spindle). Children's output is read with a bound
//! (`support::output`), so a wedged child fails its test instead of hanging.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn spindle(args: &[&str]) -> Output {
    support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .args(args)
            .env("SPINDLE_LOG", "warn,spindle_embed=info,ort=off")
            .env("NO_COLOR", "1"),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spindle-embed-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `spindle embed` in file mode on the small model, one thread per session,
/// `extra` arguments after; its output and the answers it wrote.
fn embed_file(input: &Path, output: &Path, extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut args = vec![
        "embed",
        "--model",
        "paraphrase-MiniLM-L3-v2",
        "--threads",
        "1",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = spindle(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let answers = std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (run, answers)
}

fn vector(line: &serde_json::Value) -> Vec<f64> {
    line["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn embed_prints_one_unit_vector_per_text() {
    let output = spindle(&[
        "embed",
        "The cat sits on the mat.",
        "Москва — столица России. 🙂",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], index);
        let vector = vector(line);
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("embedding session ready on cpu"),
        "{stderr}"
    );
    assert!(stderr.contains("model all-MiniLM-L6-v2 on cpu"), "{stderr}");
}

#[test]
fn similarity_matrix_ranks_related_texts_higher() {
    let output = spindle(&[
        "embed",
        "--similarity",
        "a small cat",
        "a little kitten",
        "the stock market fell",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let rows: Vec<Vec<f64>> = stdout
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .take(3)
                .map(|x| x.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (i, row) in rows.iter().enumerate() {
        assert!((row[i] - 1.0).abs() < 1e-3, "{stdout}");
    }
    assert!(
        rows[0][1] > rows[0][2] + 0.2,
        "cat~kitten should beat cat~stocks:\n{stdout}"
    );
}

#[test]
fn file_mode_answers_every_line() {
    let dir = temp_dir("file");
    let input = dir.join("in.txt");
    let output_path = dir.join("out.jsonl");
    let long = "word ".repeat(400);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        b"The cat sits on the mat.\n\nA man plays a guitar.\r\n\xff\xfe bad bytes\n   \n",
    );
    bytes.extend_from_slice(long.as_bytes());
    bytes.extend_from_slice(b"\nlast line without newline");
    std::fs::write(&input, bytes).unwrap();
    let output = spindle(&[
        "embed",
        "--model",
        "paraphrase-MiniLM-L3-v2",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output_path.to_str().unwrap(),
        "--batch",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1), "errors make exit code 1");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output_path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let indices: Vec<u64> = lines
        .iter()
        .map(|line| line["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indices,
        vec![0, 1, 2, 3, 4, 5, 6],
        "one answer per line, in order"
    );
    assert_eq!(lines[1]["error"], "empty line");
    assert_eq!(lines[3]["error"], "invalid UTF-8 at byte 0");
    assert_eq!(lines[4]["error"], "empty line");
    assert_eq!(lines[5]["truncated"], true);
    assert_eq!(lines[5]["tokens"], 128);
    assert_eq!(
        lines[5]["warning"],
        "truncated to the model's maximum of 128 tokens"
    );
    for index in [0, 2, 5, 6] {
        assert_eq!(vector(&lines[index]).len(), 384);
    }
    let stderr = text(&output.stderr);
    for expected in [
        "line 2: error: empty line",
        "line 4: error: invalid UTF-8 at byte 0",
        "line 6: warning: truncated",
        "7 line(s): 4 vector(s), 1 truncated, 3 error(s)",
        "sentences/s",
        "tokens/s",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// More lines than one window (2,048), of lengths that alternate, with
/// duplicates far apart: every line is answered once, in input order, and
/// a line's vector does not depend on where it was batched.
#[test]
fn file_mode_streams_windows_and_keeps_input_order() {
    let dir = temp_dir("stream");
    let input = dir.join("in.txt");
    let output_path = dir.join("out.jsonl");
    let words = [
        "queue", "batch", "token", "river", "music", "garden", "engine",
    ];
    let lines: Vec<String> = (0..2300)
        .map(|i| {
            let length = if i % 2 == 0 { 1 + i % 3 } else { 8 + i % 11 };
            (0..length)
                .map(|w| words[(i / 2 + w) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (output, answers) = embed_file(&input, &output_path, &[]);
    assert_eq!(answers.len(), lines.len());
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(answer["index"].as_u64(), Some(index as u64));
    }
    // The same text in another window and another batch: the same vector.
    let twin = (1..lines.len())
        .find(|&j| j >= 2048 && lines[j] == lines[0])
        .expect("a repeat of line 0 in the second window");
    let (a, b) = (vector(&answers[0]), vector(&answers[twin]));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(dot >= 0.999, "line 0 and line {twin}: cosine {dot}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("2300 line(s): 2300 vector(s)"), "{stderr}");
    assert!(stderr.contains("padding ratio"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// With two sessions the batches of a window run two at a time; every line
/// still gets its answer, in input order, with the vector one session gives.
#[test]
fn file_mode_with_two_sessions_answers_like_one() {
    let dir = temp_dir("sessions");
    let input = dir.join("in.txt");
    let words = ["queue", "batch", "token", "river", "music", "garden"];
    let lines: Vec<String> = (0..300)
        .map(|i| {
            (0..1 + i % 17)
                .map(|w| words[(i + w) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let run = |sessions: &str| {
        let output_path = dir.join(format!("out-{sessions}.jsonl"));
        let (output, answers) = embed_file(&input, &output_path, &["--sessions", sessions]);
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("{sessions} session(s) of 1 thread(s)")),
            "{stderr}"
        );
        answers
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!((one.len(), two.len()), (lines.len(), lines.len()));
    for (index, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(b["index"].as_u64(), Some(index as u64));
        assert_eq!(a["tokens"], b["tokens"], "line {index}");
        let dot: f64 = vector(a).iter().zip(vector(b)).map(|(x, y)| x * y).sum();
        assert!(dot >= 0.9999, "line {index}: cosine {dot}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cuda_request_falls_back_to_cpu_with_one_warning() {
    let output = spindle(&[
        "embed",
        "--provider",
        "cuda,cpu",
        "--model",
        "paraphrase-MiniLM-L3-v2",
        "hello",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("execution provider cpu used instead of the preferred one: cuda:"),
        "{stderr}"
    );
    assert!(stderr.contains("on cpu"), "{stderr}");
}

#[test]
fn unknown_model_is_a_clear_error() {
    let output = spindle(&["embed", "--model", "all-MiniLM-L12-v2", "x"]);
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(text(&output.stderr), @r"
    spindle: error: unknown model `all-MiniLM-L12-v2`
      hint: known models are all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2, all-MiniLM-L6-v2-fp32, all-MiniLM-L6-v2-fused, all-MiniLM-L6-v2-int8 (see `spindle models list`)
    ");
}

#[test]
fn empty_cache_names_the_fetch_command() {
    let dir = temp_dir("empty-cache");
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .args(["embed", "x"])
            .env("SPINDLE_CACHE", &dir),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr).replace(&dir.display().to_string(), "[CACHE]");
    insta::assert_snapshot!(stderr, @r"
    spindle: error: model `all-MiniLM-L6-v2` is not fetched: [CACHE]/models/all-MiniLM-L6-v2/model.onnx is missing
      hint: fetch it with `python3 scripts/fetch_models.py --model all-MiniLM-L6-v2`
    ");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn models_list_shows_models_and_providers() {
    let output = spindle(&["models", "list"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "all-MiniLM-L6-v2 *",
        "paraphrase-MiniLM-L3-v2",
        " 384 ",
        " 256 ",
        " 128 ",
        "yes",
        "providers: cpu (available)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn models_list_on_an_empty_cache_says_not_fetched() {
    let dir = temp_dir("list-empty");
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .args(["models", "list"])
            .env("SPINDLE_CACHE", &dir),
    );
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("no (3 missing)") && stdout.contains("no (2 missing)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("providers: unknown: no ONNX Runtime library fetched"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_has_examples() {
    for args in [
        &["embed", "--help"][..],
        &["models", "--help"],
        &["models", "list", "--help"],
        &["models", "fetch", "--help"],
    ] {
        let output = spindle(args);
        assert!(output.status.success());
        let stdout = text(&output.stdout);
        assert!(stdout.contains("Example"), "{args:?}:\n{stdout}");
    }
}

/// `spindle` and `scripts/fetch_models.py` find the same cache under each
/// of the three rules ($SPINDLE_CACHE, $XDG_CACHE_HOME/spindle, ~/.cache/spindle).
#[test]
fn binary_and_fetch_script_resolve_the_same_cache() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("SPINDLE_CACHE", "/tmp/spindle-a"),
            ("XDG_CACHE_HOME", "/tmp/xdg"),
            ("HOME", "/tmp/home"),
        ],
        &[("XDG_CACHE_HOME", "/tmp/xdg"), ("HOME", "/tmp/home")],
        &[("HOME", "/tmp/home")],
    ];
    for vars in cases {
        let configure = |command: &mut Command| {
            command
                .env_remove("SPINDLE_CACHE")
                .env_remove("XDG_CACHE_HOME");
            for (name, value) in vars {
                command.env(name, value);
            }
        };
        let mut binary = Command::new(env!("CARGO_BIN_EXE_spindle"));
        binary.args(["models", "list"]);
        configure(&mut binary);
        let listed = text(&support::output(&mut binary).stdout);
        let mut script = Command::new("python3");
        script
            .current_dir(repo)
            .args(["scripts/fetch_models.py", "--print-cache"]);
        configure(&mut script);
        let printed = text(&support::output(&mut script).stdout);
        let expected = match vars.len() {
            3 => "/tmp/spindle-a",
            2 => "/tmp/xdg/spindle",
            _ => "/tmp/home/.cache/spindle",
        };
        assert_eq!(
            listed.lines().next().unwrap(),
            format!("cache: {expected}"),
            "{vars:?}"
        );
        assert_eq!(printed.trim(), expected, "{vars:?}");
    }
}
