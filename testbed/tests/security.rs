//! Session security against FRR and BIRD (`security` topology): TCP MD5
//! signatures (RFC 2385) with the password taken from a Secret, right and
//! wrong key, and GTSM (RFC 5082, `ttlSecurity`) across one router hop, which
//! must be accepted with `ttlSecurity: 2` and refused with `ttlSecurity: 1`.
//! Run as root: `cargo test -p petrel-testbed --test security`.

mod common;

use anyhow::Context;
use common::petrel::*;
use common::*;
use petrel_testbed::{Lab, wait_for};
use std::time::{Duration, Instant};

const PETREL: &str = "petrel";
/// How long a refused session is watched to make sure it stays down.
const REFUSED_FOR: Duration = Duration::from_secs(10);

/// One daemon of the security lab.
struct Target {
    node: &'static str,
    asn: u32,
    /// Daemon address on the direct link (MD5 session) and petrel's there.
    direct: &'static str,
    petrel_direct: &'static str,
    /// Daemon address behind the router (GTSM session).
    far: &'static str,
    /// A prefix the daemon announces.
    prefix: &'static str,
    /// Key of the right password in Secret `bgp-passwords`.
    key: &'static str,
    /// base64 of the right password, to repair the `wrong` key.
    password_b64: &'static str,
}

const FRR: Target = Target {
    node: "frr",
    asn: 65002,
    direct: "10.1.1.2",
    petrel_direct: "10.1.1.1",
    far: "10.1.2.2",
    prefix: "198.51.100.0/24",
    key: "frr",
    password_b64: "czNjcmV0LWZycg==",
};

const BIRD: Target = Target {
    node: "bird",
    asn: 65003,
    direct: "10.2.1.2",
    petrel_direct: "10.2.1.1",
    far: "10.2.2.2",
    prefix: "203.0.113.0/24",
    key: "bird",
    password_b64: "czNjcmV0LWJpcmQ=",
};

#[test]
fn security_frr() {
    security(&FRR);
}

#[test]
fn security_bird() {
    security(&BIRD);
}

fn security(t: &Target) {
    let lab = deploy("security");
    lab.check(|lab| {
        md5(lab, t).context("TCP MD5")?;
        gtsm(lab, t).context("GTSM (ttlSecurity)")?;
        Ok(())
    });
}

fn md5_peer(t: &Target, key: &str) -> String {
    bgp_peer(
        &format!("{}-md5", t.node),
        t.direct,
        t.asn,
        &format!("  password:\n    secretKeyRef:\n      name: bgp-passwords\n      key: {key}\n"),
    )
}

fn md5(lab: &Lab, t: &Target) -> anyhow::Result<()> {
    let file = format!("bgppeer-{}-md5.yaml", t.node);
    // Right key: the session comes up and routes flow.
    write_manifest(lab, PETREL, &file, &md5_peer(t, t.key))?;
    wait_petrel_established(lab, PETREL, t.direct).context("right MD5 key")?;
    wait_established(lab, t.node, t.petrel_direct)?;
    wait_route(lab, PETREL, t.prefix)?;

    // Wrong key: the peer's kernel drops every segment, nothing comes up.
    remove_manifest(lab, PETREL, &file)?;
    wait_not_established(lab, t.node, t.petrel_direct)?;
    write_manifest(lab, PETREL, &file, &md5_peer(t, "wrong"))?;
    let seen = stays_down(lab, t, t.direct, t.petrel_direct).context("wrong MD5 key")?;
    anyhow::ensure!(
        seen.connection_attempts >= 1,
        "petrel should keep trying with the wrong key, connection_attempts {}",
        seen.connection_attempts
    );

    // Repairing the Secret in place is picked up without touching the peer.
    let secret = read_manifest(lab, PETREL, "secret.yaml")?;
    let repaired = secret.replace(
        "wrong: bm90LXRoZS1wYXNzd29yZA==",
        &format!("wrong: {}", t.password_b64),
    );
    anyhow::ensure!(
        repaired != secret,
        "test bug: secret.yaml has no `wrong` key"
    );
    write_manifest(lab, PETREL, "secret.yaml", &repaired)?;
    wait_petrel_established(lab, PETREL, t.direct).context("after repairing the Secret")?;
    Ok(())
}

fn gtsm_peer(t: &Target, hops: u8) -> String {
    bgp_peer(
        &format!("{}-gtsm", t.node),
        t.far,
        t.asn,
        &format!("  ttlSecurity: {hops}\n"),
    )
}

fn gtsm(lab: &Lab, t: &Target) -> anyhow::Result<()> {
    let file = format!("bgppeer-{}-gtsm.yaml", t.node);
    // The daemon is two hops away: ttlSecurity 2 (accept TTL >= 254) works.
    write_manifest(lab, PETREL, &file, &gtsm_peer(t, 2))?;
    wait_petrel_established(lab, PETREL, t.far).context("ttlSecurity 2 across one router")?;
    wait_established(lab, t.node, "10.9.0.1")?;

    // ttlSecurity 1 demands TTL 255, i.e. an adjacent peer: refused.
    write_manifest(lab, PETREL, &file, &gtsm_peer(t, 1))?;
    wait_not_established(lab, t.node, "10.9.0.1")?;
    stays_down(lab, t, t.far, "10.9.0.1").context("ttlSecurity 1 with a peer 2 hops away")?;
    Ok(())
}

/// Checks for [`REFUSED_FOR`] that neither petrel's peer `peer_addr` nor
/// the daemon's session with `petrel_addr` is Established, and that the
/// agent keeps running. Returns petrel's last view of the peer.
fn stays_down(
    lab: &Lab,
    t: &Target,
    peer_addr: &str,
    petrel_addr: &str,
) -> anyhow::Result<petrel_testbed::PetrelPeer> {
    petrel_testbed::wait_for(
        PROPAGATE,
        &format!("petrel to configure peer {peer_addr}"),
        || lab.petrel_peer(PETREL, peer_addr),
    )?;
    let start = Instant::now();
    loop {
        let p = lab.petrel_peer(PETREL, peer_addr)?;
        anyhow::ensure!(
            p.state != "Established",
            "petrel's peer {peer_addr} came up after {:?} although it must be refused",
            start.elapsed()
        );
        let s = lab.session(t.node, petrel_addr)?;
        anyhow::ensure!(
            !s.is_established(),
            "{}'s session with {petrel_addr} came up after {:?} although it must be refused \
             (petrel's view of {peer_addr}: state {}, last_error {:?})",
            t.node,
            start.elapsed(),
            p.state,
            p.last_error
        );
        anyhow::ensure!(lab.is_running(PETREL)?, "the agent exited");
        if start.elapsed() >= REFUSED_FOR {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// RFC 4271 §8 / RFC 4486: a connection from an address that is not a
/// configured peer gets NOTIFICATION Cease/Connection Rejected, then closes.
#[test]
fn unexpected_peer_gets_connection_rejected() {
    let lab = deploy("security");
    lab.check(|lab| {
        // The router is not a configured peer of petrel.
        let script = "import socket; \
            s = socket.create_connection(('10.9.0.1', 179), timeout=5); \
            print(b''.join(iter(lambda: s.recv(4096), b'')).hex())";
        let hex = wait_for(
            Duration::from_secs(20),
            "petrel to answer an unexpected peer",
            || {
                let out = lab.exec("router", &format!("python3 -c \"{script}\""))?;
                let hex = out.trim().to_string();
                anyhow::ensure!(!hex.is_empty(), "connection closed without a NOTIFICATION");
                Ok(hex)
            },
        )?;
        // Marker, length 21, type NOTIFICATION (3), Cease (6), Connection Rejected (5).
        let expected = format!("{}0015030605", "ff".repeat(16));
        anyhow::ensure!(
            hex == expected,
            "expected exactly the NOTIFICATION {expected}, got {hex}"
        );
        Ok(())
    });
}
