//! Compiles the gRPC management API, every `proto/petrel/v1/*.proto` (package
//! `petrel.v1`), with a vendored `protoc`, so building petrel needs no system
//! protobuf compiler.
use std::path::PathBuf;

/// The .proto files live at the repository root (`proto/`), where `buf lint`
/// and `buf format` run.
const PROTO_ROOT: &str = "../../proto";
const PROTO_DIR: &str = "../../proto/petrel/v1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos: Vec<PathBuf> = std::fs::read_dir(PROTO_DIR)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    protos.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    protos.sort();
    if protos.is_empty() {
        return Err(format!("no .proto files in {PROTO_DIR}").into());
    }
    let mut config = prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(p) => config.protoc_executable(p),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_with_config(config, &protos, &[PathBuf::from(PROTO_ROOT)])?;
    // The directory itself, so that an added file triggers a rebuild.
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
