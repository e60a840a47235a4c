//! What a hand-off says: to the customer, when a person will answer (from the tenant's business
//! hours, in its time zone); to the person, the hand-off packet. Pure functions.

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc};
use shared::inbox::{BusinessHours, HandoffPacket};

use super::escalation::{Fired, Reason};
use super::window::{Speaker, Window};
use crate::time::TenantZone;

/// Parses `HH:MM` (24-hour).
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

/// What is wrong with business hours, in the words an admin reads; `None` when they are fine.
pub fn problem(hours: &BusinessHours) -> Option<&'static str> {
    if hours.days.is_empty() || hours.days.iter().any(|d| !(1..=7).contains(d)) {
        return Some("Choose at least one day, numbered 1 (Monday) to 7 (Sunday).");
    }
    let (Some(opens), Some(closes)) = (parse_time(&hours.opens), parse_time(&hours.closes)) else {
        return Some("Opening and closing times are HH:MM, like 09:00.");
    };
    if opens >= closes {
        return Some("The closing time must be after the opening time.");
    }
    if !(1..=10_080).contains(&hours.response_minutes) {
        return Some("The response time is between 1 minute and 7 days.");
    }
    None
}

/// How a duration in minutes reads to a customer.
fn about(minutes: u32) -> String {
    match minutes {
        0..=1 => "a minute".into(),
        2..=59 => format!("{minutes} minutes"),
        60..=89 => "an hour".into(),
        90..=1439 => format!("{} hours", (minutes + 30) / 60),
        _ => format!("{} days", (minutes + 720) / 1440),
    }
}

/// When a person will answer, said to the customer: "within about an hour" during business
/// hours (or always, without any), else when the team is next in.
pub fn expected_reply(
    hours: Option<&BusinessHours>,
    zone: &TenantZone,
    now: DateTime<Utc>,
) -> String {
    let Some(hours) = hours.filter(|h| problem(h).is_none()) else {
        return "A person will reply here as soon as they can.".into();
    };
    let (Some(opens), Some(closes)) = (parse_time(&hours.opens), parse_time(&hours.closes)) else {
        return "A person will reply here as soon as they can.".into();
    };
    let local = zone.local(now);
    let open_day = |weekday: chrono::Weekday| {
        hours
            .days
            .contains(&u8::try_from(weekday.number_from_monday()).unwrap_or(0))
    };
    let time = local.time();
    if open_day(local.weekday()) && time >= opens && time < closes {
        return format!(
            "A person will reply here within about {}.",
            about(hours.response_minutes)
        );
    }
    // The next opening: later today, or the next open day.
    for ahead in 0..8 {
        let day = local.date_naive() + TimeDelta::days(ahead);
        if !open_day(day.weekday()) || (ahead == 0 && time >= opens) {
            continue;
        }
        let when = match ahead {
            0 => format!("today at {}", opens.format("%H:%M")),
            1 => format!("tomorrow at {}", opens.format("%H:%M")),
            _ => format!("on {} at {}", day.format("%A"), opens.format("%H:%M")),
        };
        return format!(
            "Our team is away right now; a person will reply here when we open, {when} ({}).",
            zone.name()
        );
    }
    "A person will reply here as soon as they can.".into()
}

/// The reason of a hand-off in a sentence.
fn why(fired: &Fired, failed_attempts: u32, note: Option<&str>) -> String {
    match fired.reason {
        Reason::Keywords => {
            "The customer's message matched one of the agent's hand-off keywords.".to_string()
        }
        Reason::HumanRequested => "The customer asked to talk to a person.".to_string(),
        Reason::FailedResolutions => {
            format!("The agent could not resolve the request {failed_attempts} times in a row.")
        }
        Reason::Budget => {
            "The month's AI budget is spent; new conversations go to a person.".to_string()
        }
        Reason::AgentRequested => match note.map(str::trim).filter(|n| !n.is_empty()) {
            Some(note) => format!("The agent handed off: {note}"),
            None => "The agent decided a person should take over.".to_string(),
        },
    }
}

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

/// What the packet is made from.
#[derive(Debug)]
pub struct PacketInput<'a> {
    pub fired: &'a Fired,
    /// The window with the customer's message that triggered the hand-off last.
    pub window: &'a Window,
    pub failed_attempts: u32,
    pub note: Option<&'a str>,
    pub cited: Vec<String>,
    pub customer_name: Option<&'a str>,
    pub expected_reply: String,
    pub at: DateTime<Utc>,
}

/// The hand-off packet: why, a summary of the conversation, the customer's intent in their own
/// latest words, what the AI answered, what it cited, and a reply to start from.
pub fn packet(input: PacketInput<'_>) -> HandoffPacket {
    let turns: Vec<_> = input.window.recent.iter().collect();
    let intent = turns
        .iter()
        .rev()
        .find(|t| t.speaker == Speaker::User)
        .map(|t| clip(&t.text, 500))
        .unwrap_or_default();
    let summary = turns
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(|t| {
            let who = match t.speaker {
                Speaker::User => "Customer",
                Speaker::Agent => "AI",
            };
            format!("{who}: {}", clip(&t.text, 200))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let answers: Vec<_> = turns
        .iter()
        .filter(|t| t.speaker == Speaker::Agent)
        .collect();
    let tried: Vec<String> = answers[answers.len().saturating_sub(3)..]
        .iter()
        .map(|t| clip(&t.text, 300))
        .collect();
    let greeting = match input.customer_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("Hi {name}, "),
        None => "Hi, ".to_string(),
    };
    let suggested_reply = if intent.is_empty() {
        format!(
            "{greeting}thanks for waiting — I'm a person from the team and I'm here to help. What can I do for you?"
        )
    } else {
        format!(
            "{greeting}thanks for waiting — I'm a person from the team and I've read our \
             conversation. About “{}”: ",
            clip(&intent, 80)
        )
    };
    HandoffPacket {
        at: input.at,
        reason: input.fired.reason.as_str().to_string(),
        why: why(input.fired, input.failed_attempts, input.note),
        handoff_target: input.fired.handoff_target.clone(),
        summary,
        intent,
        tried,
        cited: input.cited,
        suggested_reply,
        expected_reply: input.expected_reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hours() -> BusinessHours {
        BusinessHours::default()
    }

    #[test]
    fn inside_business_hours_the_customer_hears_the_response_time_and_outside_when_we_open() {
        let zone = TenantZone::parse("Europe/Berlin").unwrap();
        // Wednesday 2026-12-02 10:00 in Berlin (09:00 UTC).
        let open = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
        assert_eq!(
            expected_reply(Some(&hours()), &zone, open),
            "A person will reply here within about an hour."
        );
        // 18:00 Wednesday in Berlin: tomorrow at 09:00.
        let evening = Utc.with_ymd_and_hms(2026, 12, 2, 17, 0, 0).unwrap();
        assert!(
            expected_reply(Some(&hours()), &zone, evening).contains("tomorrow at 09:00"),
            "{}",
            expected_reply(Some(&hours()), &zone, evening)
        );
        // 07:00 Wednesday: today at 09:00.
        let early = Utc.with_ymd_and_hms(2026, 12, 2, 6, 0, 0).unwrap();
        assert!(expected_reply(Some(&hours()), &zone, early).contains("today at 09:00"));
        // Saturday noon: Monday.
        let weekend = Utc.with_ymd_and_hms(2026, 12, 5, 11, 0, 0).unwrap();
        assert!(expected_reply(Some(&hours()), &zone, weekend).contains("on Monday at 09:00"));
        // No hours: as soon as they can.
        assert_eq!(
            expected_reply(None, &zone, weekend),
            "A person will reply here as soon as they can."
        );
    }

    #[test]
    fn bad_business_hours_are_refused_in_words() {
        let mut h = hours();
        h.days = vec![0];
        assert!(problem(&h).is_some());
        let mut h = hours();
        h.opens = "17:00".into();
        h.closes = "09:00".into();
        assert!(problem(&h).is_some());
        let mut h = hours();
        h.opens = "9am".into();
        assert!(problem(&h).is_some());
        assert!(problem(&hours()).is_none());
    }
}
