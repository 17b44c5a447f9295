//! `petrel bfd`: the BFD sessions (RFC 5880 §6.8.1 state variables) of the
//! peers that have a BFDProfile, as a table, JSON or YAML.

use super::{CliError, Output, connect, render, table};
use petrel_proto::{ClientError, pb};
use std::net::IpAddr;
use std::path::Path;

/// "300ms" for an interval in microseconds; "-" for 0 (unknown or none).
pub fn ms(us: u64) -> String {
    if us == 0 {
        "-".into()
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{:.3}ms", us as f64 / 1000.0)
    }
}

fn ago(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Render the sessions as a table; `wide` adds the configured timers, the
/// remote state and diagnostic, the source port and the counters.
pub fn bfd_table(r: &pb::ListBfdSessionsResponse, wide: bool) -> String {
    let mut header = vec![
        "PEER",
        "STATE",
        "HOP",
        "LOCAL/REMOTE DISCR",
        "TX/RX",
        "MULT",
        "DETECT",
        "SINCE",
        "DIAGNOSTIC",
    ];
    if wide {
        header.extend([
            "LOCAL ADDRESS",
            "SOURCE PORT",
            "REMOTE STATE",
            "REMOTE DIAGNOSTIC",
            "CONFIGURED TX/RX",
            "PKTS IN/OUT",
            "TRANSITIONS",
            "ERROR",
        ]);
    }
    let mut t = table(&header);
    for s in &r.sessions {
        let diagnostic = if s.state != "Up" && !s.has_been_up && s.remote_discriminator == 0 {
            "peer does not answer".to_string()
        } else if s.state == "Up" && !s.last_down_diagnostic.is_empty() {
            format!("last down: {}", s.last_down_diagnostic)
        } else {
            s.diagnostic.clone()
        };
        let mut row = vec![
            s.peer.clone(),
            s.state.clone(),
            if s.multihop { "multihop" } else { "single" }.to_string(),
            format!("{}/{}", s.local_discriminator, s.remote_discriminator),
            format!("{}/{}", ms(s.tx_interval_us), ms(s.rx_interval_us)),
            if s.remote_detect_multiplier > 0 {
                format!("{}/{}", s.detect_multiplier, s.remote_detect_multiplier)
            } else {
                s.detect_multiplier.to_string()
            },
            ms(s.detection_time_us),
            ago(s.last_state_change_seconds),
            diagnostic,
        ];
        if wide {
            row.extend([
                s.local_address.clone(),
                s.source_port.to_string(),
                s.remote_state.clone(),
                s.remote_diagnostic.clone(),
                format!("{}/{}", ms(s.desired_min_tx_us), ms(s.required_min_rx_us)),
                format!("{}/{}", s.packets_received, s.packets_sent),
                s.state_transitions.to_string(),
                s.error.clone(),
            ]);
        }
        t.add_row(row);
    }
    let mut out = t.to_string();
    out.push('\n');
    for e in &r.socket_errors {
        out.push_str(&format!("warning: {e}\n"));
    }
    let dropped = r.malformed_packets + r.unknown_discriminator_packets + r.no_session_packets;
    if wide || dropped > 0 {
        out.push_str(&format!(
            "dropped before a session: {} malformed, {} unknown discriminator, {} no session\n",
            r.malformed_packets, r.unknown_discriminator_packets, r.no_session_packets
        ));
    }
    if wide || r.late_timers > 0 {
        out.push_str(&format!(
            "timers late by more than 50ms: {} (latest {})\n",
            r.late_timers,
            ms(r.max_timer_lateness_us)
        ));
    }
    out
}

/// Only the sessions with this peer address.
pub fn filter_sessions(r: &mut pb::ListBfdSessionsResponse, query: &str) -> Result<(), CliError> {
    let ip: IpAddr = query
        .parse()
        .map_err(|_| CliError::Usage(format!("{query:?} is not an IP address")))?;
    r.sessions.retain(|s| {
        s.peer.parse::<IpAddr>().ok().map(|a| a.to_canonical()) == Some(ip.to_canonical())
    });
    if r.sessions.is_empty() {
        return Err(CliError::NoPeer(query.to_string()));
    }
    Ok(())
}

/// `petrel bfd [ADDR]`
pub async fn bfd(socket: &Path, query: Option<String>, out: Output) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let mut r = c
        .list_bfd_sessions(pb::ListBfdSessionsRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    if let Some(q) = query {
        filter_sessions(&mut r, &q)?;
    }
    print!(
        "{}",
        render(&r, out, |r| bfd_table(r, out == Output::Wide))?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(peer: &str, state: &str) -> pb::BfdSession {
        pb::BfdSession {
            peer: peer.into(),
            state: state.into(),
            local_discriminator: 17,
            remote_discriminator: 42,
            tx_interval_us: 300_000,
            rx_interval_us: 300_000,
            detection_time_us: 900_000,
            detect_multiplier: 3,
            remote_detect_multiplier: 3,
            last_state_change_seconds: 61,
            diagnostic: "no diagnostic".into(),
            has_been_up: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_table_shows_timers_discriminators_and_diagnostics() {
        let mut silent = session("10.0.0.9", "Down");
        silent.remote_discriminator = 0;
        silent.has_been_up = false;
        let mut flapped = session("10.0.0.1", "Up");
        flapped.last_down_diagnostic = "control detection time expired".into();
        let r = pb::ListBfdSessionsResponse {
            sessions: vec![flapped, silent],
            ..Default::default()
        };
        let text = bfd_table(&r, false);
        for want in [
            "10.0.0.1",
            "17/42",
            "300ms/300ms",
            "900ms",
            "3/3",
            "0h01m01s",
            "last down: control detection time expired",
            "peer does not answer",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(!text.contains("dropped before a session"));
        let wide = bfd_table(&r, true);
        assert!(wide.contains("PKTS IN/OUT") && wide.contains("dropped before a session"));
    }

    #[test]
    fn intervals_print_in_milliseconds() {
        assert_eq!(ms(0), "-");
        assert_eq!(ms(300_000), "300ms");
        assert_eq!(ms(1_500), "1.500ms");
    }

    #[test]
    fn filtering_by_address() {
        let mut r = pb::ListBfdSessionsResponse {
            sessions: vec![session("10.0.0.1", "Up"), session("fd00::1", "Up")],
            ..Default::default()
        };
        filter_sessions(&mut r, "fd00:0::1").unwrap();
        assert_eq!(r.sessions.len(), 1);
        assert!(matches!(
            filter_sessions(&mut r, "10.9.9.9"),
            Err(CliError::NoPeer(_))
        ));
        assert!(matches!(
            filter_sessions(&mut r, "tor"),
            Err(CliError::Usage(_))
        ));
    }
}
