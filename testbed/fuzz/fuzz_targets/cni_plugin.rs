//! Arbitrary network configurations on the CNI plugin's stdin, for each CNI
//! command. The socket does not exist, so commands that reach the agent fail
//! at once. Properties: no panic; stdout is always one JSON document.
#![no_main]

use libfuzzer_sys::fuzz_target;

const COMMANDS: [&str; 6] = ["VERSION", "ADD", "DEL", "CHECK", "GC", "STATUS"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stdin)) = data.split_first() else { return };
    let command = COMMANDS[usize::from(pick) % COMMANDS.len()];
    let get = |name: &str| -> Option<String> {
        match name {
            "CNI_COMMAND" => Some(command.to_string()),
            "CNI_CONTAINERID" => Some("fuzz".to_string()),
            "CNI_NETNS" => Some("/var/run/netns/fuzz".to_string()),
            "CNI_IFNAME" => Some("eth0".to_string()),
            "CNI_PATH" => Some("/nonexistent".to_string()),
            _ => None,
        }
    };
    let out = petrel_cni::run(get, stdin);
    if !out.stdout.is_empty() {
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.stdout));
    }
});
