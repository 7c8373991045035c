//! The per-queue lines `synack serve` and `synack connect` print when they stop:
//! `  queue Q: accepted A connected C handed_off H handoff_received R handoff_dropped_full D ...`.

/// One worker's line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: u32,
    pub accepted: u64,
    pub connected: u64,
    pub handed_off: u64,
    pub handoff_received: u64,
    pub handoff_dropped_full: u64,
}

/// Every `queue Q: ...` line of `text`, in order; lines that lack a field are skipped.
pub fn parse(text: &str) -> Vec<QueueStats> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<QueueStats> {
    let rest = line.trim_start().strip_prefix("queue ")?;
    let (queue, fields) = rest.split_once(':')?;
    let words: Vec<&str> = fields.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse().ok()
    };
    Some(QueueStats {
        queue: queue.trim().parse().ok()?,
        accepted: field("accepted")?,
        connected: field("connected")?,
        handed_off: field("handed_off")?,
        handoff_received: field("handoff_received")?,
        handoff_dropped_full: field("handoff_dropped_full")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_synack_prints_are_read() {
        let text = "synack stopped; counters: rx_frames=10\n\
            \x20 queue 0: accepted 3 connected 0 handed_off 7 handoff_received 2 handoff_dropped_full 0 connections 0 \
            time_wait 0 slots 3 frames_in_use 1 iterations 99 socket Counters { rx_frames: 5 }\n\
            \x20 queue 1: accepted 0 connected 100 handed_off 0 handoff_received 7 handoff_dropped_full 1 connections 2\n\
            \x20 queue 2: accepted x\n";
        let q = parse(text);
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
    }
}
