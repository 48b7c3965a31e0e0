//! A kernel confined to one CPU (an affinity mask, as `taskset -c 0` or a
//! container's cpuset gives it): the script host and the request path see
//! that spinning for each other cannot pay and sleep instead, and every
//! request is still answered. Beside it, an unconfined thread on a machine
//! with more CPUs is told that spinning pays, and a kernel moved to one CPU
//! while it runs (`taskset -a -p`) reads its CPUs again and keeps answering.

mod common;

use std::time::Duration;

use common::{TestKernel, start_kernel};
use spindle_kernel::{RequestPathConfig, Submission};
use spindle_scheduler::{Outcome, Priority, Source};

const NOOP: &str = r#"local s = require("spindle")
s.pipeline "noop" {
  s.stage("pass", function(req) req.seen = "yes" return req end),
}
"#;

/// Pins the calling thread (and the threads it starts later) to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get a valid set of its own size.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(pinned, 0, "pin: {}", std::io::Error::last_os_error());
}

/// The first CPU this process may run on.
fn allowed_cpu() -> usize {
    // SAFETY: sched_getaffinity fills a cpu_set_t of the size it is given;
    // CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .find(|cpu| libc::CPU_ISSET(*cpu, &set))
            .expect("some CPU")
    }
}

/// Pins every thread of this process, running ones included, to `cpu`, as
/// `taskset -a -p` does.
fn pin_process_to(cpu: usize) {
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let tid: libc::pid_t = task
            .expect("a task")
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
            .expect("a thread id");
        // SAFETY: as in `pin_to`, for the thread `tid` of this process.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        // A thread that ended meanwhile is gone (ESRCH); any other failure
        // is the test's.
        let error = std::io::Error::last_os_error();
        assert!(
            pinned == 0 || error.raw_os_error() == Some(libc::ESRCH),
            "pin thread {tid}: {error}"
        );
    }
}

/// A runtime on this thread and a kernel of `NOOP` on it, its graph
/// settled.
fn noop_kernel() -> (tokio::runtime::Runtime, TestKernel) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let test = runtime.block_on(async {
        let test = start_kernel(NOOP, RequestPathConfig::default());
        test.settled().await;
        test
    });
    (runtime, test)
}

/// Submits `count` no-op requests numbered from `first` and checks each
/// answer's text and the stage's field.
async fn answer_in_order(kernel: &spindle_kernel::Kernel, first: usize, count: usize) {
    for at in first..first + count {
        let answer = kernel
            .submit(Submission {
                pipeline: "noop".to_owned(),
                text: format!("text {at}"),
                priority: Priority::Medium,
                deadline: Some(Duration::from_secs(60)),
                correlation_id: None,
                source: Source::Scenario,
            })
            .await;
        let Outcome::Ok(result) = &answer.outcome else {
            panic!("request {at}: {:?}", answer.outcome);
        };
        assert_eq!(result.text, format!("text {at}"));
        assert_eq!(result.fields["seen"], "yes");
    }
}

#[test]
fn a_kernel_moved_to_one_cpu_while_it_runs_reads_its_cpus_again() {
    let cpus = std::thread::available_parallelism().map_or(1, |cpus| cpus.get());
    let cpu = allowed_cpu();
    std::thread::spawn(move || {
        let (runtime, test) = noop_kernel();
        runtime.block_on(async {
            assert_eq!(spindle_scripting::spinning_pays(), cpus > 1);
            answer_in_order(&test.kernel, 0, 100).await;
            // The script host's thread and this one, already running, are
            // moved; what they read of their CPUs a moment ago is now stale.
            pin_process_to(cpu);
            assert!(
                !spindle_scripting::spinning_pays_within(Duration::ZERO),
                "a thread moved to one CPU must read it"
            );
            assert!(
                !spindle_scripting::spinning_pays(),
                "the new reading is kept"
            );
            answer_in_order(&test.kernel, 100, 200).await;
        });
    })
    .join()
    .expect("the kernel's thread");
}

#[test]
fn a_kernel_on_one_cpu_does_not_spin_and_answers_every_request() {
    let cpus = std::thread::available_parallelism().map_or(1, |cpus| cpus.get());
    assert_eq!(spindle_scripting::spinning_pays(), cpus > 1);
    let cpu = allowed_cpu();
    std::thread::spawn(move || {
        pin_to(cpu);
        assert!(
            !spindle_scripting::spinning_pays(),
            "a thread on one CPU must not spin"
        );
        let (runtime, test) = noop_kernel();
        runtime.block_on(answer_in_order(&test.kernel, 0, 200));
    })
    .join()
    .expect("the pinned thread");
}
