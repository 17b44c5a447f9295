//! `testbed`: deploy a containerlab-format topology into network namespaces.
//!
//! ```text
//! testbed deploy testbed/topologies/demo/topology.clab.yaml --wait 60 --show
//! testbed cleanup
//! ```

use anyhow::bail;
use clap::{Parser, Subcommand};
use petrel_testbed::{Kind, Lab, cleanup_stale, is_root, wait_for};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "Network-namespace testbed for petrel",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Deploy a topology; runs until Ctrl-C (or SIGTERM), then tears it down.
    Deploy {
        /// Topology file (containerlab format).
        topology: PathBuf,
        /// Wait up to this many seconds until every BGP session of every node
        /// is Established; fail if they are not.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// Print each node's view of its sessions after deploying (and waiting).
        #[arg(long)]
        show: bool,
        /// Tear down right after deploying (and waiting/showing) instead of
        /// waiting for Ctrl-C.
        #[arg(long)]
        exit: bool,
        /// Create this many pods on every petrel node through the real CNI
        /// chain (ptp with petrel-ipam, as a container runtime does), then
        /// ping every pod from every other node's pods (IPv4 and IPv6).
        #[arg(long, value_name = "N", default_value_t = 0)]
        pods: usize,
    },
    /// Remove namespaces and temp dirs of labs whose process is gone.
    Cleanup,
    /// Whole-daemon benchmark: petrel, BIRD, FRR and GoBGP passing N routes from a generator to a sink.
    BenchDaemons(petrel_testbed::bench_daemons::BenchArgs),
    /// Cluster-scale run: N agents in two racks behind FRR ToRs with two
    /// route reflectors; cold start, block propagation, withdrawal, idle cost.
    Scale(petrel_testbed::scale::ScaleArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !is_root() {
        bail!("testbed needs root (it creates network namespaces); run it with sudo");
    }
    match cli.command {
        Cmd::BenchDaemons(args) => petrel_testbed::bench_daemons::run(&args),
        Cmd::Scale(args) => petrel_testbed::scale::run(&args),
        Cmd::Cleanup => {
            for removed in cleanup_stale()? {
                println!("removed {removed}");
            }
            Ok(())
        }
        Cmd::Deploy {
            topology,
            wait,
            show,
            exit,
            pods,
        } => deploy(&topology, wait, show, exit, pods),
    }
}

fn deploy(
    topology: &std::path::Path,
    wait: Option<u64>,
    show: bool,
    exit: bool,
    pods: usize,
) -> anyhow::Result<()> {
    let lab = Lab::deploy(topology)?;
    println!(
        "lab {} deployed (prefix {}, runtime dir {})",
        lab.name(),
        lab.prefix(),
        lab.root().display()
    );
    print_access(&lab)?;
    let mut result = Ok(());
    if let Some(secs) = wait {
        let waited = wait_for(
            Duration::from_secs(secs),
            "every BGP session Established",
            || all_established(&lab),
        );
        match waited {
            Ok(ends) => println!("{}", petrel_testbed::status::established_summary(ends)),
            Err(e) => {
                eprintln!("{e:#}\n{}", lab.dump_logs());
                result = Err(e);
            }
        }
    }
    if show {
        print_views(&lab);
    }
    // Pods live until the lab goes (their namespaces are the lab's).
    let mut created = Vec::new();
    if pods > 0 && result.is_ok() {
        match pods::demo(&lab, pods) {
            Ok(p) => created = p,
            Err(e) => {
                eprintln!("{e:#}\n{}", lab.dump_logs());
                result = Err(e);
            }
        }
    }
    if exit || result.is_err() {
        drop(created);
        return result;
    }
    println!("running; press Ctrl-C to tear down");
    wait_for_signal()?;
    println!("tearing down {}", lab.prefix());
    Ok(())
}

mod pods;

fn all_established(lab: &Lab) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut down = Vec::new();
    for node in lab.nodes() {
        if lab.kind(node)? == Kind::Linux {
            continue;
        }
        for s in lab.sessions(node)? {
            if s.is_established() {
                count += 1;
            } else {
                down.push(format!("{node}->{} is {}", s.address, s.state));
            }
        }
    }
    if down.is_empty() {
        Ok(count)
    } else {
        bail!("not Established: {}", down.join(", "))
    }
}

fn print_access(lab: &Lab) -> anyhow::Result<()> {
    println!("nodes:");
    for node in lab.nodes() {
        let ns = lab.netns(node)?;
        let dir = lab.rundir(node)?;
        let how = match lab.kind(node)? {
            Kind::Bird => format!("birdc -s {}/bird.ctl", dir.display()),
            Kind::Frr => format!("vtysh --vty_socket {}", dir.display()),
            Kind::Gobgp => format!("ip netns exec {ns} gobgp"),
            Kind::Petrel => format!(
                "{} --api-socket {}   (manifests: {})",
                petrel_testbed::daemon::petrel_bin()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "petrel".into()),
                lab.api_socket(node)?.display(),
                lab.node_dir(node).display()
            ),
            Kind::Linux => String::new(),
        };
        println!("  {node:<10} ip netns exec {ns} bash    {how}");
    }
    Ok(())
}

fn print_views(lab: &Lab) {
    // Each router's own view: its sessions, then the routes it holds (what
    // it learned from petrel, and what petrel learned from it).
    for node in lab.nodes() {
        let views: Vec<(&str, anyhow::Result<String>)> = match lab.kind(node) {
            Ok(Kind::Petrel) => vec![
                ("petrel peers", lab.petrel(node, "peers")),
                ("petrel routes", lab.petrel(node, "routes")),
                (
                    "petrel routes --received (RCVD counts every prefix a peer sent, ACCEPTED \
                     those import policy kept; IMPORT says why the others were rejected)",
                    lab.petrel(node, "routes --received"),
                ),
            ],
            Ok(Kind::Bird) => vec![
                ("birdc show protocols", lab.birdc(node, "show protocols")),
                ("birdc show route", lab.birdc(node, "show route")),
            ],
            Ok(Kind::Frr) => vec![
                ("show bgp summary", lab.vtysh(node, "show bgp summary")),
                (
                    "show bgp ipv4 unicast",
                    lab.vtysh(node, "show bgp ipv4 unicast"),
                ),
                (
                    "show bgp ipv6 unicast",
                    lab.vtysh(node, "show bgp ipv6 unicast"),
                ),
            ],
            Ok(Kind::Gobgp) => vec![
                ("gobgp neighbor", lab.gobgp(node, "neighbor")),
                ("gobgp global rib", lab.gobgp(node, "global rib")),
                (
                    "gobgp global rib -a ipv6",
                    lab.gobgp(node, "global rib -a ipv6"),
                ),
            ],
            _ => continue,
        };
        println!("===== {node} =====");
        for (title, view) in views {
            println!("--- {title}");
            match view {
                Ok(text) => println!("{}", text.trim_end()),
                Err(e) => println!("error: {e:#}"),
            }
        }
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
