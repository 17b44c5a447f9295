//! Compiles the gRPC management API in `proto/` with a vendored `protoc`, so
//! building petrel needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(p) => config.protoc_executable(p),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_with_config(config, &["proto/petrel.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/petrel.proto");
    Ok(())
}
