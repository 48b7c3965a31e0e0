//! Notebook cells on a real script host: values of trailing expressions,
//! streams in batches, errors naming the cell and line, globals kept across
//! cells, an interrupt that keeps the state, a cell that waits on its
//! effects while the host goes on, `io.read`, completion, inspection and
//! `s.help`'s pages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use spindle_scripting::{
    CellAnswer, CellErrorKind, CellEvent, CellRequest, CellStreams, CellSubmission, Completeness,
    Completion, Data, DataReply, Effects, EmbedCall, EmbedReply, Inspection, KernelQuery,
    NotebookJob, ScriptHost, StreamName, cell_completeness,
};

/// Effects of a notebook: submissions wait until the test answers them.
#[derive(Default)]
struct CellEffects {
    held: Mutex<Vec<(CellSubmission, DataReply)>>,
    submitted: Mutex<Option<mpsc::Sender<String>>>,
}

impl Effects for CellEffects {
    fn embed(&self, _call: EmbedCall, reply: EmbedReply) {
        reply(Err(spindle_scripting::EmbedFailure::new(
            spindle_scripting::HostEmbedError("no engine".to_owned()),
        )));
    }

    fn submit(&self, submission: CellSubmission, reply: DataReply) {
        let text = submission.text.clone();
        self.held.lock().unwrap().push((submission, reply));
        if let Some(sender) = &*self.submitted.lock().unwrap() {
            let _ = sender.send(text);
        }
    }

    fn query(&self, query: KernelQuery, reply: DataReply) {
        reply(Ok(Data::record(
            None,
            vec![("asked", Data::text(format!("{query:?}")))],
        )));
    }
}

impl CellEffects {
    fn answer_all(&self) {
        for (submission, reply) in self.held.lock().unwrap().drain(..) {
            reply(Ok(Data::record(
                Some("spindle.answer"),
                vec![
                    ("outcome", Data::text("ok")),
                    ("text", Data::text(submission.text.to_uppercase())),
                    ("vector", Data::Vector(vec![1.0, 0.0])),
                ],
            )));
        }
    }
}

struct Notebook {
    host: ScriptHost,
    effects: Arc<CellEffects>,
    dir: tempfile::TempDir,
    count: u32,
}

impl Notebook {
    fn new() -> Notebook {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notebook.lua");
        std::fs::write(&script, "local s = require(\"spindle\")\n").unwrap();
        let (host, evaluation) = ScriptHost::start(&script).unwrap();
        assert!(!evaluation.has_errors(), "{:?}", evaluation.diagnostics);
        Notebook {
            host,
            effects: Arc::default(),
            dir,
            count: 0,
        }
    }

    fn path(&self, count: u32) -> PathBuf {
        self.dir.path().join(format!("cell{count}.lua"))
    }

    /// Starts a cell; its events and answer arrive on the receivers.
    fn start(&mut self, code: &str) -> (mpsc::Receiver<CellEvent>, mpsc::Receiver<CellAnswer>) {
        self.count += 1;
        let (events, event_receiver) = mpsc::channel();
        let events = Mutex::new(events);
        let (answer, answer_receiver) = mpsc::channel();
        self.host.notebook(NotebookJob::Execute {
            cell: CellRequest {
                code: code.to_owned(),
                path: self.path(self.count),
                allow_stdin: true,
                user_expressions: vec![("double".to_owned(), "x and x * 2".to_owned())],
            },
            effects: self.effects.clone(),
            streams: CellStreams::new(Arc::new(move |event| {
                let _ = events.lock().unwrap().send(event);
            })),
            reply: Box::new(move |outcome| {
                let _ = answer.send(outcome);
            }),
        });
        (event_receiver, answer_receiver)
    }

    fn run(&mut self, code: &str) -> (Vec<CellEvent>, CellAnswer) {
        let (events, answer) = self.start(code);
        let answer = answer
            .recv_timeout(Duration::from_secs(20))
            .expect("answer");
        (events.try_iter().collect(), answer)
    }

    fn complete(&self, code: &str) -> Completion {
        let (sender, receiver) = mpsc::channel();
        self.host.notebook(NotebookJob::Complete {
            code: code.to_owned(),
            cursor: code.chars().count(),
            reply: Box::new(move |completion| {
                let _ = sender.send(completion);
            }),
        });
        receiver.recv_timeout(Duration::from_secs(20)).unwrap()
    }

    fn inspect(&self, code: &str, cursor: usize) -> Option<Inspection> {
        let (sender, receiver) = mpsc::channel();
        self.host.notebook(NotebookJob::Inspect {
            code: code.to_owned(),
            cursor,
            reply: Box::new(move |found| {
                let _ = sender.send(found);
            }),
        });
        receiver.recv_timeout(Duration::from_secs(20)).unwrap()
    }
}

fn stdout(events: &[CellEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            CellEvent::Stream {
                name: StreamName::Stdout,
                text,
            } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn values_of_trailing_expressions_and_globals_across_cells() {
    let mut notebook = Notebook::new();
    let (_, answer) = notebook.run("1 + 2");
    assert_eq!(answer.outcome, Ok(vec![Data::Integer(3)]));
    let (events, answer) = notebook.run("x = 20\nprint('set', x)\nx + 1");
    assert_eq!(answer.outcome, Ok(vec![Data::Integer(21)]));
    assert_eq!(stdout(&events), "set\t20\n");
    assert_eq!(
        answer.user_expressions,
        vec![("double".to_owned(), Ok(Data::Integer(40)))]
    );
    let (_, answer) = notebook.run("local y = x * 3");
    assert_eq!(answer.outcome, Ok(vec![]));
    let (_, answer) = notebook.run("{ x, 'a', n = { 1 } }");
    let Ok(values) = answer.outcome else {
        panic!("{answer:?}")
    };
    assert_eq!(
        values[0].field("n"),
        Some(&Data::list(vec![Data::Integer(1)]))
    );
}

#[test]
fn errors_name_the_cell_and_line() {
    let mut notebook = Notebook::new();
    let (_, answer) = notebook.run("local a = 1\nlocal b = nil\nreturn a + b");
    let error = answer.outcome.expect_err("fails");
    assert_eq!(error.kind, CellErrorKind::Runtime);
    assert_eq!(error.file, Some(notebook.path(1)));
    assert_eq!(error.line, 3);
    assert!(
        error.message.contains("arithmetic on a nil value"),
        "{error:?}"
    );
    let (_, answer) = notebook.run("x = = 1");
    let error = answer.outcome.expect_err("fails");
    assert_eq!(error.kind, CellErrorKind::Syntax);
    assert_eq!(error.line, 1);
    // A function from an earlier cell fails in that cell.
    notebook.run("function boom()\n  error('boom here')\nend");
    let (_, answer) = notebook.run("boom()");
    let error = answer.outcome.expect_err("fails");
    assert_eq!(error.file, Some(notebook.path(3)));
    assert_eq!(error.line, 2);
    assert!(
        error
            .traceback
            .iter()
            .any(|frame| frame.contains("cell3.lua:2")),
        "{:?}",
        error.traceback
    );
}

#[test]
fn a_flood_of_prints_arrives_in_batches() {
    let mut notebook = Notebook::new();
    let (events, answer) = notebook.run("for i = 1, 20000 do print(i) end");
    assert_eq!(answer.outcome, Ok(vec![]));
    let text = stdout(&events);
    assert_eq!(text.lines().count(), 20000);
    assert!(text.ends_with("19999\n20000\n"));
    let messages = events.len();
    assert!(messages < 200, "{messages} stream events for 20,000 lines");
    let (events, _) = notebook.run("io.write('a', 1, '\\n') io.stderr:write('warn\\n')");
    assert_eq!(stdout(&events), "a1\n");
    assert!(events.iter().any(|event| matches!(
        event,
        CellEvent::Stream { name: StreamName::Stderr, text } if text == "warn\n"
    )));
}

#[test]
fn an_interrupt_stops_a_runaway_cell_and_keeps_the_state() {
    let mut notebook = Notebook::new();
    notebook.run("kept = 'still here'");
    let (_events, answer) = notebook.start("while true do end");
    let interrupter = notebook.host.interrupter();
    let answer = loop {
        interrupter.interrupt();
        if let Ok(answer) = answer.recv_timeout(Duration::from_millis(50)) {
            break answer;
        }
    };
    let error = answer.outcome.expect_err("interrupted");
    assert_eq!(error.kind, CellErrorKind::Interrupted);
    let (_, answer) = notebook.run("kept");
    assert_eq!(answer.outcome, Ok(vec![Data::text("still here")]));
}

#[test]
fn a_cell_waiting_on_a_request_lets_the_host_go_on_and_can_be_cancelled() {
    let mut notebook = Notebook::new();
    let (sender, submitted) = mpsc::channel();
    *notebook.effects.submitted.lock().unwrap() = Some(sender);
    let (_, answer) = notebook.start(
        "local s = require('spindle')\nlocal a = s.submit('p', { text = 'hello', priority = 'high' })\nreturn a.text, #a.vector",
    );
    assert_eq!(
        submitted.recv_timeout(Duration::from_secs(20)).unwrap(),
        "hello"
    );
    // The host answers other jobs while the cell waits.
    assert!(
        notebook
            .complete("pri")
            .matches
            .contains(&"print".to_owned())
    );
    notebook.effects.answer_all();
    let answer = answer.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        answer.outcome,
        Ok(vec![Data::text("HELLO"), Data::Integer(2)])
    );
    // A waiting cell is cancelled by CancelCell.
    let (_, answer) = notebook.start("require('spindle').submit('p', 'never')");
    assert_eq!(
        submitted.recv_timeout(Duration::from_secs(20)).unwrap(),
        "never"
    );
    notebook.host.notebook(NotebookJob::CancelCell);
    let answer = answer.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(answer.outcome.unwrap_err().kind, CellErrorKind::Interrupted);
}

#[test]
fn displays_queries_and_input() {
    let mut notebook = Notebook::new();
    let (events, answer) = notebook.run(
        "local s = require('spindle')\nprint('before')\nlocal id = s.display({ a = 1 }, { id = true })\ns.update_display(id, s.html('<b>x</b>'))\ns.clear_output(true)\nreturn s.status().asked",
    );
    assert_eq!(answer.outcome, Ok(vec![Data::text("Status")]));
    let kinds: Vec<String> = events.iter().map(|event| format!("{event:?}")).collect();
    assert!(
        kinds[0].starts_with("Stream(Stdout, \"before\\n\")"),
        "{kinds:?}"
    );
    assert!(kinds[1].starts_with("Display(") && kinds[1].contains("update=false"));
    assert!(kinds[2].contains("spindle.html") && kinds[2].contains("update=true"));
    assert_eq!(kinds[3], "ClearOutput(wait=true)");

    let (events, answer) = notebook.start("name = io.read()\nreturn 'hi ' .. name");
    let CellEvent::Input { reply, .. } = events.recv_timeout(Duration::from_secs(20)).unwrap()
    else {
        panic!("an input request")
    };
    reply(Ok("ada".to_owned()));
    let answer = answer.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(answer.outcome, Ok(vec![Data::text("hi ada")]));
}

#[test]
fn completion_inspection_and_completeness() {
    let mut notebook = Notebook::new();
    notebook.run("s = require('spindle')\nconfig = { threshold = 0.5, name = 'x' }");
    let completion = notebook.complete("s.sub");
    assert_eq!(completion.matches, ["submit", "submit_all"]);
    assert_eq!((completion.cursor_start, completion.cursor_end), (2, 5));
    assert_eq!(notebook.complete("config.th").matches, ["threshold"]);
    assert!(notebook.complete("('x'):up").matches.is_empty());
    assert!(
        notebook
            .complete("wh")
            .matches
            .contains(&"while".to_owned())
    );
    let doc = notebook.inspect("s.submit(", 4).expect("found");
    assert_eq!(doc.name, "s.submit");
    assert!(doc.text.contains("request"), "{}", doc.text);
    let value = notebook.inspect("config", 2).expect("found");
    assert!(value.text.contains("threshold = 0.5"), "{}", value.text);
    assert_eq!(notebook.inspect("nothing_here", 3), None);

    assert_eq!(cell_completeness("x = 1"), Completeness::Complete);
    assert_eq!(cell_completeness("1 + 1"), Completeness::Complete);
    assert_eq!(
        cell_completeness("for i = 1, 3 do"),
        Completeness::Incomplete
    );
    assert_eq!(cell_completeness("print('a'"), Completeness::Incomplete);
    assert_eq!(cell_completeness("x = = 1"), Completeness::Invalid);
}

fn pages_of(events: &[CellEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|event| match event {
            CellEvent::Page { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn help_pages_documentation_and_values_and_names_what_it_cannot_find() {
    let mut notebook = Notebook::new();
    let (events, answer) = notebook.run(
        "s = require('spindle')\nconfig = { threshold = 0.5 }\n\
         s.help(s.submit)\ns.help('submit_all')\ns.help()\ns.help(config)\ns.help('config.threshold')\n\
         s.help(s.service)",
    );
    assert!(answer.outcome.is_ok(), "{:?}", answer.outcome);
    let pages = pages_of(&events);
    assert_eq!(pages.len(), 6, "{pages:?}");
    assert!(pages[0].starts_with("s.submit(pipeline"), "{}", pages[0]);
    assert!(
        pages[0].contains("waits for its\none answer"),
        "{}",
        pages[0]
    );
    // The `---@` tags read as a list of parameters and a return.
    assert!(
        pages[0].contains(
            "Parameters:\n  pipeline: string\n  request: string|spindle.Submission — The text, or the text with options.\n"
        ),
        "{}",
        pages[0]
    );
    assert!(
        pages[0].ends_with("\nReturns: spindle.Answer\n"),
        "{}",
        pages[0]
    );
    assert!(!pages[0].contains("@param"), "{}", pages[0]);
    assert!(pages[1].starts_with("s.submit_all("), "{}", pages[1]);
    // The overview names every module function, one of them `help` itself.
    assert!(pages[2].contains("s.help(value)"), "{}", pages[2]);
    assert!(pages[2].contains("s.cosine(a, b)"), "{}", pages[2]);
    assert!(pages[3].contains("threshold = 0.5"), "{}", pages[3]);
    assert_eq!(pages[4], "number: 0.5");
    // A function type with spaces stays whole; optional parameters say so.
    assert!(
        pages[5].contains("\nReturns: (fun(fields: spindle.Service))? declare Without"),
        "{}",
        pages[5]
    );
    assert!(pages[5].contains("  fields (optional): "), "{}", pages[5]);

    let (events, answer) = notebook.run("s.help('no_such_thing')");
    assert!(pages_of(&events).is_empty());
    let error = answer.outcome.expect_err("an unknown name is an error");
    assert!(
        error
            .message
            .contains("\"no_such_thing\" names no spindle function and no global"),
        "{}",
        error.message
    );
}
