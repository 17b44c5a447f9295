//! `petrel-ipam`: the CNI IPAM plugin of petrel (CNI spec 1.0.0/1.1.0).
//! Runtimes and main plugins (e.g. `ptp`) run it with `CNI_*` variables and
//! the network configuration on stdin; it asks the local `petrel agent` for
//! addresses over the agent's API socket. See the `petrel_cni` library.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let get = |name: &str| std::env::var(name).ok();
    // Without CNI_COMMAND nothing is read (stdin may be a terminal); the
    // plugin reports the missing variable.
    let stdin = if get("CNI_COMMAND").is_some_and(|c| !c.is_empty()) {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        Ok(Vec::new())
    };
    let out = petrel_cni::run_io(get, stdin);
    if let Some(log) = &out.log {
        eprintln!("{log}");
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.stdout.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    ExitCode::from(out.exit_code)
}
