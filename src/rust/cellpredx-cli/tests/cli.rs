use std::process::Command;

fn cellpredx(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellpredx")).args(args).env_clear().output().expect("runs")
}

#[test]
fn info_runs_without_any_environment() {
    let out = cellpredx(&["info", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(info["libtorch_version"].as_str().unwrap().starts_with("2.11.0"));
    assert!(info["threads"].as_u64().is_some_and(|t| t >= 1));
}

#[test]
fn errors_are_one_line_with_a_failing_status() {
    let out = cellpredx(&["--threads", "0", "info"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "cellpredx: error: threads must be at least 1\n");
}

#[test]
fn the_thread_option_is_applied() {
    let out = cellpredx(&["--threads", "1", "info", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["threads"].as_u64(), Some(1));
}

#[test]
fn a_closed_output_pipe_ends_the_tool_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellpredx"))
        .arg("info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    // Close the reading end before the tool has loaded libtorch and printed anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
