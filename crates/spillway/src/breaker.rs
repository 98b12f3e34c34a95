//! The circuit breaker of a route (DESIGN § Breaker and canary), as a pure state machine: every
//! input carries the time, so tests drive it with a made-up clock.
//!
//! ```text
//!            error rate over the window ≥ threshold,
//!            or a stall longer than max_stall,
//!            or no broker reachable
//!   Closed ───────────────────────────────────────────▶ Open
//!     ▲                                                   │ cooldown elapsed: start a canary
//!     │ canary produced and consumed back                 ▼
//!     └──────────────────────────────────────────────── HalfOpen
//!                                canary failed: back to Open (cooldown again)
//! ```
//! A canary that passes while the producer still sees no broker (its partitions' leaders are
//! probed back to health on their own schedule) leaves the breaker half-open until it does:
//! closing at once would reopen on "no broker reachable" at the next observation, and spend
//! another cooldown.
//! While Open or HalfOpen, the route spools (or rejects, for direct routes). Closing does not
//! send new records straight to Kafka: each stream first drains its spool in order (the lanes
//! check that), so a record never overtakes an older one of its key.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Tuning of a breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// The window over which the error rate is measured.
    pub window: Duration,
    /// Fewer outcomes than this in the window never open the breaker by rate.
    pub min_outcomes: usize,
    /// Failed share of outcomes in the window that opens the breaker.
    pub error_rate: f64,
    /// A partition with records outstanding and no progress for this long opens the breaker.
    pub max_stall: Duration,
    /// How long the breaker stays open before a canary is tried.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_outcomes: 10,
            error_rate: 0.5,
            max_stall: Duration::from_secs(5),
            cooldown: Duration::from_secs(2),
        }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    /// The value of the `spillway_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// Why a breaker opened.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenReason {
    ErrorRate { failed: usize, total: usize },
    Stall(Duration),
    NoBrokerReachable,
    CanaryFailed(String),
    Forced(String),
}

impl fmt::Display for OpenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenReason::ErrorRate { failed, total } => {
                write!(f, "{failed} of {total} deliveries failed in the window")
            }
            OpenReason::Stall(d) => write!(
                f,
                "records outstanding without progress for {} ms",
                d.as_millis()
            ),
            OpenReason::NoBrokerReachable => f.write_str("no broker reachable"),
            OpenReason::CanaryFailed(why) => write!(f, "canary failed: {why}"),
            OpenReason::Forced(why) => f.write_str(why),
        }
    }
}

/// A change of state, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

/// A route's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    since: Instant,
    window: Window,
    last_reason: Option<OpenReason>,
    /// Half-open, the canary passed, and the producer does not see a broker yet.
    canary_passed: bool,
}

/// Outcome counts over the sliding window, in [`WINDOW_BUCKETS`] time buckets, so recording an
/// outcome costs O(1) whatever the rate (a benchmark showed a per-outcome scan of the window
/// taking most of the producer's CPU at 100k records/s). A bucket leaves once all of it is older
/// than the window, so the window is up to one bucket (1/64 of it) longer than configured.
#[derive(Debug)]
struct Window {
    epoch: Instant,
    width: Duration,
    buckets: VecDeque<Bucket>,
    total: usize,
    failed: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    index: u64,
    total: usize,
    failed: usize,
}

/// How many buckets the window is cut into.
const WINDOW_BUCKETS: u32 = 64;

impl Window {
    fn new(window: Duration, epoch: Instant) -> Self {
        Self {
            epoch,
            width: (window / WINDOW_BUCKETS).max(Duration::from_millis(1)),
            buckets: VecDeque::new(),
            total: 0,
            failed: 0,
        }
    }

    fn index(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        (since / self.width.as_nanos()) as u64
    }

    /// Adds one outcome at `now` and drops what fell out of `window`.
    fn add(&mut self, ok: bool, now: Instant, window: Duration) {
        let index = self.index(now);
        match self.buckets.back_mut() {
            // A clock read on another thread may be a little behind: count it in the last bucket.
            Some(last) if last.index >= index => {
                last.total += 1;
                last.failed += usize::from(!ok);
            }
            _ => self.buckets.push_back(Bucket {
                index,
                total: 1,
                failed: usize::from(!ok),
            }),
        }
        self.total += 1;
        self.failed += usize::from(!ok);
        let Some(horizon) = now.checked_sub(window) else {
            return;
        };
        // Bucket i ends at epoch + (i + 1) × width; it leaves once that end is at or before the
        // horizon.
        let keep_from = self.index(horizon);
        while let Some(first) = self.buckets.front().copied() {
            if first.index + 1 > keep_from {
                break;
            }
            self.total -= first.total;
            self.failed -= first.failed;
            self.buckets.pop_front();
        }
    }

    fn clear(&mut self) {
        self.buckets.clear();
        self.total = 0;
        self.failed = 0;
    }
}

impl Breaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            since: now,
            window: Window::new(config.window, now),
            last_reason: None,
            canary_passed: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Since when the breaker is in its state.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Why it last opened.
    pub fn last_reason(&self) -> Option<&OpenReason> {
        self.last_reason.as_ref()
    }

    /// Whether records may go straight to Kafka.
    pub fn is_closed(&self) -> bool {
        self.state == BreakerState::Closed
    }

    fn go(&mut self, to: BreakerState, reason: String, now: Instant) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let t = Transition {
            from: self.state,
            to,
            reason,
        };
        self.state = to;
        self.since = now;
        self.canary_passed = false;
        if to == BreakerState::Closed {
            self.window.clear();
        }
        Some(t)
    }

    fn open(&mut self, reason: OpenReason, now: Instant) -> Option<Transition> {
        let text = reason.to_string();
        self.last_reason = Some(reason);
        self.go(BreakerState::Open, text, now)
    }

    /// One delivery outcome of a record sent straight to Kafka at `sent`. A record sent before
    /// the breaker closed says nothing of the cluster since (its failure is often the outage
    /// the breaker was open for, reported late): it does not count.
    pub fn record(&mut self, ok: bool, sent: Instant, now: Instant) -> Option<Transition> {
        if self.state != BreakerState::Closed || sent < self.since {
            return None;
        }
        self.window.add(ok, now, self.config.window);
        let (total, failed) = (self.window.total, self.window.failed);
        if total >= self.config.min_outcomes
            && failed as f64 >= self.config.error_rate * total as f64
        {
            return self.open(OpenReason::ErrorRate { failed, total }, now);
        }
        None
    }

    /// What the producer sees: the longest stall of a partition with records outstanding, and
    /// whether any broker is reachable.
    pub fn observe(
        &mut self,
        stall: Option<Duration>,
        any_broker: bool,
        now: Instant,
    ) -> Option<Transition> {
        if self.state == BreakerState::HalfOpen && self.canary_passed && any_broker {
            return self.close_after_canary(now);
        }
        if self.state != BreakerState::Closed {
            return None;
        }
        if !any_broker {
            return self.open(OpenReason::NoBrokerReachable, now);
        }
        match stall {
            Some(d) if d >= self.config.max_stall => self.open(OpenReason::Stall(d), now),
            _ => None,
        }
    }

    /// Opens the breaker by decision of the caller.
    pub fn force_open(&mut self, why: &str, now: Instant) -> Option<Transition> {
        self.open(OpenReason::Forced(why.to_string()), now)
    }

    /// Whether a canary should start now (open, and the cooldown has passed); moves to
    /// half-open if so.
    pub fn start_canary(&mut self, now: Instant) -> Option<Transition> {
        if self.state == BreakerState::Open
            && now.saturating_duration_since(self.since) >= self.config.cooldown
        {
            return self.go(
                BreakerState::HalfOpen,
                "cooldown elapsed; canary started".into(),
                now,
            );
        }
        None
    }

    /// Whether a canary should run now: half-open, and none has passed yet.
    pub fn wants_canary(&self) -> bool {
        self.state == BreakerState::HalfOpen && !self.canary_passed
    }

    /// The canary's result: closes on success if the producer sees a broker (`any_broker`;
    /// else once it does, see [`Breaker::observe`]), reopens on failure.
    pub fn canary_result(
        &mut self,
        result: Result<(), String>,
        any_broker: bool,
        now: Instant,
    ) -> Option<Transition> {
        if self.state != BreakerState::HalfOpen {
            return None;
        }
        match result {
            Ok(()) if any_broker => self.close_after_canary(now),
            Ok(()) => {
                self.canary_passed = true;
                None
            }
            Err(why) => self.open(OpenReason::CanaryFailed(why), now),
        }
    }

    fn close_after_canary(&mut self, now: Instant) -> Option<Transition> {
        self.go(
            BreakerState::Closed,
            "canary produced and consumed back".into(),
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn breaker() -> (Breaker, Instant) {
        let t0 = Instant::now();
        (Breaker::new(BreakerConfig::default(), t0), t0)
    }

    #[test]
    fn a_high_error_rate_over_the_window_opens_the_breaker() {
        let (mut b, t0) = breaker();
        for i in 0..9 {
            assert_eq!(b.record(i % 2 == 0, t0 + ms(i), t0 + ms(i)), None);
        }
        let t = b
            .record(false, t0 + ms(10), t0 + ms(10))
            .expect("5 of 10 failed");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert!(matches!(
            b.last_reason(),
            Some(OpenReason::ErrorRate {
                failed: 5,
                total: 10
            })
        ));
    }

    #[test]
    fn too_few_outcomes_never_open_by_rate() {
        let (mut b, t0) = breaker();
        for i in 0..9 {
            assert_eq!(b.record(false, t0 + ms(i), t0 + ms(i)), None);
        }
        assert!(b.is_closed());
    }

    #[test]
    fn old_failures_leave_the_window() {
        let (mut b, t0) = breaker();
        for i in 0..9 {
            b.record(false, t0 + ms(i), t0 + ms(i));
        }
        for i in 0..20 {
            assert_eq!(
                b.record(
                    true,
                    t0 + Duration::from_secs(11) + ms(i),
                    t0 + Duration::from_secs(11) + ms(i)
                ),
                None
            );
        }
        assert!(b.is_closed());
    }

    #[test]
    fn the_window_counts_only_the_last_window_of_a_long_steady_stream() {
        let (mut b, t0) = breaker();
        // 100 s of one outcome every 100 µs, 1 in 10 failed: the window holds 10 s of them.
        for i in 0..1_000_000u64 {
            assert_eq!(
                b.record(
                    i % 10 != 0,
                    t0 + Duration::from_micros(100 * i),
                    t0 + Duration::from_micros(100 * i)
                ),
                None
            );
        }
        let per_bucket = 100_000 / WINDOW_BUCKETS as usize;
        assert!(b.window.total >= 100_000 && b.window.total <= 100_000 + per_bucket + 1);
        assert!(b.window.buckets.len() <= WINDOW_BUCKETS as usize + 1);
        assert!((b.window.failed * 10).abs_diff(b.window.total) <= 10);
    }

    #[test]
    fn an_outcome_stamped_slightly_in_the_past_still_counts() {
        let (mut b, t0) = breaker();
        for i in 0..9 {
            b.record(false, t0 + ms(500 - i), t0 + ms(500 - i));
        }
        assert!(b.record(false, t0 + ms(100), t0 + ms(100)).is_some());
    }

    #[test]
    fn a_long_stall_or_no_reachable_broker_opens_the_breaker() {
        let (mut b, t0) = breaker();
        assert_eq!(b.observe(Some(ms(4000)), true, t0), None);
        assert!(b.observe(Some(ms(5000)), true, t0).is_some());
        let (mut b, t0) = breaker();
        assert!(b.observe(None, false, t0).is_some());
        assert_eq!(b.last_reason(), Some(&OpenReason::NoBrokerReachable));
    }

    #[test]
    fn the_canary_waits_for_the_cooldown_and_closes_on_success() {
        let (mut b, t0) = breaker();
        b.force_open("test", t0);
        assert_eq!(b.start_canary(t0 + ms(1999)), None);
        let t = b.start_canary(t0 + ms(2000)).unwrap();
        assert_eq!(t.to, BreakerState::HalfOpen);
        let t = b.canary_result(Ok(()), true, t0 + ms(2100)).unwrap();
        assert_eq!(t.to, BreakerState::Closed);
        assert!(b.is_closed());
    }

    #[test]
    fn a_failed_canary_reopens_and_waits_another_cooldown() {
        let (mut b, t0) = breaker();
        b.force_open("test", t0);
        b.start_canary(t0 + ms(2000));
        let t = b
            .canary_result(Err("timeout".into()), true, t0 + ms(2500))
            .unwrap();
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(b.start_canary(t0 + ms(4000)), None);
        assert!(b.start_canary(t0 + ms(4500)).is_some());
    }

    #[test]
    fn a_passed_canary_closes_only_once_the_producer_sees_a_broker_again() {
        let (mut b, t0) = breaker();
        b.observe(None, false, t0);
        b.start_canary(t0 + ms(2000));
        assert_eq!(b.canary_result(Ok(()), false, t0 + ms(2100)), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.wants_canary(), "it passed: no other canary meanwhile");
        assert_eq!(b.observe(None, false, t0 + ms(2300)), None);
        assert_eq!(b.state(), BreakerState::HalfOpen, "not reopened either");
        let t = b.observe(None, true, t0 + ms(2500)).unwrap();
        assert_eq!(t.to, BreakerState::Closed);
        b.observe(None, false, t0 + ms(2600));
        b.start_canary(t0 + ms(4600));
        assert!(
            b.wants_canary(),
            "a new half-open period runs its own canary"
        );
    }

    #[test]
    fn outcomes_of_records_sent_before_the_breaker_closed_do_not_count() {
        let (mut b, t0) = breaker();
        b.force_open("outage", t0);
        b.start_canary(t0 + ms(2000));
        b.canary_result(Ok(()), true, t0 + ms(2100));
        for i in 0..20 {
            // Sent during the outage, reported after the close.
            assert_eq!(b.record(false, t0 + ms(i), t0 + ms(2200 + i)), None);
        }
        assert!(b.is_closed());
        for i in 0..10 {
            b.record(false, t0 + ms(2300 + i), t0 + ms(2400 + i));
        }
        assert!(!b.is_closed(), "records sent since do count");
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let (mut b, t0) = breaker();
        b.force_open("test", t0);
        assert_eq!(b.record(true, t0, t0), None);
        assert_eq!(b.observe(None, true, t0), None);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
