//! The supervisor's only door to the operating system: spawning children in
//! their own process group (vfork-style), signals, `prctl`, `waitpid`,
//! `/proc` scans, and the C library's malloc settings (`crate::memory`).
//!
//! Everything `unsafe` and everything Linux-specific in the supervisor lives
//! here, so the logic above it reads as plain state changes. Nothing here
//! knows about services, states or events. (Longer than a feature file
//! should be, on purpose: it is the one file with `unsafe`, read as a whole.)

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// Signal numbers the supervisor uses by name.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Sets one of glibc malloc's parameters (`mallopt`, `M_*`); `false` when
/// malloc refused the value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn set_malloc_parameter(parameter: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: mallopt only changes malloc's own parameters, under malloc's
    // lock; any thread may call it at any time.
    unsafe { libc::mallopt(parameter, value) == 1 }
}

/// Marks this process as a child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// orphaned descendants reparent to it instead of to init, so the reaper
/// reaps them as they exit and a final sweep can find and kill them. Call
/// once, early, in the process that supervises.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and
    // touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where a spawned child's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Into pipes whose read ends come back in [`SpawnedChild`] (a service).
    Capture,
    /// To /dev/null (an exec probe).
    Discard,
}

/// What to spawn: a command line, its directory and extra environment.
pub(crate) struct CommandSpec<'a> {
    pub command: &'a [String],
    pub cwd: &'a Path,
    /// Set on top of this process's environment (later entries win).
    pub env: &'a [(String, String)],
}

/// A child that [`spawn_group_leader`] started: it leads process group
/// `pid`. Nobody has waited for it; see `reaper` for who does.
pub(crate) struct SpawnedChild {
    pub pid: i32,
    /// Read ends of its stdout and stderr pipes ([`Output::Capture`] only).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Why [`spawn_group_leader`] failed.
pub(crate) struct SpawnFailure {
    pub error: io::Error,
    /// A child that was cloned but gave up before exec (no such directory,
    /// no such program): it has exited and still has to be reaped.
    pub exited_child: Option<i32>,
}

impl From<io::Error> for SpawnFailure {
    fn from(error: io::Error) -> SpawnFailure {
        SpawnFailure {
            error,
            exited_child: None,
        }
    }
}

/// Spawns `command` as the leader of a new process group (pgid = pid), with
/// `PR_SET_PDEATHSIG(SIGKILL)` so it dies with the thread that spawned it,
/// stdin from /dev/null, and signal dispositions and mask as a fresh
/// process has them.
///
/// vfork-style: `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_FS)`
/// runs the child on a small stack of its own in this process's memory until
/// it has called `execve`, so nothing of this process is copied by the
/// spawning thread (a `fork` copies its page tables, which made each exec
/// probe cost about 0.6 ms of CPU; the child unshares and copies the
/// descriptor table and working directory itself). The calling thread
/// is suspended until the child has exec'd or failed; a failure (no such
/// directory, no such program) comes back as the error.
pub(crate) fn spawn_group_leader(
    command: &PreparedCommand,
    output: Output,
) -> Result<SpawnedChild, SpawnFailure> {
    let null = dev_null()?.as_raw_fd();
    // The child's ends of its output: pipes, or /dev/null.
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let (stdout, stderr, stdio) = match output {
        Output::Capture => {
            let (stdout_read, stdout_write) = pipe(libc::O_CLOEXEC)?;
            let (stderr_read, stderr_write) = pipe(libc::O_CLOEXEC)?;
            child_ends.push(above_stdio(stdout_write)?);
            child_ends.push(above_stdio(stderr_write)?);
            let stdio = [null, child_ends[0].as_raw_fd(), child_ends[1].as_raw_fd()];
            (Some(stdout_read), Some(stderr_read), stdio)
        }
        Output::Discard => (None, None, [null, null, null]),
    };
    let plan = ChildPlan {
        program: command.program.as_ptr(),
        argv: command.argv.as_ptr(),
        envp: command.envp.as_ptr(),
        cwd: command.cwd.as_ptr(),
        stdio,
        parent: own_pid(),
        failed_step: AtomicI32::new(0),
        failed_errno: AtomicI32::new(0),
    };
    let pid = clone_vfork(&plan)?;
    // The child has exec'd (or exited); our copies of its ends go.
    drop(child_ends);
    let failed_step = plan.failed_step.load(Ordering::Acquire);
    if failed_step == 0 {
        return Ok(SpawnedChild {
            pid,
            stdout,
            stderr,
        });
    }
    let error = io::Error::from_raw_os_error(plan.failed_errno.load(Ordering::Acquire));
    let error = match failed_step {
        STEP_DIRECTORY => io::Error::new(
            error.kind(),
            format!(
                "cannot enter the directory {}: {error}",
                command.cwd_for_messages.display()
            ),
        ),
        STEP_EXEC => error,
        _ => io::Error::new(
            error.kind(),
            format!("cannot prepare the child process: {error}"),
        ),
    };
    Err(SpawnFailure {
        error,
        exited_child: Some(pid),
    })
}

/// The C strings a child needs, built before the clone (the child must not
/// allocate: it shares this process's memory and heap locks). An exec probe
/// prepares its command once and spawns it every period.
pub(crate) struct PreparedCommand {
    program: CString,
    /// NUL-terminated array of pointers into `_argv_strings`.
    argv: Vec<*const libc::c_char>,
    _argv_strings: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    _envp_strings: Vec<CString>,
    cwd: CString,
    cwd_for_messages: PathBuf,
}

// SAFETY: the raw pointers point into the heap buffers of the CStrings the
// struct owns, which move with it and are never changed; nothing else
// refers to them.
unsafe impl Send for PreparedCommand {}

impl PreparedCommand {
    /// Resolves the program (in the `PATH` of the child's environment, as
    /// `execvp` would) and builds the argument and environment strings
    /// (this process's environment, now, with `spec.env` on top).
    pub(crate) fn new(spec: &CommandSpec<'_>) -> io::Result<PreparedCommand> {
        let (program, _) = spec
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let program = resolve_program(program, spec.cwd, spec.env)?;
        let argv_strings = spec
            .command
            .iter()
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut environment: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in spec.env {
            environment.insert(OsString::from(key), OsString::from(value));
        }
        let envp_strings = environment
            .iter()
            .map(|(key, value)| {
                let mut entry = Vec::with_capacity(key.len() + value.len() + 1);
                entry.extend_from_slice(key.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(&entry)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|string| string.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(PreparedCommand {
            program: c_string(program.as_os_str().as_bytes())?,
            argv: pointers(&argv_strings),
            _argv_strings: argv_strings,
            envp: pointers(&envp_strings),
            _envp_strings: envp_strings,
            cwd: c_string(spec.cwd.as_os_str().as_bytes())?,
            cwd_for_messages: spec.cwd.to_path_buf(),
        })
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", String::from_utf8_lossy(bytes)),
        )
    })
}

/// `program` itself when it holds a `/` (relative to `cwd` in the child,
/// as `execvp` has it), else the first executable file named `program` in
/// the child's `PATH` (from `env`, else this process's, else the default
/// of `execvp`).
fn resolve_program(program: &str, cwd: &Path, env: &[(String, String)]) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    if !program.is_empty() {
        let search = env
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| OsString::from(value))
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
        for dir in std::env::split_paths(&search) {
            let dir = if dir.is_absolute() {
                dir
            } else {
                cwd.join(dir)
            };
            let candidate = dir.join(program);
            let executable = std::fs::metadata(&candidate).is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            });
            if executable {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// /dev/null, opened once (numbered above 2) for every child's stdin and a
/// probe's output.
fn dev_null() -> io::Result<&'static OwnedFd> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd);
    }
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let fd = above_stdio(file.into())?;
    Ok(DEV_NULL.get_or_init(|| fd))
}

/// This process's pid (read once; the supervisor never forks itself).
fn own_pid() -> libc::pid_t {
    static OWN_PID: OnceLock<libc::pid_t> = OnceLock::new();
    // SAFETY: getpid has no memory effects.
    *OWN_PID.get_or_init(|| unsafe { libc::getpid() })
}

/// A pipe with `flags` (`O_CLOEXEC`, `O_NONBLOCK`): (read end, write end).
fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fd` itself, or a close-on-exec copy of it numbered 3 or above when it
/// is 0, 1 or 2 (possible when this process was started with those
/// closed), so the child's `dup2` onto 0, 1 and 2 never overwrites a source.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a new descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

const STEP_GROUP: i32 = 1;
const STEP_DEATH_SIGNAL: i32 = 2;
const STEP_DIRECTORY: i32 = 3;
const STEP_STDIO: i32 = 4;
const STEP_EXEC: i32 = 5;
const STEP_DESCRIPTORS: i32 = 6;

/// Bytes of stack for the child between clone and exec; it runs only
/// [`child_main`] and a few system call wrappers.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// What the child does between clone and exec, prepared by the parent.
/// The child reads it from the parent's memory (`CLONE_VM`) and writes only
/// the two failure fields.
#[repr(C)]
struct ChildPlan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// Descriptors (all above 2) that become the child's 0, 1 and 2.
    stdio: [libc::c_int; 3],
    /// This process, to notice a parent that died before PDEATHSIG was set.
    parent: libc::pid_t,
    /// `STEP_*` where the child gave up (0: it exec'd), and the errno.
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

/// Clones the child that runs [`child_main`] on `plan` and returns its pid
/// once it has exec'd or exited.
fn clone_vfork(plan: &ChildPlan) -> io::Result<i32> {
    // Uninitialised: the child writes its frames before reading them.
    let mut stack = Vec::<u8>::with_capacity(CHILD_STACK_BYTES);
    // The stack grows down on every Linux target Spindle builds for; keep
    // the top 16-byte aligned.
    let stack_top = (stack.as_mut_ptr() as usize + CHILD_STACK_BYTES) & !15;
    let mut all_signals = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut previous_mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set it is given; pthread_sigmask
    // reads one initialised set and writes the previous mask into the
    // other. Blocking every signal in this thread keeps the child (which
    // inherits the mask) from running one of this process's handlers on
    // the shared memory before it has reset them; the mask is restored
    // below, before anything else runs on this thread.
    unsafe {
        libc::sigfillset(all_signals.as_mut_ptr());
        libc::pthread_sigmask(
            libc::SIG_SETMASK,
            all_signals.as_ptr(),
            previous_mask.as_mut_ptr(),
        );
    }
    // SAFETY: `child_main` runs on `stack` (ours, unused by anyone else,
    // alive until after clone returns) and only reads `plan`, which
    // outlives the child's use of it: with CLONE_VFORK this thread is
    // suspended until the child has exec'd or exited, so the child never
    // runs concurrently with this frame. The child does not allocate, lock
    // or unwind (see `child_main`).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack_top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::CLONE_FS | libc::SIGCHLD,
            plan as *const ChildPlan as *mut libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above, which pthread_sigmask initialised.
    unsafe {
        libc::pthread_sigmask(
            libc::SIG_SETMASK,
            previous_mask.as_ptr(),
            std::ptr::null_mut(),
        );
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// The child between clone and exec. It shares the parent's memory, so it
/// calls only async-signal-safe system call wrappers, allocates nothing,
/// takes no lock, cannot panic, and leaves by `execve` or `_exit`.
extern "C" fn child_main(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` is the parent's `ChildPlan`, alive and unchanged while
    // the parent is suspended (CLONE_VFORK).
    let plan = unsafe { &*(plan as *const ChildPlan) };
    let give_up = |step: i32| -> ! {
        // SAFETY: __errno_location returns this thread's errno slot, which
        // the failed call just set; _exit ends the child without running
        // any of the parent's exit handlers.
        unsafe {
            plan.failed_errno
                .store(*libc::__errno_location(), Ordering::Release);
            plan.failed_step.store(step, Ordering::Release);
            libc::_exit(127)
        }
    };
    // SAFETY (every call below): plain system call wrappers on values the
    // parent prepared (NUL-terminated strings and arrays that outlive the
    // child's use of them, open descriptors, a zeroed sigaction).
    unsafe {
        // CLONE_FILES and CLONE_FS share the descriptor table and the
        // working directory until here, so copying them (one reference per
        // open descriptor of this process, hundreds with many services) is
        // the child's work, not the spawning thread's; from now on its dup2
        // and chdir touch only its own.
        if libc::unshare(libc::CLONE_FILES | libc::CLONE_FS) != 0 {
            give_up(STEP_DESCRIPTORS);
        }
        reset_signal_dispositions();
        if libc::setpgid(0, 0) != 0 {
            give_up(STEP_GROUP);
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            give_up(STEP_DEATH_SIGNAL);
        }
        // The parent may have died before prctl took effect.
        if libc::getppid() != plan.parent {
            libc::_exit(111);
        }
        if libc::chdir(plan.cwd) != 0 {
            give_up(STEP_DIRECTORY);
        }
        let mut target = 0;
        while target < 3 {
            if libc::dup2(plan.stdio[target as usize], target) < 0 {
                give_up(STEP_STDIO);
            }
            target += 1;
        }
        let mut empty = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.program, plan.argv, plan.envp);
    }
    give_up(STEP_EXEC)
}

/// In the child: every signal this process handles goes back to its
/// default action (a handler's code must not run in the child), and so does
/// SIGPIPE, which the Rust runtime ignores; other ignored signals stay
/// ignored across exec, as with `fork` and `exec`.
///
/// # Safety
/// Only for the child of [`clone_vfork`], before exec.
unsafe fn reset_signal_dispositions() {
    // Linux has signals 1..=64 (NSIG is 65).
    let mut signal = 1;
    while signal < 65 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: sigaction reads and writes the structs it is given;
            // numbers it does not accept fail with EINVAL and are skipped.
            unsafe {
                let mut current = std::mem::zeroed::<libc::sigaction>();
                if libc::sigaction(signal, std::ptr::null(), &mut current) == 0 {
                    let handler = current.sa_sigaction;
                    let handled = handler != libc::SIG_DFL && handler != libc::SIG_IGN;
                    if handled || (signal == libc::SIGPIPE && handler == libc::SIG_IGN) {
                        let mut default = std::mem::zeroed::<libc::sigaction>();
                        default.sa_sigaction = libc::SIG_DFL;
                        libc::sigaction(signal, &default, std::ptr::null_mut());
                    }
                }
            }
        }
        signal += 1;
    }
}

/// A pipe that the SIGCHLD handler writes the signalled child's pid to (and
/// [`poke`] a 0), for the reaper's drivers to wait on.
///
/// The handler is registered through `signal-hook-registry` (as tokio
/// registers its own), so it chains with other SIGCHLD handlers in the
/// process and keeps `errno`. A handler cannot be removed safely, so a
/// `ChildSignals` must live as long as the process (the reaper's does).
/// Signals of one kind coalesce while one is pending, so the pids are hints:
/// the reaper still looks for other exited children after each wake-up.
///
/// [`poke`]: ChildSignals::poke
pub(crate) struct ChildSignals {
    read: OwnedFd,
    write: OwnedFd,
    /// Whether SIGCHLD writes to the pipe.
    from_signal: bool,
}

impl ChildSignals {
    pub(crate) fn install() -> io::Result<ChildSignals> {
        let (read, write) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        let fd = write.as_raw_fd();
        // SAFETY: the action reads the siginfo the kernel passed and calls
        // write(2), which is async-signal-safe, on a non-blocking descriptor
        // that stays open for the life of the process (see the type's
        // documentation). Four bytes are written atomically (less than
        // PIPE_BUF); a full pipe already holds wake-ups, so a failed write
        // loses nothing the reaper's look for other exited children does
        // not find.
        let registered = unsafe {
            signal_hook_registry::register_sigaction(libc::SIGCHLD, move |info| {
                let pid: libc::pid_t = info.si_pid();
                libc::write(fd, (&pid as *const libc::pid_t).cast(), 4);
            })
        };
        if let Err(error) = &registered {
            tracing::error!(%error, "cannot handle SIGCHLD; the reaper polls instead");
        }
        Ok(ChildSignals {
            read,
            write,
            from_signal: registered.is_ok(),
        })
    }

    /// Wakes the waiters (with no pid).
    pub(crate) fn poke(&self) {
        let none: libc::pid_t = 0;
        // SAFETY: writes four bytes from a local to our own pipe.
        unsafe {
            libc::write(
                self.write.as_raw_fd(),
                (&none as *const libc::pid_t).cast(),
                4,
            );
        }
    }

    /// Whether SIGCHLD reaches the pipe (if not, whoever waits on it must
    /// also look every so often).
    pub(crate) fn has_signal_handler(&self) -> bool {
        self.from_signal
    }

    /// A descriptor of the pipe's read end (non-blocking), for a waiter to
    /// register with its runtime.
    pub(crate) fn subscribe(&self) -> io::Result<OwnedFd> {
        self.read.try_clone()
    }
}

/// The pid of a child of this process that has exited and not been
/// reaped yet, leaving it unreaped (`waitid` with `WNOWAIT`); `None` when
/// no child has exited (or there are no children).
pub(crate) fn peek_exited_child() -> Option<i32> {
    loop {
        // SAFETY: waitid fills the zeroed siginfo it is given; with WNOHANG
        // it never blocks, with WNOWAIT it reaps nothing.
        let (rc, pid) = unsafe {
            let mut info = std::mem::zeroed::<libc::siginfo_t>();
            let rc = libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            (rc, info.si_pid())
        };
        if rc == 0 {
            return (pid > 0).then_some(pid);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None; // ECHILD: no children at all
        }
    }
}

/// Whether `pid`, a child of this process, has exited (and waits to be
/// reaped); reaps nothing.
pub(crate) fn has_exited(pid: i32) -> bool {
    // SAFETY: waitid fills the zeroed siginfo it is given; WNOHANG never
    // blocks, WNOWAIT reaps nothing.
    let (rc, found) = unsafe {
        let mut info = std::mem::zeroed::<libc::siginfo_t>();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        (rc, info.si_pid())
    };
    rc == 0 && found == pid
}

/// What [`reap_child`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// Reaped; the raw wait status.
    Exited(i32),
    /// Our child, still running.
    Running,
    /// Not (or no longer) a child of this process.
    NotAChild,
}

/// Reaps `pid` if it is a child of this process that has exited.
pub(crate) fn reap_child(pid: i32) -> Reaped {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one pid with WNOHANG never blocks and writes
        // only `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return Reaped::Exited(status);
        }
        if rc == 0 {
            return Reaped::Running;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Reaped::NotAChild;
        }
    }
}

/// The process group and session of `pid` (also of a zombie), if it exists.
///
/// Either is 0 when its leader lives outside this process's PID namespace
/// (a run inside a container or a CI sandbox whose session began outside):
/// the kernel then has no id for it here. Only an error (the process is
/// gone) gives `None`.
pub(crate) fn group_and_session(pid: i32) -> Option<(i32, i32)> {
    // SAFETY: getpgid and getsid have no memory effects.
    let (group, session) = unsafe { (libc::getpgid(pid), libc::getsid(pid)) };
    (group >= 0 && session >= 0).then_some((group, session))
}

/// This process's session (0 when its leader is outside this PID
/// namespace, see [`group_and_session`]).
pub(crate) fn own_session() -> i32 {
    // SAFETY: getsid has no memory effects.
    unsafe { libc::getsid(0) }
}

/// Whether process group `pgid` still has a member (zombies count).
pub(crate) fn group_exists(pgid: i32) -> bool {
    if pgid <= 1 {
        return true;
    }
    // SAFETY: signal 0 only checks that the group exists; nothing is sent.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Every child of this process (of any of its threads), zombies included:
/// from `/proc/self/task/*/children`, or from a scan of `/proc` where the
/// kernel lacks that file.
pub(crate) fn children_of_this_process() -> Vec<i32> {
    let mut children = Vec::new();
    let mut listed = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                listed = true;
                children.extend(
                    list.split_whitespace()
                        .filter_map(|pid| pid.parse::<i32>().ok()),
                );
            }
        }
    }
    if listed {
        return children;
    }
    let own_pid = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(own_pid) {
            children.push(pid);
        }
    }
    children
}

/// Sends `signal` to every process of group `pgid`. A group that no longer
/// exists is not an error.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return; // never signal our own group or everything
    }
    // SAFETY: killpg has no memory effects; a stale pgid yields ESRCH.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Sends `signal` to one process.
pub fn signal_process(pid: i32, signal: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A signal's conventional name, for messages.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Processes (other than this one) whose environment holds
/// `SPINDLE_RUN_ID=<run_id>` and that are not zombies.
pub fn processes_of_run(run_id: &str) -> Vec<i32> {
    let needle = format!("SPINDLE_RUN_ID={run_id}");
    let own_pid = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own_pid || is_zombie(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ
            .split(|byte| *byte == 0)
            .any(|var| var == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` exists and is a zombie (state `Z` in `/proc/PID/stat`).
pub fn is_zombie(pid: i32) -> bool {
    process_state(pid) == Some('Z')
}

/// The one-letter state of `pid` from `/proc/PID/stat`, if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) this process has used, in seconds.
pub fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Ignores a signal in this process (the guard ignores terminal signals).
pub(crate) fn ignore_signal(signal: i32) {
    // SAFETY: installing SIG_IGN has no memory effects.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}
