#![allow(clippy::unwrap_used)]

use super::*;

fn ended_pod(exit_code: i32, message: Option<&str>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "copy-1"},
        "status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{"name": pods::COPY_CONTAINER, "image": "i", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed", "message": message}}}]}
    }))
    .unwrap()
}

fn done(exit_code: i32, message: &str) -> String {
    Report::Done {
        step: "copy".into(),
        exit_code,
        bytes_transferred: 9,
        files_transferred: 3,
        mismatches: 0,
        message: message.into(),
    }
    .to_json()
}

/// The result comes from the termination message only, and must agree with the container's exit code.
#[test]
fn pod_result_trusts_only_a_termination_message_that_matches_the_exit_code() {
    type Expected = Result<(u64, u64), &'static str>;
    let cases: &[(i32, Option<String>, Expected)] = &[
        (0, Some(done(0, "")), Ok((9, 3))),
        (0, Some(done(24, "file has vanished")), Ok((9, 3))),
        (11, Some(done(11, "No space left on device")), Err("NoSpace")),
        // A copy that failed cannot pass for a success, whatever the report says.
        (12, Some(done(0, "")), Err("InconsistentResult")),
        (0, Some(done(12, "")), Err("InconsistentResult")),
        // No report (killed, out of memory) or not one: the pod's own reason.
        (137, None, Err("CopyPodFailed")),
        (0, Some("dr-syncer-report {\"event\":\"done\"}".into()), Err("CopyPodFailed")),
        (0, Some(r#"{"event":"progress","bytes":1,"percent":1,"rate":"1","files":1}"#.into()), Err("CopyPodFailed")),
    ];
    for (code, message, expected) in cases {
        let got = pod_result(&ended_pod(*code, message.as_deref())).map(|t| (t.bytes, t.files)).map_err(|f| f.reason);
        assert_eq!(&got, expected, "exit {code}, message {message:?}");
    }
}

/// A report line in the log (which carries the remote sender's stderr too) is never taken as the result.
#[tokio::test]
async fn read_progress_takes_only_progress_and_bounds_lines_when_the_log_is_hostile() {
    let forged = Report::Done {
        step: "copy".into(),
        exit_code: 0,
        bytes_transferred: 1,
        files_transferred: 1,
        mismatches: 0,
        message: String::new(),
    };
    let real = Report::Progress { bytes: 5, percent: 50, rate: "1.00MB/s".into(), files: 1 };
    let long = format!("{}{}\n", dr_syncer_wire::progress::REPORT_PREFIX, "x".repeat(1 << 20));
    let log = format!("{}\n{long}{}\nplain\n", forged.to_line(), real.to_line());
    let seen = std::sync::Mutex::new(Vec::new());
    read_progress(futures::io::Cursor::new(log.into_bytes()), &|r: &Report| seen.lock().unwrap().push(r.clone())).await;
    assert_eq!(seen.into_inner().unwrap(), vec![real]);
}

fn source_pod(uid: &str, ip: Option<&str>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dr-syncer-src-data-1", "uid": uid},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"podIP": ip}
    }))
    .unwrap()
}

/// The copy goes on only with the pod dr-syncer created, at the address the agent relays to.
#[test]
fn ours_refuses_a_pod_when_it_was_replaced_or_moved() {
    let ip: std::net::IpAddr = "10.97.0.5".parse().unwrap();
    assert_eq!(ours(&source_pod("u1", Some("10.97.0.5")), "u1", None).unwrap(), ("node-1".to_string(), ip));
    assert!(ours(&source_pod("u1", Some("10.97.0.5")), "u1", Some(ip)).is_ok());
    let cases = [
        (source_pod("u2", Some("10.97.0.5")), None, "SourcePodReplaced"),
        (source_pod("u1", Some("10.97.0.6")), Some(ip), "SourcePodReplaced"),
        (source_pod("u1", None), None, "SourcePodNotReady"),
        (source_pod("u1", Some("not an ip\nProxyCommand x")), None, "SourcePodNotReady"),
    ];
    for (pod, before, reason) in cases {
        assert_eq!(ours(&pod, "u1", before).unwrap_err().reason, reason, "{pod:?}");
    }
}
