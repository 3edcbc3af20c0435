//! Compiles pprof's `profile.proto` into Rust types at build time.
//!
//! `protox` parses the .proto in pure Rust, so building hotspan needs no system `protoc`;
//! `prost-build` turns the resulting descriptors into the `pprof::pb` module.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/profile.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
