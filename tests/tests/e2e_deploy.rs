//! deploy/: the capability set of `deploy/capabilities.txt` is the unit's, the DaemonSet's and
//! the docs'; the unit passes `systemd-analyze verify`; and synack started as the unit starts it
//! (its user, exactly its capabilities as ambient and bounding set, no_new_privs, a private
//! /run/synack owned by the user) serves curl, while without any one capability it refuses to
//! start with a message naming it. systemd is not PID 1 on the test machines, so the unit's
//! settings are applied with `setpriv`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use synack_tests::process::run;
use synack_tests::server::READY_TIMEOUT;
use synack_tests::{Backend, TestNet};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `deploy/capabilities.txt`: the first word of each line that is not a comment.
fn capability_set() -> BTreeSet<String> {
    let set: BTreeSet<String> = read("deploy/capabilities.txt")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(set.iter().all(|c| c.starts_with("CAP_")), "capabilities.txt: {set:?}");
    assert!(!set.is_empty(), "capabilities.txt lists no capability");
    set
}

/// The value of `key=` in the unit (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines().rev().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().to_string())
}

fn unit() -> String {
    read("deploy/systemd/synack@.service")
}

fn unit_caps(key: &str) -> BTreeSet<String> {
    let value = unit_value(&unit(), key).unwrap_or_else(|| panic!("the unit has no {key}="));
    value.split_whitespace().map(str::to_string).collect()
}

#[test]
fn deploy_files_agree_on_the_capabilities() {
    let set = capability_set();
    assert_eq!(unit_caps("AmbientCapabilities"), set, "the unit's AmbientCapabilities");
    assert_eq!(unit_caps("CapabilityBoundingSet"), set, "the unit's CapabilityBoundingSet");
    assert_eq!(unit_value(&unit(), "NoNewPrivileges").as_deref(), Some("yes"));
    assert_eq!(unit_value(&unit(), "RuntimeDirectory").as_deref(), Some("synack"), "/run/synack holds the key");

    // The DaemonSet: `add: ["BPF", ...]` without the CAP_ prefix.
    let daemonset = read("deploy/k8s/daemonset.yaml");
    let add = daemonset.lines().find_map(|l| l.trim().strip_prefix("add:")).expect("the DaemonSet adds capabilities");
    let k8s: BTreeSet<String> = add
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|c| format!("CAP_{}", c.trim().trim_matches('"')))
        .collect();
    assert_eq!(k8s, set, "the DaemonSet's capabilities");
    assert!(daemonset.contains("drop: [\"ALL\"]"), "the DaemonSet drops every other capability");

    // The Containerfile's example run line.
    let containerfile = read("deploy/container/Containerfile");
    let cap_add = containerfile.split("--cap-add ").nth(1).expect("the Containerfile shows --cap-add");
    let podman: BTreeSet<String> =
        cap_add.split_whitespace().next().unwrap_or("").split(',').map(str::to_string).collect();
    assert_eq!(podman, set, "the Containerfile's --cap-add");

    // deploy/README.md: the rows "| `CAP_X` | why |" of its table.
    let readme = read("deploy/README.md");
    let docs: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `CAP_"))
        .filter_map(|l| l.split('`').next())
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert_eq!(docs, set, "deploy/README.md's capability table");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP (needs systemd-analyze: apt-get install systemd): systemd_analyze_verifies_the_unit");
        return;
    };
    assert!(out.status.success());
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let Backend::Synack(bin) = Backend::synack() else { unreachable!() };
    let dir = std::env::temp_dir().join(format!("synack-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synack@.service");
    std::fs::write(&path, unit().replace("/usr/local/bin/synack", bin.to_str().unwrap())).unwrap();
    let out = run(
        {
            let mut c = Command::new("systemd-analyze");
            c.arg("verify").arg(&path);
            c
        },
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.success() && out.stderr.trim().is_empty(), "systemd-analyze verify: {}", out.describe());
}

/// `CAP_NET_ADMIN` -> `net_admin`, as setpriv names them.
fn setpriv_name(cap: &str) -> String {
    cap.trim_start_matches("CAP_").to_ascii_lowercase()
}

/// The unit's user (created as a system user if missing, as deploy/setup.sh --apply does).
fn unit_user() -> (String, u32, u32) {
    let user = unit_value(&unit(), "User").expect("the unit names a User");
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, &user]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok()
    };
    if id("-u").is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", &user])
            .status()
            .expect("useradd runs");
        assert!(status.success(), "useradd {user} failed");
    }
    (user.clone(), id("-u").expect("uid"), id("-g").expect("gid"))
}

/// The command line that starts synack as the unit would: in the synack namespace, a private
/// tmpfs at /run/synack owned by the user (RuntimeDirectory=), then setpriv with the user and
/// exactly `caps` (AmbientCapabilities= and CapabilityBoundingSet=) and no_new_privs.
fn start_as_unit(net: &TestNet, bin: &Path, caps: &BTreeSet<String>, uid: u32, gid: u32, args: &[String]) -> Command {
    let list = caps.iter().map(|c| format!("+{}", setpriv_name(c))).collect::<Vec<_>>().join(",");
    let list = if list.is_empty() { "-all".to_string() } else { format!("-all,{list}") };
    let mut script = format!(
        "mount -t tmpfs -o mode=0700,uid={uid},gid={gid} synack-run /run/synack && exec setpriv --reuid={uid} \
         --regid={gid} --init-groups --no-new-privs --inh-caps={list} --ambient-caps={list} --bounding-set={list} {}",
        bin.display()
    );
    for a in args {
        script.push(' ');
        script.push_str(a);
    }
    // The mount point; `ip netns exec` gives the command its own mount namespace, so the tmpfs
    // is private to this process. Made as root's synack would make it (mode 0700) if missing:
    // a 0755 directory left behind would make every later synack run as root refuse its key.
    if !Path::new("/run/synack").exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create("/run/synack").expect("mkdir /run/synack");
    }
    net.synack.command("sh", &["-c", &script])
}

#[test]
fn the_units_privileges_suffice_and_each_capability_is_needed() {
    if synack_tests::skip_unless_root("network namespaces, setpriv, XDP") {
        return;
    }
    let Backend::Synack(bin) = Backend::synack() else { unreachable!() };
    let set = capability_set();
    let (user, uid, gid) = unit_user();
    let net = TestNet::new("deploy");
    let ip = net.dedicated_ip();
    let args: Vec<String> =
        ["serve", "--iface", &net.synack.iface, "--ip", &ip.to_string(), "--port", "80", "--app", "http"]
            .iter()
            .map(|s| s.to_string())
            .collect();

    let mut proc = synack_tests::Proc::spawn(start_as_unit(&net, &bin, &set, uid, gid, &args));
    if let Err(e) = proc.wait_for_line("ready", READY_TIMEOUT) {
        panic!("synack as {user} with {set:?} did not start: {e}");
    }
    // It runs as the user, with exactly the set (no more: the bounding set is the same).
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).expect("status");
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_string();
    assert!(field("Uid:").starts_with(&format!("{uid}\t")), "Uid: {}", field("Uid:"));
    let mask = |caps: &BTreeSet<String>| caps.iter().map(|c| 1u64 << cap_number(c)).fold(0, |a, b| a | b);
    let eff = u64::from_str_radix(&field("CapEff:"), 16).expect("CapEff");
    assert_eq!(eff, mask(&set), "effective capabilities");
    assert_eq!(u64::from_str_radix(&field("CapBnd:"), 16).expect("CapBnd"), mask(&set), "bounding set");
    assert_eq!(field("NoNewPrivs:"), "1");
    // The per-boot key went to its runtime directory, written by the user.
    let key = PathBuf::from(format!("/proc/{}/root/run/synack/isn-key", proc.pid()));
    let meta = std::fs::metadata(&key).unwrap_or_else(|e| panic!("no key at {}: {e}", key.display()));
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&meta), meta.len()), (uid, 16), "the key file");

    let url = format!("http://{ip}/");
    let out = net.peer.run(
        "curl",
        &["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", &url],
        Duration::from_secs(10),
    );
    assert_eq!(out.stdout.trim(), "200", "curl {url}: {}", out.describe());
    let out = proc.stop(synack_tests::process::STOP_GRACE);
    assert!(out.success(), "synack did not stop cleanly on SIGTERM: {}", out.describe());
    assert!(net.synack.xdp_attachment().is_none(), "XDP program still attached");
    println!("as {user} ({uid}) with {set:?}: ready, curl 200, clean stop");

    for cap in &set {
        let mut less = set.clone();
        less.remove(cap);
        let out = run(start_as_unit(&net, &bin, &less, uid, gid, &args), Duration::from_secs(20));
        let text = out.all_text();
        assert!(!out.success() && !text.contains("ready"), "synack started without {cap}: {}", out.describe());
        let error = text.lines().find(|l| l.starts_with("synack: error:")).unwrap_or("");
        assert!(error.contains(cap.as_str()), "without {cap} the error does not name it: {}", out.describe());
        assert!(net.synack.xdp_attachment().is_none(), "a failed start without {cap} left the program attached");
        // libbpf's messages go to the log at debug level, not to stderr: the error is all.
        assert_eq!(out.stderr.trim(), error, "without {cap}, more than the error on stderr: {}", out.describe());
        println!("without {cap}: {error}");
    }
    // RUST_LOG brings libbpf's log back: the verifier's rejection without CAP_PERFMON.
    let mut less = set.clone();
    less.remove("CAP_PERFMON");
    let mut cmd = start_as_unit(&net, &bin, &less, uid, gid, &args);
    cmd.env("RUST_LOG", "libbpf=debug");
    let out = run(cmd, Duration::from_secs(20));
    assert!(
        out.stderr.contains("BEGIN PROG LOAD LOG") && out.stderr.contains("libbpf"),
        "RUST_LOG=libbpf=debug shows no verifier log: {}",
        out.describe()
    );
}

/// The bit of a capability in /proc/PID/status masks (linux/capability.h).
fn cap_number(cap: &str) -> u32 {
    match cap {
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_IPC_LOCK" => 14,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other}'s number to cap_number"),
    }
}

/// The flags of the example configuration and the DaemonSet exist in `synack serve`, and both
/// serve metrics (the DaemonSet's probes read them).
#[test]
fn deploy_flags_exist_in_synack_serve() {
    let Backend::Synack(bin) = Backend::synack() else { unreachable!() };
    let out = Command::new(&bin).args(["serve", "--help"]).output().expect("synack serve --help runs");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let flags = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| c.is_whitespace() || c == '"')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches(',').to_string())
            .collect()
    };
    let env = read("deploy/synack.env.example");
    let args_line = env.lines().find(|l| l.starts_with("SYNACK_ARGS=")).expect("SYNACK_ARGS=");
    let daemonset = read("deploy/k8s/daemonset.yaml");
    let args_block: String = daemonset
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .take_while(|l| !l.trim().starts_with("ports:"))
        .collect::<Vec<_>>()
        .join("\n");
    for (what, set) in [("synack.env.example", flags(args_line)), ("daemonset.yaml args", flags(&args_block))] {
        assert!(set.contains("--metrics") && set.contains("--iface"), "{what}: {set:?}");
        for flag in &set {
            assert!(help.contains(&format!("{flag} ")), "{what} uses {flag}, which `synack serve` does not have");
        }
    }
    assert!(args_line.contains("SYNACK_ARGS=serve "), "the example runs serve");
}
