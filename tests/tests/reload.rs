//! SIGHUP: a bad file leaves the running pipelines serving; a good one replaces them without
//! losing what the old ones acknowledged.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::restart::{each_span, file_backend};
use hotspan_tests::{
    attrs, json_span_id, json_spans, metric, post, read_spans, scrape, signal, unix_nanos, wait_for,
    wait_for_spans, Hotspan,
};

fn config(file: &str, http_port: u16, health_port: u16, metrics_port: u16) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http_port}"}}}}}}
processors:
  batch: {{timeout: 5s}}
exporters:
  file: {{path: "{file}", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{health_port}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics_port}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
"#
    )
}

#[test]
fn sighup_keeps_serving_on_a_bad_file_and_switches_on_a_good_one() -> Result<()> {
    let http = hotspan_tests::free_port();
    let health = hotspan_tests::free_port();
    let metrics = hotspan_tests::free_port();
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let mut hotspan = Hotspan::start(
        &config(&first.display().to_string(), http, health, metrics)
            .replace(&format!("127.0.0.1:{health}"), "127.0.0.1:{port:health}"),
    )?;
    let config_path = hotspan.path("config.yaml");
    let health = hotspan.health_port;
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    // Held in the batch processor (5 s) when the reload comes: the drain must deliver it.
    ensure!(
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 0, 10).into_bytes()
        )?
        .status
            == 200
    );

    std::fs::write(
        &config_path,
        "receivers: {otlp: {protocols: {grpc: {endpont: x}}}}\n",
    )?;
    signal(hotspan.child.id(), "HUP")?;
    wait_for(Duration::from_secs(10), "the refusal in the log", || {
        hotspan.log().contains("config reload refused").then_some(())
    })?;
    ensure!(
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 100, 10).into_bytes()
        )?
        .status
            == 200,
        "old pipelines stopped serving"
    );

    std::fs::write(
        &config_path,
        config(&second.display().to_string(), http, health, metrics),
    )?;
    signal(hotspan.child.id(), "HUP")?;
    wait_for(Duration::from_secs(20), "the reload", || {
        hotspan.log().contains("config reloaded").then_some(())
    })?;
    // Everything the old pipelines acknowledged was drained into the first file.
    let old = wait_for_spans(&first, 20, Duration::from_secs(10))?;
    ensure!(old.contains_key(&json_span_id(0)) && old.contains_key(&json_span_id(109)));
    // The new pipeline serves and writes to the second file.
    let answer = wait_for(Duration::from_secs(10), "the new listener", || {
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 200, 10).into_bytes(),
        )
        .ok()
        .filter(|a| a.status == 200)
    })?;
    ensure!(answer.status == 200);
    ensure!(hotspan.terminate()?.success());
    let new = read_spans(&second)?;
    ensure!(
        new.len() == 10 && new.contains_key(&json_span_id(200)),
        "{} spans in the new file",
        new.len()
    );
    ensure!(
        read_spans(&first)?.len() == 20,
        "the old file got spans after the reload"
    );
    Ok(())
}

/// hotspan forwarding over OTLP/gRPC to `backend`, with a quick retry and an in-memory queue;
/// `timeout` changes the exporter's config between reloads.
fn forwarding(http: u16, grpc: u16, backend: u16, timeout: &str, batch: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{http}"}}
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
processors:
  batch: {{timeout: {batch}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend}"
    tls: {{insecure: true}}
    timeout: {timeout}
    sending_queue: {{queue_size: 100000}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
"#
    )
}

/// Reloads while clients send without pause and the backend is away: no connection is
/// refused or reset, every acknowledged span reaches the backend once it is back (the
/// exporter whose config changed handed its queue to its successor), and an exporter whose
/// config did not change is taken over running.
#[test]
fn sighup_under_load_refuses_nothing_and_loses_nothing() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let (http, grpc, backend_port) = (
        hotspan_tests::free_port(),
        hotspan_tests::free_port(),
        hotspan_tests::free_port(),
    );
    let mut sink = Hotspan::start(&file_backend(backend_port))?;
    let delivered = sink.path("out.jsonl");
    let mut hotspan = Hotspan::start(&forwarding(http, grpc, backend_port, "5s", "100ms"))?;
    let config_path = hotspan.path("config.yaml");

    // Two clients, OTLP/HTTP and OTLP/gRPC, each sending its own span ids back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for client in 0..2u64 {
        let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
        clients.push(std::thread::spawn(move || {
            let mut first = client * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let body = json_spans("load", first, 5);
                let outcome = if client == 0 {
                    post(
                        &format!("http://127.0.0.1:{http}/v1/traces"),
                        "application/json",
                        None,
                        body.into_bytes(),
                    )
                    .map(|a| a.status == 200)
                    .map_err(|e| format!("{e:#}"))
                } else {
                    let batch =
                        hotspan_proto::TracesBatch::decode(body.as_bytes(), hotspan_proto::Encoding::Json)
                            .expect("test json");
                    match hotspan_tests::grpc_export(
                        grpc,
                        hotspan_config::Signal::Traces,
                        batch.encode(hotspan_proto::Encoding::Protobuf),
                    ) {
                        Ok(Ok(_)) => Ok(true),
                        // A status is an answer (a retryable one would be retried by an SDK).
                        Ok(Err(status)) => Ok(status.code() == tonic::Code::Ok),
                        Err(e) => Err(format!("{e:#}")),
                    }
                };
                match outcome {
                    Ok(true) => acked.lock().expect("acked").extend(first..first + 5),
                    Ok(false) => {}
                    Err(e) => failures.lock().expect("failures").push(e),
                }
                first += 5;
            }
        }));
    }
    let sent_enough = |n: usize| {
        wait_for(
            Duration::from_secs(20),
            &format!("{n} acknowledged spans"),
            || (acked.lock().ok()?.len() >= n).then_some(()),
        )
    };
    sent_enough(200)?;
    // The backend goes away: what is acknowledged from now on waits in the sending queue.
    ensure!(sink.terminate()?.success());
    for (round, timeout) in ["6s", "7s", "7s"].into_iter().enumerate() {
        let before = acked.lock().expect("acked").len();
        sent_enough(before + 100)?;
        // The last round changes only the batch processor: the exporter is taken over.
        let batch = if round == 2 { "150ms" } else { "100ms" };
        std::fs::write(
            &config_path,
            forwarding(http, grpc, backend_port, timeout, batch)
                .replace("{port:health}", &hotspan.health_port.to_string()),
        )?;
        signal(hotspan.child.id(), "HUP")?;
        wait_for(Duration::from_secs(30), "the reload", || {
            (hotspan.log().matches("config reloaded").count() > round).then_some(())
        })?;
    }
    let handed = hotspan
        .log()
        .matches("handing what it holds to the reloaded exporter")
        .count();
    ensure!(
        handed == 2,
        "the changed exporter handed off {handed} times:\n{}",
        hotspan.log()
    );
    // Read first: a guard in the argument would live through the call and block its check.
    let before = acked.lock().expect("acked").len();
    sent_enough(before + 100)?;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().map_err(|_| anyhow::anyhow!("a client panicked"))?;
    }
    let failures = failures.lock().expect("failures").clone();
    ensure!(
        failures.is_empty(),
        "clients saw {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );

    // The backend comes back on its port: every acknowledged span arrives.
    sink.restart()?;
    let acked = acked.lock().expect("acked").clone();
    let spans =
        wait_for_spans(&delivered, acked.len(), Duration::from_secs(60)).with_context(|| hotspan.log())?;
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|id| !spans.contains_key(&json_span_id(**id)))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged spans lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    ensure!(hotspan.terminate()?.success());
    ensure!(sink.terminate()?.success());
    Ok(())
}

/// A join whose config did not change is carried into the reloaded service with what it holds:
/// spans taken before a SIGHUP get samples that come after it, and none leaves early. One whose
/// config changed drains at the reload, and says how many spans left so.
#[test]
fn sighup_carries_an_unchanged_join_over_and_drains_a_changed_one() -> Result<()> {
    use std::collections::BTreeMap;

    use hotspan_proto::synthetic::{linked_profiles, service_name, Rng, Shape, Template};
    use prost::Message;

    let config = |flush: &str, wait: &str| {
        format!(
            r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
connectors:
  spanprofile: {{wait: {wait}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl", flush_interval: {flush}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [otlp], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [file]}}
"#
        )
    };
    let mut hotspan = Hotspan::start(&config("20ms", "4s"))?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("http"));
    // Spans of two realistic traces; returns their ids and the profile samples linked to them.
    let send = |seed: u64| -> Result<(Vec<u64>, Vec<u8>)> {
        let t = Template::new(Shape::Realistic, 0, 16, seed)?;
        let (body, ids) = t.fill(&mut Rng::new(seed), 0, unix_nanos());
        ensure!(post(&format!("{base}/v1/traces"), "application/x-protobuf", None, body)?.status == 200);
        let profiles = linked_profiles(service_name(Shape::Realistic, 0), &ids, ids.len(), unix_nanos());
        Ok((
            ids.into_iter().map(|(_, s)| s).collect(),
            profiles.encode_to_vec(),
        ))
    };
    let send_profiles = |profiles: Vec<u8>| -> Result<()> {
        let url = format!("{base}/v1development/profiles");
        ensure!(post(&url, "application/x-protobuf", None, profiles)?.status == 200);
        Ok(())
    };
    let annotated = |ids: &[u64]| -> Result<Option<usize>> {
        let mut seen = BTreeMap::new();
        each_span(&hotspan.path("out.jsonl"), |span| {
            let id = u64::from_be_bytes(span.span_id.as_slice().try_into()?);
            seen.insert(id, attrs::int(span, "profile.samples").is_some_and(|n| n > 0));
            Ok(())
        })?;
        Ok(ids
            .iter()
            .all(|id| seen.contains_key(id))
            .then(|| ids.iter().filter(|id| seen[*id]).count()))
    };
    let drained = |h: &Hotspan| -> Result<f64> {
        Ok(metric(
            &scrape(h.port("metrics"))?,
            r#"hotspan_spanprofile_spans_drained{connector="spanprofile"}"#,
        )
        .unwrap_or(0.0))
    };

    // The exporter changes, the join does not: the spans held across the reload meet the
    // samples sent after it.
    let (first, profiles) = send(1)?;
    hotspan.reload(&config("30ms", "4s"))?;
    ensure!(
        hotspan
            .log()
            .contains("the reloaded connector carries on with the spans held"),
        "{}",
        hotspan.log()
    );
    send_profiles(profiles)?;
    let got = wait_for(Duration::from_secs(20), "the first spans", || {
        annotated(&first).ok().flatten()
    })?;
    ensure!(got == first.len(), "{got} of {} spans annotated", first.len());
    ensure!(
        drained(&hotspan)? == 0.0,
        "spans drained at a reload that kept the join"
    );

    // The join's wait changes: what it holds leaves at the reload, counted, before its samples.
    let (second, profiles) = send(2)?;
    hotspan.reload(&config("30ms", "3s"))?;
    send_profiles(profiles)?;
    let got = wait_for(Duration::from_secs(20), "the second spans", || {
        annotated(&second).ok().flatten()
    })?;
    ensure!(got == 0, "{got} spans annotated after their join was drained");
    ensure!(
        drained(&hotspan)? == second.len() as f64,
        "drained {} of {}",
        drained(&hotspan)?,
        second.len()
    );
    ensure!(hotspan.terminate()?.success());
    Ok(())
}
