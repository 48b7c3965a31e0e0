//! Waiting for another thread's work without sleeping: when it pays, and
//! how.
//!
//! A thread that sleeps until another hands it work has to be woken, and on
//! a VM, waking a thread whose CPU went idle costs tens of microseconds:
//! more than a whole no-op request. So the threads on a request's path look
//! for their next piece of work for a short while before they sleep: the
//! runtime waiting for the script host's answer, the host waiting for its
//! next job, the netlink bridge waiting for the next request. Looking pays
//! only while the thread that brings the work runs on another CPU:
//!
//! - not where this thread has one CPU ([`spinning_pays`]);
//! - not while the two threads share a CPU ([`CpuSeen`]): each would look
//!   while the other waits for the CPU. The script host then moves to
//!   another of its CPUs ([`move_off_this_cpu`]) and spins there, or sleeps
//!   where it cannot. Left to the scheduler, it stays: on a VM an idle CPU
//!   is not offered to a thread that wakes (waking it is what costs), so a
//!   thread put beside another stays there. A thread that cannot see where
//!   the other runs (the netlink bridge's session, whose sender is another
//!   process or the kernel) sees when its yield gave the CPU away
//!   ([`Pause::GaveWay`]) and moves then;
//! - and not for long without letting others run ([`Spin`]): after its
//!   first moments, each look gives the CPU to any thread waiting for it
//!   there, such as the process an answer just woke. A thread that has
//!   just answered has no such moments ([`PURE_SPIN`]); one whose question
//!   is still open has a few ([`PURE_SPIN_WHILE_ASKING`]): nobody it woke
//!   is waiting for a CPU then.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long a thread trusts what it last read of its CPUs. Reading them
/// costs a system call and, in a container, a file or two, so each thread
/// reads them at most this often; a process moved to one CPU while it runs
/// (`taskset -p`, a cpuset or quota changed under it) stops spinning within
/// this.
pub const CPUS_READ_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's last answer of [`spinning_pays`], and when it was read.
    static SPINNING_PAYS: Cell<Option<(bool, Instant)>> = const { Cell::new(None) };
}

/// Whether this thread may run beside another: more than one CPU in its
/// affinity mask and CPU quota. Spinning for another thread's work pays
/// only then. Read again when the last reading is older than
/// [`CPUS_READ_EVERY`].
pub fn spinning_pays() -> bool {
    spinning_pays_within(CPUS_READ_EVERY)
}

/// [`spinning_pays`], reading the CPUs again when the last reading is
/// `max_age` old or older (`Duration::ZERO`: now).
pub fn spinning_pays_within(max_age: Duration) -> bool {
    SPINNING_PAYS.with(|last| {
        let now = Instant::now();
        if let Some((pays, read_at)) = last.get()
            && now.duration_since(read_at) < max_age
        {
            return pays;
        }
        let pays = std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() > 1);
        last.set(Some((pays, now)));
        pays
    })
}

/// How long a [`Spin`] looks with only a pause instruction between looks,
/// before it starts giving the CPU away between them, after an answer: not
/// at all. Its next work cannot come before the thread the answer woke has
/// run and asked again, and that thread may be waiting for this very CPU.
/// (With 2 µs here, the netlink bench's bridge p50 over the floor had a
/// median of 2.24 over twelve size-runs, against 2.03 without, the two
/// builds alternated.)
pub const PURE_SPIN: Duration = Duration::ZERO;

/// The same while the thread waits for the answer to its own question (the
/// runtime for the script host's): a no-op run's answer comes within this,
/// and a pause instruction notices it sooner than a look that yields first
/// (half a microsecond here).
pub const PURE_SPIN_WHILE_ASKING: Duration = Duration::from_micros(10);

/// Looks for another thread's work for up to a budget: with a pause
/// instruction between looks for its first moments, then yielding the CPU
/// between them (a system call that returns at once when nothing else wants
/// this CPU).
#[derive(Debug)]
pub struct Spin {
    started: Instant,
    pure: Duration,
    budget: Duration,
}

/// What [`Spin::pause`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// A pause instruction: look again at once.
    Spun,
    /// The CPU was offered to other threads; a task on a runtime yields to
    /// the runtime's other tasks too before it looks again.
    Yielded,
    /// As `Yielded`, and another thread took the CPU meanwhile: the yield
    /// came back later than [`GAVE_WAY_AFTER`]. The thread that brings the
    /// work may share this CPU.
    GaveWay,
    /// The budget is spent: stop looking and sleep until woken.
    Spent,
}

impl Spin {
    /// Looks for up to `budget`, the first `pure` of it without yielding.
    pub fn new(budget: Duration, pure: Duration) -> Spin {
        Spin {
            started: Instant::now(),
            pure,
            budget,
        }
    }

    /// Starts the budget again (work came, more may follow).
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// Waits before the next look.
    pub fn pause(&self) -> Pause {
        let spent = self.started.elapsed();
        if spent >= self.budget {
            Pause::Spent
        } else if spent < self.pure {
            std::hint::spin_loop();
            Pause::Spun
        } else {
            let yielded_at = Instant::now();
            std::thread::yield_now();
            if yielded_at.elapsed() > GAVE_WAY_AFTER {
                Pause::GaveWay
            } else {
                Pause::Yielded
            }
        }
    }
}

/// A yield that comes back later than this gave the CPU to another thread
/// ([`Pause::GaveWay`]). The yield alone takes half a microsecond here;
/// another thread that takes the CPU keeps it for at least a turn of a
/// round trip (a receive, a send), a few microseconds.
pub const GAVE_WAY_AFTER: Duration = Duration::from_micros(3);

/// The CPU a thread last said it ran on, for the threads that wait for its
/// work: they do not spin while it shares their CPU.
#[derive(Debug)]
pub struct CpuSeen(AtomicI32);

impl Default for CpuSeen {
    fn default() -> Self {
        CpuSeen(AtomicI32::new(-1))
    }
}

impl CpuSeen {
    /// Records the calling thread's CPU.
    pub fn note(&self) {
        self.0.store(current_cpu(), Ordering::Relaxed);
    }

    /// Whether the thread that last noted runs on the calling thread's CPU.
    pub fn is_here(&self) -> bool {
        let seen = self.0.load(Ordering::Relaxed);
        seen >= 0 && seen == current_cpu()
    }
}

/// Moves the calling thread off its CPU to another it may run on, at most
/// once per [`MOVE_EVERY`] per thread: narrows the thread's CPUs to the
/// others, which moves it at once, then gives it back all of them, which
/// leaves it where it is. `false` when it did not move (one CPU allowed,
/// moved too recently, a call refused).
pub fn move_off_this_cpu() -> bool {
    thread_local! {
        static LAST_MOVE: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if LAST_MOVE.with(|last| {
        last.get()
            .is_some_and(|at| now.duration_since(at) < MOVE_EVERY)
    }) {
        return false;
    }
    LAST_MOVE.with(|last| last.set(Some(now)));
    let cpu = current_cpu();
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is valid for writes of `size` bytes.
    if cpu < 0 || unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return false;
    }
    let mut others = allowed;
    // SAFETY: `others` is a valid set and `cpu` (from the kernel) is below
    // CPU_SETSIZE.
    unsafe { libc::CPU_CLR(cpu as usize, &mut others) };
    // SAFETY: `others` is a valid set.
    if unsafe { libc::CPU_COUNT(&others) } == 0 {
        return false;
    }
    // SAFETY: both sets are valid sets of `size` bytes.
    let moved = unsafe { libc::sched_setaffinity(0, size, &others) } == 0;
    if moved {
        // SAFETY: as above.
        unsafe { libc::sched_setaffinity(0, size, &allowed) };
    }
    moved
}

/// How often a thread moves itself at most ([`move_off_this_cpu`]): if the
/// scheduler puts it back at once, it spins less rather than moving on
/// every request. About fifteen no-op round trips: a caller that follows
/// the bridge's session onto its new CPU shares it for no longer than
/// this. (With 1 ms, the netlink bench's bridge p50 over the floor had a
/// median of 1.89 over twelve size-runs, against 1.83 with 200 µs, the
/// two builds alternated.)
pub const MOVE_EVERY: Duration = Duration::from_micros(200);

/// The CPU the calling thread runs on now (-1 where that cannot be read).
/// Cheap: the C library reads it from memory the kernel keeps up to date.
pub fn current_cpu() -> i32 {
    // SAFETY: sched_getcpu takes no arguments and only reads.
    unsafe { libc::sched_getcpu() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_pauses_within_its_pure_part_yields_after_it_and_ends_with_its_budget() {
        // Parts no test run outlasts or falls short of: no clock is raced.
        let hour = Duration::from_secs(3600);
        assert_eq!(Spin::new(2 * hour, hour).pause(), Pause::Spun);
        assert!(matches!(
            Spin::new(hour, Duration::ZERO).pause(),
            Pause::Yielded | Pause::GaveWay
        ));
        assert_eq!(Spin::new(Duration::ZERO, hour).pause(), Pause::Spent);
        let mut spin = Spin::new(hour, hour);
        spin.restart();
        assert_eq!(spin.pause(), Pause::Spun);
    }

    /// The calling thread's CPUs.
    fn allowed() -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is valid for writes of the size passed.
        let read =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(read, 0, "sched_getaffinity");
        set
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        // SAFETY: both are valid sets.
        (0..libc::CPU_SETSIZE as usize)
            .all(|cpu| unsafe { libc::CPU_ISSET(cpu, a) == libc::CPU_ISSET(cpu, b) })
    }

    /// Pins the calling thread to `cpu`.
    fn pin_to(cpu: i32) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid set and `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
        // SAFETY: `set` is a valid set of the size passed.
        let pinned =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        assert_eq!(pinned, 0, "a thread may pin itself to the CPU it runs on");
    }

    #[test]
    fn a_yield_beside_a_busy_thread_on_its_cpu_gives_way() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let cpu = current_cpu();
        assert!(cpu >= 0, "sched_getcpu works on Linux");
        let gave_way = std::thread::spawn(move || {
            pin_to(cpu);
            // The busy thread inherits this thread's one CPU.
            let started = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            let busy = std::thread::spawn({
                let (started, stop) = (started.clone(), stop.clone());
                move || {
                    started.store(true, Ordering::Release);
                    while !stop.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                }
            });
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // Both are runnable on one CPU from here: a yield hands the CPU
            // to the busy thread, which keeps it for its turn. No clock is
            // raced: a turn is milliseconds, the mark 3 µs.
            let spin = Spin::new(Duration::from_secs(3600), Duration::ZERO);
            let gave_way = (0..100_000).any(|_| spin.pause() == Pause::GaveWay);
            stop.store(true, Ordering::Release);
            busy.join().expect("the busy thread");
            gave_way
        })
        .join()
        .expect("the yielding thread");
        assert!(gave_way, "a yield beside a busy thread gives way to it");
    }

    #[test]
    fn a_thread_sees_its_own_cpu_and_nobody_elses_unnoted_one() {
        let seen = CpuSeen::default();
        assert!(!seen.is_here(), "nothing noted yet");
        let cpu = current_cpu();
        assert!(cpu >= 0, "sched_getcpu works on Linux");
        // Pinned, the thread cannot move between noting and looking.
        let here = std::thread::spawn(move || {
            pin_to(cpu);
            let seen = CpuSeen::default();
            seen.note();
            seen.is_here()
        })
        .join()
        .expect("the pinned thread");
        assert!(here, "a thread noted on its own CPU is here");
    }

    #[test]
    fn a_thread_moved_off_its_cpu_keeps_every_cpu_it_had() {
        std::thread::spawn(|| {
            let before = allowed();
            // SAFETY: `before` is a valid set.
            let cpus = unsafe { libc::CPU_COUNT(&before) };
            let moved = move_off_this_cpu();
            assert_eq!(
                moved,
                cpus > 1,
                "moves where it has another CPU ({cpus} allowed)"
            );
            assert!(same(&allowed(), &before), "its CPUs are given back");
        })
        .join()
        .expect("the test's thread");
        // A thread of its own, so that no earlier move counts against it.
        std::thread::spawn(|| {
            // SAFETY: a zeroed cpu_set_t is a valid empty set.
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `one` is a valid set; the CPU comes from the kernel.
            unsafe { libc::CPU_SET(current_cpu() as usize, &mut one) };
            // SAFETY: `one` is a valid set of the size passed.
            let pinned =
                unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) };
            assert_eq!(pinned, 0);
            assert!(!move_off_this_cpu(), "one CPU: nowhere to go");
            assert!(same(&allowed(), &one), "and the pin is kept");
        })
        .join()
        .expect("the pinned thread");
    }
}
