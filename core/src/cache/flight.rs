//! Single flight of identical cacheable misses (the contract's "Coalescing identical misses"):
//! the state one `Flight` Durable Object keeps for one cache key, its operations and the frames
//! its followers read. The first caller of a key leads (it makes the upstream call); identical
//! callers that come before the leader's outcome follow (they are sent the leader's stream as it
//! is published, then its outcome). Time is passed in.

use crate::wire::tagged_enum;

/// A flight holds at most this many followers; later callers make their own call.
pub const MAX_FOLLOWERS: usize = 1_000;

/// A leader that has not renewed its lease for this long is taken as lost (its isolate gone):
/// one follower is promoted. The leader renews every [`RENEW_MS`].
pub const LEASE_MS: u64 = 2_000;
pub const RENEW_MS: u64 = 500;

/// What a follower waits beyond the provider timeout before it answers 504.
pub const FOLLOWER_MARGIN_MS: u64 = 1_000;

tagged_enum! {
    tag = "op";
    /// An operation on a flight (the JSON body of a request to its object).
    #[derive(Debug, Clone, PartialEq)]
    pub enum FlightOp {
        /// A cacheable miss asks to take part. `timeout_ms` is the provider timeout; `streams`:
        /// as a follower it would pass the leader's stream on as it comes (absent: false).
        Join {
            timeout_ms: u64,
            max_followers: usize,
            #[serde(default)]
            streams: bool,
        },
        /// The leader's stream, in order, as it arrives.
        Publish { ticket: u64, chunk: String },
        /// The leader's outcome: the flight ends.
        Finish { ticket: u64, outcome: Outcome },
        /// The leader cannot answer (refused by its own limits): one follower is promoted.
        Abandon { ticket: u64 },
        /// The leader is alive.
        Renew { ticket: u64 },
    }
}

tagged_enum! {
    tag = "kind";
    /// What followers are served: the leader's answer as its endpoint shares it, or the gateway's
    /// own error (broker unreachable, timeout).
    #[derive(Debug, Clone, PartialEq)]
    pub enum Outcome {
        Answer {
            status: u16,
            text: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            retry_after: Option<String>,
        },
        Error {
            status: u16,
            code: String,
            message: String,
            /// The error's retry hints (`Retry-After`, `retry-after-ms`, `x-should-retry`),
            /// which a follower's client needs as the leader's does; never its rate-limit
            /// headers, which are the leader's key's.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            hints: Vec<(String, String)>,
        },
    }
}

/// The headers that tell a client when, or whether, to retry.
const RETRY_HINTS: [&str; 3] = ["Retry-After", "retry-after-ms", "x-should-retry"];

/// The retry hints among an error's `headers` (see `Outcome::Error`).
pub fn retry_hints(headers: &[(&'static str, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| RETRY_HINTS.iter().any(|h| name.eq_ignore_ascii_case(h)))
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

/// `hints` as an error's headers again (any other name dropped).
pub fn hint_headers(hints: &[(String, String)]) -> Vec<(&'static str, String)> {
    hints
        .iter()
        .filter_map(|(name, value)| {
            let known = RETRY_HINTS.iter().find(|h| name.eq_ignore_ascii_case(h))?;
            Some((*known, value.clone()))
        })
        .collect()
}

tagged_enum! {
    tag = "t";
    /// One line of what a caller reads from the flight after `Join` (newline-delimited JSON).
    #[derive(Debug, Clone, PartialEq)]
    pub enum Frame {
        /// Make the call (first caller, or a follower promoted when the leader was lost).
        Lead { ticket: u64 },
        /// Wait: frames follow.
        Follow,
        /// The flight is full: make your own call, outside it.
        Overflow,
        /// A part of the leader's stream.
        Chunk { data: String },
        /// The outcome; nothing follows.
        Done { outcome: Outcome },
    }
}

impl Frame {
    /// The frame as one line of the wire.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Splits the wire into frames as bytes arrive (a frame may span chunks).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The complete frames in `bytes` (with what came before); a line that is not a frame is
    /// an `Err` (the flight is then read as lost).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Frame, String>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            out.push(serde_json::from_slice(line).map_err(|e| e.to_string()));
        }
        out
    }
}

/// Who receives a frame the flight sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Every follower.
    All(Frame),
    /// One follower.
    One(u64, Frame),
}

/// What `join` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    Lead {
        ticket: u64,
    },
    /// Follower `id`: send it `replay` (what was published so far) and then what comes.
    Follow {
        id: u64,
        replay: Vec<Frame>,
    },
    Overflow,
}

#[derive(Debug)]
struct Active {
    ticket: u64,
    started_ms: u64,
    lease_until_ms: u64,
    timeout_ms: u64,
    /// Followers in join order.
    followers: Vec<Waiting>,
    /// The leader's stream so far (replayed to a follower that joins late).
    chunks: Vec<String>,
}

/// A follower.
#[derive(Debug)]
struct Waiting {
    id: u64,
    /// It passes the leader's stream on as it comes.
    streams: bool,
}

#[derive(Debug)]
enum State {
    Idle,
    Flying(Active),
}

/// One cache key's flight.
#[derive(Debug)]
pub struct Flight {
    state: State,
    next_id: u64,
}

impl Default for Flight {
    fn default() -> Self {
        Flight {
            state: State::Idle,
            next_id: 1,
        }
    }
}

impl Flight {
    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Whether no flight is held.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The number of followers waiting.
    pub fn followers(&self) -> usize {
        match &self.state {
            State::Flying(a) => a.followers.len(),
            _ => 0,
        }
    }

    /// A caller asks to take part (`streams`: as a follower, it passes the leader's stream on as
    /// it comes). A flight older than twice the provider timeout is abandoned (its followers
    /// are sent a 504) and the caller leads a new one. A leader past its lease is lost first,
    /// as [`tick`](Self::tick) finds it (only followers' waits tick, and a flight may have
    /// none): the caller never follows, and is never replayed, a leader already gone.
    pub fn join(
        &mut self,
        now_ms: u64,
        timeout_ms: u64,
        max_followers: usize,
        streams: bool,
    ) -> (Joined, Vec<Delivery>) {
        let mut sends = Vec::new();
        match &self.state {
            State::Flying(a) if now_ms.saturating_sub(a.started_ms) > 2 * a.timeout_ms => {
                sends.push(Delivery::All(Frame::Done {
                    outcome: abandoned(),
                }));
                self.state = State::Idle;
            }
            _ => {}
        }
        sends.extend(self.tick(now_ms));
        let id = self.id();
        match &mut self.state {
            State::Flying(a) => {
                if a.followers.len() >= max_followers.min(MAX_FOLLOWERS) {
                    return (Joined::Overflow, sends);
                }
                a.followers.push(Waiting { id, streams });
                let replay = a
                    .chunks
                    .iter()
                    .map(|c| Frame::Chunk { data: c.clone() })
                    .collect();
                (Joined::Follow { id, replay }, sends)
            }
            _ => {
                self.state = State::Flying(Active {
                    ticket: id,
                    started_ms: now_ms,
                    lease_until_ms: now_ms + LEASE_MS,
                    timeout_ms,
                    followers: Vec::new(),
                    chunks: Vec::new(),
                });
                (Joined::Lead { ticket: id }, sends)
            }
        }
    }

    /// The current leader's flight, when `ticket` is its ticket.
    fn led(&mut self, ticket: u64) -> Option<&mut Active> {
        match &mut self.state {
            State::Flying(a) if a.ticket == ticket => Some(a),
            _ => None,
        }
    }

    /// The leader's next part of its stream; `None` when `ticket` no longer leads.
    pub fn publish(&mut self, ticket: u64, now_ms: u64, chunk: String) -> Option<Vec<Delivery>> {
        let a = self.led(ticket)?;
        a.lease_until_ms = now_ms + LEASE_MS;
        a.chunks.push(chunk.clone());
        Some(vec![Delivery::All(Frame::Chunk { data: chunk })])
    }

    /// The leader is alive.
    pub fn renew(&mut self, ticket: u64, now_ms: u64) -> bool {
        match self.led(ticket) {
            Some(a) => {
                a.lease_until_ms = now_ms + LEASE_MS;
                true
            }
            None => false,
        }
    }

    /// The leader's outcome: every follower is sent it and the flight is forgotten (a caller
    /// after it is served by the cache, or leads a new flight).
    pub fn finish(&mut self, ticket: u64, outcome: Outcome) -> Option<Vec<Delivery>> {
        self.led(ticket)?;
        self.state = State::Idle;
        Some(vec![Delivery::All(Frame::Done { outcome })])
    }

    /// The leader gave up without an outcome: the first follower is promoted to lead (the
    /// others keep waiting on it), or the flight ends when none waits.
    pub fn abandon(&mut self, ticket: u64, now_ms: u64) -> Option<Vec<Delivery>> {
        self.led(ticket)?;
        Some(self.promote(now_ms))
    }

    /// The leader is gone without an outcome: the first follower leads, the others wait for
    /// it. Once part of the stream was published, the followers that stream have passed it on
    /// to their callers, and a new leader's stream (from its own first event) cannot continue
    /// it: they are sent an error outcome (their callers' streams end with the protocol's
    /// error) and only the others wait, one of them promoted.
    fn promote(&mut self, now_ms: u64) -> Vec<Delivery> {
        let State::Flying(a) = &mut self.state else {
            return Vec::new();
        };
        let mut sends = Vec::new();
        if !a.chunks.is_empty() {
            let (cut, waiting) = std::mem::take(&mut a.followers)
                .into_iter()
                .partition(|f| f.streams);
            a.followers = waiting;
            sends.extend(cut.into_iter().map(|f: Waiting| {
                Delivery::One(
                    f.id,
                    Frame::Done {
                        outcome: lost_mid_answer(),
                    },
                )
            }));
            // The new leader's stream starts from its own first event.
            a.chunks.clear();
        }
        if a.followers.is_empty() {
            self.state = State::Idle;
            return sends;
        }
        let next = a.followers.remove(0).id;
        a.ticket = next;
        a.lease_until_ms = now_ms + LEASE_MS;
        sends.push(Delivery::One(next, Frame::Lead { ticket: next }));
        sends
    }

    /// Time passes: a leader past its lease is taken as lost and a follower promoted.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Delivery> {
        match &self.state {
            State::Flying(a) if now_ms > a.lease_until_ms => self.promote(now_ms),
            _ => Vec::new(),
        }
    }

    /// A follower went away (its wait ended or its caller left).
    pub fn leave(&mut self, id: u64) {
        if let State::Flying(a) = &mut self.state {
            a.followers.retain(|f| f.id != id);
        }
    }
}

/// What a follower passing the stream on is sent when the leader was lost after publishing part
/// of it.
fn lost_mid_answer() -> Outcome {
    Outcome::Error {
        status: 502,
        code: "upstream_error".into(),
        message: "the identical call this one followed was lost mid-answer".into(),
        hints: Vec::new(),
    }
}

/// What the followers of an abandoned flight are sent.
fn abandoned() -> Outcome {
    Outcome::Error {
        status: 504,
        code: "upstream_timeout".into(),
        message: "the identical call this one waited on took too long".into(),
        hints: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Outcome {
        Outcome::Answer {
            status: 200,
            text: text.into(),
            retry_after: None,
        }
    }

    fn lead(f: &mut Flight, now: u64) -> u64 {
        match f.join(now, 3_000, MAX_FOLLOWERS, false).0 {
            Joined::Lead { ticket } => ticket,
            other => panic!("expected to lead, got {other:?}"),
        }
    }

    fn follow(f: &mut Flight, now: u64) -> (u64, Vec<Frame>) {
        follow_as(f, now, false)
    }

    fn follow_as(f: &mut Flight, now: u64, streams: bool) -> (u64, Vec<Frame>) {
        match f.join(now, 3_000, MAX_FOLLOWERS, streams).0 {
            Joined::Follow { id, replay } => (id, replay),
            other => panic!("expected to follow, got {other:?}"),
        }
    }

    #[test]
    fn the_first_caller_leads_and_the_next_follow() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        let (a, _) = follow(&mut f, 10);
        let (b, _) = follow(&mut f, 20);
        assert_ne!(a, b);
        assert_eq!(f.followers(), 2);
        let sends = f.finish(t, ok("x")).unwrap();
        assert_eq!(sends, vec![Delivery::All(Frame::Done { outcome: ok("x") })]);
        assert_eq!(f.followers(), 0);
    }

    #[test]
    fn a_late_follower_is_replayed_the_stream_so_far() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        f.publish(t, 5, "a".into()).unwrap();
        f.publish(t, 6, "b".into()).unwrap();
        let (_, replay) = follow(&mut f, 7);
        assert_eq!(
            replay,
            vec![
                Frame::Chunk { data: "a".into() },
                Frame::Chunk { data: "b".into() }
            ]
        );
    }

    #[test]
    fn a_finished_flight_is_forgotten_at_once() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        follow(&mut f, 1);
        f.finish(t, ok("x")).unwrap();
        assert!(f.is_idle());
        lead(&mut f, 101);
    }

    #[test]
    fn a_lost_leader_promotes_exactly_one_follower() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        let (a, _) = follow(&mut f, 1);
        let (_b, _) = follow(&mut f, 2);
        assert!(f.tick(LEASE_MS).is_empty(), "within the lease");
        let sends = f.tick(LEASE_MS + 1);
        assert_eq!(sends, vec![Delivery::One(a, Frame::Lead { ticket: a })]);
        assert_eq!(f.followers(), 1);
        // The old leader no longer leads; the promoted one does.
        assert!(f.publish(t, LEASE_MS + 2, "late".into()).is_none());
        assert!(f.finish(t, ok("late")).is_none());
        assert!(f.tick(LEASE_MS + 3).is_empty(), "promoted once");
        assert!(f.finish(a, ok("y")).is_some());
    }

    #[test]
    fn a_caller_joining_after_the_leaders_lease_is_not_given_the_lost_leader() {
        // No follower ticked: the lost leader's flight is still there when the caller comes.
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        f.publish(t, 5, "a".into()).unwrap();
        let (joined, sends) = f.join(5 + LEASE_MS + 1, 3_000, MAX_FOLLOWERS, true);
        assert!(sends.is_empty(), "{sends:?}");
        let Joined::Lead { ticket } = joined else {
            panic!("expected to lead, got {joined:?}");
        };
        assert!(f.publish(t, 5 + LEASE_MS + 2, "late".into()).is_none());
        assert!(f.finish(ticket, ok("x")).is_some());
        // With a follower waiting, it is promoted and the caller follows it from its start.
        let t = lead(&mut f, 10_000);
        f.publish(t, 10_001, "a".into()).unwrap();
        let (w, _) = follow(&mut f, 10_002);
        let (joined, sends) = f.join(10_001 + LEASE_MS + 1, 3_000, MAX_FOLLOWERS, true);
        assert_eq!(sends, vec![Delivery::One(w, Frame::Lead { ticket: w })]);
        assert!(
            matches!(joined, Joined::Follow { ref replay, .. } if replay.is_empty()),
            "{joined:?}"
        );
    }

    #[test]
    fn a_leader_lost_mid_stream_ends_the_streaming_followers_and_promotes_a_waiting_one() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        let (s1, _) = follow_as(&mut f, 1, true);
        f.publish(t, 2, "a".into()).unwrap();
        let (w, _) = follow(&mut f, 3);
        let (s2, replay) = follow_as(&mut f, 4, true);
        assert_eq!(replay, vec![Frame::Chunk { data: "a".into() }]);
        let (w2, _) = follow(&mut f, 5);
        let sends = f.tick(2 + LEASE_MS + 1);
        let lost = Frame::Done {
            outcome: lost_mid_answer(),
        };
        assert_eq!(
            sends,
            vec![
                Delivery::One(s1, lost.clone()),
                Delivery::One(s2, lost),
                Delivery::One(w, Frame::Lead { ticket: w }),
            ],
            "the first follower to join streams, yet a waiting one is promoted"
        );
        assert_eq!(f.followers(), 1, "{w2} waits for {w}");
        // The new leader's stream starts afresh: a follower joining now gets none of the old.
        f.publish(w, 2_010, "b".into()).unwrap();
        let (_, replay) = follow_as(&mut f, 2_011, true);
        assert_eq!(replay, vec![Frame::Chunk { data: "b".into() }]);
        // Lost before any part was published, a streaming follower leads as any other.
        let mut g = Flight::default();
        lead(&mut g, 0);
        let (s, _) = follow_as(&mut g, 1, true);
        assert_eq!(
            g.tick(LEASE_MS + 1),
            vec![Delivery::One(s, Frame::Lead { ticket: s })]
        );
        // Only streaming followers: the flight ends with them.
        let mut h = Flight::default();
        let t = lead(&mut h, 0);
        follow_as(&mut h, 1, true);
        h.publish(t, 2, "a".into()).unwrap();
        assert_eq!(h.tick(2 + LEASE_MS + 1).len(), 1);
        assert!(h.is_idle());
    }

    #[test]
    fn renewing_keeps_the_lease() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        follow(&mut f, 1);
        assert!(f.renew(t, 1_500));
        assert!(f.tick(LEASE_MS + 1).is_empty());
        assert_eq!(f.tick(1_500 + LEASE_MS + 1).len(), 1);
    }

    #[test]
    fn an_abandoning_leader_hands_over_or_ends_the_flight() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        assert_eq!(f.abandon(t, 1).unwrap(), vec![]);
        assert!(f.is_idle());
        let t = lead(&mut f, 2);
        let (a, _) = follow(&mut f, 3);
        assert_eq!(
            f.abandon(t, 4).unwrap(),
            vec![Delivery::One(a, Frame::Lead { ticket: a })]
        );
    }

    #[test]
    fn a_full_flight_overflows() {
        let mut f = Flight::default();
        f.join(0, 3_000, 2, false);
        assert!(matches!(
            f.join(1, 3_000, 2, false).0,
            Joined::Follow { .. }
        ));
        assert!(matches!(f.join(2, 3_000, 2, true).0, Joined::Follow { .. }));
        assert_eq!(f.join(3, 3_000, 2, false).0, Joined::Overflow);
        // Never more than the contract's bound, whatever is asked.
        let mut g = Flight::default();
        g.join(0, 3_000, usize::MAX, false);
        for i in 0..MAX_FOLLOWERS {
            assert!(matches!(
                g.join(i as u64, 3_000, usize::MAX, false).0,
                Joined::Follow { .. }
            ));
        }
        assert_eq!(g.join(5, 3_000, usize::MAX, false).0, Joined::Overflow);
    }

    #[test]
    fn a_flight_older_than_twice_the_timeout_is_abandoned() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        follow(&mut f, 1);
        f.renew(t, 5_900);
        let (joined, sends) = f.join(6_001, 3_000, MAX_FOLLOWERS, false);
        assert!(matches!(joined, Joined::Lead { .. }), "{joined:?}");
        assert_eq!(
            sends,
            vec![Delivery::All(Frame::Done {
                outcome: abandoned()
            })]
        );
        assert!(f.finish(t, ok("old")).is_none());
    }

    #[test]
    fn a_follower_that_leaves_is_not_promoted() {
        let mut f = Flight::default();
        let t = lead(&mut f, 0);
        let (a, _) = follow(&mut f, 1);
        let (b, _) = follow(&mut f, 2);
        f.leave(a);
        assert_eq!(
            f.abandon(t, 3).unwrap(),
            vec![Delivery::One(b, Frame::Lead { ticket: b })]
        );
    }

    #[test]
    fn an_errors_retry_hints_reach_followers_and_its_rate_limit_headers_do_not() {
        let headers = vec![
            ("Retry-After", "2".to_string()),
            ("x-should-retry", "false".to_string()),
            ("X-RateLimit-Remaining", "7".to_string()),
            ("RateLimit", "\"pro\";r=7;t=1".to_string()),
        ];
        let hints = retry_hints(&headers);
        assert_eq!(
            hint_headers(&hints),
            vec![
                ("Retry-After", "2".to_string()),
                ("x-should-retry", "false".to_string())
            ]
        );
        // An outcome from a leader before hints existed reads with none.
        let old: Outcome = serde_json::from_str(
            r#"{"kind":"error","status":504,"code":"upstream_timeout","message":"m"}"#,
        )
        .unwrap();
        assert!(matches!(old, Outcome::Error { ref hints, .. } if hints.is_empty()));
    }

    #[test]
    fn frames_survive_the_wire_split_anywhere() {
        let frames = vec![
            Frame::Follow,
            Frame::Chunk {
                data: "event: x\ndata: {\"a\":1}\n\n".into(),
            },
            Frame::Done {
                outcome: Outcome::Error {
                    status: 504,
                    code: "upstream_timeout".into(),
                    message: "m".into(),
                    hints: vec![("x-should-retry".into(), "false".into())],
                },
            },
        ];
        let wire: String = frames.iter().map(Frame::line).collect();
        for cut in 0..wire.len() {
            let mut r = FrameReader::default();
            let mut got: Vec<Frame> = r
                .feed(&wire.as_bytes()[..cut])
                .into_iter()
                .map(Result::unwrap)
                .collect();
            got.extend(
                r.feed(&wire.as_bytes()[cut..])
                    .into_iter()
                    .map(Result::unwrap),
            );
            assert_eq!(got, frames, "cut at {cut}");
        }
        assert!(FrameReader::default().feed(b"nonsense\n")[0].is_err());
    }

    #[test]
    fn ops_round_trip_as_json() {
        let op = FlightOp::Finish {
            ticket: 3,
            outcome: ok("t"),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<FlightOp>(&text).unwrap(), op);
    }
}
