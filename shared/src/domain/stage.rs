//! The stage machine of a claimed referral (ST-1 to ST-9, PPL-6, PPL-8).

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::values::{ClientType, InvalidValue, Money, Percent, Program};

/// The stages of ST-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    LeftVoicemail,
    Connected,
    MeetingScheduled,
    MetWithPerson,
    ComingSoon,
    MakingAnOffer,
    Listing,
    InEscrow,
    Closed,
    ClosedPaid,
    Failed,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::LeftVoicemail,
        Stage::Connected,
        Stage::MeetingScheduled,
        Stage::MetWithPerson,
        Stage::ComingSoon,
        Stage::MakingAnOffer,
        Stage::Listing,
        Stage::InEscrow,
        Stage::Closed,
        Stage::ClosedPaid,
        Stage::Failed,
    ];

    /// Position in the pipeline; Coming Soon and Making an Offer share one (ST-1). Failed stands
    /// outside the order.
    pub fn rank(self) -> Option<u8> {
        Some(match self {
            Stage::LeftVoicemail => 1,
            Stage::Connected => 2,
            Stage::MeetingScheduled => 3,
            Stage::MetWithPerson => 4,
            Stage::ComingSoon | Stage::MakingAnOffer => 5,
            Stage::Listing => 6,
            Stage::InEscrow => 7,
            Stage::Closed => 8,
            Stage::ClosedPaid => 9,
            Stage::Failed => return None,
        })
    }

    /// Still being worked: claimed and neither closed nor failed (RM-1, ST-8).
    pub fn is_active(self) -> bool {
        !matches!(self, Stage::Closed | Stage::ClosedPaid | Stage::Failed)
    }

    /// Coming Soon and Listing are for sellers, Making an Offer for buyers.
    pub fn fits(self, client_type: ClientType) -> bool {
        match self {
            Stage::ComingSoon | Stage::Listing => client_type == ClientType::Seller,
            Stage::MakingAnOffer => client_type == ClientType::Buyer,
            _ => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::LeftVoicemail => "left_voicemail",
            Stage::Connected => "connected",
            Stage::MeetingScheduled => "meeting_scheduled",
            Stage::MetWithPerson => "met_with_person",
            Stage::ComingSoon => "coming_soon",
            Stage::MakingAnOffer => "making_an_offer",
            Stage::Listing => "listing",
            Stage::InEscrow => "in_escrow",
            Stage::Closed => "closed",
            Stage::ClosedPaid => "closed_paid",
            Stage::Failed => "failed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::LeftVoicemail => "Left Voicemail",
            Stage::Connected => "Connected",
            Stage::MeetingScheduled => "Meeting Scheduled",
            Stage::MetWithPerson => "Met With Person",
            Stage::ComingSoon => "Coming Soon",
            Stage::MakingAnOffer => "Making an Offer",
            Stage::Listing => "Listing",
            Stage::InEscrow => "In Escrow",
            Stage::Closed => "Closed",
            Stage::ClosedPaid => "Closed-Paid",
            Stage::Failed => "Failed",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Stage {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| InvalidValue::new("stage", format!("unknown stage '{s}'")))
    }
}

/// Why a referral failed (PPL-8 limits PPL referrals to the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    NotAGoodFit,
    Unresponsive,
    Other,
}

/// A PPL referral may be failed as unresponsive only after this long since the claim (PPL-8).
pub const PPL_UNRESPONSIVE_AFTER: SignedDuration = SignedDuration::from_hours(30 * 24);

/// A referral's place in the pipeline and the facts its stages asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub stage: Stage,
    /// While Failed: the stage it failed from, the one it may return to (ST-8).
    pub last_active: Option<Stage>,
    pub list_date: Option<Date>,
    pub meeting_at: Option<Timestamp>,
    pub sale_price: Option<Money>,
    pub close_date: Option<Date>,
    pub fail_reason: Option<FailReason>,
    /// How many times the referral has entered In Escrow: each entry sends the documents once
    /// (ST-4), so this numbers them.
    pub escrow_entries: u32,
    pub updated_at: Timestamp,
}

impl Pipeline {
    /// A freshly claimed referral starts at Left Voicemail.
    pub fn claimed(at: Timestamp) -> Self {
        Pipeline {
            stage: Stage::LeftVoicemail,
            last_active: None,
            list_date: None,
            meeting_at: None,
            sale_price: None,
            close_date: None,
            fail_reason: None,
            escrow_entries: 0,
            updated_at: at,
        }
    }
}

/// A requested stage change, as the agent sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageChange {
    pub stage: Stage,
    pub list_date: Option<Date>,
    pub meeting_at: Option<Timestamp>,
    pub sale_price: Option<Money>,
    pub close_date: Option<Date>,
    pub fail_reason: Option<FailReason>,
}

impl StageChange {
    pub fn to(stage: Stage) -> Self {
        StageChange {
            stage,
            list_date: None,
            meeting_at: None,
            sale_price: None,
            close_date: None,
            fail_reason: None,
        }
    }
}

/// What the referral is, for the rules that depend on it.
#[derive(Debug, Clone, Copy)]
pub struct StageContext {
    pub program: Program,
    pub client_type: ClientType,
    pub claimed_at: Timestamp,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error(
        "a referral cannot move from {from} back to {to}; stages only move forward. Add a note to record the update instead"
    )]
    Backward { from: Stage, to: Stage },
    #[error("{stage} needs {field}")]
    MissingField { stage: Stage, field: &'static str },
    #[error("{stage} is not a stage for a {client_type} referral")]
    WrongClientType {
        stage: Stage,
        client_type: &'static str,
    },
    #[error("only the closings team sets Closed-Paid, when it records the payment")]
    ClosedPaidByClosingsOnly,
    #[error("only the closings team moves a referral out of In Escrow")]
    CorrectionByClosingsOnly,
    #[error("a correction moves In Escrow back to Listing or Making an Offer only")]
    InvalidCorrection,
    #[error("payment is recorded only on a Closed referral, not {0}")]
    PaymentNotClosed(Stage),
    #[error("a {0} referral cannot be failed")]
    NotFailable(Stage),
    #[error("a Failed referral returns to {last_active} or a later stage, not {to}")]
    BelowLastActive { last_active: Stage, to: Stage },
    #[error(
        "a pay-per-lead referral is failed only as not_a_good_fit, or unresponsive after 30 days"
    )]
    PplFailReason,
}

/// Moves the pipeline as an agent or team lead asked (ST-2 to ST-5, ST-8, PPL-8).
pub fn change_stage(
    current: &Pipeline,
    change: &StageChange,
    ctx: StageContext,
) -> Result<Pipeline, StageError> {
    let to = change.stage;
    let from = current.stage;
    if to == Stage::ClosedPaid {
        return Err(StageError::ClosedPaidByClosingsOnly);
    }
    if !to.fits(ctx.client_type) {
        return Err(StageError::WrongClientType {
            stage: to,
            client_type: ctx.client_type.as_str(),
        });
    }
    let mut next = current.clone();
    // Coming Soon saved again with another list date: the listing moved, not the referral (ST-3).
    // Without this the old date would list it, and Listing cannot be undone.
    if from == Stage::ComingSoon && to == Stage::ComingSoon {
        require_fields(to, change)?;
        if change.list_date == current.list_date {
            return Err(StageError::Backward { from, to });
        }
        next.list_date = change.list_date;
        next.updated_at = ctx.now;
        return Ok(next);
    }
    if to == Stage::Failed {
        if !from.is_active() {
            return Err(StageError::NotFailable(from));
        }
        let reason = change.fail_reason.ok_or(StageError::MissingField {
            stage: to,
            field: "failReason",
        })?;
        if ctx.program == Program::Ppl {
            let allowed = match reason {
                FailReason::NotAGoodFit => true,
                FailReason::Unresponsive => {
                    ctx.now.duration_since(ctx.claimed_at) > PPL_UNRESPONSIVE_AFTER
                }
                FailReason::Other => false,
            };
            if !allowed {
                return Err(StageError::PplFailReason);
            }
        }
        next.last_active = Some(from);
        next.fail_reason = Some(reason);
    } else {
        // Failed returns to its last active stage or beyond (ST-8); otherwise strictly forward.
        let floor = match (from, current.last_active) {
            (Stage::Failed, Some(last)) => {
                if to.rank() < last.rank() || (to.rank() == last.rank() && to != last) {
                    return Err(StageError::BelowLastActive {
                        last_active: last,
                        to,
                    });
                }
                None
            }
            _ => from.rank(),
        };
        if let Some(floor) = floor
            && to.rank().is_none_or(|r| r <= floor)
        {
            if from == Stage::InEscrow && to.rank() < from.rank() {
                return Err(StageError::CorrectionByClosingsOnly);
            }
            return Err(StageError::Backward { from, to });
        }
        require_fields(to, change)?;
        next.last_active = None;
        next.fail_reason = None;
    }
    match to {
        Stage::ComingSoon => next.list_date = change.list_date,
        Stage::MeetingScheduled => next.meeting_at = change.meeting_at,
        Stage::InEscrow => {
            next.sale_price = change.sale_price;
            next.close_date = change.close_date;
            next.escrow_entries += 1;
        }
        // A closing that skipped In Escrow still states its sale price, so its fee is known.
        Stage::Closed if change.sale_price.is_some() => {
            next.sale_price = change.sale_price;
            next.close_date = change.close_date.or(next.close_date);
        }
        _ => {}
    }
    next.stage = to;
    next.updated_at = ctx.now;
    Ok(next)
}

fn require_fields(to: Stage, change: &StageChange) -> Result<(), StageError> {
    let missing = |field| Err(StageError::MissingField { stage: to, field });
    match to {
        Stage::ComingSoon if change.list_date.is_none() => missing("listDate"),
        Stage::MeetingScheduled if change.meeting_at.is_none() => missing("meetingAt"),
        Stage::InEscrow if change.sale_price.is_none() => missing("salePrice"),
        Stage::InEscrow if change.close_date.is_none() => missing("closeDate"),
        _ => Ok(()),
    }
}

/// The closings team records the payment: Closed becomes Closed-Paid (ST-6).
pub fn record_payment(current: &Pipeline, now: Timestamp) -> Result<Pipeline, StageError> {
    if current.stage != Stage::Closed {
        return Err(StageError::PaymentNotClosed(current.stage));
    }
    let mut next = current.clone();
    next.stage = Stage::ClosedPaid;
    next.updated_at = now;
    Ok(next)
}

/// The closings team moves In Escrow back to Listing (seller) or Making an Offer (buyer) (ST-7).
pub fn correct_escrow(
    current: &Pipeline,
    to: Stage,
    client_type: ClientType,
    now: Timestamp,
) -> Result<Pipeline, StageError> {
    let allowed = current.stage == Stage::InEscrow
        && matches!(to, Stage::Listing | Stage::MakingAnOffer)
        && to.fits(client_type);
    if !allowed {
        return Err(StageError::InvalidCorrection);
    }
    let mut next = current.clone();
    next.stage = to;
    next.sale_price = None;
    next.close_date = None;
    next.updated_at = now;
    Ok(next)
}

/// Coming Soon turns into Listing on its list date, unless it has moved on (ST-3). `today` is the
/// date in the agent's time zone.
pub fn list_on_date(current: &Pipeline, today: Date, now: Timestamp) -> Option<Pipeline> {
    let due = current.stage == Stage::ComingSoon && current.list_date.is_some_and(|d| d <= today);
    due.then(|| {
        let mut next = current.clone();
        next.stage = Stage::Listing;
        next.updated_at = now;
        next
    })
}

/// The referral fee owed at closing: the agent's agreed percentage of the sale price, none for
/// pay per lead (PPL-6). Failing the referral earlier changes nothing (ST-9).
pub fn referral_fee(program: Program, sale_price: Money, agreement: Option<Percent>) -> Money {
    match (program, agreement) {
        (Program::Ppl, _) | (_, None) => Money::ZERO,
        (_, Some(p)) => sale_price.percent(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ctx(client_type: ClientType) -> StageContext {
        StageContext {
            program: Program::Routing,
            client_type,
            claimed_at: t("2026-01-01T00:00:00Z"),
            now: t("2026-01-10T00:00:00Z"),
        }
    }

    fn at(stage: Stage) -> Pipeline {
        Pipeline {
            stage,
            ..Pipeline::claimed(t("2026-01-01T00:00:00Z"))
        }
    }

    fn escrow_change() -> StageChange {
        StageChange {
            sale_price: Some("500000".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 3, 1)),
            ..StageChange::to(Stage::InEscrow)
        }
    }

    #[test]
    fn st_1_coming_soon_and_making_an_offer_share_a_rank_below_listing() {
        assert_eq!(Stage::ComingSoon.rank(), Stage::MakingAnOffer.rank());
        assert!(Stage::Listing.rank() > Stage::ComingSoon.rank());
        assert_eq!(Stage::ALL.len(), 11);
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), s);
        }
        assert!("won".parse::<Stage>().is_err());
    }

    #[test]
    fn st_2_forward_moves_and_skips_are_allowed() {
        let c = ctx(ClientType::Seller);
        let p = change_stage(
            &at(Stage::LeftVoicemail),
            &StageChange::to(Stage::MetWithPerson),
            c,
        )
        .unwrap();
        assert_eq!(p.stage, Stage::MetWithPerson);
        assert_eq!(p.updated_at, c.now);
    }

    #[test]
    fn st_2_backward_move_is_refused_with_a_note_suggestion() {
        let err = change_stage(
            &at(Stage::Connected),
            &StageChange::to(Stage::LeftVoicemail),
            ctx(ClientType::Buyer),
        )
        .unwrap_err();
        assert_eq!(
            err,
            StageError::Backward {
                from: Stage::Connected,
                to: Stage::LeftVoicemail
            }
        );
        assert!(err.to_string().contains("note"));
    }

    #[test]
    fn st_2_same_stage_and_same_rank_moves_are_refused() {
        let c = ctx(ClientType::Buyer);
        assert!(matches!(
            change_stage(&at(Stage::Connected), &StageChange::to(Stage::Connected), c),
            Err(StageError::Backward { .. })
        ));
        // A seller in Coming Soon may not hop sideways to Making an Offer either: wrong type and
        // same rank.
        let seller = ctx(ClientType::Seller);
        assert!(
            change_stage(
                &at(Stage::ComingSoon),
                &StageChange::to(Stage::MakingAnOffer),
                seller
            )
            .is_err()
        );
    }

    #[test]
    fn st_1_seller_and_buyer_stages_fit_their_client_type() {
        let err = change_stage(
            &at(Stage::Connected),
            &StageChange::to(Stage::Listing),
            ctx(ClientType::Buyer),
        )
        .unwrap_err();
        assert!(matches!(err, StageError::WrongClientType { .. }));
        assert!(
            change_stage(
                &at(Stage::Connected),
                &StageChange::to(Stage::MakingAnOffer),
                ctx(ClientType::Buyer)
            )
            .is_ok()
        );
    }

    #[test]
    fn st_3_coming_soon_needs_a_list_date_and_lists_on_it() {
        let c = ctx(ClientType::Seller);
        let err = change_stage(
            &at(Stage::MetWithPerson),
            &StageChange::to(Stage::ComingSoon),
            c,
        )
        .unwrap_err();
        assert_eq!(
            err,
            StageError::MissingField {
                stage: Stage::ComingSoon,
                field: "listDate"
            }
        );
        let list_date = jiff::civil::date(2026, 2, 1);
        let soon = change_stage(
            &at(Stage::MetWithPerson),
            &StageChange {
                list_date: Some(list_date),
                ..StageChange::to(Stage::ComingSoon)
            },
            c,
        )
        .unwrap();
        assert_eq!(
            list_on_date(&soon, jiff::civil::date(2026, 1, 31), c.now),
            None
        );
        let listed = list_on_date(&soon, list_date, c.now).unwrap();
        assert_eq!(listed.stage, Stage::Listing);
        // Moved on already: nothing happens on the date.
        let escrow = change_stage(&soon, &escrow_change(), c).unwrap();
        assert_eq!(list_on_date(&escrow, list_date, c.now), None);
    }

    #[test]
    fn st_3_a_coming_soon_referral_takes_a_new_list_date() {
        let c = ctx(ClientType::Seller);
        let on = |d| StageChange {
            list_date: Some(d),
            ..StageChange::to(Stage::ComingSoon)
        };
        let first = jiff::civil::date(2026, 2, 1);
        let later = jiff::civil::date(2026, 2, 15);
        let soon = change_stage(&at(Stage::MetWithPerson), &on(first), c).unwrap();
        let moved = change_stage(&soon, &on(later), c).unwrap();
        assert_eq!(
            (moved.stage, moved.list_date),
            (Stage::ComingSoon, Some(later))
        );
        assert_eq!(list_on_date(&moved, first, c.now), None);
        assert_eq!(
            list_on_date(&moved, later, c.now).unwrap().stage,
            Stage::Listing
        );
        // The same date again changes nothing: a same-stage move (ST-2); no date at all is missing.
        assert!(matches!(
            change_stage(&moved, &on(later), c),
            Err(StageError::Backward { .. })
        ));
        assert!(matches!(
            change_stage(&moved, &StageChange::to(Stage::ComingSoon), c),
            Err(StageError::MissingField {
                field: "listDate",
                ..
            })
        ));
    }

    #[test]
    fn st_4_in_escrow_needs_sale_price_and_close_date_and_counts_entries() {
        let c = ctx(ClientType::Buyer);
        let no_price = StageChange {
            close_date: Some(jiff::civil::date(2026, 3, 1)),
            ..StageChange::to(Stage::InEscrow)
        };
        assert_eq!(
            change_stage(&at(Stage::MakingAnOffer), &no_price, c).unwrap_err(),
            StageError::MissingField {
                stage: Stage::InEscrow,
                field: "salePrice"
            }
        );
        let no_date = StageChange {
            sale_price: Some("1".parse().unwrap()),
            ..StageChange::to(Stage::InEscrow)
        };
        assert!(matches!(
            change_stage(&at(Stage::MakingAnOffer), &no_date, c),
            Err(StageError::MissingField {
                field: "closeDate",
                ..
            })
        ));
        let e = change_stage(&at(Stage::MakingAnOffer), &escrow_change(), c).unwrap();
        assert_eq!(e.escrow_entries, 1);
        assert_eq!(e.sale_price.unwrap().to_string(), "500000.00");
    }

    #[test]
    fn st_5_meeting_scheduled_takes_the_meeting_time() {
        let c = ctx(ClientType::Buyer);
        assert!(
            change_stage(
                &at(Stage::Connected),
                &StageChange::to(Stage::MeetingScheduled),
                c
            )
            .is_err()
        );
        let when = t("2026-01-12T17:00:00Z");
        let p = change_stage(
            &at(Stage::Connected),
            &StageChange {
                meeting_at: Some(when),
                ..StageChange::to(Stage::MeetingScheduled)
            },
            c,
        )
        .unwrap();
        assert_eq!(p.meeting_at, Some(when));
    }

    #[test]
    fn st_6_closed_paid_only_through_the_payment() {
        let c = ctx(ClientType::Buyer);
        assert_eq!(
            change_stage(&at(Stage::Closed), &StageChange::to(Stage::ClosedPaid), c).unwrap_err(),
            StageError::ClosedPaidByClosingsOnly
        );
        assert_eq!(
            record_payment(&at(Stage::Closed), c.now).unwrap().stage,
            Stage::ClosedPaid
        );
        assert!(matches!(
            record_payment(&at(Stage::InEscrow), c.now),
            Err(StageError::PaymentNotClosed(_))
        ));
    }

    #[test]
    fn st_7_only_closings_moves_in_escrow_back() {
        let c = ctx(ClientType::Seller);
        let escrow = Pipeline {
            escrow_entries: 1,
            ..at(Stage::InEscrow)
        };
        assert_eq!(
            change_stage(&escrow, &StageChange::to(Stage::Listing), c).unwrap_err(),
            StageError::CorrectionByClosingsOnly
        );
        let back = correct_escrow(&escrow, Stage::Listing, ClientType::Seller, c.now).unwrap();
        assert_eq!(back.stage, Stage::Listing);
        assert!(
            correct_escrow(
                &at(Stage::InEscrow),
                Stage::MakingAnOffer,
                ClientType::Seller,
                c.now
            )
            .is_err()
        );
        assert!(
            correct_escrow(
                &at(Stage::InEscrow),
                Stage::Connected,
                ClientType::Seller,
                c.now
            )
            .is_err()
        );
        assert!(
            correct_escrow(
                &at(Stage::Listing),
                Stage::Listing,
                ClientType::Seller,
                c.now
            )
            .is_err()
        );
        // Back in escrow later: a second entry, so the documents go out again (ST-4).
        let again = change_stage(&back, &escrow_change(), c).unwrap();
        assert_eq!(again.escrow_entries, 2);
    }

    #[test]
    fn st_8_failed_from_any_active_stage_and_back_to_the_last_active_one() {
        let c = ctx(ClientType::Seller);
        let failed = change_stage(
            &at(Stage::Listing),
            &StageChange {
                fail_reason: Some(FailReason::Other),
                ..StageChange::to(Stage::Failed)
            },
            c,
        )
        .unwrap();
        assert_eq!(failed.last_active, Some(Stage::Listing));
        assert!(matches!(
            change_stage(&failed, &StageChange::to(Stage::Connected), c),
            Err(StageError::BelowLastActive { .. })
        ));
        let back = change_stage(&failed, &StageChange::to(Stage::Listing), c).unwrap();
        assert_eq!((back.stage, back.last_active), (Stage::Listing, None));
        assert!(change_stage(&back, &escrow_change(), c).is_ok());
        // Closed is not active: it cannot fail.
        assert!(matches!(
            change_stage(
                &at(Stage::Closed),
                &StageChange {
                    fail_reason: Some(FailReason::Other),
                    ..StageChange::to(Stage::Failed)
                },
                c
            ),
            Err(StageError::NotFailable(Stage::Closed))
        ));
        // Failing needs a reason.
        assert!(matches!(
            change_stage(&at(Stage::Connected), &StageChange::to(Stage::Failed), c),
            Err(StageError::MissingField {
                field: "failReason",
                ..
            })
        ));
    }

    #[test]
    fn st_9_fee_still_owed_when_closed_after_failed() {
        let c = ctx(ClientType::Buyer);
        let failed = change_stage(
            &at(Stage::MakingAnOffer),
            &StageChange {
                fail_reason: Some(FailReason::Unresponsive),
                ..StageChange::to(Stage::Failed)
            },
            c,
        )
        .unwrap();
        let closed = change_stage(&failed, &StageChange::to(Stage::Closed), c).unwrap();
        assert_eq!(closed.stage, Stage::Closed);
        let fee = referral_fee(
            Program::Routing,
            "400000".parse().unwrap(),
            Some(Percent::new(Decimal::new(25, 0)).unwrap()),
        );
        assert_eq!(fee.to_string(), "100000.00");
    }

    #[test]
    fn ppl_6_no_referral_fee_for_pay_per_lead() {
        let fee = referral_fee(
            Program::Ppl,
            "400000".parse().unwrap(),
            Some(Percent::new(Decimal::new(25, 0)).unwrap()),
        );
        assert_eq!(fee, Money::ZERO);
    }

    #[test]
    fn ppl_8_fail_reasons_for_pay_per_lead() {
        let fail = |reason, now: &str| {
            change_stage(
                &at(Stage::Connected),
                &StageChange {
                    fail_reason: Some(reason),
                    ..StageChange::to(Stage::Failed)
                },
                StageContext {
                    program: Program::Ppl,
                    client_type: ClientType::Buyer,
                    claimed_at: t("2026-01-01T00:00:00Z"),
                    now: t(now),
                },
            )
        };
        assert!(fail(FailReason::NotAGoodFit, "2026-01-02T00:00:00Z").is_ok());
        assert_eq!(
            fail(FailReason::Other, "2026-06-01T00:00:00Z").unwrap_err(),
            StageError::PplFailReason
        );
        assert_eq!(
            fail(FailReason::Unresponsive, "2026-01-31T00:00:00Z").unwrap_err(),
            StageError::PplFailReason
        );
        assert!(fail(FailReason::Unresponsive, "2026-01-31T00:00:01Z").is_ok());
    }

    fn change_for(stage: Stage) -> StageChange {
        StageChange {
            stage,
            list_date: Some(jiff::civil::date(2026, 2, 1)),
            meeting_at: Some(t("2026-01-12T17:00:00Z")),
            sale_price: Some("1".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 3, 1)),
            fail_reason: Some(FailReason::NotAGoodFit),
        }
    }

    proptest! {
        /// ST-2, ST-8: whatever an agent asks, the only way a rank ever drops is into Failed, and
        /// out of Failed only to the stage it failed from or beyond.
        #[test]
        fn st_2_no_sequence_of_moves_goes_backward(
            seller in any::<bool>(),
            moves in proptest::collection::vec(0usize..11, 1..40),
        ) {
            let client_type = if seller { ClientType::Seller } else { ClientType::Buyer };
            let c = ctx(client_type);
            let mut p = Pipeline::claimed(c.claimed_at);
            let mut high = p.stage.rank().unwrap();
            for i in moves {
                let to = Stage::ALL[i];
                if let Ok(next) = change_stage(&p, &change_for(to), c) {
                    match next.stage.rank() {
                        Some(r) => {
                            prop_assert!(r > p.stage.rank().unwrap_or(0) || p.stage == Stage::Failed);
                            prop_assert!(r >= high, "{:?} below the highest rank {}", next.stage, high);
                            high = r;
                        }
                        None => prop_assert!(p.stage.is_active()),
                    }
                    prop_assert!(next.stage != Stage::ClosedPaid);
                    p = next;
                }
            }
        }
    }
}
