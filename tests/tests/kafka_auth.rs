//! The kafka exporter and receiver against a broker that wants SASL: SCRAM-SHA-512 over TLS
//! (a CA made here, the broker's certificate checked against it) for the exporter, PLAIN for
//! the receiver; a wrong password gets nothing through and says why.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::kafka::{Kafka, KafkaOptions, User};
use hotspan_tests::{json_span_id, json_spans, metric, post, scrape, wait_for, wait_for_spans, Hotspan};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA (PEM) and a broker certificate and key it signed, for 127.0.0.1 and localhost.
fn certificates() -> Result<(String, String, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hotspan kafka test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca_params.self_signed(&ca_key)?.pem();
    let ca = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "broker");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca_pem, cert.pem(), key.serialize_pem()))
}

fn sidecar(kafka: &Kafka, ca: &str, password: &str, retry: &str) -> Result<Hotspan> {
    Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka:
    brokers: ["127.0.0.1:{port}"]
    timeout: 2s
    tls: {{ca_file: "{ca}"}}
    auth: {{sasl: {{username: alice, password: "{password}", mechanism: SCRAM-SHA-512}}}}
    retry_on_failure: {retry}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
"#,
        port = kafka.sasl_ssl_port
    ))
}

#[test]
fn scram_over_tls_and_plain_get_through_and_a_wrong_password_does_not() -> Result<()> {
    let (ca, cert, key) = certificates()?;
    let kafka = Kafka::start(KafkaOptions {
        users: vec![User {
            name: "alice".into(),
            password: "alice-secret".into(),
        }],
        tls: Some((cert, key)),
    })?;
    kafka.create_topics(&[("otlp_spans", 2)])?;
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca)?;
    let ca_file = ca_file.display().to_string();

    let gateway = Hotspan::start(&format!(
        r#"
receivers:
  kafka:
    brokers: ["127.0.0.1:{}"]
    group_id: gateways
    initial_offset: earliest
    auth: {{sasl: {{username: alice, password: alice-secret, mechanism: PLAIN}}}}
exporters:
  file: {{path: "{{dir}}/traces.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [kafka], exporters: [file]}}
"#,
        kafka.sasl_port
    ))?;
    let good = sidecar(
        &kafka,
        &ca_file,
        "alice-secret",
        "{initial_interval: 100ms, max_elapsed_time: 0s}",
    )?;
    let url = |h: &Hotspan| format!("http://127.0.0.1:{}/v1/traces", h.port("http"));
    let answer = post(
        &url(&good),
        "application/json",
        None,
        json_spans("shop", 0, 10).into_bytes(),
    )?;
    ensure!(answer.status == 200, "{}", answer.body);
    let out = wait_for_spans(&gateway.path("traces.jsonl"), 10, Duration::from_secs(60))
        .with_context(|| format!("{}\n{}", good.log(), gateway.log()))?;
    ensure!((0..10).all(|i| out.contains_key(&json_span_id(i))));

    // The same with the wrong password: the broker refuses the login, the batch fails.
    let bad = sidecar(
        &kafka,
        &ca_file,
        "not-her-password",
        "{initial_interval: 100ms, max_elapsed_time: 3s}",
    )?;
    let answer = post(
        &url(&bad),
        "application/json",
        None,
        json_spans("shop", 100, 10).into_bytes(),
    )?;
    ensure!(answer.status == 200, "{}", answer.body);
    wait_for(Duration::from_secs(30), "the batch to be given up on", || {
        let m = scrape(bad.port("metrics")).ok()?;
        (metric(&m, r#"otelcol_exporter_send_failed_spans{exporter="kafka"}"#) == Some(10.0)).then_some(())
    })
    .with_context(|| bad.log())?;
    ensure!(
        bad.log().contains("Authentication failed"),
        "the log does not say the login failed:\n{}",
        bad.log()
    );
    let out = hotspan_tests::read_spans(&gateway.path("traces.jsonl"))?;
    ensure!(
        out.len() == 10,
        "{} spans arrived, 10 were sent with the right password",
        out.len()
    );
    Ok(())
}
