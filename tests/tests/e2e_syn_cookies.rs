//! SYN cookies under a SYN flood: `synack serve --app http --syn-backlog 4` flooded by hping3
//! from the peer (whose RSTs to the SYN-ACKs nftables drops, so half-open entries stay), while
//! curl fetches. With cookies every fetch succeeds; without them, the same flood shuts curl out
//! (the control that shows the flood really fills the backlog).

use synack_tests::syn_flood::{counter, curl_through_syn_flood};
use synack_tests::Backend;

fn require_hping3() {
    let found = std::process::Command::new("sh").args(["-c", "command -v hping3"]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "hping3 is missing: install it with `bash scripts/deps.sh test` (or apt-get install hping3)"
    );
}

#[test]
fn syn_cookies_keep_curl_fetching_through_a_syn_flood() {
    if synack_tests::skip_unless_root("network namespaces, veth, XDP and nftables") {
        return;
    }
    require_hping3();
    let run = curl_through_syn_flood(&Backend::synack(), 50, true);
    let (sent, accepted, rejected) = (
        counter(&run.server, "syn_cookies_sent"),
        counter(&run.server, "syn_cookies_accepted"),
        counter(&run.server, "syn_cookies_rejected"),
    );
    println!(
        "cookies: sent {sent} accepted {accepted} rejected {rejected}; backlog drops {}; peer RSTs dropped {}",
        counter(&run.server, "drop_backlog_full"),
        run.resets_dropped
    );
    assert_eq!(run.fetched, run.fetches, "every fetch succeeds under the flood");
    assert!(run.resets_dropped > 0, "the flood's SYN-ACKs were answered (and their RSTs dropped)");
    // The flood's SYNs get cookies too and never return them, so far more go out than come back.
    assert!(sent > accepted + 500, "sent {sent} accepted {accepted}");
    // With the backlog full all along, (almost) every fetch went through a cookie.
    assert!(accepted as usize >= run.fetches * 9 / 10, "accepted {accepted} of {} fetches", run.fetches);
    assert_eq!(rejected, 0, "no ACK returned a bad cookie");
    assert_eq!(counter(&run.server, "drop_backlog_full"), 0, "no SYN was dropped with cookies on");
}

#[test]
fn without_syn_cookies_the_same_flood_shuts_curl_out() {
    if synack_tests::skip_unless_root("network namespaces, veth, XDP and nftables") {
        return;
    }
    require_hping3();
    let run = curl_through_syn_flood(&Backend::synack(), 5, false);
    let dropped = counter(&run.server, "drop_backlog_full");
    println!("backlog drops {dropped}; fetched {} of {}", run.fetched, run.fetches);
    assert_eq!(counter(&run.server, "syn_cookies_sent"), 0);
    assert!(dropped > 1000, "the flood's SYNs met a full backlog: {dropped}");
    assert_eq!(run.fetched, 0, "curl's SYNs are dropped with the rest");
}
