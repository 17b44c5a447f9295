//! Throwaway network namespaces for the dataplane's tests and benchmarks and the testbed: named
//! like `ip netns add` does (bind mounts under `/run/netns`), so `ip -n NAME ...` works on them.
//! A dataplane runs in one by starting it on a dedicated thread that has entered the namespace
//! (never `setns` a tokio worker thread).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

use super::{DataplaneConfig, DataplaneError, DataplaneHandle, start};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn run(cmd: &mut Command, input: Option<&str>) -> io::Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Netns {
    /// Creates `<prefix>-<pid>-<counter>` with `lo` up.
    pub fn create(prefix: &str) -> io::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]), None)?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NAME args...` and returns its standard output.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        run(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            None,
        )
    }

    /// Runs `ip -n NAME -batch -` with `script` on standard input.
    pub fn ip_batch(&self, script: &str) -> io::Result<()> {
        run(
            Command::new("ip")
                .arg("-n")
                .arg(&self.name)
                .args(["-batch", "-"]),
            Some(script),
        )
        .map(drop)
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> io::Result<()> {
        let file = File::open(self.path())?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Starts a dataplane inside this namespace on its own thread with a current-thread runtime.
    pub fn start_dataplane(
        &self,
        config: DataplaneConfig,
    ) -> Result<NetnsDataplane, DataplaneError> {
        let path = self.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("dataplane-{}", self.name))
            .spawn(move || {
                let entered = File::open(&path)
                    .and_then(|f| setns(&f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
                if let Err(source) = entered {
                    let _ = tx.send(Err(DataplaneError::Socket {
                        which: "netns",
                        source,
                    }));
                    return;
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = tx.send(Err(DataplaneError::Socket {
                            which: "runtime",
                            source,
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match start(config).await {
                        Ok((handle, task)) => {
                            let _ = tx.send(Ok(handle));
                            let _ = task.await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|source| DataplaneError::Socket {
                which: "thread",
                source,
            })?;
        let handle = rx.recv().map_err(|_| DataplaneError::Stopped)??;
        Ok(NetnsDataplane {
            handle: Some(handle),
            thread: Some(thread),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]), None);
    }
}

/// A dataplane running on its own thread inside a namespace. Dropping it drops its handle (the
/// task stops and leaves routes installed) and joins the thread.
pub struct NetnsDataplane {
    handle: Option<DataplaneHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NetnsDataplane {
    pub fn handle(&self) -> &DataplaneHandle {
        self.handle
            .as_ref()
            .unwrap_or_else(|| unreachable!("handle is only taken in drop"))
    }
}

impl Drop for NetnsDataplane {
    fn drop(&mut self) {
        self.handle.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
