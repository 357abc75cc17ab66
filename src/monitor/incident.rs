//! The incident state machine of one monitor (`ok → firing → resolved`), as a pure function:
//! a user hears once when a problem starts, once when its severity changes, once when it is
//! resolved, and not once per evaluation.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::spec::NotifyOn;
use crate::gate::Verdict;

/// How bad a firing incident is (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warn,
    Inconclusive,
    Fail,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Inconclusive => "inconclusive",
            Severity::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "warn" => Severity::Warn,
            "inconclusive" => Severity::Inconclusive,
            "fail" => Severity::Fail,
            _ => return None,
        })
    }
}

/// What the monitor knows before an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The open incident's severity and whether its opening was sent; `None` when ok.
    pub firing: Option<(Severity, bool)>,
    /// When an opening message was last sent (the cooldown counts from it).
    pub last_fired_message_at: Option<DateTime<Utc>>,
}

/// A message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new incident (or one held by the cooldown, now sent).
    Firing,
    /// The open incident's severity changed.
    SeverityChanged,
    Resolved,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Firing => "incident.firing",
            Event::SeverityChanged => "incident.severity_changed",
            Event::Resolved => "incident.resolved",
        }
    }
}

/// What an evaluation does to the incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing (still ok, still firing at the same severity, or a pending verdict).
    None,
    /// Open an incident; `notified` when its message is sent.
    Open {
        severity: Severity,
        notified: bool,
    },
    /// The open incident continues with this severity (changed, or now sent after a cooldown).
    Update {
        severity: Severity,
        notified: bool,
    },
    Resolve,
}

/// One step: the verdict of an evaluation against the state.
pub fn step(
    state: &State,
    verdict: Verdict,
    notify_on: &[NotifyOn],
    cooldown: Duration,
    now: DateTime<Utc>,
) -> (Change, Option<Event>) {
    let bad = match verdict {
        Verdict::Pending => return (Change::None, None),
        Verdict::Pass => None,
        Verdict::Warn => Some((Severity::Warn, NotifyOn::Warn)),
        Verdict::Inconclusive => Some((Severity::Inconclusive, NotifyOn::Inconclusive)),
        Verdict::Fail => Some((Severity::Fail, NotifyOn::Fail)),
    }
    .filter(|(_, n)| notify_on.contains(n))
    .map(|(s, _)| s);
    let cooling = state
        .last_fired_message_at
        .is_some_and(|at| chrono::Duration::from_std(cooldown).is_ok_and(|c| now < at + c));
    match (state.firing, bad) {
        (None, None) => (Change::None, None),
        (None, Some(severity)) => {
            let notified = !cooling;
            (
                Change::Open { severity, notified },
                notified.then_some(Event::Firing),
            )
        }
        (Some((_, notified)), None) => (
            Change::Resolve,
            (notified && notify_on.contains(&NotifyOn::Recovered)).then_some(Event::Resolved),
        ),
        (Some((was, true)), Some(severity)) if was != severity => (
            Change::Update {
                severity,
                notified: true,
            },
            Some(Event::SeverityChanged),
        ),
        (Some((_, true)), Some(_)) => (Change::None, None),
        (Some((_, false)), Some(severity)) if !cooling => (
            Change::Update {
                severity,
                notified: true,
            },
            Some(Event::Firing),
        ),
        (Some((was, false)), Some(severity)) if was != severity => (
            Change::Update {
                severity,
                notified: false,
            },
            None,
        ),
        (Some((_, false)), Some(_)) => (Change::None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [NotifyOn; 4] = [
        NotifyOn::Fail,
        NotifyOn::Warn,
        NotifyOn::Inconclusive,
        NotifyOn::Recovered,
    ];

    fn run(verdicts: &[Verdict], notify_on: &[NotifyOn], cooldown: Duration) -> Vec<Option<Event>> {
        let mut st = State {
            firing: None,
            last_fired_message_at: None,
        };
        let t0 = Utc::now();
        let mut out = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            let now = t0 + chrono::Duration::minutes(i as i64);
            let (c, e) = step(&st, *v, notify_on, cooldown, now);
            match c {
                Change::None => {}
                Change::Open { severity, notified } | Change::Update { severity, notified } => {
                    st.firing = Some((severity, notified))
                }
                Change::Resolve => st.firing = None,
            }
            if e == Some(Event::Firing) {
                st.last_fired_message_at = Some(now);
            }
            out.push(e);
        }
        out
    }

    use Verdict::*;

    #[test]
    fn one_message_per_start_change_and_resolution() {
        let e = run(
            &[Pass, Fail, Fail, Fail, Warn, Warn, Pass, Pass],
            &ALL,
            Duration::ZERO,
        );
        assert_eq!(
            e,
            vec![
                None,
                Some(Event::Firing),
                None,
                None,
                Some(Event::SeverityChanged),
                None,
                Some(Event::Resolved),
                None
            ]
        );
    }

    #[test]
    fn pending_changes_nothing() {
        let e = run(&[Fail, Pending, Pass], &ALL, Duration::ZERO);
        assert_eq!(e, vec![Some(Event::Firing), None, Some(Event::Resolved)]);
    }

    #[test]
    fn recovered_off_sends_no_resolution() {
        let e = run(&[Fail, Pass, Fail], &[NotifyOn::Fail], Duration::ZERO);
        assert_eq!(e, vec![Some(Event::Firing), None, Some(Event::Firing)]);
    }

    #[test]
    fn unlisted_outcomes_count_as_ok() {
        let e = run(
            &[Warn, Fail, Warn],
            &[NotifyOn::Fail, NotifyOn::Recovered],
            Duration::ZERO,
        );
        assert_eq!(e, vec![None, Some(Event::Firing), Some(Event::Resolved)]);
    }

    #[test]
    fn cooldown_holds_a_flapping_monitor() {
        // Minutes apart, cooldown 10 minutes: the second incident is recorded, not sent, nor is
        // its resolution; after the cooldown a still-open held incident is sent.
        let ten = Duration::from_secs(600);
        let e = run(&[Fail, Pass, Fail, Pass, Fail], &ALL, ten);
        assert_eq!(
            e,
            vec![Some(Event::Firing), Some(Event::Resolved), None, None, None]
        );
        let mut v = vec![Fail, Pass, Fail];
        v.extend(std::iter::repeat_n(Fail, 10));
        let e = run(&v, &ALL, ten);
        assert_eq!(e.iter().filter(|x| x.is_some()).count(), 3, "{e:?}");
        assert_eq!(e[10], Some(Event::Firing));
    }
}
