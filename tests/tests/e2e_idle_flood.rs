//! 20,000 idle connections, then legit clients: two Linux processes open 10,000 connections each to
//! `synack serve --app http --max-connections 20000 --idle-timeout-s 8` and says nothing on
//! them, which fills the connection table: a legit client's SYN meets it full. Once the idle
//! timeout passes, the app closes every one of them at once: the newest 4,096 (the default
//! orphan limit, Linux's `tcp_max_orphans`) with a FIN (the client closes its side on EOF, as any
//! client does), the older ones reset as the orphan limit asks (`orphans_reset`). The table is
//! back to empty, legit clients are all served, and `idle_timeouts` is exactly the number of
//! idle connections.

use std::time::{Duration, Instant};

use synack_tests::netns::{TestNet, SETUP_TIMEOUT};
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};
use synack_tests::stat::await_connections;
use synack_tests::syn_flood::counter;

const PORT: u16 = 80;
const IDLE: u64 = 20_000;
/// `--idle-timeout-s`: longer than the client needs to open all its connections here (about
/// 3 s on the loaded 2-core machine), so that they are all open at once.
const IDLE_TIMEOUT_S: u64 = 8;
const FETCHES: usize = 100;
/// Processes opening the idle connections: a process may hold fewer than 20,000 files here
/// (a hard limit of 20,000 and no CAP_SYS_RESOURCE to raise it).
const CLIENTS: u64 = 2;
/// The default `max_orphans`.
const ORPHANS: u64 = 4096;

/// Opens N connections (non-blocking, 500 handshakes at a time), prints `open N` (or `failed
/// ...`), then closes each socket when the server ends it (EOF or reset) and prints `closed
/// eof E reset R open O` once all are closed or after 60 s.
const CLIENT: &str = r#"
import errno, resource, select, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < n + 64:
    print("failed: the hard file limit", hard, "is below", n + 64, flush=True)
    sys.exit(1)
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, hard))
start = time.monotonic()
connecting, live = {}, {}
ep_out, ep_in = select.epoll(), select.epoll()
made = 0
while len(live) < n:
    while len(connecting) < 500 and made < n:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((ip, port))
        if err not in (0, errno.EINPROGRESS):
            print("failed connect", errno.errorcode.get(err, err), flush=True)
            sys.exit(1)
        ep_out.register(s.fileno(), select.EPOLLOUT)
        connecting[s.fileno()] = s
        made += 1
    if time.monotonic() - start > 30:
        print("failed: only", len(live), "open after 30 s", flush=True)
        sys.exit(1)
    for fd, _ in ep_out.poll(1):
        s = connecting.pop(fd)
        ep_out.unregister(fd)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            print("failed handshake", errno.errorcode.get(err, err), flush=True)
            sys.exit(1)
        ep_in.register(fd, select.EPOLLIN)
        live[fd] = s
print("open", len(live), round(time.monotonic() - start, 2), flush=True)
eof = reset = 0
deadline = time.monotonic() + 60
while live and time.monotonic() < deadline:
    for fd, _ in ep_in.poll(1):
        s = live.pop(fd)
        ep_in.unregister(fd)
        try:
            data = s.recv(100)
            if data:
                print("unexpected data", data, flush=True)
                sys.exit(1)
            eof += 1
        except ConnectionResetError:
            reset += 1
        s.close()
print("closed eof", eof, "reset", reset, "open", len(live), flush=True)
"#;

#[test]
fn twenty_thousand_idle_connections_are_cut_and_legit_clients_served() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    let Backend::Synack(bin) = &backend else {
        println!("SKIP (synack's idle timeout and table bound; nothing to compare with a kernel stand-in)");
        return;
    };
    let bin = bin.to_str().unwrap().to_string();
    let net = TestNet::new("idle-flood");
    // 20,000 client ports from one address.
    net.peer.run_ok("sysctl", &["-qw", "net.ipv4.ip_local_port_range=10000 65000"], SETUP_TIMEOUT);
    let config = ServeConfig::new(App::Http, Addressing::Shared, PORT)
        .arg("--max-connections")
        .arg(&IDLE.to_string())
        .arg("--idle-timeout-s")
        .arg(&IDLE_TIMEOUT_S.to_string())
        // 4 KiB rings: 20,000 slots in 160 MiB.
        .arg("--buffer-bytes")
        .arg("4096");
    let server = Server::start(&backend, &net, &config);
    let pid = server.proc.pid();
    let ip = net.shared_ip().to_string();

    let each = (IDLE / CLIENTS).to_string();
    let mut clients: Vec<_> =
        (0..CLIENTS).map(|_| net.peer.spawn("python3", &["-c", CLIENT, &ip, &PORT.to_string(), &each])).collect();
    let mut opened = Vec::new();
    for client in &mut clients {
        let line = client.wait_for_line("open", Duration::from_secs(40)).expect("the idle client opens");
        assert!(line.starts_with(&format!("open {each} ")), "{line}: {}", client.snapshot().describe());
        opened.push(line);
    }
    let opened_at = Instant::now();
    // The table is full: a legit client's SYN is dropped (one SYN: curl retries after 1 s).
    await_connections(&bin, pid, IDLE, Duration::from_secs(5));
    let url = format!("http://{ip}:{PORT}/1000");
    let shut_out = net.peer.run(
        "curl",
        &["-sS", "--connect-timeout", "0.8", "-o", "/dev/null", "-w", "%{http_code}", &url],
        Duration::from_secs(10),
    );
    assert_ne!(shut_out.stdout.trim(), "200", "the full table shuts a legit client out");

    // The idle timeout passes (8 s, swept every 2 s): all cut, the table empties.
    let emptied = await_connections(&bin, pid, 0, Duration::from_secs(IDLE_TIMEOUT_S + 20));
    let idle: Vec<_> = clients.into_iter().map(|c| c.wait_output(Duration::from_secs(30))).collect();
    let closed: Vec<String> =
        idle.iter().map(|o| o.stdout.lines().find(|l| l.starts_with("closed")).unwrap_or("").to_string()).collect();

    // Legit clients, served one after another.
    let curl = synack_tests::curl::fetch_all(
        &net,
        (0..FETCHES).map(|_| url.clone()),
        &["-sS", "--connect-timeout", "3", "--max-time", "5", "-H", "Connection: close", "-w", "%{http_code}\\n"],
        Duration::from_secs(60),
    );
    let served = curl.stdout.lines().filter(|l| *l == "200").count();
    await_connections(&bin, pid, 0, Duration::from_secs(10));
    let out = server.stop_cleanly(&net.synack);
    let cut = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("app: idle_timeouts "))
        .and_then(|n| n.parse::<u64>().ok());
    println!(
        "idle clients: {opened:?} (connections, seconds); table empty {:.1} s after all were open (--idle-timeout-s {IDLE_TIMEOUT_S}); \
         clients saw: {closed:?}; legit: {served} of {FETCHES} served; synack: idle_timeouts {cut:?}, accepted {}, \
         drop_table_full {}, orphans_reset {}",
        (emptied - opened_at).as_secs_f64(),
        counter(&out, "accepted"),
        counter(&out, "drop_table_full"),
        counter(&out, "orphans_reset"),
    );
    // The last connection was accepted just before the client saw it open.
    assert!(emptied - opened_at + Duration::from_secs(1) >= Duration::from_secs(IDLE_TIMEOUT_S), "cut early");
    // Every idle connection ended, by a FIN or, beyond the orphan limit, by an RST.
    let (mut eof, mut reset) = (0, 0);
    for (line, out) in closed.iter().zip(&idle) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |name| words.iter().position(|w| *w == name).and_then(|i| words.get(i + 1)?.parse::<u64>().ok());
        assert_eq!(field("open"), Some(0), "each idle connection was ended: {}", out.describe());
        eof += field("eof").expect("eof");
        reset += field("reset").expect("reset");
    }
    assert_eq!(eof + reset, IDLE);
    assert!(eof >= ORPHANS, "the newest {ORPHANS} orphans finished with a FIN: eof {eof}");
    assert_eq!(counter(&out, "orphans_reset"), reset, "the resets are the orphan limit's");
    assert_eq!(served, FETCHES, "every legit client is served: {}", curl.describe());
    assert_eq!(cut, Some(IDLE), "idle_timeouts counts the idle connections, and only them");
    assert!(counter(&out, "drop_table_full") >= 1, "the legit SYN during the hold met the full table");
    assert_eq!(counter(&out, "accepted"), IDLE + FETCHES as u64);
}
