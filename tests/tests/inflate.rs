//! Big compressed bodies are inflated off the async workers: while several clients' bodies
//! inflate to hundreds of MiB, another client's small request is answered first, not after
//! them. (Inflated where they are read, as before, they held every worker of the runtime.)

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use hotspan_tests::{gzip, json_spans, post, Hotspan};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:{port:http}"
        max_request_body_size: 536870912
exporters:
  debug: {verbosity: basic}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"#;

#[test]
fn a_small_request_is_answered_while_big_bodies_inflate() -> Result<()> {
    let h = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", h.port("http"));
    // 128 MiB of zeros: ~128 KiB gzipped, half a second of inflating each, then
    // refused as not protobuf (field number 0) without decoding further.
    let bomb = Arc::new(gzip(&vec![0u8; 128 << 20]));
    let bigs = 4;
    let start = Arc::new(Barrier::new(bigs + 1));
    let mut handles = Vec::new();
    for _ in 0..bigs {
        let (url, bomb, start) = (url.clone(), bomb.clone(), start.clone());
        handles.push(std::thread::spawn(move || -> Result<(u16, Instant)> {
            start.wait();
            let answer = post(&url, "application/x-protobuf", Some("gzip"), bomb.to_vec())?;
            Ok((answer.status, Instant::now()))
        }));
    }
    start.wait();
    // Give the big bodies time to arrive and start inflating (they are small on the wire).
    std::thread::sleep(std::time::Duration::from_millis(100));
    let small = post(
        &url,
        "application/json",
        None,
        json_spans("small", 0, 3).into_bytes(),
    )?;
    let small_done = Instant::now();
    ensure!(
        small.status == 200,
        "small request: {} {}",
        small.status,
        small.body
    );
    let mut firsts = Vec::new();
    for handle in handles {
        let (status, done) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
        ensure!(status == 400, "a zero-filled body is not protobuf: got {status}");
        firsts.push(done);
    }
    let first_big = firsts.into_iter().min().context("big answers")?;
    ensure!(
        small_done < first_big,
        "the small request waited for a big body to inflate ({:?} after the first big answer)",
        small_done - first_big
    );
    Ok(())
}
