//! The CNI network configuration the agent installs for the container
//! runtime (CNI spec 1.0.0, "network configuration list"): the reference
//! `ptp` plugin makes the veth pair and the pod's /32 (/128) host route, and
//! `petrel-ipam` gets the pod's addresses from this agent over its API socket.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the conflist; runtimes pick the lexically first file, so a
/// low number puts petrel ahead of leftovers such as `99-loopback.conf`.
pub const CONFLIST_NAME: &str = "10-petrel.conflist";

/// The conflist text for an agent serving its API on `socket`.
pub fn conflist(socket: &Path, mtu: Option<u32>) -> String {
    let mut ptp = serde_json::json!({
        "type": "ptp",
        "ipMasq": false,
        "ipam": {
            "type": "petrel-ipam",
            "socket": socket.display().to_string(),
        },
    });
    if let Some(mtu) = mtu {
        ptp["mtu"] = serde_json::json!(mtu);
    }
    let doc = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "petrel",
        "plugins": [ptp],
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the conflist into `dir` when its content differs: to a temporary
/// file, fsync, then rename over the old one, so a runtime never reads a
/// half-written file. Returns the path.
pub fn install(dir: &Path, socket: &Path, mtu: Option<u32>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CONFLIST_NAME);
    let text = conflist(socket, mtu);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{CONFLIST_NAME}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_chains_ptp_with_petrel_ipam() {
        let text = conflist(Path::new("/run/petrel/api.sock"), Some(1450));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["name"], "petrel");
        let ptp = &v["plugins"][0];
        assert_eq!(ptp["type"], "ptp");
        assert_eq!(ptp["ipMasq"], false, "no NAT");
        assert_eq!(ptp["mtu"], 1450);
        assert_eq!(ptp["ipam"]["type"], "petrel-ipam");
        assert_eq!(ptp["ipam"]["socket"], "/run/petrel/api.sock");
        assert_eq!(v["plugins"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn install_writes_once_and_replaces_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("net.d");
        let p = install(&sub, Path::new("/a.sock"), None).unwrap();
        let m1 = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        install(&sub, Path::new("/a.sock"), None).unwrap();
        let m2 = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert_eq!(m1, m2, "unchanged content is not rewritten");
        install(&sub, Path::new("/b.sock"), None).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("/b.sock"));
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
