//! curl over many URLs in one run: the URLs go in a `-K` config file (any number of them,
//! where a command line would overflow), each fetched to /dev/null.

use std::time::Duration;

use crate::netns::TestNet;
use crate::process::Output;

/// Runs curl in the peer namespace of `net` over `urls`, with `args` (the flags) before
/// `-K`; the config file is removed afterwards.
pub fn fetch_all(net: &TestNet, urls: impl IntoIterator<Item = String>, args: &[&str], timeout: Duration) -> Output {
    let mut config = String::new();
    for url in urls {
        config.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
    }
    let path = std::env::temp_dir().join(format!("{}-curl.cfg", net.id));
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let mut all: Vec<&str> = args.to_vec();
    let path_text = path.to_string_lossy().into_owned();
    all.extend(["-K", &path_text]);
    let out = net.peer.run("curl", &all, timeout);
    let _ = std::fs::remove_file(&path);
    out
}
