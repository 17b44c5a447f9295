//! Arbitrary Calico selector expressions. Properties: no panic; a parsed
//! selector evaluates against labels without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sel) = petrel_crd::selector::Selector::parse(text) {
        let mut labels = BTreeMap::new();
        labels.insert("rack".to_string(), "r1".to_string());
        labels.insert("role".to_string(), String::new());
        let _ = sel.matches(&labels);
    }
});
