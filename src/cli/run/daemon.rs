//! `spindle run --detach`: the run as a daemon.
//!
//! The parent starts the same command again without `--detach` (plus the
//! hidden `--detached-child --run-id ID`), with stdin from /dev/null and
//! stdout and stderr appended to the log file, and a `NOTIFY_SOCKET` of
//! its own: it waits for the daemon's `READY=1` (every service settled,
//! see `notify.rs`) and exits 0, or for the daemon's exit and exits 1 with
//! the log's last lines. The daemon makes itself a session leader, sets
//! its umask and working directory (after making every path it was given
//! absolute), and writes its PID file (0644), removed when it ends.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::discovery;

/// How long the parent waits for the daemon to be ready before it leaves
/// it starting (`spindle ctl status` shows the rest).
const READY_WAIT: Duration = Duration::from_secs(120);

/// The daemon's settings, from the command line.
pub(super) struct DaemonSettings {
    pub(super) pid_file: Option<PathBuf>,
    pub(super) log_file: Option<PathBuf>,
    pub(super) workdir: PathBuf,
    pub(super) umask: u32,
}

/// The parent's side: start the daemon and wait until it is up.
pub(super) fn detach(
    run_id: &str,
    data_dir: &Path,
    settings: &DaemonSettings,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_file = match &settings.log_file {
        Some(path) => absolute(path)?,
        None => data_dir.join("spindle.log"),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&log_file)
        .with_context(|| format!("cannot open the log file {}", log_file.display()))?;
    let socket_path = discovery::runtime_dir()?.join(format!("{run_id}.notify"));
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path)
        .with_context(|| format!("cannot bind {}", socket_path.display()))?;
    let _remove_socket = RemoveOnDrop(socket_path.clone());
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;

    let mut arguments: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|argument| argument != "--detach")
        .collect();
    arguments.extend(["--detached-child".into(), "--run-id".into(), run_id.into()]);
    let data_dir_given = arguments.iter().any(|argument| {
        argument == "--data-dir" || argument.to_string_lossy().starts_with("--data-dir=")
    });
    if !data_dir_given {
        arguments.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
    }
    let program = std::env::current_exe().context("cannot find the spindle binary")?;
    let mut child = Command::new(program)
        .args(&arguments)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the daemon")?;
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        if let Ok(received) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..received]);
            if message.lines().any(|line| line == "READY=1") {
                eprintln!(
                    "spindle: run {run_id} is up (pid {}); log in {}\n  spindle ctl --kernel {run_id} status",
                    child.id(),
                    log_file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if let Some(status) = child.try_wait()? {
            eprintln!(
                "spindle: the daemon ended before it was ready ({status}); the end of its log:"
            );
            eprint!("{}", tail(&log_file, 20));
            return Ok(ExitCode::from(1));
        }
        if started.elapsed() > READY_WAIT {
            eprintln!(
                "spindle: run {run_id} (pid {}) is still starting after {}s; it goes on: see `spindle ctl --kernel {run_id} status` and {}",
                child.id(),
                READY_WAIT.as_secs(),
                log_file.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// The daemon's side, before anything else runs: absolute paths, a new
/// session, the umask, the working directory, the PID file.
pub(super) fn become_daemon(
    file: &mut PathBuf,
    settings: &DaemonSettings,
) -> anyhow::Result<Option<PidFile>> {
    *file = absolute(file)?;
    let pid_file = settings.pid_file.as_deref().map(absolute).transpose()?;
    // SAFETY: setsid(2) and umask(2) change only this process's own
    // session and file mode mask; neither touches memory.
    unsafe {
        libc::setsid();
        libc::umask(settings.umask as libc::mode_t);
    }
    std::env::set_current_dir(&settings.workdir)
        .with_context(|| format!("cannot change to {}", settings.workdir.display()))?;
    pid_file.map(PidFile::write).transpose()
}

/// The PID file, removed when dropped.
pub(super) struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> anyhow::Result<PidFile> {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<i32>()
            && pid != std::process::id() as i32
            // SAFETY: kill(2) with signal 0 only checks that it exists.
            && unsafe { libc::kill(pid, 0) } == 0
        {
            bail!(
                "{} names pid {pid}, which is running: another daemon uses this PID file",
                path.display()
            );
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("cannot write the PID file {}", path.display()))?;
        writeln!(file, "{}", std::process::id())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `0022`, `022` or `22`: an octal umask.
pub(super) fn parse_umask(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal umask like 022"))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the working directory")?
        .join(path))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("  {line}\n"))
        .collect()
}
