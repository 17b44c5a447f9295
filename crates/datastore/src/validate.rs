//! Checks beyond types: the rules Calico enforces with CEL and its validator,
//! plus BGP constraints (RFC 4271 §4.2 hold time, RFC 4724 §3 restart time
//! fits 12 bits, RFC 7607 AS 0, RFC 2385 key length).

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Secret;
use petrel_crd::Community;
use petrel_crd::selector::Selector;
use petrel_crd::{
    BgpConfigurationSpec, BgpFilterRule, BgpFilterSpec, BgpPeerSpec, KubeDuration,
    SecretKeySelector, SourceAddress,
};
use std::net::IpAddr;

/// (field path, reason)
pub(crate) type FieldError = (String, String);

/// Longest TCP MD5 key Linux accepts (TCP_MD5SIG_MAXKEYLEN).
pub const MAX_PASSWORD_LEN: usize = 80;
/// Largest graceful-restart time (12-bit field, RFC 4724 §3).
pub const MAX_RESTART_SECS: u64 = 4095;

fn fe(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    (field.into(), reason.into())
}

fn check_as(errors: &mut Vec<FieldError>, field: &str, asn: Option<u32>) {
    if asn == Some(0) {
        errors.push(fe(
            field,
            "AS number 0 is reserved (RFC 7607); expected 1..=4294967295",
        ));
    }
}

fn check_restart(errors: &mut Vec<FieldError>, field: &str, d: Option<KubeDuration>) {
    if let Some(d) = d
        && d.rounded_secs() > MAX_RESTART_SECS
    {
        errors.push(fe(
            field,
            format!("{d} is too long: the graceful-restart time is a 12-bit number of seconds (at most 4095s, RFC 4724)"),
        ));
    }
}

fn check_selector(errors: &mut Vec<FieldError>, field: &str, sel: Option<&String>) {
    if let Some(s) = sel
        && let Err(e) = Selector::parse(s)
    {
        errors.push(fe(field, e.to_string()));
    }
}

/// Parses a community given by name (looked up in `spec.communities`) or literally.
pub(crate) fn community_by_name_or_value(
    spec: &BgpConfigurationSpec,
    s: &str,
) -> Result<Community, String> {
    if let Some(c) = spec.communities.iter().find(|c| c.name == s) {
        return Ok(c.value.0);
    }
    s.parse::<Community>().map_err(|_| {
        format!("unknown community {s:?}: not a name defined in spec.communities nor a value aa:nn or aa:nn:mm")
    })
}

pub(crate) fn validate_config(spec: &BgpConfigurationSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_as(&mut errors, "spec.asNumber", spec.as_number);
    if spec.listen_port == Some(0) {
        errors.push(fe("spec.listenPort", "must be 1..=65535"));
    }
    if let Some(n) = spec.max_paths
        && !(1..=256).contains(&n)
    {
        errors.push(fe(
            "spec.maxPaths",
            format!("{n} is out of range: must be 1..=256"),
        ));
    }
    let mesh_off = spec.node_to_node_mesh_enabled == Some(false);
    if mesh_off && spec.node_mesh_password.is_some() {
        errors.push(fe(
            "spec.nodeMeshPassword",
            "cannot be set when nodeToNodeMeshEnabled is false",
        ));
    }
    if mesh_off && spec.node_mesh_max_restart_time.is_some() {
        errors.push(fe(
            "spec.nodeMeshMaxRestartTime",
            "cannot be set when nodeToNodeMeshEnabled is false",
        ));
    }
    check_restart(
        &mut errors,
        "spec.nodeMeshMaxRestartTime",
        spec.node_mesh_max_restart_time,
    );
    for (i, c) in spec.communities.iter().enumerate() {
        if c.name.is_empty() {
            errors.push(fe(
                format!("spec.communities[{i}].name"),
                "must not be empty",
            ));
        } else if spec.communities[..i].iter().any(|o| o.name == c.name) {
            errors.push(fe(
                format!("spec.communities[{i}].name"),
                format!("duplicate community name {:?}", c.name),
            ));
        }
    }
    for (i, pa) in spec.prefix_advertisements.iter().enumerate() {
        for (j, c) in pa.communities.iter().enumerate() {
            if let Err(r) = community_by_name_or_value(spec, c) {
                errors.push(fe(
                    format!("spec.prefixAdvertisements[{i}].communities[{j}]"),
                    r,
                ));
            }
        }
    }
    errors
}

pub(crate) fn validate_peer(spec: &BgpPeerSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.node.is_some() && spec.node_selector.is_some() {
        errors.push(fe(
            "spec.nodeSelector",
            "node and nodeSelector cannot both be set",
        ));
    }
    if spec.node.as_deref() == Some("") {
        errors.push(fe("spec.node", "must not be empty"));
    }
    check_selector(
        &mut errors,
        "spec.nodeSelector",
        spec.node_selector.as_ref(),
    );
    check_selector(
        &mut errors,
        "spec.peerSelector",
        spec.peer_selector.as_ref(),
    );
    if spec.local_workload_selector.is_some() {
        errors.push(fe(
            "spec.localWorkloadSelector",
            "peering with local workloads is not supported by petrel",
        ));
    }
    match (&spec.peer_ip, &spec.peer_selector) {
        (Some(_), Some(_)) => errors.push(fe(
            "spec.peerSelector",
            "peerIP and peerSelector cannot both be set",
        )),
        (None, None) => errors.push(fe("spec", "one of peerIP or peerSelector must be set")),
        (Some(_), None) if spec.as_number.is_none() => {
            errors.push(fe("spec.asNumber", "required when peerIP is set"));
        }
        (None, Some(_)) if spec.as_number.is_some() => errors.push(fe(
            "spec.asNumber",
            "must be empty when peerSelector is set (the AS number comes from the selected nodes)",
        )),
        _ => {}
    }
    check_as(&mut errors, "spec.asNumber", spec.as_number);
    check_as(&mut errors, "spec.localASNumber", spec.local_as_number);
    if spec.keep_original_next_hop == Some(true) && spec.next_hop_mode.is_some() {
        errors.push(fe(
            "spec.keepOriginalNextHop",
            "keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode",
        ));
    }
    if let Some(n) = spec.num_allowed_local_as_numbers
        && !(0..=255).contains(&n)
    {
        errors.push(fe(
            "spec.numAllowedLocalASNumbers",
            format!("{n} is out of range 0..=255"),
        ));
    }
    let peer_family = spec.peer_ip.map(|p| p.ip.is_ipv4());
    if let Some(rb) = &spec.reachable_by {
        match (rb.parse::<IpAddr>(), peer_family) {
            (Err(_), _) => {
                errors.push(fe("spec.reachableBy", format!("invalid IP address {rb:?}")))
            }
            (Ok(_), None) => {
                errors.push(fe("spec.reachableBy", "must be empty when peerIP is empty"))
            }
            (Ok(ip), Some(v4)) if ip.is_ipv4() != v4 => errors.push(fe(
                "spec.reachableBy",
                "address family does not match peerIP",
            )),
            _ => {}
        }
    }
    if let Some(SourceAddress::Address(ip)) = spec.source_address {
        match peer_family {
            None => errors.push(fe(
                "spec.sourceAddress",
                "a literal address needs peerIP (use UseNodeIP or None with peerSelector)",
            )),
            Some(v4) if ip.is_ipv4() != v4 => errors.push(fe(
                "spec.sourceAddress",
                "address family does not match peerIP",
            )),
            _ => {}
        }
    }
    let hold_secs = match spec.hold_time {
        Some(h) => {
            let d = h.as_duration();
            if d.subsec_nanos() != 0 {
                errors.push(fe(
                    "spec.holdTime",
                    format!("{h} is not a whole number of seconds"),
                ));
            }
            let s = d.as_secs();
            if s == 1 || s == 2 || s > 65535 {
                errors.push(fe(
                    "spec.holdTime",
                    format!("{h} is invalid: the hold time is 0 or 3..=65535 seconds (RFC 4271)"),
                ));
            }
            s
        }
        None => 90,
    };
    if let Some(k) = spec.keepalive_time {
        let ks = k.rounded_secs();
        if ks == 0 || ks > 65535 {
            errors.push(fe(
                "spec.keepaliveTime",
                format!("{k} is invalid: expected 1..=65535 seconds"),
            ));
        } else if hold_secs != 0 && ks >= hold_secs {
            errors.push(fe(
                "spec.keepaliveTime",
                format!("{k} must be shorter than the hold time ({hold_secs}s)"),
            ));
        }
    }
    check_restart(&mut errors, "spec.maxRestartTime", spec.max_restart_time);
    if spec.max_prefixes == Some(0) {
        errors.push(fe(
            "spec.maxPrefixes",
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    for (i, f) in spec.filters.iter().enumerate() {
        if f.is_empty() {
            errors.push(fe(format!("spec.filters[{i}]"), "must not be empty"));
        }
    }
    errors
}

pub(crate) fn validate_filter(spec: &BgpFilterSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let lists = [
        ("exportV4", &spec.export_v4, true),
        ("importV4", &spec.import_v4, true),
        ("exportV6", &spec.export_v6, false),
        ("importV6", &spec.import_v6, false),
    ];
    for (list, rules, v4) in lists {
        for (i, rule) in rules.iter().enumerate() {
            validate_rule(&mut errors, &format!("spec.{list}[{i}]"), rule, v4);
        }
    }
    errors
}

fn valid_interface(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'*' | b'-'))
}

fn validate_rule(errors: &mut Vec<FieldError>, at: &str, rule: &BgpFilterRule, v4: bool) {
    let max_len: u8 = if v4 { 32 } else { 128 };
    let family = if v4 { "IPv4" } else { "IPv6" };
    if let Some(cidr) = rule.cidr
        && matches!(cidr, IpNet::V4(_)) != v4
    {
        errors.push(fe(
            format!("{at}.cidr"),
            format!("{cidr} is not an {family} prefix"),
        ));
    }
    if rule.cidr.is_some() != rule.match_operator.is_some() {
        errors.push(fe(
            at,
            "cidr and matchOperator must both be set or both be empty",
        ));
    }
    if let Some(pl) = rule.prefix_length {
        if rule.cidr.is_none() {
            errors.push(fe(
                format!("{at}.prefixLength"),
                "cidr is required when prefixLength is set",
            ));
        }
        for (name, v) in [("min", pl.min), ("max", pl.max)] {
            if let Some(v) = v
                && v > max_len
            {
                errors.push(fe(
                    format!("{at}.prefixLength.{name}"),
                    format!("{v} is out of range 0..={max_len}"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (pl.min, pl.max)
            && min > max
        {
            errors.push(fe(
                format!("{at}.prefixLength"),
                format!("min {min} is greater than max {max}"),
            ));
        }
    }
    if let Some(ifname) = &rule.interface
        && !valid_interface(ifname)
    {
        errors.push(fe(
            format!("{at}.interface"),
            format!(
                "invalid interface {ifname:?}: 1-15 characters of A-Z a-z 0-9 _ . - and * wildcards"
            ),
        ));
    }
    if let Some(c) = &rule.communities
        && c.values.len() != 1
    {
        errors.push(fe(
            format!("{at}.communities.values"),
            "exactly one community value is supported",
        ));
    }
    for (j, asn) in rule.as_path_prefix.iter().enumerate() {
        check_as(errors, &format!("{at}.asPathPrefix[{j}]"), Some(*asn));
    }
    let prio_ok = |p: u32| (1..=2_147_483_646).contains(&p);
    if let Some(p) = rule.priority
        && !prio_ok(p)
    {
        errors.push(fe(
            format!("{at}.priority"),
            format!("{p} is out of range 1..=2147483646"),
        ));
    }
    if !rule.operations.is_empty() && rule.action != petrel_crd::FilterAction::Accept {
        errors.push(fe(
            format!("{at}.operations"),
            "operations may only be used with action Accept",
        ));
    }
    if rule.operations.len() > 10 {
        errors.push(fe(
            format!("{at}.operations"),
            "at most 10 operations are allowed",
        ));
    }
    for (j, op) in rule.operations.iter().enumerate() {
        let opat = format!("{at}.operations[{j}]");
        let set = usize::from(op.add_community.is_some())
            + usize::from(op.prepend_as_path.is_some())
            + usize::from(op.set_priority.is_some());
        if set != 1 {
            errors.push(fe(
                &opat,
                "exactly one of addCommunity, prependASPath, setPriority must be set",
            ));
        }
        if let Some(p) = &op.prepend_as_path {
            if p.prefix.is_empty() || p.prefix.len() > 10 {
                errors.push(fe(
                    format!("{opat}.prependASPath.prefix"),
                    "must have 1 to 10 AS numbers",
                ));
            }
            for (k, asn) in p.prefix.iter().enumerate() {
                check_as(
                    errors,
                    &format!("{opat}.prependASPath.prefix[{k}]"),
                    Some(*asn),
                );
            }
        }
        if let Some(sp) = &op.set_priority
            && !prio_ok(sp.value)
        {
            errors.push(fe(
                format!("{opat}.setPriority.value"),
                format!("{} is out of range 1..=2147483646", sp.value),
            ));
        }
    }
}

/// Looks up a password in the Secrets. `Ok(None)`: optional and absent.
pub(crate) fn lookup_secret(
    secrets: &[Secret],
    sel: &SecretKeySelector,
) -> Result<Option<String>, String> {
    let optional = sel.optional == Some(true);
    let Some(secret) = secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(sel.name.as_str()))
    else {
        return if optional {
            Ok(None)
        } else {
            Err(format!("Secret {:?} not found", sel.name))
        };
    };
    // stringData wins over data, as when the API server merges them.
    let value: Option<Vec<u8>> = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(&sel.key))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(&sel.key))
                .map(|b| b.0.clone())
        });
    let Some(bytes) = value else {
        return if optional {
            Ok(None)
        } else {
            Err(format!("Secret {:?} has no key {:?}", sel.name, sel.key))
        };
    };
    let password = String::from_utf8(bytes)
        .map_err(|_| format!("Secret {:?} key {:?} is not valid UTF-8", sel.name, sel.key))?;
    if password.is_empty() {
        return Err(format!("Secret {:?} key {:?} is empty", sel.name, sel.key));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "Secret {:?} key {:?} is {} bytes long; TCP MD5 keys are at most {MAX_PASSWORD_LEN} bytes",
            sel.name,
            sel.key,
            password.len()
        ));
    }
    Ok(Some(password))
}
