//! Arbitrary manifest text through the file datastore's parser and validator,
//! then the per-node resolution. Property: no panic; a valid snapshot
//! resolves or fails with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(snapshot) = petrel_datastore::parse_manifest("fuzz.yaml", text) {
        for node in snapshot.nodes.iter().filter_map(|n| n.metadata.name.clone()) {
            let _ = petrel_datastore::resolve(&snapshot, &node);
        }
        let _ = petrel_datastore::resolve(&snapshot, "fuzz-node");
    }
});
