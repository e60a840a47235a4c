//! A tenant's calendar: its time zone turns an instant into its day, its month and (later) its
//! business hours. Pure functions of the instant they are given, so tests pass any clock.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The engine's clock: the real time, shifted by an offset that tests move forward (to close
/// WhatsApp's 24-hour window without waiting a day). Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.0.load(std::sync::atomic::Ordering::Relaxed);
        Utc::now() + chrono::Duration::milliseconds(offset)
    }

    /// Moves this clock (and its clones) forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.0
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// A tenant's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantZone(Tz);

impl Default for TenantZone {
    fn default() -> Self {
        Self(Tz::UTC)
    }
}

impl TenantZone {
    /// The zone an IANA name names (`Europe/Berlin`); `None` for a name the database does not
    /// know.
    pub fn parse(name: &str) -> Option<Self> {
        name.parse::<Tz>().ok().map(Self)
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The tenant's calendar day at `now`.
    pub fn day(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.0).date_naive()
    }

    /// The first day of the tenant's calendar month at `now`.
    pub fn month_start(&self, now: DateTime<Utc>) -> NaiveDate {
        let day = self.day(now);
        NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
    }

    /// The key of the tenant's calendar month at `now` (`YYYY-MM`): budgets keep a month's spend
    /// under it, so a new month starts at zero by itself.
    pub fn month_key(&self, now: DateTime<Utc>) -> String {
        self.month_start(now).format("%Y-%m").to_string()
    }

    /// When the tenant's day `day` begins, as an instant (the first instant that exists that
    /// day, should midnight fall in a daylight-saving gap).
    pub fn start_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        match self.0.from_local_datetime(&midnight) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                t.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                // Midnight does not exist that day: the day starts when the clocks jump.
                let later = midnight + chrono::Duration::hours(1);
                self.0.from_local_datetime(&later).earliest().map_or_else(
                    || Utc.from_utc_datetime(&midnight),
                    |t| t.with_timezone(&Utc),
                )
            }
        }
    }

    /// `now` on the tenant's clock.
    pub fn local(&self, now: DateTime<Utc>) -> DateTime<Tz> {
        now.with_timezone(&self.0)
    }

    /// The local wall-clock time at `now`, e.g. `2026-12-01 19:42`.
    pub fn local_time(&self, now: DateTime<Utc>) -> String {
        now.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }
}

/// Every IANA zone name the runtime knows, sorted.
pub fn zone_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    names.sort_unstable();
    names
}

/// Whether `tag` is a locale we accept: a language (`en`), optionally with a region (`en-GB`).
pub fn is_locale(tag: &str) -> bool {
    let (language, region) = match tag.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (tag, None),
    };
    (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_budget_month_turns_at_the_tenants_midnight_not_utcs() {
        let auckland = TenantZone::parse("Pacific/Auckland").unwrap();
        let utc = TenantZone::default();
        // 11:30 UTC on 30 November is already 1 December in Auckland (UTC+13).
        let instant = at("2026-11-30T11:30:00Z");
        assert_eq!(utc.month_key(instant), "2026-11");
        assert_eq!(auckland.month_key(instant), "2026-12");
        assert_eq!(auckland.month_key(at("2026-11-30T10:59:59Z")), "2026-11");
        assert_eq!(utc.month_key(at("2026-12-31T23:59:59Z")), "2026-12");
        assert_eq!(utc.month_key(at("2027-01-01T00:00:00Z")), "2027-01");
    }

    #[test]
    fn a_tenants_day_and_month_are_its_own() {
        let berlin = TenantZone::parse("Europe/Berlin").unwrap();
        let la = TenantZone::parse("America/Los_Angeles").unwrap();
        // 23:30 UTC on the last day of November: already December in Berlin, still November
        // afternoon in Los Angeles.
        let now = at("2026-11-30T23:30:00Z");
        assert_eq!(
            berlin.day(now),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(
            berlin.month_start(now),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(la.day(now), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(
            la.month_start(now),
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
        );
        assert_eq!(
            TenantZone::default().day(now),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
        assert_eq!(berlin.local_time(now), "2026-12-01 00:30");
    }

    #[test]
    fn days_start_at_local_midnight_even_across_daylight_saving() {
        let berlin = TenantZone::parse("Europe/Berlin").unwrap();
        let winter = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(berlin.start_of(winter), at("2026-11-30T23:00:00Z"));
        let summer = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(berlin.start_of(summer), at("2026-06-30T22:00:00Z"));
        // Santiago skips midnight when its clocks spring forward (first Sunday of September).
        let santiago = TenantZone::parse("America/Santiago").unwrap();
        let gap = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = santiago.start_of(gap);
        assert_eq!(santiago.day(start), gap);
        assert_eq!(
            santiago.day(start - chrono::Duration::seconds(1)),
            gap.pred_opt().unwrap()
        );
    }

    #[test]
    fn only_iana_names_and_sane_locales_are_accepted() {
        assert!(TenantZone::parse("Europe/Berlin").is_some());
        assert!(TenantZone::parse("UTC").is_some());
        for bad in ["Mars/Olympus", "", "Europe/Berlin; DROP", "GMT+25"] {
            assert!(TenantZone::parse(bad).is_none(), "{bad}");
        }
        assert!(zone_names().contains(&"Asia/Tokyo"));
        assert!(zone_names().len() > 400);
        for good in ["en", "en-GB", "pt-BR", "fil"] {
            assert!(is_locale(good), "{good}");
        }
        for bad in ["EN", "en_gb", "en-gb", "english", "e", "en-GBR", ""] {
            assert!(!is_locale(bad), "{bad}");
        }
    }
}
