//! Spend limits over time: no more than the operator allows per day, week or month, across every
//! process and replica sharing the state store (`--spend-limit 5000EUR/month`, and with OAuth
//! `--spend-limit-per-person 500EUR/day`).
//!
//! - **What counts**: the net one-time total of every order placed, and of every order whose
//!   outcome is unknown (until a search finds it did not happen), as the preview priced it. A
//!   refused or declined order does not count.
//! - **Periods** are calendar days, ISO weeks (from Monday) and calendar months, in UTC, by the
//!   state store's clock (a process's clock decides nothing: see `crate::state`).
//! - **When**: a preview that would exceed what is left is refused with both figures; one that
//!   fits says what is left after it. At confirmation the limit is checked again and the amount
//!   reserved in the same atomic step that claims the token, so two confirmations racing near
//!   the limit cannot both pass, in any number of processes.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::api::products::Cents;
use crate::state::Budget;

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day, UTC.
    Day,
    /// An ISO week, Monday to Sunday, UTC.
    Week,
    /// A calendar month, UTC.
    Month,
}

impl Period {
    /// The period that holds `at`: its first instant and the first instant of the next.
    pub fn window(self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = at.date_naive();
        let start = match self {
            Period::Day => day,
            Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Period::Month => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day),
        };
        let end = match self {
            Period::Day => start + Duration::days(1),
            Period::Week => start + Duration::days(7),
            Period::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(start)
            }
        };
        let midnight =
            |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        (midnight(start), midnight(end))
    }

    /// "today", "this week", "this month".
    pub fn this(self) -> &'static str {
        match self {
            Period::Day => "today",
            Period::Week => "this week",
            Period::Month => "this month",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// One limit: at most `amount` in `currency` per `period`, for the whole server or per person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLimit {
    pub amount: Cents,
    pub currency: String,
    pub period: Period,
    /// Per person (each OAuth subject has this budget of their own).
    pub per_person: bool,
}

impl fmt::Display for SpendLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} per {}{}",
            amount(self.amount),
            self.currency,
            self.period.name(),
            if self.per_person { " per person" } else { "" }
        )
    }
}

/// The form a limit is written in, for messages.
pub const FORM: &str = "AMOUNT CURRENCY/PERIOD, e.g. 5000EUR/month, 500EUR/day or 2000EUR/week (periods: day, week, month, in UTC)";

impl SpendLimit {
    /// Parses `5000EUR/month`, `500 EUR/day`, `2000.50EUR/week`.
    pub fn parse(text: &str, per_person: bool) -> Result<SpendLimit, String> {
        let bad = || format!("{text:?} is not a spend limit; write {FORM}");
        let (money, period) = text.trim().rsplit_once('/').ok_or_else(bad)?;
        let period = match period.trim().to_ascii_lowercase().as_str() {
            "day" | "d" => Period::Day,
            "week" | "w" => Period::Week,
            "month" | "m" => Period::Month,
            _ => return Err(bad()),
        };
        let money = money.trim();
        let split = money
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(bad)?;
        let (number, currency) = money.split_at(split);
        let currency = currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let amount = Cents::parse(number.trim())
            .filter(|c| c.0 > 0)
            .ok_or_else(bad)?;
        Ok(SpendLimit {
            amount,
            currency,
            period,
            per_person,
        })
    }
}

/// `12345.60` as `12,345.60`.
pub fn amount(cents: Cents) -> String {
    let text = cents.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "00"));
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", whole),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{fraction}")
}

/// One limit as it stands at a moment: what is spent in its current period and what is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Standing {
    /// The limit, e.g. "5,000.00 EUR per month".
    pub limit: String,
    pub currency: String,
    pub period: Period,
    /// Whether each person has this budget of their own.
    pub per_person: bool,
    /// Spent in the current period (placed, and of unknown outcome), net.
    pub spent: String,
    /// Left in the current period, net.
    pub left: String,
    /// When the period ends and the budget starts again (RFC 3339, UTC).
    pub resets_at: String,
    #[serde(skip)]
    pub left_cents: Cents,
    #[serde(skip)]
    pub limit_cents: Cents,
}

impl SpendLimit {
    /// The store's budget for this limit in the period that holds `now` (store time), for
    /// `person` when per person.
    pub fn budget(&self, now: DateTime<Utc>, person: &str) -> Budget {
        let (start, end) = self.period.window(now);
        Budget {
            currency: self.currency.clone(),
            limit_cents: self.amount.0,
            from_ms: start.timestamp_millis(),
            until_ms: end.timestamp_millis(),
            person: self.per_person.then(|| person.to_owned()),
        }
    }

    /// How this limit stands with `spent` already counted in the period that holds `now`.
    pub fn standing(&self, spent: Cents, now: DateTime<Utc>) -> Standing {
        let left = Cents((self.amount.0 - spent.0).max(0));
        Standing {
            limit: self.to_string(),
            currency: self.currency.clone(),
            period: self.period,
            per_person: self.per_person,
            spent: format!("{} {}", amount(spent), self.currency),
            left: format!("{} {}", amount(left), self.currency),
            resets_at: self
                .period
                .window(now)
                .1
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            left_cents: left,
            limit_cents: self.amount,
        }
    }
}

/// The figures a decision used, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendFigure {
    /// The limit, e.g. "5,000.00 EUR per month".
    pub limit: String,
    /// The period the figures are for: its first day, UTC.
    pub period_from: String,
    /// Counted in the period before this order.
    pub spent_before: String,
    /// This order's net one-time total in the limit's currency.
    pub this_order: String,
}

impl SpendLimit {
    /// The audit figure of a decision at store time `now` with `spent_before` counted.
    pub fn figure(
        &self,
        now: DateTime<Utc>,
        spent_before: Cents,
        this_order: Cents,
    ) -> SpendFigure {
        SpendFigure {
            limit: self.to_string(),
            period_from: self.period.window(now).0.date_naive().to_string(),
            spent_before: format!("{} {}", amount(spent_before), self.currency),
            this_order: format!("{} {}", amount(this_order), self.currency),
        }
    }
}

/// Why an order does not fit, worded for the agent and the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub limit: SpendLimit,
    /// The order's net one-time total in the limit's currency.
    pub this_order: Cents,
    /// Left in the period before this order.
    pub left: Cents,
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.limit.currency;
        write!(
            f,
            "this order would exceed the operator's spend limit of {}: this order: {} {c} net; left {}{}: {} {c} of {} {c}. Nothing was ordered. A smaller order fits, or the budget starts again {}",
            self.limit,
            amount(self.this_order),
            self.limit.period.this(),
            if self.limit.per_person {
                " for this person"
            } else {
                ""
            },
            amount(self.left),
            amount(self.limit.amount),
            match self.limit.period {
                Period::Day => "tomorrow (UTC)",
                Period::Week => "on Monday (UTC)",
                Period::Month => "on the 1st (UTC)",
            }
        )
    }
}

/// An order in a currency no limit names, while limits are set: refused, as the operator's
/// `--max-order-value` refuses one.
pub fn unnamed_currency(currency: &str, limits: &[SpendLimit]) -> String {
    let named: Vec<&str> = limits.iter().map(|l| l.currency.as_str()).collect();
    format!(
        "Refused: this order costs {currency}, and the operator's spend limits name no limit for {currency} (they cover {}). Nothing was ordered",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn limits_are_written_as_amount_currency_and_period() {
        let l = SpendLimit::parse("5000EUR/month", false).unwrap();
        assert_eq!(
            (l.amount, l.currency.as_str(), l.period),
            (Cents(500_000), "EUR", Period::Month)
        );
        let l = SpendLimit::parse(" 500.50 eur / day ", true).unwrap();
        assert_eq!(
            (l.amount, l.period, l.per_person),
            (Cents(50_050), Period::Day, true)
        );
        assert_eq!(l.to_string(), "500.50 EUR per day per person");
        for bad in [
            "5000",
            "EUR/month",
            "5000EUR",
            "5000EURO/month",
            "-5EUR/day",
            "0EUR/day",
            "5000EUR/year",
            "5.001EUR/day",
        ] {
            let err = SpendLimit::parse(bad, false).unwrap_err();
            assert!(err.contains("5000EUR/month"), "{bad}: {err}");
        }
    }

    #[test]
    fn periods_are_calendar_days_iso_weeks_and_months_in_utc() {
        let t = at("2026-12-06T23:59:59Z"); // a Sunday
        assert_eq!(
            Period::Day.window(t),
            (at("2026-12-06T00:00:00Z"), at("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            Period::Week.window(t),
            (at("2026-11-30T00:00:00Z"), at("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.window(t),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Week.window(at("2026-12-07T00:00:00Z")).0,
            at("2026-12-07T00:00:00Z"),
            "Monday starts a week"
        );
    }

    #[test]
    fn a_refusal_names_both_figures() {
        let over = OverLimit {
            limit: SpendLimit::parse("5000EUR/month", false).unwrap(),
            this_order: Cents(90_000),
            left: Cents(40_000),
        };
        let text = over.to_string();
        assert!(
            text.contains("this order: 900.00 EUR")
                && text.contains("left this month: 400.00 EUR of 5,000.00 EUR")
                && text.contains("Nothing was ordered"),
            "{text}"
        );
        assert_eq!(amount(Cents(123_456_789)), "1,234,567.89");
    }

    /// Budgets in a store whose clock is moved by hand.
    mod on_a_manual_clock {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use super::*;
        use crate::clock::ManualClock;
        use crate::state::{Reservation, Reserved, Store, Use, UseState};

        async fn claim(
            store: &Store,
            id: &str,
            cents: i64,
            limit: &SpendLimit,
            budgets_at: DateTime<Utc>,
        ) -> Reserved {
            let first = Use {
                state: UseState::Posting,
                content: "c".into(),
                expires: budgets_at.timestamp_millis() + 600_000,
            };
            let reservation = Reservation {
                cents: BTreeMap::from([("EUR".to_owned(), cents)]),
                person: String::new(),
            };
            store
                .claim_within(id, &first, &reservation, &[limit.budget(budgets_at, "")])
                .await
                .unwrap()
        }

        async fn spent(store: &Store, limit: &SpendLimit, at: DateTime<Utc>) -> i64 {
            store.spent(&limit.budget(at, "")).await.unwrap()
        }

        #[tokio::test]
        async fn a_new_month_starts_from_zero() {
            let clock = Arc::new(ManualClock::new(at("2026-12-31T23:59:00Z")));
            let store = Store::memory(clock.clone(), [3; 32]);
            let limit = SpendLimit::parse("1000EUR/month", false).unwrap();
            let now = || crate::clock::Clock::now(&*clock);
            assert!(matches!(
                claim(&store, "a", 90_000, &limit, now()).await,
                Reserved::Won { .. }
            ));
            assert!(matches!(
                claim(&store, "b", 20_000, &limit, now()).await,
                Reserved::Over {
                    budget: 0,
                    spent_cents: 90_000
                }
            ));
            clock.advance(std::time::Duration::from_secs(120));
            assert_eq!(
                spent(&store, &limit, now()).await,
                0,
                "January starts from zero"
            );
            assert!(matches!(
                claim(&store, "b", 20_000, &limit, now()).await,
                Reserved::Won { .. }
            ));
            assert_eq!(
                spent(&store, &limit, at("2026-12-15T00:00:00Z")).await,
                90_000
            );
            assert_eq!(spent(&store, &limit, now()).await, 20_000);
        }

        #[tokio::test]
        async fn a_claim_counts_in_the_period_whose_budget_admitted_it() {
            // The budgets are read at the last millisecond of December; by the claim, the
            // store's clock reads January (or jumped a month ahead): the amount still counts in
            // December, which admitted it, and January is not charged for December's check.
            let clock = Arc::new(ManualClock::new(at("2026-12-31T23:59:59.999Z")));
            let store = Store::memory(clock.clone(), [3; 32]);
            let limit = SpendLimit::parse("1000EUR/month", false).unwrap();
            let december = crate::clock::Clock::now(&*clock);
            clock.advance(std::time::Duration::from_secs(31 * 24 * 3600));
            assert!(matches!(
                claim(&store, "a", 90_000, &limit, december).await,
                Reserved::Won { .. }
            ));
            assert_eq!(spent(&store, &limit, december).await, 90_000);
            assert_eq!(spent(&store, &limit, at("2027-01-31T00:00:00Z")).await, 0);
            // And a clock stepping back into a spent month finds it spent.
            assert!(matches!(
                claim(&store, "b", 20_000, &limit, december).await,
                Reserved::Over { .. }
            ));
        }

        #[tokio::test]
        async fn an_unknown_outcome_counts_until_released_and_a_placed_one_for_good() {
            let clock = Arc::new(ManualClock::new(at("2026-12-10T12:00:00Z")));
            let store = Store::memory(clock.clone(), [3; 32]);
            let limit = SpendLimit::parse("1000EUR/month", false).unwrap();
            let now = || crate::clock::Clock::now(&*clock);
            claim(&store, "lost", 40_000, &limit, now()).await;
            claim(&store, "kept", 30_000, &limit, now()).await;
            store
                .settle_spend("lost", crate::state::SpendState::Unknown)
                .await
                .unwrap();
            store
                .settle_spend("kept", crate::state::SpendState::Placed)
                .await
                .unwrap();
            let five_minutes = std::time::Duration::from_secs(300);
            assert!(
                !store.release_unknown("lost", five_minutes).await.unwrap(),
                "too early"
            );
            assert_eq!(spent(&store, &limit, now()).await, 70_000);
            clock.advance(five_minutes);
            assert!(
                !store.release_unknown("kept", five_minutes).await.unwrap(),
                "never a placed one"
            );
            assert!(store.release_unknown("lost", five_minutes).await.unwrap());
            assert_eq!(spent(&store, &limit, now()).await, 30_000);
        }
    }
}
