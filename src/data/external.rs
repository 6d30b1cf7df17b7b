//! External simulators: the user's program, run as child processes (`sh -c COMMAND`), speaking a
//! fixed framing on its standard streams.
//!
//! A message is an unsigned 64-bit little-endian byte count followed by that many bytes holding a
//! complete `.npy` file. gkl-gpu writes θ (batch × dθ, float64, C order) to the child's stdin; the
//! child answers with x (batch × dx, float32 or float64) on stdout; this repeats until stdin
//! closes, when the child should exit. The first answer fixes dx. Each child gets
//! `GKL_GPU_WORKER` (0, 1, ...) and `GKL_GPU_SEED` in its environment, for its own random numbers.
//!
//! A child that exits, crashes, answers with something that is not a framed `.npy`, answers with
//! the wrong number of rows or columns, or does not answer within the timeout ends the run with a
//! [`DataError::Simulator`] holding the tail of its stderr. Children run in their own process
//! group, killed as a whole.

use super::error::{DataError, Result};
use super::simulations::Simulations;
use crate::io::{npy_bytes_f64, read_npy_from, Array};
use gkl_tasks::Prior;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest message accepted from a child (bytes after the length prefix).
pub const FRAME_LIMIT: u64 = 1 << 34;

/// Bytes of a child's stderr kept for error messages.
const STDERR_KEEP: usize = 4096;

/// How an external simulator is run.
#[derive(Clone, Debug)]
pub struct ExternalConfig {
    /// The command line, run through `sh -c`.
    pub command: String,
    /// Children running at once.
    pub workers: usize,
    /// Rows per message.
    pub batch: usize,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Passed to the children as `GKL_GPU_SEED` (plus the worker index).
    pub seed: u64,
}

/// What a child's stdout yielded.
enum Answer {
    Array(Array),
    /// Stdout closed cleanly before a message started.
    Closed,
    /// Not a framed `.npy`: the description.
    Garbage(String),
}

struct Worker {
    child: Child,
    to_child: Option<Sender<Vec<u8>>>,
    from_child: Receiver<Answer>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
}

fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    unsafe {
        // The child leads its own process group: take its children with it.
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn escaped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn read_answers(mut out: impl Read, tx: Sender<Answer>) {
    loop {
        let mut len = [0u8; 8];
        let mut got = 0;
        while got < 8 {
            match out.read(&mut len[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Answer::Garbage(format!("reading its stdout failed: {e}")));
                    return;
                }
            }
        }
        if got == 0 {
            let _ = tx.send(Answer::Closed);
            return;
        }
        if got < 8 {
            let _ = tx.send(Answer::Garbage(format!(
                "stdout ended inside a message's 8-byte length prefix (got '{}')",
                escaped(&len[..got])
            )));
            return;
        }
        let n = u64::from_le_bytes(len);
        if n > FRAME_LIMIT {
            let _ = tx.send(Answer::Garbage(format!(
                "stdout is not framed .npy messages: it starts with '{}' (read as a length of {n} bytes)",
                escaped(&len)
            )));
            return;
        }
        let mut body = (&mut out).take(n);
        let answer = match read_npy_from(&mut body, "answer") {
            Ok(a) if body.limit() == 0 => Answer::Array(a),
            Ok(_) => Answer::Garbage(format!(
                "a message's length prefix says {n} bytes but its .npy is {} bytes shorter",
                body.limit()
            )),
            Err(e) => Answer::Garbage(format!(
                "a message of {n} bytes is not a valid .npy ({})",
                e.kind()
            )),
        };
        let stop = !matches!(answer, Answer::Array(_));
        if tx.send(answer).is_err() || stop {
            return;
        }
    }
}

impl Worker {
    fn spawn(cfg: &ExternalConfig, index: usize) -> std::result::Result<Worker, String> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&cfg.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("GKL_GPU_WORKER", index.to_string())
            .env(
                "GKL_GPU_SEED",
                cfg.seed.wrapping_add(index as u64).to_string(),
            );
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
        let stdin: ChildStdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (to_child, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut stdin = stdin;
            for msg in rx {
                if stdin.write_all(&msg).and_then(|_| stdin.flush()).is_err() {
                    break;
                }
            }
        });
        let (tx, from_child) = mpsc::channel();
        std::thread::spawn(move || read_answers(std::io::BufReader::new(stdout), tx));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let t = tail.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(k) = stderr.read(&mut buf) {
                if k == 0 {
                    break;
                }
                let mut q = t.lock().unwrap_or_else(|p| p.into_inner());
                q.extend(&buf[..k]);
                let excess = q.len().saturating_sub(STDERR_KEEP);
                q.drain(..excess);
            }
        });
        Ok(Worker {
            child,
            to_child: Some(to_child),
            from_child,
            stderr: tail,
            stderr_thread: Some(stderr_thread),
        })
    }

    /// The last lines of the child's stderr, on one line.
    fn stderr_tail(&mut self) -> String {
        // After the child is gone its stderr closes; give the reader a moment to drain it.
        if let Some(h) = self.stderr_thread.take() {
            let t = Instant::now();
            while !h.is_finished() && t.elapsed() < Duration::from_millis(500) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let q = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(q.make_contiguous_copy().as_slice()).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let mut tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        if tail.chars().count() > 400 {
            let skip = tail.chars().count() - 400;
            tail = format!("...{}", tail.chars().skip(skip).collect::<String>());
        }
        tail
    }

    /// How the child ended, waiting up to `wait` for it.
    fn exit_status(&mut self, wait: Duration) -> Option<String> {
        let t = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    #[cfg(unix)]
                    {
                        use std::os::unix::process::ExitStatusExt;
                        if let Some(sig) = s.signal() {
                            let name = match sig {
                                libc::SIGSEGV => " (SIGSEGV)",
                                libc::SIGABRT => " (SIGABRT)",
                                libc::SIGKILL => " (SIGKILL)",
                                libc::SIGTERM => " (SIGTERM)",
                                libc::SIGBUS => " (SIGBUS)",
                                libc::SIGFPE => " (SIGFPE)",
                                _ => "",
                            };
                            return Some(format!("was killed by signal {sig}{name}"));
                        }
                    }
                    return Some(match s.code() {
                        Some(c) => format!("exited with status {c}"),
                        None => "exited".into(),
                    });
                }
                Ok(None) if t.elapsed() < wait => std::thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    /// Sends one batch and waits for its answer: rows × dx.
    fn run_batch(
        &mut self,
        index: usize,
        theta: &[f64],
        rows: usize,
        dim_theta: usize,
        cfg: &ExternalConfig,
    ) -> std::result::Result<Array, String> {
        let npy = npy_bytes_f64(&[rows, dim_theta], theta).map_err(|e| e.to_string())?;
        let mut msg = Vec::with_capacity(8 + npy.len());
        msg.extend_from_slice(&(npy.len() as u64).to_le_bytes());
        msg.extend_from_slice(&npy);
        let sent = self
            .to_child
            .as_ref()
            .is_some_and(|tx| tx.send(msg).is_ok());
        let answer = if sent {
            self.from_child.recv_timeout(cfg.timeout)
        } else {
            Err(RecvTimeoutError::Disconnected)
        };
        match answer {
            Ok(Answer::Array(a)) => Ok(a),
            Ok(Answer::Garbage(g)) => {
                kill_tree(&mut self.child);
                Err(format!("worker {index} answered garbage: {g}"))
            }
            Ok(Answer::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let how = self.exit_status(Duration::from_secs(2));
                kill_tree(&mut self.child);
                Err(format!(
                    "worker {index} {} instead of answering a batch of {rows} rows",
                    how.unwrap_or_else(|| "closed its stdout".into())
                ))
            }
            Err(RecvTimeoutError::Timeout) => {
                kill_tree(&mut self.child);
                Err(format!(
                    "worker {index} did not answer a batch of {rows} rows within {} s (--simulator-timeout); killed it",
                    cfg.timeout.as_secs_f64()
                ))
            }
        }
    }

    /// Closes stdin and gives the child `grace` to exit before killing it.
    fn shutdown(&mut self, grace: Duration) {
        self.to_child = None;
        if self.exit_status(grace).is_none() {
            kill_tree(&mut self.child);
        }
    }
}

trait ContiguousCopy {
    fn make_contiguous_copy(&self) -> Vec<u8>;
}
impl ContiguousCopy for VecDeque<u8> {
    fn make_contiguous_copy(&self) -> Vec<u8> {
        self.iter().copied().collect()
    }
}

/// A pool of child processes running the user's simulator.
pub struct ExternalSimulator {
    cfg: ExternalConfig,
    dim_theta: usize,
    dim_x: Mutex<Option<usize>>,
    pool: Mutex<Vec<Worker>>,
    /// Set once a child failed: later calls fail at once with this.
    dead: Mutex<Option<(String, String)>>,
}

impl ExternalSimulator {
    /// A simulator for θ of width `dim_theta`; children start on the first call.
    pub fn new(mut cfg: ExternalConfig, dim_theta: usize) -> Self {
        cfg.workers = cfg.workers.max(1);
        cfg.batch = cfg.batch.max(1);
        ExternalSimulator {
            cfg,
            dim_theta,
            dim_x: Mutex::new(None),
            pool: Mutex::new(vec![]),
            dead: Mutex::new(None),
        }
    }

    pub fn command(&self) -> &str {
        &self.cfg.command
    }

    /// dx, once the first answer has arrived.
    pub fn dim_x(&self) -> Option<usize> {
        *self.dim_x.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, problem: String, stderr_tail: String) -> DataError {
        DataError::Simulator {
            command: self.cfg.command.clone(),
            problem,
            stderr_tail,
        }
    }

    /// Simulates x for θ (rows × dθ, row-major): batches go to the children in parallel, and the
    /// answers come back in θ's order.
    pub fn simulate(&self, theta: &[f64]) -> Result<Vec<f64>> {
        if let Some((p, t)) = self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(self.error(p, t));
        }
        let d = self.dim_theta;
        let rows = theta.len() / d.max(1);
        if rows == 0 {
            return Ok(vec![]);
        }
        let batch = self.cfg.batch;
        let batches = rows.div_ceil(batch);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(unix)]
        unsafe {
            // A child that exits while we write to its stdin must give us EPIPE, not kill us.
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        while pool.len() < self.cfg.workers.min(batches) {
            let w =
                Worker::spawn(&self.cfg, pool.len()).map_err(|p| self.error(p, String::new()))?;
            pool.push(w);
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Vec<f64>>>> =
            (0..batches).map(|_| Mutex::new(None)).collect();
        let first_error: Mutex<Option<(String, String)>> = Mutex::new(None);
        std::thread::scope(|s| {
            for (wi, w) in pool.iter_mut().enumerate().take(batches) {
                let (next, failed, results, first_error) = (&next, &failed, &results, &first_error);
                s.spawn(move || loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let (lo, hi) = (b * batch, ((b + 1) * batch).min(rows));
                    let r = w
                        .run_batch(wi, &theta[lo * d..hi * d], hi - lo, d, &self.cfg)
                        .and_then(|a| self.check_answer(wi, a, hi - lo));
                    match r {
                        Ok(x) => *results[b].lock().unwrap_or_else(|p| p.into_inner()) = Some(x),
                        Err(problem) => {
                            failed.store(true, Ordering::Relaxed);
                            let tail = w.stderr_tail();
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert((problem, tail));
                            return;
                        }
                    }
                });
            }
        });
        if let Some((problem, tail)) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            for w in pool.iter_mut() {
                kill_tree(&mut w.child);
            }
            pool.clear();
            *self.dead.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((problem.clone(), tail.clone()));
            return Err(self.error(problem, tail));
        }
        let mut x = Vec::with_capacity(rows * self.dim_x().unwrap_or(0));
        for r in results {
            x.extend(
                r.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every batch answered"),
            );
        }
        Ok(x)
    }

    fn check_answer(
        &self,
        wi: usize,
        a: Array,
        rows: usize,
    ) -> std::result::Result<Vec<f64>, String> {
        let (r, c) = match *a.shape.as_slice() {
            [r, c] => (r, c),
            _ => {
                return Err(format!(
                    "worker {wi} answered an array of shape ({}), expected 2-D (rows × dx)",
                    a.shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        if r != rows {
            return Err(format!(
                "worker {wi} answered {r} rows for a batch of {rows}"
            ));
        }
        if c == 0 {
            return Err(format!("worker {wi} answered {r}×0: x has no columns"));
        }
        let mut dx = self.dim_x.lock().unwrap_or_else(|p| p.into_inner());
        match *dx {
            None => *dx = Some(c),
            Some(d) if d != c => {
                return Err(format!(
                    "worker {wi} answered {c} columns; the first answer had {d}"
                ))
            }
            _ => {}
        }
        Ok(a.data)
    }

    /// `n` prior draws (seeded) and their simulations.
    pub fn simulate_prior(&self, prior: &Prior, n: usize, seed: u64) -> Result<Simulations> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let theta = prior.sample(n, &mut rng);
        let x = self.simulate(&theta)?;
        let dx = self.dim_x().unwrap_or(1);
        Ok(Simulations {
            theta,
            x,
            dim_theta: self.dim_theta,
            dim_x: dx,
        })
    }
}

impl Drop for ExternalSimulator {
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(|p| p.into_inner());
        for w in pool.iter_mut() {
            w.to_child = None;
        }
        for w in pool.iter_mut() {
            w.shutdown(Duration::from_secs(2));
        }
    }
}

/// Shared handle used by online sources.
pub type SharedExternal = Arc<ExternalSimulator>;
