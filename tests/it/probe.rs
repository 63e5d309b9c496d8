//! `sumctl probe`, as `sum-probe@<site>.timer` runs it, against an HTTP
//! server on the site's socket and a real HTTP receiver for its alerts:
//! quiet while the site is well, one alert at the `probe_alert_after`-th
//! failure in a row, one recovery message, and the metrics promtool reads.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use crate::alert::{write_secret, Receiver};
use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_sumctl");

/// Answers every request on `socket` with `status` and a JSON body.
fn serve(socket: &Path, status: Arc<AtomicU16>) {
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The whole request first: answering early breaks the client's pipe.
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let code = status.load(Ordering::SeqCst);
            let body = if code == 200 {
                "{\"status\": \"ok\"}"
            } else {
                "{\"status\": \"unhealthy\", \"database\": \"down\"}"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

fn probe(root: &Path) -> (Output, String) {
    let out = Command::new(BIN)
        .args(["probe", "acme"])
        .env("SUM_ROOT", root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_site_down_three_probes_in_a_row_alerts_once_and_recovers_once() {
    let root = common::root_with_sites(&[(
        "acme.toml",
        &format!("{}[health]\nprobe_alert_after = 3\n", common::MINIMAL),
    )]);
    let metrics = root.path().join("var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    let hook = Receiver::start(200);
    write_secret(
        &root.path().join("etc/sum/alerts.env"),
        &format!("SUM_ALERT_WEBHOOK={}\n", hook.url),
    );
    let status = Arc::new(AtomicU16::new(200));
    serve(
        &root.path().join("run/sum/acme/gunicorn.sock"),
        Arc::clone(&status),
    );

    // Well: nothing printed, the metrics say up.
    let (out, text) = probe(root.path());
    assert_eq!((out.status.code(), text.as_str()), (Some(0), ""));
    let file = metrics.join("sum-acme-probe.prom");
    let m = std::fs::read_to_string(&file).unwrap();
    assert!(
        m.contains("sum_probe_up{site=\"acme\",via=\"socket\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("sum_probe_http_status{site=\"acme\",via=\"socket\"} 200\n"),
        "{m}"
    );
    assert!(
        m.contains("sum_probe_consecutive_failures{site=\"acme\"} 0\n"),
        "{m}"
    );
    common::promtool_check_metrics(&file);

    // Down: two failures are said, not alerted; the third alerts.
    status.store(503, Ordering::SeqCst);
    for n in 1..=2 {
        let (out, text) = probe(root.path());
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains(&format!(
                "health probe failed ({n} in a row; an alert goes at 3)"
            )) && text.contains("503"),
            "{text}"
        );
        assert!(hook.received().is_empty());
    }
    let (_, text) = probe(root.path());
    assert!(text.contains("sent to the webhook"), "{text}");
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["unit"], "sum-probe@acme.service");
    assert_eq!(got[0]["event"], "failure");
    assert_eq!(got[0]["result"], "health check failed 3 times in a row");
    assert!(
        got[0]["journal"][0].as_str().unwrap().contains("503"),
        "{got:?}"
    );
    let m = std::fs::read_to_string(&file).unwrap();
    assert!(
        m.contains("sum_probe_up{site=\"acme\",via=\"socket\"} 0\n"),
        "{m}"
    );
    assert!(
        m.contains("sum_probe_consecutive_failures{site=\"acme\"} 3\n"),
        "{m}"
    );
    common::promtool_check_metrics(&file);
    // Still down: no second alert.
    for _ in 0..3 {
        probe(root.path());
    }
    assert_eq!(hook.received().len(), 1);

    // Well again: one recovery message, then quiet.
    status.store(200, Ordering::SeqCst);
    let (_, text) = probe(root.path());
    assert!(text.contains("recovered"), "{text}");
    let (_, text) = probe(root.path());
    assert_eq!(text, "");
    let got = hook.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["event"], "recovery");

    // Nothing listening: a failure that says so.
    std::fs::remove_file(root.path().join("run/sum/acme/gunicorn.sock")).unwrap();
    let (_, text) = probe(root.path());
    assert!(text.contains("via socket: no answer"), "{text}");
}

#[test]
fn probe_settings_are_checked_and_off_makes_no_timer() {
    let bad = common::root_with_sites(&[(
        "acme.toml",
        &format!("{}[health]\nprobe_every = \"5s\"\n", common::MINIMAL),
    )]);
    let out = Command::new(BIN)
        .arg("check")
        .env("SUM_ROOT", bad.path())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("health.probe_every") && said.contains("shorter than 10s"),
        "{said}"
    );

    let render = |toml: &str| {
        let root = common::root_with_sites(&[("acme.toml", toml)]);
        let out = Command::new(BIN)
            .args(["render", "acme"])
            .env("SUM_ROOT", root.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on = render(&format!(
        "{}[health]\nprobe_every = \"30s\"\n",
        common::MINIMAL
    ));
    assert!(on.contains("OnUnitActiveSec=30s\n"), "{on}");
    assert!(
        on.contains(
            "Upholds=sum-gunicorn@acme.socket sum-backup@acme.timer sum-probe@acme.timer\n"
        ),
        "{on}"
    );
    let off = render(&format!(
        "{}[health]\nprobe_every = \"off\"\n",
        common::MINIMAL
    ));
    assert!(!off.contains("sum-probe@"), "{off}");
}
