//! `pprof_scrape` targets behind TLS, client certificates, a bearer token and a required
//! header: the real Go service serving `/debug/pprof` over Go's own TLS (HTTP/2), and one
//! scraper per way of getting it wrong, each failing with its cause logged and counted.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::goservice::{GoOptions, GoService, GoTls};
use hotspan_tests::profiles::{read_profiles, resource_values};
use hotspan_tests::{free_port, metric, scrape, wait_for, Hotspan};
use rcgen::ExtendedKeyUsagePurpose;

mod common;
use common::pki::{make_ca, make_leaf};

#[test]
fn tls_mtls_token_and_headers_reach_the_go_service_and_each_mistake_says_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, issuer) = make_ca("hotspan test CA")?;
    let (rogue_ca, _) = make_ca("rogue CA")?;
    // For `localhost` only: scrapers dialling 127.0.0.1 must name it (server_name_override).
    let (server_cert, server_key) = make_leaf(&issuer, "localhost", ExtendedKeyUsagePurpose::ServerAuth)?;
    let (client_cert, client_key) = make_leaf(&issuer, "scraper", ExtendedKeyUsagePurpose::ClientAuth)?;
    let path = |name: &str| dir.path().join(name);
    for (name, pem) in [
        ("ca.pem", &ca),
        ("rogue-ca.pem", &rogue_ca),
        ("server.pem", &server_cert),
        ("server.key", &server_key),
        ("client.pem", &client_cert),
        ("client.key", &client_key),
    ] {
        std::fs::write(path(name), pem)?;
    }
    let mut service = GoService::start(GoOptions {
        tls: Some(GoTls {
            port: 0,
            cert_file: path("server.pem"),
            key_file: path("server.key"),
            client_ca_file: Some(path("ca.pem")),
            require_headers: vec![
                ("Authorization".into(), "Bearer s3cret".into()),
                ("X-Scope-OrgID".into(), "shop".into()),
            ],
        }),
        ..GoOptions::default()
    })?;
    let https = format!("https://127.0.0.1:{}", service.tls_port.context("no TLS port")?);
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let silent_url = format!("http://127.0.0.1:{}", silent.local_addr()?.port());
    let closed_url = format!("http://127.0.0.1:{}", free_port());
    let p = |name: &str| path(name).display().to_string();
    let tls = |ca: &str, identity: bool| {
        let identity = if identity {
            format!(
                ", cert_file: \"{}\", key_file: \"{}\"",
                p("client.pem"),
                p("client.key")
            )
        } else {
            String::new()
        };
        format!(
            "{{ca_file: \"{}\", server_name_override: localhost{identity}}}",
            p(ca)
        )
    };
    let scraper = |name: &str, endpoint: &str, extra: &str| {
        format!(
            r#"
  pprof_scrape/{name}:
    profiles: [goroutine]
    goroutine_interval: 200ms
    scrape_timeout: 2s
    targets:
      - endpoint: "{endpoint}"
        service_name: {name}
{extra}"#
        )
    };
    let auth = "        auth: {authenticator: bearertokenauth}\n        headers: {X-Scope-OrgID: shop}\n";
    let receivers = [
        scraper(
            "good",
            &https,
            &format!("        tls: {}\n{auth}", tls("ca.pem", true)),
        ),
        scraper(
            "wrong_ca",
            &https,
            &format!("        tls: {}\n{auth}", tls("rogue-ca.pem", true)),
        ),
        scraper(
            "no_cert",
            &https,
            &format!("        tls: {}\n{auth}", tls("ca.pem", false)),
        ),
        scraper(
            "no_token",
            &https,
            &format!(
                "        tls: {}\n        headers: {{X-Scope-OrgID: shop}}\n",
                tls("ca.pem", true)
            ),
        ),
        scraper("refused", &closed_url, ""),
        scraper("silent", &silent_url, ""),
    ];
    let names = ["good", "wrong_ca", "no_cert", "no_token", "refused", "silent"];
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:{}
exporters:
  file: {{path: "{{dir}}/profiles.jsonl", flush_interval: 20ms}}
extensions:
  bearertokenauth: {{token: s3cret}}
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [bearertokenauth, health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    profiles: {{receivers: [{}], exporters: [file]}}
"#,
        receivers.concat(),
        names.map(|n| format!("pprof_scrape/{n}")).join(", ")
    ))?;
    let count = |name: &str, endpoint: &str, outcome: &str| -> f64 {
        scrape(hotspan.port("metrics"))
            .ok()
            .and_then(|m| {
                metric(
                    &m,
                    &format!(
                        r#"hotspan_scrapes{{receiver="pprof_scrape/{name}",target="{endpoint}",profile="goroutine",outcome="{outcome}"}}"#
                    ),
                )
            })
            .unwrap_or(0.0)
    };
    let endpoints = [&https, &https, &https, &https, &closed_url, &silent_url];
    wait_for(
        Duration::from_secs(60),
        "good scrapes and a failure of every other scraper",
        || {
            let ok = count("good", &https, "ok") >= 3.0;
            let failed = names
                .iter()
                .zip(endpoints)
                .skip(1)
                .all(|(n, e)| count(n, e, "failed") >= 1.0);
            (ok && failed).then_some(())
        },
    )
    .with_context(|| hotspan.log())?;
    ensure!(count("good", &https, "failed") == 0.0, "{}", hotspan.log());
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());

    // What came through is the service's goroutine profile, from the good scraper only.
    let batches = read_profiles(&hotspan.path("profiles.jsonl"))?;
    ensure!(!batches.is_empty());
    for b in &batches {
        ensure!(resource_values(b, "service.name") == ["good"]);
    }
    // Each failure is logged with its cause.
    let log = hotspan.log();
    let failure = |name: &str| -> String {
        log.lines()
            .filter(|l| l.contains("scrape failed") && l.contains(&format!("receiver=pprof_scrape/{name} ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (name, cause) in [
        ("wrong_ca", "invalid peer certificate: UnknownIssuer"),
        ("no_cert", "CertificateRequired"),
        (
            "no_token",
            "HTTP 401 Unauthorized: goservice: missing or wrong Authorization header",
        ),
        ("refused", "Connection refused"),
        ("silent", "no complete answer within 2s"),
    ] {
        let lines = failure(name);
        ensure!(
            lines.contains(cause),
            "{name}: the log does not say {cause:?}:\n{lines}\n--- whole log ---\n{log}"
        );
    }
    drop(silent);
    Ok(())
}
