//! `synack stat`: with three connections a Linux client holds open to `synack serve`, the table
//! shows them ESTABLISHED with their 4-tuples, the filters select them, `--json` parses, and
//! the socket goes away with the process.

use std::time::Duration;

use synack_tests::{Addressing, App, Backend, ServeConfig, Server, TestNet};

/// Debian's python3 (the JSON check needs only the standard library).
const PYTHON: &str = "/usr/bin/python3";

fn stat(bin: &str, pid: u32, extra: &[&str]) -> String {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["stat", "--pid", &pid.to_string()]).args(extra);
    let out = synack_tests::process::run(cmd, Duration::from_secs(15));
    assert!(out.success(), "synack stat {extra:?}: {}", out.describe());
    out.stdout
}

#[test]
fn stat_lists_the_connections_and_filters_them() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::synack();
    let Backend::Synack(bin) = &backend else { unreachable!() };
    let bin = bin.to_str().unwrap().to_string();
    let net = TestNet::new("stat");
    let server = Server::start(&backend, &net, &ServeConfig::new(App::Http, Addressing::Dedicated, 80));
    let pid = server.proc.pid();
    let ip = net.dedicated_ip();

    // Three connections held open by a Linux client.
    let hold = format!(
        "import socket, time\ns = [socket.create_connection(('{ip}', 80)) for _ in range(3)]\n\
         print('open', ' '.join(str(c.getsockname()[1]) for c in s), flush=True)\ntime.sleep(20)"
    );
    let mut client = net.peer.spawn(PYTHON, &["-c", &hold]);
    let line = client.wait_for_line("open", Duration::from_secs(10)).expect("the client connects");
    let ports: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
    assert_eq!(ports.len(), 3);
    // The workers publish their tables periodically: ask until all three show (a loaded
    // machine can delay a publication well past one period).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = stat(&bin, pid, &[]);
    while !text.contains("3 connection(s)") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        text = stat(&bin, pid, &[]);
    }
    println!("{text}");
    assert!(text.contains(&format!("synack pid {pid}: serve on")), "{text}");
    for port in &ports {
        let row = text
            .lines()
            .find(|l| l.contains(&format!("{}:{port}", net.peer.ip)))
            .unwrap_or_else(|| panic!("no row for the client's port {port}: {text}"));
        assert!(row.contains("ESTABLISHED") && row.contains(&format!("{ip}:80")), "{row}");
    }
    assert!(text.contains("3 connection(s)"), "{text}");

    // Filters.
    let one = stat(&bin, pid, &["--port", &ports[1]]);
    assert!(one.contains("1 connection(s)") && one.contains(&ports[1]), "{one}");
    assert!(stat(&bin, pid, &["--state", "established", "--port", "80"]).contains("3 connection(s)"));
    assert!(stat(&bin, pid, &["--state", "syn-received"]).contains("0 connection(s)"));
    let summary = stat(&bin, pid, &["--summary"]);
    assert!(!summary.contains("connection(s)"), "--summary has no table: {summary}");

    // JSON, read by a real parser.
    let json = stat(&bin, pid, &["--json"]);
    let check = "import json, sys\nd = json.loads(sys.stdin.read())\n\
                 assert d['command'] == 'serve', d\nassert len(d['connections']) == 3, d\n\
                 assert all(c['state'] == 'ESTABLISHED' for c in d['connections']), d\n\
                 assert d['queues'][0]['connections'] == 3, d\nprint('json ok')";
    let mut py = std::process::Command::new(PYTHON);
    py.args(["-c", check]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = py.spawn().expect("python3 runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), json.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("json ok"), "JSON check failed on {json}");

    drop(client);
    let socket = format!("/run/synack/synack-{pid}.sock");
    assert!(std::path::Path::new(&socket).exists());
    server.stop_cleanly(&net.synack);
    assert!(!std::path::Path::new(&socket).exists(), "{socket} is left after a clean stop");
    // Asking a process that is gone names the fix.
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["stat", "--pid", &pid.to_string()]);
    let out = synack_tests::process::run(cmd, Duration::from_secs(10));
    assert!(!out.success() && out.stderr.contains("check the pid"), "{}", out.describe());
}
