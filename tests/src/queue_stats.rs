//! The per-queue figures `synack serve --json` and `synack connect --json` print when they
//! stop (the `queues` of their `stopped` line): accepted, connected, hand-offs.

use synack_report::{Line, Stopped};

/// One worker's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: u32,
    pub accepted: u64,
    pub connected: u64,
    pub handed_off: u64,
    pub handoff_received: u64,
    pub handoff_dropped_full: u64,
}

/// The `stopped` line of `--json` output, if there is one (and every line is a report line).
pub fn stopped(text: &str) -> Option<Stopped> {
    synack_report::parse_lines(text).ok()?.into_iter().find_map(|line| match line {
        Line::Stopped(s) => Some(s),
        _ => None,
    })
}

/// Every queue of the `stopped` line of `text`, in order; none without one.
pub fn parse(text: &str) -> Vec<QueueStats> {
    let Some(stopped) = stopped(text) else {
        return Vec::new();
    };
    stopped
        .queues
        .iter()
        .map(|q| QueueStats {
            queue: q.queue,
            accepted: q.accepted,
            connected: q.connected,
            handed_off: q.handed_off,
            handoff_received: q.handoff_received,
            handoff_dropped_full: q.handoff_dropped_full,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synack_report::Queue;

    #[test]
    fn the_queues_of_the_stop_line_are_read() {
        let queue = |queue, accepted, connected, handed_off, handoff_received, handoff_dropped_full| Queue {
            queue,
            accepted,
            connected,
            handed_off,
            handoff_received,
            handoff_dropped_full,
            ..Queue::default()
        };
        let stop = Stopped { queues: vec![queue(0, 3, 0, 7, 2, 0), queue(1, 0, 100, 0, 7, 1)], ..Stopped::default() };
        let ready = r#"{"type":"ready","app":"echo","ip":"198.18.0.1","port":7,"iface":"x","queues":2,"address_mode":"shared","checksums_verified":true}"#;
        let text = format!("{ready}\n{}\n", Line::Stopped(stop).to_json());
        let q = parse(&text);
        assert_eq!(q.len(), 2, "{q:?}");
        assert_eq!(
            q[0],
            QueueStats {
                queue: 0,
                accepted: 3,
                connected: 0,
                handed_off: 7,
                handoff_received: 2,
                handoff_dropped_full: 0
            }
        );
        assert_eq!((q[1].queue, q[1].connected, q[1].handoff_received, q[1].handoff_dropped_full), (1, 100, 7, 1));
        assert!(parse("synack stopped; counters: accepted=3\n  queue 0: accepted 3\n").is_empty(), "text is not read");
    }
}
