//! Every script in `examples/` evaluates to a valid graph: an example with
//! an error diagnostic fails the build. Warnings are allowed (they keep the
//! graph valid) and printed. Only the top-level `.lua` files are scripts:
//! other files are helpers the examples run (`quiet_http_server.py`), and
//! folders would hold modules they `require`.

use std::path::Path;

use spindle_scripting::{Severity, evaluate_file};

#[test]
fn every_example_evaluates_to_a_valid_graph() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .expect("examples/ exists");
    let mut scripts: Vec<_> = std::fs::read_dir(&folder)
        .expect("examples/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "lua"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scripts in {}", folder.display());
    let mut failures = Vec::new();
    for script in &scripts {
        let evaluation = evaluate_file(script);
        for diagnostic in &evaluation.diagnostics {
            println!("{diagnostic}");
        }
        let has_errors = evaluation
            .diagnostics
            .iter()
            .any(|diagnostic| diagnostic.severity == Severity::Error);
        match &evaluation.graph {
            Some(graph) if !has_errors => {
                println!(
                    "{}: {} service(s), {} pipeline(s)",
                    script.display(),
                    graph.services.len(),
                    graph.pipelines.len()
                );
            }
            _ => failures.push(script.display().to_string()),
        }
    }
    assert!(failures.is_empty(), "examples with errors: {failures:?}");
}
