//! The deployment files: the systemd unit passes `systemd-analyze verify`, and the hotspan
//! config inside the Kubernetes manifest validates.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use hotspan_tests::hotspan_bin;
use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[test]
fn systemd_unit_verifies() -> Result<()> {
    let unit = std::fs::read_to_string(repo().join("deploy/hotspan.service"))?;
    let dir = tempfile::tempdir()?;
    // Point the unit at the binary just built, so verify can check the command exists.
    let unit = unit.replace("/usr/local/bin/hotspan", &hotspan_bin().display().to_string());
    let path = dir.path().join("hotspan.service");
    std::fs::write(&path, unit)?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .context("systemd-analyze (scripts/test.sh installs systemd)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about this machine's own units are not ours; any naming our file are.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("hotspan.service")).collect();
    ensure!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    Ok(())
}

#[test]
fn kubernetes_sidecar_config_validates() -> Result<()> {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes.yaml"))?;
    let mut config = None;
    let mut containers = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(&text) {
        let value = yaml_serde::Value::deserialize(doc)?;
        match value["kind"].as_str() {
            Some("ConfigMap") => config = value["data"]["config.yaml"].as_str().map(str::to_string),
            Some("Deployment") => {
                for c in value["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    containers.push(c["name"].as_str().unwrap_or_default().to_string());
                }
            }
            _ => {}
        }
    }
    ensure!(containers == ["shop", "hotspan"], "containers {containers:?}");
    let config = config.context("the ConfigMap holds config.yaml")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let out = Command::new(hotspan_bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
