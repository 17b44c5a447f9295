//! The `petrel` binary: the node agent and its command-line client.

use clap::{Parser, Subcommand};
use petrel::agent::{AgentOptions, DatastoreSpec};
use petrel::cli::Output;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "petrel",
    version,
    about = "BGP-based layer-3 routing agent for Kubernetes"
)]
struct Cli {
    /// Management API socket of the agent.
    #[arg(
        long,
        global = true,
        env = "PETREL_API_SOCKET",
        default_value = "/run/petrel/petrel.sock"
    )]
    api_socket: PathBuf,
    /// Log format of the agent.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter of the agent: a level (error, warn, info, debug, trace) or
    /// a tracing filter such as `info,petrel_speaker=debug`. Overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Pools, this node's blocks (and other nodes'), allocations.
    Show {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Check that every allocation is in a confirmed block of this node, no
    /// address is allocated twice and no gateway is allocated; fails if not.
    Check {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent.
    Agent {
        /// Name of this node (the Node object that gives its BGP identity).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// Configuration source: file:DIR (a directory of YAML manifests) or
        /// kubernetes (the API server).
        #[arg(long, env = "PETREL_DATASTORE", value_parser = clap::value_parser!(DatastoreSpec))]
        datastore: DatastoreSpec,
        /// Kubeconfig for --datastore kubernetes (default: in-cluster, then
        /// $KUBECONFIG or ~/.kube/config).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Namespace of the Secrets that BGPPeers reference (kubernetes).
        #[arg(long, env = "PETREL_NAMESPACE", default_value = "petrel-system")]
        namespace: String,
        /// Cache of the last good configuration from the API server, used when
        /// it is unreachable at start-up (kubernetes).
        #[arg(long, value_name = "FILE")]
        cache_file: Option<PathBuf>,
        /// IPAM state directory for file:DIR, shared by every agent of the
        /// cluster on this host [default: DIR/ipam].
        #[arg(long, value_name = "DIR")]
        ipam_dir: Option<PathBuf>,
        /// Write the CNI network configuration (10-petrel.conflist: ptp with
        /// petrel-ipam) into this directory, e.g. /etc/cni/net.d.
        #[arg(long, value_name = "DIR")]
        cni_conf_dir: Option<PathBuf>,
        /// MTU of pod interfaces in the CNI configuration.
        #[arg(long)]
        cni_mtu: Option<u32>,
        /// Kernel routing table for learned routes (254 = main).
        #[arg(long, default_value_t = 254)]
        route_table: u32,
        /// Route protocol number marking petrel's kernel routes; only routes
        /// with this number are ever changed or deleted.
        #[arg(long, default_value_t = petrel_dataplane::RTPROT_PETREL)]
        route_protocol: u8,
        /// How long routes found in the kernel at start-up are kept when the
        /// peers never all send End-of-RIB.
        #[arg(long, default_value = "120", value_name = "SECONDS")]
        stale_timeout: u64,
        /// Leave petrel's kernel routes in place when the agent stops, for
        /// restarts and upgrades: the next agent adopts them and removes
        /// only those no longer wanted, after End-of-RIB. Without it the
        /// routes are removed on exit.
        #[arg(long, env = "PETREL_KEEP_ROUTES_ON_EXIT")]
        keep_routes_on_exit: bool,
        /// On SIGTERM, drain for this long before stopping: the node's routes
        /// go out again with the GRACEFUL_SHUTDOWN community (RFC 8326) and
        /// LOCAL_PREF 0 on iBGP, so traffic moves away first. 0: stop at once.
        #[arg(
            long,
            env = "PETREL_DRAIN_SECONDS",
            default_value = "0",
            value_name = "SECONDS"
        )]
        drain_seconds: u64,
        /// Address of the Prometheus /metrics, /healthz and /readyz endpoints,
        /// or "off".
        #[arg(
            long,
            env = "PETREL_METRICS_LISTEN",
            default_value = petrel::metrics::DEFAULT_LISTEN,
            value_name = "ADDR:PORT|off"
        )]
        metrics_listen: petrel::metrics::MetricsListen,
    },
    /// Summarize a running agent: sessions per state, peers, dataplane.
    Status,
    /// Show the BGP sessions of a running agent.
    Peers {
        /// Only the peer with this address (or configuration name, e.g. bgppeer/tor1).
        #[arg(value_name = "ADDR")]
        peer: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show the BFD sessions of a running agent (peers with a BFDProfile):
    /// state, discriminators, negotiated intervals, detection time, last
    /// state change and diagnostic.
    Bfd {
        /// Only the session with this peer address.
        #[arg(value_name = "ADDR")]
        peer: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show routes: the Loc-RIB (every path, why it lost), per peer the
    /// routes received before import policy or advertised, or the kernel
    /// routes petrel owns.
    Routes {
        /// Only routes for this prefix or address: the exact prefix and the
        /// prefixes covering it.
        #[arg(value_name = "PREFIX", value_parser = petrel::cli::parse_prefix)]
        prefix: Option<ipnet::IpNet>,
        /// Only routes of this peer (address or configuration name).
        #[arg(long, value_name = "ADDR")]
        peer: Option<String>,
        /// Routes received from peers, before import policy (Adj-RIB-In).
        #[arg(long, group = "view")]
        received: bool,
        /// Routes advertised to peers (Adj-RIB-Out).
        #[arg(long, group = "view")]
        advertised: bool,
        /// The kernel routes petrel owns.
        #[arg(long, group = "view", conflicts_with = "peer")]
        kernel: bool,
        /// Only this family: ipv4 or ipv6.
        #[arg(long)]
        family: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show pod address management: pools, blocks, allocations, or check
    /// their consistency.
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Show the service prefixes advertised and the service addresses not
    /// advertised, with the reason.
    Services {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Explain the path of one address: pool, block and owner, pod, Loc-RIB
    /// route and peer, session, kernel route, service.
    Explain {
        #[arg(value_name = "IP")]
        ip: std::net::IpAddr,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Follow session transitions and best-path changes as they happen.
    Events {
        /// Only session transitions, no route changes.
        #[arg(long)]
        sessions_only: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// table: one line per event; json: one object per line.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Change the running agent's log filter, e.g. `debug` or
    /// `info,petrel_speaker=debug`.
    LogLevel {
        #[arg(value_name = "FILTER")]
        filter: String,
    },
    /// Show the kernel routes petrel manages: counts, next hops that do not
    /// resolve, conflicts with other protocols, kernel errors.
    Dataplane {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Convert Calico projectcalico.org/v3 BGPPeer, BGPConfiguration,
    /// BGPFilter and IPPool manifests to petrel.dev/v1 (YAML on stdout, one
    /// warning per unsupported field on stderr).
    ConvertCalico {
        /// Manifest files (multi-document YAML); `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `petrel convert-calico`: reads every file first, so an unreadable one
/// fails before anything is printed.
fn convert_calico(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        let name = f.display().to_string();
        let content = if name == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(f)
        }
        .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
        inputs.push((name, content));
    }
    let c = petrel::cli::convert::convert_calico(&inputs)?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", c.yaml);
    Ok(())
}

fn init_logging(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    use petrel::logfilter::{DEFAULT, with_quiet_kube};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt, reload};
    // kube's own logs stay off unless the filter names them (petrel::logfilter).
    let filter = match level {
        Some(l) => EnvFilter::try_new(with_quiet_kube(l))
            .map_err(|e| format!("invalid --log-level {l:?}: {e}"))?,
        None => std::env::var("RUST_LOG")
            .ok()
            .and_then(|env| EnvFilter::try_new(with_quiet_kube(&env)).ok())
            .unwrap_or_else(|| EnvFilter::new(with_quiet_kube(DEFAULT))),
    };
    // The filter sits behind a reload layer so `petrel log-level` can
    // replace it at run time (petrel_api::log).
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    petrel_api::log::set_log_control(Box::new(move |new: &str| {
        let f = EnvFilter::try_new(new).map_err(|e| format!("invalid log filter {new:?}: {e}"))?;
        let previous = handle
            .with_current(|cur| cur.to_string())
            .map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())?;
        Ok(previous)
    }));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petrel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        match cli.command {
            Command::Agent {
                node_name,
                datastore,
                kubeconfig,
                namespace,
                cache_file,
                ipam_dir,
                cni_conf_dir,
                cni_mtu,
                route_table,
                route_protocol,
                stale_timeout,
                keep_routes_on_exit,
                drain_seconds,
                metrics_listen,
            } => {
                init_logging(cli.log_format, cli.log_level.as_deref())
                    .map_err(anyhow::Error::msg)?;
                let dataplane = petrel_dataplane::DataplaneConfig {
                    table: route_table,
                    protocol: route_protocol,
                    stale_timeout: std::time::Duration::from_secs(stale_timeout),
                    ..Default::default()
                };
                petrel::agent::run(AgentOptions {
                    node_name,
                    datastore,
                    kubeconfig,
                    namespace,
                    cache_file,
                    ipam_dir,
                    cni_conf_dir,
                    cni_mtu,
                    api_socket: cli.api_socket,
                    dataplane,
                    metrics_listen,
                    keep_routes_on_exit,
                    drain: std::time::Duration::from_secs(drain_seconds),
                })
                .await
            }
            Command::Status => {
                let node = std::env::var("NODE_NAME").ok();
                Ok(petrel::cli::status(&cli.api_socket, node.as_deref()).await?)
            }
            Command::Peers { peer, output } => {
                Ok(petrel::cli::peers(&cli.api_socket, peer, output).await?)
            }
            Command::Bfd { peer, output } => {
                Ok(petrel::cli::bfd::bfd(&cli.api_socket, peer, output).await?)
            }
            Command::Routes {
                prefix,
                peer,
                received,
                advertised,
                kernel,
                family,
                output,
            } => {
                use petrel::cli::RouteView;
                let view = match (received, advertised, kernel) {
                    (true, _, _) => RouteView::Received,
                    (_, true, _) => RouteView::Advertised,
                    (_, _, true) => RouteView::Kernel,
                    _ => RouteView::LocRib,
                };
                Ok(
                    petrel::cli::routes(&cli.api_socket, view, peer, family, prefix, output)
                        .await?,
                )
            }
            Command::Ipam { command } => match command {
                IpamCommand::Show { output } => {
                    Ok(petrel::cli::ipam::show(&cli.api_socket, output).await?)
                }
                IpamCommand::Check { output } => {
                    Ok(petrel::cli::ipam::check_cmd(&cli.api_socket, output).await?)
                }
            },
            Command::Services { output } => {
                Ok(petrel::cli::services(&cli.api_socket, output).await?)
            }
            Command::Explain { ip, output } => {
                Ok(petrel::cli::explain::run(&cli.api_socket, ip, output).await?)
            }
            Command::Events {
                sessions_only,
                count,
                output,
            } => Ok(petrel::cli::events::run(&cli.api_socket, sessions_only, count, output).await?),
            Command::LogLevel { filter } => {
                Ok(petrel::cli::log_level(&cli.api_socket, filter).await?)
            }
            Command::Dataplane { output } => {
                Ok(petrel::cli::dataplane(&cli.api_socket, output).await?)
            }
            Command::Crds => {
                print!("{}", petrel_crd::crd_manifests());
                Ok(())
            }
            Command::ConvertCalico { files } => convert_calico(&files),
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "petrel", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script)
                    .map_err(|e| anyhow::anyhow!("cannot write the completion script: {e}"))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e:#}");
            ExitCode::FAILURE
        }
    }
}
