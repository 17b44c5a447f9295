//! petrel's Prometheus and health endpoints against a live session
//! (`interop-bird` topology): the agent serves them on its default
//! `127.0.0.1:9179`, which is the loopback of the petrel node's own network
//! namespace, so the test fetches them with `curl` inside that namespace.
//! Run as root: `cargo test -p petrel-testbed --test metrics`.

mod common;

use anyhow::Context;
use common::petrel::*;
use common::*;
use petrel_testbed::{Lab, wait_for};

const PETREL: &str = "petrel";
const BIRD_V4: &str = "10.0.0.2";
const BIRD_V6: &str = "fd00:10::2";
/// BIRD announces two prefixes per family (interop-bird/bird.conf), each
/// family on its own session.
const PER_FAMILY: f64 = 2.0;
/// `petrel agent`'s default `--metrics-listen`.
const METRICS: &str = "http://127.0.0.1:9179";

/// `GET path` inside the petrel node: (status code, body).
fn get(lab: &Lab, path: &str) -> anyhow::Result<(u16, String)> {
    let out = lab.exec(
        PETREL,
        &format!("curl -sS --max-time 10 -w '\\n%{{http_code}}' {METRICS}{path}"),
    )?;
    let (body, code) = out
        .trim_end()
        .rsplit_once('\n')
        .with_context(|| format!("no status line from curl: {out:?}"))?;
    let code = code
        .trim()
        .parse()
        .with_context(|| format!("bad status {code:?}"))?;
    Ok((code, body.trim_end().to_string()))
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            let set = rest.strip_suffix('}')?;
            let matches = n == name
                && labels
                    .iter()
                    .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
        .collect();
    match found[..] {
        [v] => Ok(v),
        [] => anyhow::bail!("no sample {name}{labels:?} in\n{text}"),
        _ => anyhow::bail!("several samples {name}{labels:?}: {found:?}"),
    }
}

fn metrics(lab: &Lab) -> anyhow::Result<String> {
    let (code, body) = get(lab, "/metrics")?;
    anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
    Ok(body)
}

#[test]
fn metrics_and_health_follow_the_sessions() {
    let lab = deploy("interop-bird");
    lab.check(|lab| {
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;

        // Per-peer series match what BIRD sent and what `petrel peers` says.
        let text = wait_for(PROPAGATE, "every BIRD prefix in the metrics", || {
            let text = metrics(lab)?;
            for address in [BIRD_V4, BIRD_V6] {
                let got = sample(
                    &text,
                    "petrel_bgp_prefixes_received",
                    &[("address", address)],
                )?;
                anyhow::ensure!(got == PER_FAMILY, "{address}: {got} prefixes received");
            }
            Ok(text)
        })?;
        let peers = lab.petrel_peers(PETREL)?;
        for address in [BIRD_V4, BIRD_V6] {
            let peer = peers
                .iter()
                .find(|p| p.address == address)
                .with_context(|| format!("petrel peers has no {address}"))?;
            let l = [("peer", peer.name.as_str()), ("address", address)];
            let state = [
                ("peer", peer.name.as_str()),
                ("address", address),
                ("state", "Established"),
            ];
            for (name, labels, want) in [
                ("petrel_bgp_session_established", &l[..], 1.0),
                ("petrel_bgp_session_state", &state[..], 1.0),
                ("petrel_bgp_prefixes_accepted", &l[..], PER_FAMILY),
                ("petrel_bgp_established_transitions_total", &l[..], 1.0),
            ] {
                let got = sample(&text, name, labels)?;
                anyhow::ensure!(got == want, "{name}{labels:?} = {got}, want {want}");
            }
            let received = sample(&text, "petrel_bgp_messages_received_total", &l)?;
            anyhow::ensure!(
                received >= 3.0,
                "{address}: {received} messages received (OPEN, KEEPALIVE, UPDATE at least)"
            );
        }
        let installed = sample(&text, "petrel_dataplane_routes_installed", &[])?;
        anyhow::ensure!(
            installed >= 2.0 * PER_FAMILY,
            "{installed} kernel routes installed"
        );
        // Installing BIRD's routes took at least one timed reconcile pass.
        let passes = sample(
            &text,
            "petrel_dataplane_reconcile_duration_seconds_count",
            &[],
        )?;
        let inf = sample(
            &text,
            "petrel_dataplane_reconcile_duration_seconds_bucket",
            &[("le", "+Inf")],
        )?;
        anyhow::ensure!(
            passes >= 1.0 && inf == passes,
            "reconcile histogram: count {passes}, +Inf bucket {inf}"
        );
        for name in [
            "petrel_dataplane_routes_unresolved",
            "petrel_dataplane_routes_errors",
        ] {
            let got = sample(&text, name, &[])?;
            anyhow::ensure!(got == 0.0, "{name} = {got}");
        }

        let (code, body) = get(lab, "/healthz")?;
        anyhow::ensure!(code == 200 && body == "ok", "/healthz: {code} {body:?}");
        wait_for(UP, "/readyz to answer 200", || {
            let (code, body) = get(lab, "/readyz")?;
            anyhow::ensure!(code == 200 && body == "ok", "/readyz: {code} {body:?}");
            Ok(())
        })?;

        // The IPv4 session going down shows in its series, not in the other's.
        lab.birdc("bird", "disable petrel4")?;
        wait_for(PROPAGATE, "the IPv4 session to leave Established", || {
            let text = metrics(lab)?;
            let v4 = [("address", BIRD_V4)];
            let established = sample(&text, "petrel_bgp_session_established", &v4)?;
            let received = sample(&text, "petrel_bgp_prefixes_received", &v4)?;
            anyhow::ensure!(
                established == 0.0 && received == 0.0,
                "IPv4: established {established}, {received} prefixes"
            );
            let v6 = [("address", BIRD_V6)];
            let still = sample(&text, "petrel_bgp_session_established", &v6)?;
            anyhow::ensure!(still == 1.0, "IPv6 session left Established too");
            Ok(())
        })?;
        let (code, _) = get(lab, "/healthz")?;
        anyhow::ensure!(
            code == 200,
            "a peer going down is not a health problem: {code}"
        );
        Ok(())
    });
}
