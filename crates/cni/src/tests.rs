//! Unit tests of petrel-ipam's parsing and result formatting, with the CNI
//! spec's examples, and of [`run`] where no agent answers.

use super::config::{self, CniEnv, Command, RouteConf};
use super::error::{CniError, code};
use super::result::{self, CheckedAddress, ErrorResult, VersionResult};
use super::*;
use serde_json::{Value, json};
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn conf(version: &str, ipam: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "cniVersion": version,
        "name": "pods",
        "type": "ptp",
        "ipam": ipam,
    }))
    .unwrap()
}

fn ipam(socket: &str) -> Value {
    json!({"type": "petrel-ipam", "socket": socket})
}

fn addr(a: &str, gw: &str) -> pb::AllocatedAddress {
    pb::AllocatedAddress {
        address: a.into(),
        gateway: gw.into(),
        family: 0,
        block: String::new(),
        pool: String::new(),
    }
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

// ---- environment ----

#[test]
fn env_reads_every_command_and_rejects_others() {
    for (name, cmd) in [
        ("ADD", Command::Add),
        ("DEL", Command::Del),
        ("CHECK", Command::Check),
        ("GC", Command::Gc),
        ("STATUS", Command::Status),
        ("VERSION", Command::Version),
    ] {
        let e = CniEnv::from_lookup(env(&[("CNI_COMMAND", name)])).unwrap();
        assert_eq!(e.command, cmd);
        assert_eq!(cmd.as_str(), name);
    }
    for bad in [&[("CNI_COMMAND", "add")][..], &[("CNI_COMMAND", "")], &[]] {
        let e = CniEnv::from_lookup(env(bad)).unwrap_err();
        assert_eq!(e.code(), code::INVALID_ENV);
        assert!(e.to_string().contains("CNI_COMMAND"), "{e}");
    }
}

#[test]
fn attachment_requires_and_validates_container_id_and_ifname() {
    let ok = CniEnv::from_lookup(env(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "a1b2_c3.d-4"),
        ("CNI_IFNAME", "eth0"),
    ]))
    .unwrap();
    let k = ok.attachment().unwrap();
    assert_eq!(
        (k.container_id.as_str(), k.ifname.as_str()),
        ("a1b2_c3.d-4", "eth0")
    );

    for (vars, var) in [
        (&[("CNI_IFNAME", "eth0")][..], "CNI_CONTAINERID"),
        (&[("CNI_CONTAINERID", "c1")], "CNI_IFNAME"),
        (
            &[("CNI_CONTAINERID", "-c1"), ("CNI_IFNAME", "eth0")],
            "CNI_CONTAINERID",
        ),
        (
            &[("CNI_CONTAINERID", "c/1"), ("CNI_IFNAME", "eth0")],
            "CNI_CONTAINERID",
        ),
        (
            &[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0:1")],
            "CNI_IFNAME",
        ),
        (
            &[
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "a234567890123456"),
            ],
            "CNI_IFNAME",
        ),
        (
            &[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "..")],
            "CNI_IFNAME",
        ),
    ] {
        let mut all = vec![("CNI_COMMAND", "ADD")];
        all.extend_from_slice(vars);
        let e = CniEnv::from_lookup(env(&all))
            .unwrap()
            .attachment()
            .unwrap_err();
        assert_eq!(e.code(), code::INVALID_ENV, "{vars:?}");
        assert!(e.to_string().contains(var), "{vars:?}: {e}");
    }
}

#[test]
fn cni_args_give_the_pod() {
    let e = CniEnv::from_lookup(env(&[
        ("CNI_COMMAND", "ADD"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x;junk",
        ),
    ]))
    .unwrap();
    assert_eq!(e.pod(), (Some("shop".into()), Some("web-0".into())));
    let none = CniEnv::from_lookup(env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_ARGS", "K8S_POD_NAME="),
    ]));
    assert_eq!(none.unwrap().pod(), (None, None));
}

// ---- network configuration ----

#[test]
fn parses_the_spec_example_plugin_with_petrel_ipam() {
    // The spec's bridge example, as the runtime derives it for one plugin
    // (cniVersion and name inserted, runtimeConfig added, unknown plugin
    // fields kept), with petrel-ipam in place of host-local.
    let stdin = br#"{
        "cniVersion": "1.1.0",
        "name": "dbnet",
        "type": "bridge",
        "bridge": "cni0",
        "keyA": ["some more", "plugin specific", "configuration"],
        "runtimeConfig": {"mac": "00:11:22:33:44:66"},
        "args": {"argA": "foo"},
        "ipam": {
            "type": "petrel-ipam",
            "socket": "/run/petrel/petrel.sock",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00::/8", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.1.0.1"], "search": ["svc.cluster.local"]},
            "timeoutSeconds": 5
        },
        "dns": {"nameservers": ["10.1.0.1"]}
    }"#;
    let c = config::parse_netconf(stdin).unwrap();
    assert_eq!(c.cni_version, "1.1.0");
    assert_eq!(c.name, "dbnet");
    assert_eq!(
        c.ipam.socket,
        std::path::Path::new("/run/petrel/petrel.sock")
    );
    assert_eq!(c.ipam.timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        c.ipam.routes.as_deref(),
        Some(
            &[
                RouteConf {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gw: None
                },
                RouteConf {
                    dst: "fd00::/8".parse().unwrap(),
                    gw: Some("fd00::1".parse().unwrap())
                }
            ][..]
        )
    );
    assert_eq!(c.ipam.dns.unwrap().search, ["svc.cluster.local"]);
    assert!(c.prev_result.is_none());
    assert!(c.valid_attachments.is_none());
}

#[test]
fn defaults_and_gc_attachments() {
    let stdin = serde_json::to_vec(&json!({
        "cniVersion": "1.1.0", "name": "pods",
        "ipam": {"type": "petrel-ipam", "socket": "/run/p.sock"},
        "cni.dev/valid-attachments": [
            {"containerID": "c1", "ifname": "eth0"},
            {"containerID": "c2", "ifname": "net1"}
        ]
    }))
    .unwrap();
    let c = config::parse_netconf(&stdin).unwrap();
    assert_eq!(c.ipam.timeout, config::DEFAULT_TIMEOUT);
    assert!(c.ipam.routes.is_none());
    let keep = c.valid_attachments.unwrap();
    assert_eq!(keep.len(), 2);
    assert_eq!(
        (keep[1].container_id.as_str(), keep[1].ifname.as_str()),
        ("c2", "net1")
    );
}

#[test]
fn bad_configurations_get_the_spec_codes() {
    let cases: Vec<(Vec<u8>, u32, &str)> = vec![
        (b"{not json".to_vec(), code::DECODE, "decode"),
        (b"[]".to_vec(), code::DECODE, "decode"),
        (
            conf("0.2.0", ipam("/s")),
            code::INCOMPATIBLE_VERSION,
            "0.2.0",
        ),
        (
            br#"{"name": "n", "ipam": {"socket": "/s"}}"#.to_vec(),
            code::INCOMPATIBLE_VERSION,
            "0.1.0",
        ),
        (
            br#"{"cniVersion": "1.0.0"}"#.to_vec(),
            code::INVALID_CONFIG,
            "ipam",
        ),
        (
            conf("1.0.0", json!({"type": "petrel-ipam"})),
            code::INVALID_CONFIG,
            "ipam.socket is missing",
        ),
        (
            conf("1.0.0", ipam("run/p.sock")),
            code::INVALID_CONFIG,
            "absolute",
        ),
        (
            conf("1.0.0", json!({"socket": 7})),
            code::INVALID_CONFIG,
            "string",
        ),
        (
            conf("1.0.0", json!({"socket": "/s", "sockett": "/t"})),
            code::UNSUPPORTED_FIELD,
            "ipam.sockett: \"/t\"",
        ),
        (
            conf(
                "1.0.0",
                json!({"socket": "/s", "routes": [{"dst": "10.0.0.0"}]}),
            ),
            code::INVALID_CONFIG,
            "routes[0].dst",
        ),
        (
            conf(
                "1.0.0",
                json!({"socket": "/s", "routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}),
            ),
            code::INVALID_CONFIG,
            "different address families",
        ),
        (
            conf(
                "1.0.0",
                json!({"socket": "/s", "routes": [{"dst": "::/0", "mtu": "9000"}]}),
            ),
            code::UNSUPPORTED_FIELD,
            "routes[0].mtu",
        ),
        (
            conf("1.0.0", json!({"socket": "/s", "timeoutSeconds": 0})),
            code::INVALID_CONFIG,
            "timeoutSeconds",
        ),
        (
            conf("1.0.0", json!({"socket": "/s", "dns": {"servers": []}})),
            code::INVALID_CONFIG,
            "ipam.dns",
        ),
    ];
    for (stdin, want, text) in cases {
        let e = config::parse_netconf(&stdin).unwrap_err();
        assert_eq!(e.code(), want, "{}: {e}", String::from_utf8_lossy(&stdin));
        assert!(e.to_string().contains(text), "{e} lacks {text:?}");
    }
}

#[test]
fn accepts_every_supported_version() {
    for v in SUPPORTED_VERSIONS {
        assert_eq!(
            config::parse_netconf(&conf(v, ipam("/s")))
                .unwrap()
                .cni_version,
            *v
        );
    }
}

// ---- results ----

fn dual() -> Vec<CheckedAddress> {
    result::check_addresses(&[
        addr("10.65.0.5/26", "10.65.0.1"),
        addr("fd00:65::5/122", "fd00:65::1"),
    ])
    .unwrap()
}

#[test]
fn add_result_for_1_0_has_block_prefix_gateway_and_default_routes() {
    let r = result::ipam_result("1.0.0", &dual(), None, None);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "10.65.0.5/26", "gateway": "10.65.0.1"},
                {"address": "fd00:65::5/122", "gateway": "fd00:65::1"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.65.0.1"},
                {"dst": "::/0", "gw": "fd00:65::1"}
            ]
        })
    );
}

#[test]
fn add_result_before_1_0_carries_ip_versions() {
    let r = result::ipam_result("0.4.0", &dual(), None, None);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["ips"][0]["version"], "4");
    assert_eq!(v["ips"][1]["version"], "6");
    let r = result::ipam_result("1.1.0", &dual(), None, None);
    assert!(
        serde_json::to_value(&r).unwrap()["ips"][0]
            .get("version")
            .is_none()
    );
}

#[test]
fn configured_routes_and_dns_replace_the_defaults_for_allocated_families() {
    let v4 = result::check_addresses(&[addr("10.65.0.5/26", "10.65.0.1")]).unwrap();
    let routes = [
        RouteConf {
            dst: "10.0.0.0/8".parse().unwrap(),
            gw: None,
        },
        RouteConf {
            dst: "::/0".parse().unwrap(),
            gw: None,
        },
    ];
    let dns = config::Dns {
        nameservers: vec!["10.96.0.10".into()],
        ..Default::default()
    };
    let r = result::ipam_result("1.0.0", &v4, Some(&routes), Some(&dns));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["routes"], json!([{"dst": "10.0.0.0/8"}]));
    assert_eq!(v["dns"], json!({"nameservers": ["10.96.0.10"]}));
}

#[test]
fn agent_addresses_are_checked() {
    for (bad, why) in [
        (vec![], "no address"),
        (vec![addr("10.65.0.5", "10.65.0.1")], "CIDR"),
        (vec![addr("10.65.0.5/26", "gw")], "not an IP"),
        (vec![addr("10.65.0.5/26", "fd00::1")], "different families"),
        (
            vec![addr("10.65.0.1/26", "10.65.0.1")],
            "pod address itself",
        ),
        (
            vec![
                addr("10.65.0.5/26", "10.65.0.1"),
                addr("10.65.0.6/26", "10.65.0.1"),
            ],
            "two addresses",
        ),
    ] {
        let e = result::check_addresses(&bad).unwrap_err();
        assert!(e.contains(why), "{e} lacks {why:?}");
    }
}

#[test]
fn prefix_widens_to_hold_a_gateway_of_another_block() {
    // Node-wide gateway 10.65.0.1 in the first block, pod in the second.
    let a = result::check_addresses(&[addr("10.65.0.70/26", "10.65.0.1")]).unwrap();
    assert_eq!(a[0].address.to_string(), "10.65.0.70/25");
    let a = result::check_addresses(&[addr("fd00:65::45/122", "fd00:65::1")]).unwrap();
    assert_eq!(a[0].address.to_string(), "fd00:65::45/121");
    // Inside the block: unchanged.
    let a = result::check_addresses(&[addr("10.65.0.70/26", "10.65.0.65")]).unwrap();
    assert_eq!(a[0].address.to_string(), "10.65.0.70/26");
}

#[test]
fn version_and_error_results_match_the_spec() {
    assert_eq!(
        serde_json::to_value(VersionResult::new("1.0.0".into())).unwrap(),
        json!({"cniVersion": "1.0.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    let e = CniError::InvalidConfig("Network 192.168.0.0/31 too small to allocate from.".into());
    assert_eq!(
        serde_json::to_value(ErrorResult::new("1.1.0".into(), &e)).unwrap(),
        json!({"cniVersion": "1.1.0", "code": 7,
               "msg": "invalid network configuration: Network 192.168.0.0/31 too small to allocate from."})
    );
    let io = CniError::Io(std::io::Error::other("pipe closed"));
    let r = ErrorResult::new("1.0.0".into(), &io);
    assert_eq!(r.code, 5);
    assert_eq!(r.details.as_deref(), Some("pipe closed"));
}

#[test]
fn prev_result_addresses_ignore_prefix_length() {
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.65.0.5/26", "gateway": "10.65.0.1", "interface": 1}]});
    assert_eq!(
        result::prev_result_addresses(&prev).unwrap(),
        ["10.65.0.5".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(result::prev_result_addresses(&json!({"ips": [{"gateway": "x"}]})).is_err());
    assert!(
        result::prev_result_addresses(&json!({}))
            .unwrap()
            .is_empty()
    );
}

// ---- run() without an agent ----

fn missing_socket() -> String {
    format!("/nonexistent-petrel-{}/petrel.sock", std::process::id())
}

fn run_cmd(cmd: &str, stdin: &[u8]) -> (Value, u8) {
    let out = run(
        env(&[
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/p1"),
        ]),
        stdin,
    );
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        json_of(&out.stdout)
    };
    if out.exit_code != 0 {
        assert!(out.log.is_some());
    }
    (v, out.exit_code)
}

#[test]
fn version_echoes_the_input_version() {
    let out = run(
        env(&[("CNI_COMMAND", "VERSION")]),
        br#"{"cniVersion": "0.4.0"}"#,
    );
    assert_eq!(out.exit_code, 0);
    let v = json_of(&out.stdout);
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(
        v["supportedVersions"].as_array().unwrap().len(),
        SUPPORTED_VERSIONS.len()
    );
    let out = run(env(&[("CNI_COMMAND", "VERSION")]), b"");
    assert_eq!(json_of(&out.stdout)["cniVersion"], LATEST_VERSION);
}

#[test]
fn agent_down_is_try_again_later_for_add_and_del() {
    let sock = missing_socket();
    for cmd in ["ADD", "DEL", "CHECK", "GC"] {
        let mut c: Value = serde_json::from_slice(&conf("1.0.0", ipam(&sock))).unwrap();
        c["cni.dev/valid-attachments"] = json!([]);
        let (v, rc) = run_cmd(cmd, &serde_json::to_vec(&c).unwrap());
        assert_eq!(rc, 1, "{cmd}");
        assert_eq!(v["code"], code::TRY_AGAIN_LATER, "{cmd}: {v}");
        assert_eq!(v["cniVersion"], "1.0.0");
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains(&sock) && msg.contains("not reachable"),
            "{msg}"
        );
    }
}

#[test]
fn status_without_agent_is_not_available() {
    let (v, rc) = run_cmd("STATUS", &conf("1.1.0", ipam(&missing_socket())));
    assert_eq!(rc, 1);
    assert_eq!(v["code"], code::NOT_AVAILABLE);
    assert!(v["msg"].as_str().unwrap().contains("not reachable"), "{v}");
}

#[test]
fn invalid_input_fails_before_contacting_the_agent() {
    // ADD without CNI_NETNS: code 4, not the 11 of the missing agent.
    let out = run(
        env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]),
        &conf("1.0.0", ipam(&missing_socket())),
    );
    let v = json_of(&out.stdout);
    assert_eq!(v["code"], code::INVALID_ENV);
    assert!(v["msg"].as_str().unwrap().contains("CNI_NETNS"));
    // GC without the list refuses instead of releasing everything.
    let (v, _) = run_cmd("GC", &conf("1.1.0", ipam(&missing_socket())));
    assert_eq!(v["code"], code::INVALID_CONFIG);
    // Undecodable stdin: 6, labelled with the latest version.
    let (v, _) = run_cmd("ADD", b"\x00garbage");
    assert_eq!(v["code"], code::DECODE);
    assert_eq!(v["cniVersion"], LATEST_VERSION);
}

#[test]
fn io_failure_reading_stdin_is_code_5() {
    let out = run_io(
        env(&[("CNI_COMMAND", "ADD")]),
        Err(std::io::Error::other("read failed")),
    );
    assert_eq!(out.exit_code, 1);
    assert_eq!(json_of(&out.stdout)["code"], code::IO);
}
