//! How each node kind's daemon is started, probed for readiness and queried.
//!
//! Every daemon runs in the foreground inside its node's network namespace
//! (`ip netns exec`), in its own process group, with stdout and stderr
//! appended to `<rundir>/daemon.log`:
//!
//! | kind   | command |
//! |--------|---------|
//! | bird   | `bird -f -c <rundir>/bird.conf -s <rundir>/bird.ctl -P <rundir>/bird.pid` |
//! | frr    | `zebra` then `bgpd` (and `chrt -f 10 bfdd --bfdctl <rundir>/bfdd.sock` when the config says `bfd`), each `-P 0 -f <rundir>/<daemon>.conf --vty_socket <rundir> -i <rundir>/<daemon>.pid -z <rundir>/zserv.api --log stdout` |
//! | gobgp  | `gobgpd -f <rundir>/gobgp.toml --api-hosts 127.0.0.1:50051 --pprof-disable -p` |
//! | petrel | `petrel agent --node-name <node> --datastore file:<rundir>/manifests --api-socket <rundir>/<node>.sock [--ipam-dir <labdir>/<dir>]` |
//!
//! FRR runs with zebra (as user `frr`, so its runtime directory is chowned):
//! without zebra, bgpd cannot map an IPv6 link-local next hop to an interface
//! and treats such UPDATEs as withdrawals, which would hide real interop
//! behaviour. zebra installs the learned routes in the node's own namespace.

use crate::topology::Kind;
use anyhow::{Context, bail};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// FRR's daemon directory on Debian.
pub const FRR_DIR: &str = "/usr/lib/frr";
/// gRPC port gobgpd listens on, on the node's own loopback.
pub const GOBGP_API_PORT: u16 = 50051;

/// Everything needed to (re)start and query one node's daemon.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub node: String,
    pub kind: Kind,
    pub netns: String,
    /// Per-node runtime directory (config copy, sockets, pid file, log).
    pub rundir: PathBuf,
    /// Environment of the node's daemons (the topology's `env`).
    pub env: std::collections::BTreeMap<String, String>,
    /// petrel nodes: `--ipam-dir` (default: the agent's, `<manifests>/ipam`).
    pub ipam_dir: Option<PathBuf>,
}

impl DaemonPaths {
    pub fn log_file(&self) -> PathBuf {
        self.rundir.join("daemon.log")
    }
    pub fn bird_socket(&self) -> PathBuf {
        self.rundir.join("bird.ctl")
    }
    /// petrel's live manifest directory.
    pub fn manifests(&self) -> PathBuf {
        self.rundir.join("manifests")
    }
    pub fn petrel_socket(&self) -> PathBuf {
        self.rundir.join(format!("{}.sock", self.node))
    }
    /// Name of the copied config file/dir inside `rundir`.
    pub fn config_copy(&self) -> Option<PathBuf> {
        match self.kind {
            Kind::Bird => Some(self.rundir.join("bird.conf")),
            Kind::Frr => Some(self.rundir.join("bgpd.conf")),
            Kind::Gobgp => Some(self.rundir.join("gobgp.toml")),
            Kind::Petrel => Some(self.manifests()),
            Kind::Linux => None,
        }
    }

    /// The daemons' command lines, in start order (empty for `linux` nodes).
    fn commands(&self) -> anyhow::Result<Vec<Command>> {
        let dir = &self.rundir;
        let mut lines: Vec<(PathBuf, Vec<String>)> = Vec::new();
        match self.kind {
            Kind::Linux => {}
            Kind::Bird => lines.push((
                "bird".into(),
                vec![
                    "-f".into(),
                    "-c".into(),
                    path_arg(&dir.join("bird.conf")),
                    "-s".into(),
                    path_arg(&self.bird_socket()),
                    "-P".into(),
                    path_arg(&dir.join("bird.pid")),
                ],
            )),
            Kind::Frr => {
                let mut daemons = vec![("zebra", "zebra.conf"), ("bgpd", "bgpd.conf")];
                if self.frr_uses_bfd() {
                    daemons.push(("bfdd", "bfdd.conf"));
                }
                for (daemon, conf) in daemons {
                    let mut extra = Vec::new();
                    let mut prog = Path::new(FRR_DIR).join(daemon);
                    if daemon == "bfdd" {
                        // Its control socket in the node's directory, not
                        // the host's /var/run/frr; real-time priority, as a
                        // ToR's BFD has its own CPU: on a loaded test
                        // machine a starved bfdd takes sessions down.
                        extra = vec![
                            "-f".into(),
                            "10".into(),
                            path_arg(&prog),
                            "--bfdctl".into(),
                            path_arg(&dir.join("bfdd.sock")),
                        ];
                        prog = PathBuf::from("chrt");
                    }
                    lines.push((
                        prog,
                        extra
                            .into_iter()
                            .chain(vec![
                                "-P".into(),
                                "0".into(),
                                "-f".into(),
                                path_arg(&dir.join(conf)),
                                "--vty_socket".into(),
                                path_arg(dir),
                                "-i".into(),
                                path_arg(&dir.join(format!("{daemon}.pid"))),
                                "-z".into(),
                                path_arg(&self.zserv_socket()),
                                "--log".into(),
                                "stdout".into(),
                            ])
                            .collect(),
                    ));
                }
            }
            Kind::Gobgp => lines.push((
                "gobgpd".into(),
                vec![
                    "-f".into(),
                    path_arg(&dir.join("gobgp.toml")),
                    "--api-hosts".into(),
                    format!("127.0.0.1:{GOBGP_API_PORT}"),
                    "--pprof-disable".into(),
                    "-p".into(),
                ],
            )),
            Kind::Petrel => {
                let mut args = vec![
                    "agent".into(),
                    "--node-name".into(),
                    self.node.clone(),
                    "--datastore".into(),
                    format!("file:{}", self.manifests().display()),
                    "--api-socket".into(),
                    path_arg(&self.petrel_socket()),
                ];
                if let Some(dir) = &self.ipam_dir {
                    args.extend(["--ipam-dir".into(), path_arg(dir)]);
                }
                lines.push((petrel_bin()?, args));
            }
        }
        Ok(lines
            .into_iter()
            .map(|(prog, args)| {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.netns])
                    .arg(prog)
                    .args(args);
                if self.kind == Kind::Petrel {
                    let filter =
                        std::env::var("PETREL_TESTBED_LOG").unwrap_or_else(|_| "info".into());
                    cmd.env("RUST_LOG", filter).env("NO_COLOR", "1");
                }
                cmd
            })
            .collect())
    }

    /// Whether an FRR node's configuration mentions BFD (`neighbor X bfd`):
    /// then bfdd runs too, with its own (empty) configuration; bgpd
    /// registers its sessions with it through zebra.
    pub fn frr_uses_bfd(&self) -> bool {
        self.kind == Kind::Frr
            && std::fs::read_to_string(self.rundir.join("bgpd.conf")).is_ok_and(|c| {
                c.lines().any(|l| {
                    !l.trim_start().starts_with('!') && l.split_whitespace().any(|w| w == "bfd")
                })
            })
    }

    /// zebra's API socket (FRR nodes).
    pub fn zserv_socket(&self) -> PathBuf {
        self.rundir.join("zserv.api")
    }

    /// Prepares the runtime directory after the config was copied: FRR's
    /// daemons drop privileges to user `frr`, so it must own the directory.
    pub fn prepare(&self) -> anyhow::Result<()> {
        if self.kind == Kind::Frr {
            for conf in ["zebra.conf", "bfdd.conf"] {
                let path = self.rundir.join(conf);
                if !path.exists() {
                    std::fs::write(&path, "! written by the petrel testbed\n")?;
                }
            }
            let mut c = Command::new("chown");
            c.arg("-R").arg("frr:frr").arg(&self.rundir);
            run(c).context("FRR runs as user frr (is the frr package installed?)")?;
        }
        Ok(())
    }

    /// Starts `cmd` with the node's environment (the topology's `env`), its
    /// output appended to the node's log, leading its own process group.
    pub fn spawn_logged(&self, mut cmd: Command) -> anyhow::Result<Child> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .with_context(|| format!("opening {}", self.log_file().display()))?;
        writeln!(log, "==== testbed: starting {cmd:?}")?;
        let err = log.try_clone()?;
        cmd.envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .process_group(0);
        cmd.spawn()
            .with_context(|| format!("node {}: starting {cmd:?}", self.node))
    }

    /// Starts the daemons (appending to the log); each child leads its own
    /// process group. Empty for `linux` nodes.
    pub fn spawn(&self) -> anyhow::Result<Vec<Child>> {
        self.spawn_with_env(&[])
    }

    /// [`DaemonPaths::spawn`] with extra environment variables (test hooks).
    pub fn spawn_with_env(&self, env: &[(&str, &str)]) -> anyhow::Result<Vec<Child>> {
        let mut children = Vec::new();
        for mut cmd in self.commands()? {
            cmd.envs(env.iter().copied());
            children.push(self.spawn_logged(cmd)?);
            if self.kind == Kind::Frr && children.len() == 1 {
                // Let zebra create its API socket before bgpd connects to it.
                let start = std::time::Instant::now();
                while !self.zserv_socket().exists()
                    && start.elapsed() < std::time::Duration::from_secs(10)
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        Ok(children)
    }

    /// One readiness probe: `Ok(())` once the daemon's control interface answers.
    pub fn probe(&self) -> anyhow::Result<()> {
        match self.kind {
            Kind::Linux => Ok(()),
            Kind::Bird => self.birdc("show status").map(drop),
            Kind::Frr => self.vtysh("show bgp summary").map(drop),
            Kind::Gobgp => self.gobgp("global").map(drop),
            Kind::Petrel => {
                if !self.petrel_socket().exists() {
                    bail!(
                        "api socket {} not there yet",
                        self.petrel_socket().display()
                    );
                }
                self.petrel("peers -o json").map(drop)
            }
        }
    }

    /// `birdc -s <sock> <cmd>`.
    pub fn birdc(&self, cmd: &str) -> anyhow::Result<String> {
        self.expect_kind(Kind::Bird)?;
        let mut c = Command::new("birdc");
        c.arg("-s")
            .arg(self.bird_socket())
            .args(cmd.split_whitespace());
        let out = run(c)?;
        // birdc exits 0 on most errors; its error replies start with a code.
        if let Some(line) = out
            .lines()
            .find(|l| l.starts_with("syntax error") || l.starts_with("Unable to connect"))
        {
            bail!("birdc {cmd:?} on {}: {line}", self.node);
        }
        Ok(out)
    }

    /// `vtysh --vty_socket <rundir> -c <line>...`; each line of `cmd` is one `-c`.
    pub fn vtysh(&self, cmd: &str) -> anyhow::Result<String> {
        self.expect_kind(Kind::Frr)?;
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(&self.rundir);
        for line in cmd.lines().map(str::trim).filter(|l| !l.is_empty()) {
            c.arg("-c").arg(line);
        }
        run(c)
    }

    /// `gobgp -u 127.0.0.1 -p 50051 <args>` inside the node's namespace.
    pub fn gobgp(&self, args: &str) -> anyhow::Result<String> {
        self.expect_kind(Kind::Gobgp)?;
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.netns,
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
        ])
        .arg(GOBGP_API_PORT.to_string())
        .args(args.split_whitespace());
        run(c)
    }

    /// `petrel --api-socket <sock> <args>`.
    pub fn petrel(&self, args: &str) -> anyhow::Result<String> {
        self.expect_kind(Kind::Petrel)?;
        let mut c = Command::new(petrel_bin()?);
        c.arg("--api-socket")
            .arg(self.petrel_socket())
            .args(args.split_whitespace());
        run(c)
    }

    fn expect_kind(&self, kind: Kind) -> anyhow::Result<()> {
        if self.kind != kind {
            bail!("node {} is of kind {}, not {kind}", self.node, self.kind);
        }
        Ok(())
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Runs a command to completion; error (with stderr and stdout) unless it exits 0.
pub fn run(mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\nstdout: {}", stdout.trim())
            }
        );
    }
    Ok(stdout)
}

/// The workspace's cargo target directory: `$CARGO_TARGET_DIR` (relative to
/// the workspace) or `target/`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    }
}

/// The cargo profile directory (`<target>/<profile>`) of the binary at
/// `exe`: its directory, or the one above when it is a test binary in
/// `<target>/<profile>/deps`.
pub fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// The petrel binary: `$PETREL_BIN`, else `petrel` of the profile the
/// running binary was built with (`<target>/release/petrel` for tests built
/// with `--release`), else `<target>/debug/petrel` where `<target>` is
/// `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn petrel_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PETREL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let profile = std::env::current_exe()
        .ok()
        .and_then(|exe| profile_dir_of(&exe));
    let debug = target_dir().join("debug").join("petrel");
    let bin = match profile.map(|d| d.join("petrel")) {
        Some(own) if own.is_file() => own,
        // A binary outside cargo's target directory (copied, installed).
        Some(own) if !own.starts_with(target_dir()) && debug.is_file() => debug,
        Some(own) => bail!(
            "petrel binary not found at {}: run `cargo build --bin petrel` with the profile \
             the tests were built with (`--release` too), or set PETREL_BIN",
            own.display()
        ),
        None if debug.is_file() => debug,
        None => bail!(
            "petrel binary not found at {}: run `cargo build --bin petrel` or set PETREL_BIN",
            debug.display()
        ),
    };
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_follows_the_running_binary() {
        let t = Path::new("/w/target");
        assert_eq!(
            profile_dir_of(&t.join("release/deps/cli-0123abcd")),
            Some(t.join("release"))
        );
        assert_eq!(
            profile_dir_of(&t.join("debug/deps/cli-0123abcd")),
            Some(t.join("debug"))
        );
        assert_eq!(
            profile_dir_of(&t.join("x86_64-unknown-linux-gnu/release/testbed")),
            Some(t.join("x86_64-unknown-linux-gnu/release"))
        );
        // This very test binary: its profile directory holds petrel when the
        // binaries were built with the same profile.
        let me = std::env::current_exe().unwrap();
        let dir = profile_dir_of(&me).unwrap();
        assert!(me.starts_with(&dir));
        assert_ne!(dir.file_name().unwrap(), "deps");
    }
}
