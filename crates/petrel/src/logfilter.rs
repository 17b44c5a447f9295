//! The agent's log filter. kube's client and watcher log every failed
//! request themselves (`kube_client` at error, `kube_runtime` at warn: the
//! full 403 Status of an unreadable Secret every few seconds); petrel reports
//! those failures itself, once. So both targets are off unless the filter
//! the user gives (`--log-level`, `RUST_LOG`) names them.

/// Targets silenced unless named.
const NOISY: [&str; 2] = ["kube_client", "kube_runtime"];

/// Filter when neither `--log-level` nor `RUST_LOG` is given.
pub const DEFAULT: &str = "info";

/// `spec` with `<target>=off` appended for each of kube's targets it does
/// not name.
pub fn with_quiet_kube(spec: &str) -> String {
    let mut out = spec.trim().to_string();
    for target in NOISY {
        let named = spec.split(',').any(|d| {
            let d = d.trim();
            // `target`, `target=level`, `target::module=...`, `target[span]=...`
            d.strip_prefix(target)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['=', ':', '[']))
        });
        if !named {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(target);
            out.push_str("=off");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_targets_off_unless_named() {
        assert_eq!(
            with_quiet_kube("info"),
            "info,kube_client=off,kube_runtime=off"
        );
        assert_eq!(
            with_quiet_kube("debug,kube_runtime=debug"),
            "debug,kube_runtime=debug,kube_client=off"
        );
        assert_eq!(
            with_quiet_kube("kube_client::client=trace,kube_runtime"),
            "kube_client::client=trace,kube_runtime"
        );
        // A target that merely starts like one of kube's is not kube's.
        assert_eq!(
            with_quiet_kube("kube_runtimex=info"),
            "kube_runtimex=info,kube_client=off,kube_runtime=off"
        );
        assert_eq!(with_quiet_kube(""), "kube_client=off,kube_runtime=off");
    }
}
